"""From a spec (hidden layer sizes, activation) to a compiled Keras model, and back.

The architecture is the exercise's: Input(28, 28) -> Flatten -> Dense(n, activation) for
each hidden size -> Dense(10, softmax), compiled with Adam, sparse categorical
cross-entropy and accuracy. Only the Keras 3 API is used, so the same code runs on the
JAX and the TensorFlow backend.
"""

import zipfile
from dataclasses import dataclass
from pathlib import Path

from denselab.data.dataset import IMAGE_SIDE, NUM_CLASSES
from denselab.errors import BadInput

# Hidden-layer activations denselab can build, train and run in its fast predictor.
ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu", "selu", "silu")
LEARNING_RATE = 1e-3  # Adam's default, as in the exercise


@dataclass(frozen=True)
class ModelSpec:
    """What varies between the exercise's models."""

    hidden_units: tuple[int, ...] = (20,)  # the exercise's starting model: one Dense(20)
    activation: str = "relu"  # the exercise's hidden activation

    def __post_init__(self):
        if not self.hidden_units:
            raise BadInput("a model needs at least one hidden layer")
        for units in self.hidden_units:
            if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
                raise BadInput(f"hidden layer size {units!r} must be a positive integer")
        if self.activation not in ACTIVATIONS:
            raise BadInput(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")

    @property
    def name(self) -> str:
        """A short name such as "dense_512_512", also used as the Keras model's name."""
        return "dense_" + "_".join(str(units) for units in self.hidden_units)

    def layer_sizes(self) -> list[int]:
        """Widths from input to output, e.g. [784, 512, 512, 10]."""
        return [IMAGE_SIDE * IMAGE_SIDE, *self.hidden_units, NUM_CLASSES]

    def parameter_count(self) -> int:
        sizes = self.layer_sizes()
        return sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))

    def macs(self) -> int:
        """Multiply-accumulates for one image: one per weight of each Dense layer."""
        sizes = self.layer_sizes()
        return sum(fan_in * fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))

    def training_flops(self, images: int) -> int:
        """Floating-point operations of one training epoch over `images` images: 6 × MACs × images.

        Each MAC is 2 FLOPs in the forward pass and 4 in the backward pass (the gradients of
        the inputs and of the weights); biases, activations and the optimizer are left out.
        It is the work itself, so a ratio of it says what a ratio of times should be when
        nothing but the arithmetic counts.
        """
        return 6 * self.macs() * images


def parse_hidden_units(text: str) -> tuple[int, ...]:
    """Parse "512,512" (or "512 512") into (512, 512); sizes must be positive integers."""
    parts = [part for part in text.replace(",", " ").split() if part]
    if not parts:
        raise BadInput(f"hidden layer sizes {text!r} are empty; give e.g. 20 or 512,512")
    sizes = []
    for part in parts:
        try:
            sizes.append(int(part))
        except ValueError:
            raise BadInput(f"hidden layer size {part!r} is not an integer") from None
    return ModelSpec(tuple(sizes)).hidden_units


def build_model(spec: ModelSpec, learning_rate: float = LEARNING_RATE, steps_per_execution: int = 1):
    """Build and compile the exercise's dense classifier for `spec`."""
    import keras

    layers = [keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(units, activation=spec.activation) for units in spec.hidden_units]
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    model = keras.Sequential(layers, name=spec.name)
    compile_model(model, learning_rate, steps_per_execution)
    return model


def compile_model(
    model, learning_rate: float = LEARNING_RATE, steps_per_execution: int = 1, from_logits: bool = False,
    optimizer=None,
) -> None:
    """Compile with the exercise's optimizer, loss and metric.

    `steps_per_execution` runs that many batches per compiled call; it changes speed,
    not the arithmetic. `from_logits` is for training with the softmax folded into the
    loss (see train.training_parts). Passing the model's trained `optimizer`
    keeps its state.
    """
    import keras

    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )


def spec_of(model) -> ModelSpec:
    """Recover the spec of a loaded model, checking that it is a dense 28x28 -> 10 classifier."""
    import keras

    source = getattr(model, "name", "model")
    input_shape = tuple(model.input_shape) if hasattr(model, "input_shape") else None
    if input_shape is None or tuple(input_shape[1:]) != (IMAGE_SIDE, IMAGE_SIDE):
        raise BadInput(f"model {source} takes inputs of shape {input_shape}, not 28x28 images")
    kinds = [type(layer) for layer in model.layers]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if (
        not kinds or kinds[0] is not keras.layers.Flatten
        or any(kind is not keras.layers.Dense for kind in kinds[1:])
        or len(dense) < 2
    ):
        raise BadInput(f"model {source} is not Flatten -> Dense ... -> Dense(10); denselab handles dense classifiers only")
    if dense[-1].units != NUM_CLASSES or dense[-1].activation.__name__ != "softmax":
        raise BadInput(f"model {source} does not end in Dense(10, softmax)")
    activations = {layer.activation.__name__ for layer in dense[:-1]}
    if len(activations) != 1:
        raise BadInput(f"model {source} mixes hidden activations {sorted(activations)}")
    return ModelSpec(tuple(layer.units for layer in dense[:-1]), activations.pop())


def keras_without_tensorflow() -> None:
    """Stop Keras from importing TensorFlow only to ask whether an object is one of its types.

    Keras's serializer checks `tf.available and isinstance(obj, tf.TensorShape)`, and the first
    `tf.available` imports TensorFlow when it is installed: 2-3 s and absl's log lines, on the
    JAX backend, for every model saved or loaded. While TensorFlow is not imported no object
    can be one of its types, so the answer is "not available". This sets a private attribute
    of Keras's lazy module; tests/test_train.py and tests/test_model.py fail if saving or
    loading imports TensorFlow again.
    """
    import sys

    # A private Keras module: tests/test_private_apis.py fails loudly when it changes.
    from keras.src.utils import module_utils

    if "tensorflow" not in sys.modules and module_utils.tensorflow.module is None:
        module_utils.tensorflow._available = False


def check_model_file(path: Path) -> Path:
    """`path` when it names a model file that exists and is not empty, else BadInput naming it."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{path} is a directory, not a model file")
    if not path.is_file():
        raise BadInput(f"model file {path} does not exist")
    if path.stat().st_size == 0:
        raise BadInput(f"{path} is empty, not a model file")
    return path


def check_keras_file(path: Path) -> Path:
    """`path` when it can be a .keras file (a zip archive), else BadInput naming it.

    Keras says "File not found" of a file that is there but not a zip.
    """
    if not zipfile.is_zipfile(check_model_file(path)):
        raise BadInput(f"{path} is not a Keras model file (not a zip archive)")
    return Path(path)


def load_model(path: Path):
    """Load a .keras file and check that it is a dense classifier of 28x28 images."""
    path = check_keras_file(path)
    import keras

    keras_without_tensorflow()
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:
        reason = str(error).strip().split(". ")[0].splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInput(f"{path} is not a Keras model file ({reason[:120]})") from None
    try:
        spec_of(model)
    except BadInput as error:
        raise BadInput(f"{path}: {error}") from None
    return model
