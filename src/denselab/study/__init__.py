"""Step 5: the study. `file` (study files: defaults, variants, questions), `run` (a study as
a list of runs for the engine, denselab.runs) and `findings` (summaries over seeds, answers
with confidence intervals). The built-in study is `studies/exercise.toml`."""
