"""Taking a trained model onto a microcontroller.

boards: which boards a model fits, with TFLM or with denselab's C runtime. The C runtime, which
needs no TensorFlow Lite Micro interpreter: quantized (the int8 .tflite read as integer
arithmetic), c_source (the C99 runtime it becomes), toolchain (the compilers and emulator),
host_check and cortex_m (the checks on the host's C compiler and on an emulated Cortex-M4),
c_footprint (flash and RAM per architecture) and c_export (all of it for `denselab export`).
"""
