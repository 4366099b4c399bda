"""Reports, written from stored runs and never training: `study` and `search` (report.md,
figures/ and a self-contained report.html, made into pages by `render`), their figures in
`plots`, `prediction_figures` and `search_figures`, which share `style`."""
