"""Step 6: taking a trained model onto a microcontroller.

`boards` (boards.toml and whether a model fits a board), `tflite` (conversion and
quantization, LiteRT scoring), `tflm` (the TensorFlow Lite Micro check and arena),
`c_array` (model_data.cc and main.cc from `main.cc.template`), `figures` (a run's
deployment figures), `export` (all of it for `denselab export`), `toolchain` (compilers and
emulators) and `c_runtime/` (denselab's own C runtime).
"""
