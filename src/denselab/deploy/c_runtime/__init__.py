"""denselab's own C runtime, which needs no TensorFlow Lite Micro interpreter.

`quantized` (the int8 .tflite read as integer arithmetic), `source` (the C99 runtime it
becomes, with `c/kernels.c`), `host_check` and `cortex_m` (the checks on the host's C
compiler and on an emulated Cortex-M4, with `c/startup.c` and `c/mps2_an386.ld`),
`footprint` (flash and RAM per architecture) and `export` (all of it for `denselab export`).
"""
