"""denselab's own C runtime, which needs no TensorFlow Lite Micro interpreter.

`quantized` (the int8 .tflite read as integer arithmetic), `source` (the C99 runtime it
becomes, with `c/kernels.c`), `host_check` and `cortex_m` (the checks on the host's C
compiler and on each board's emulated Cortex-M core, with the shared `deploy/board/`),
`footprint` (flash and RAM per architecture) and `export` (all of it for `denselab export`).
"""
