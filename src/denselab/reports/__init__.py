"""Reports, written from stored runs and never training: `study` and `search` (report.md,
figures/ and a self-contained report.html), their figures in `plots` and `search_figures`."""
