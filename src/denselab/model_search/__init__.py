"""The search: the most accurate dense model that fits a board, chosen on a validation split.

`space` says what a trial may choose, `target` what a board holds, `split` which training
images are held out for validation, `run` drives the trials through the run engine with
Optuna and successive halving, `finalists` retrains the best on all training images and
scores them once on the test set, and `report` writes what was found.
"""

# The winner and up to this many minus one more Pareto points are retrained and checked
# (`denselab search --finalists`), the most accurate first.
MAX_FINALISTS = 5
