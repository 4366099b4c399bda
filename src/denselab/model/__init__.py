"""Step 2: the model. `spec` (the exercise's family and its Keras model), `keras_file` (a
.keras file read without Keras), `predict` and `evaluate` (NumPy, the same numbers as Keras),
and `run_dir` (the run folder every later step reads)."""
