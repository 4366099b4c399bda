"""denselab's C runtime as an Arduino library, and its example on an Arduino Uno.

`library` (the library folder and its .zip, and the Uno's flash bound), `sketch` (the Classify
example), `uno` (arduino-builder for arduino:avr:uno and simavr's ATmega328P), `tools` (the
programs they need) and `export` (all of it for `denselab export --runtime c --arduino`).
"""
