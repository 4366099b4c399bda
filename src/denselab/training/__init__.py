"""Step 3: training. `config` (TrainConfig, the exercise's defaults), `fit` (train a spec,
seeding, saving), `loop` (denselab's compiled JAX loop, seeds side by side), `recipe`
(training-only choices: dropout, weight decay, augmentation) and `keras_callbacks` (the
exercise's early stop for other Keras backends)."""
