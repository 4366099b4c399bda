"""Flash and RAM of the C runtime for an architecture on a core, known before a model is trained or built.

The C runtime's flash is its tables, whose sizes follow from the layer shapes, plus code
and small constant tables; its RAM is two activation buffers as wide as the widest
hidden layer, plus the stack of one inference. The per-core constants below were measured
from the linker maps of that core's build (arm-none-eabi-gcc 12.2 -Os; for the AVR, the
Arduino Uno sketch that `export --arduino` writes, built by arduino-builder with Debian's
Arduino core and avr-gcc 5.4) and rounded up, so the figures here are upper bounds;
tests/test_c_runtime.py and tests/test_arduino.py rebuild several architectures and check
each bound is within a few dozen bytes of the measurement. An exported model reports its
own measured figures.

On the AVR the figures are the whole Classify sketch's (denselab.deploy.arduino) but its test
images, and its RAM less the 784-byte image buffer, which is the application's input: the
Arduino core, Serial and the example's code are in them, because a sketch always carries them.
"""

from denselab.deploy.toolchain import CORTEX_M4

PER_OUTPUT_BYTES = 9  # an int32 bias, an int32 multiplier and an int8 shift per output channel
PER_LAYER_BYTES = 32  # one dl_layer entry: four pointers and four int32s
# On the AVR: the entry's 24 bytes (16-bit pointers) and 16 of code (denselab_predict's layer
# loop is unrolled), measured.
AVR_PER_LAYER_BYTES = 24 + 16
# Code, the 256-entry pixel table, the softmax's 7 factors and the class names' pointers (40
# bytes for 10 classes), with issue 23's kernels: 1,754-1,792 bytes measured on the Cortex-M4
# and M7, 1,638-1,670 on the Cortex-M0+ (over seven synthetic architectures, 1 to 5 layers),
# rounded up; the names' text is added.
# On the AVR, the whole sketch besides the tables, the names' text and the images: the Arduino
# core, Serial, the sketch (its image decoder and stack measurement), the kernels, the pixel
# table and the softmax's factors, and the names' pointers: up to 5,555 bytes measured over
# five trained architectures (Dense(20), 784-32, 784-32-16, 784-16-16, 784-8-8-8), rounded up.
# The code depends a little on the softmax's constants, which the kernels fold in (an
# untrained 784-32-16 measured 5,328).
FIXED_FLASH_BYTES = {"cortex-m0plus": 1_688, "cortex-m4": 1_800, "cortex-m7": 1_800, "avr": 5_568}
# One denselab_predict call's stack (224 bytes measured on the Cortex-M4 and M7, 220 on the
# M0+: the kernels' four accumulators and the softmax's kept exps among it); on the AVR, the
# sketch's whole RAM but the activations and the image buffer: the Arduino core's and Serial's
# variables, the class names (avr-gcc keeps them in RAM) and the deepest stack the sketch
# reached, measured by painting it: up to 454 bytes (286 of variables, 168 of stack).
STACK_BYTES = {"cortex-m0plus": 224, "cortex-m4": 232, "cortex-m7": 232, "avr": 480}


def _core(core: str) -> str:
    # Cores without a build of their own here (the ESP32's Xtensa) are bounded as the Cortex-M4.
    return core if core in FIXED_FLASH_BYTES else CORTEX_M4.name


def c_model_bytes(hidden_units: tuple[int, ...], class_names: tuple[str, ...], inputs: int = 784,
                  core: str = CORTEX_M4.name) -> int:
    """Flash of what depends on the model: its layers' tables and the class names' text."""
    sizes = [inputs, *hidden_units, len(class_names)]
    per_layer = AVR_PER_LAYER_BYTES if core == "avr" else PER_LAYER_BYTES
    tables = sum(fan_in * fan_out + PER_OUTPUT_BYTES * fan_out + per_layer
                 for fan_in, fan_out in zip(sizes, sizes[1:]))
    return tables + sum(len(name.encode()) + 1 for name in class_names)


def fixed_flash_bytes(core: str = CORTEX_M4.name) -> int:
    """Flash the C runtime takes on `core` whatever the model: its code and small tables (an upper bound)."""
    return FIXED_FLASH_BYTES[_core(core)]


def c_flash_bytes(hidden_units: tuple[int, ...], class_names: tuple[str, ...], inputs: int = 784,
                  core: str = CORTEX_M4.name) -> int:
    """Flash the C runtime takes for this architecture on `core`: its tables and code, an upper bound."""
    return c_model_bytes(hidden_units, class_names, inputs, core) + fixed_flash_bytes(core)


def c_ram_bytes(hidden_units: tuple[int, ...], core: str = CORTEX_M4.name) -> int:
    """RAM of one inference besides the caller's input and output: activations and stack, an upper bound."""
    return 2 * max((1, *hidden_units)) + STACK_BYTES[_core(core)]
