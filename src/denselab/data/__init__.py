"""Step 1: the dataset. `dataset` (the arrays, class names, normalization), `idx` (the IDX
file format), `sources` (where the files are found) and `images` (PNG/JPEG files in the
dataset's 28x28 form)."""
