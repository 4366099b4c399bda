"""Flash and RAM of the C runtime for an architecture, known before a model is trained or built.

The C runtime's flash is its tables, whose sizes follow from the layer shapes, plus code
and small constant tables; its RAM is two activation buffers as wide as the widest
hidden layer, plus the stack of one inference. The constants below were measured from
the linker map of the Cortex-M4 build (arm-none-eabi-gcc 12.2, -Os) and rounded up, so
the figures here are upper bounds; tests/test_c_runtime.py rebuilds several
architectures and checks each bound is within a few dozen bytes of the measurement. An
exported model reports its own measured figures.
"""

PER_OUTPUT_BYTES = 9  # an int32 bias, an int32 multiplier and an int8 shift per output channel
PER_LAYER_BYTES = 32  # one dl_layer entry: four pointers and four int32s
# Code (930-966 bytes measured), the 256-entry pixel table, the softmax's 7 factors and
# the class names' pointers (40 bytes for 10 classes): 1 254-1 290 bytes measured, rounded up;
# the names' text is added.
FIXED_FLASH_BYTES = 1_312
STACK_BYTES = 128  # one denselab_predict call: 104 bytes measured


def c_model_bytes(hidden_units: tuple[int, ...], class_names: tuple[str, ...], inputs: int = 784) -> int:
    """Flash of what depends on the model: its layers' tables and the class names' text."""
    sizes = [inputs, *hidden_units, len(class_names)]
    tables = sum(fan_in * fan_out + PER_OUTPUT_BYTES * fan_out + PER_LAYER_BYTES
                 for fan_in, fan_out in zip(sizes, sizes[1:]))
    return tables + sum(len(name.encode()) + 1 for name in class_names)


def c_flash_bytes(hidden_units: tuple[int, ...], class_names: tuple[str, ...], inputs: int = 784) -> int:
    """Flash the C runtime takes for this architecture: its tables and code, an upper bound."""
    return c_model_bytes(hidden_units, class_names, inputs) + FIXED_FLASH_BYTES


def c_ram_bytes(hidden_units: tuple[int, ...]) -> int:
    """RAM of one inference besides the caller's input and output: activations and stack, an upper bound."""
    return 2 * max((1, *hidden_units)) + STACK_BYTES
