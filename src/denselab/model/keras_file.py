"""A dense classifier's `.keras` file read without Keras: its layer sizes, activation and weights.

A `.keras` file is a zip holding `config.json` (the architecture) and `model.weights.h5`
(the variables, by layer). For the exercise's family, Flatten -> Dense ... -> Dense(10,
softmax), that is all a NumPy predictor needs, and reading it takes milliseconds where
importing Keras and JAX and rebuilding the model takes seconds. tests/test_keras_file.py
checks the result against Keras's own loading for every activation denselab trains.
"""

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.data.dataset import IMAGE_SIDE, NUM_CLASSES
from denselab.errors import BadInput
from denselab.model.spec import ACTIVATIONS, ModelSpec, check_keras_file


@dataclass(frozen=True)
class DenseWeights:
    """The deployed numbers of a dense classifier: one (kernel, bias) pair per Dense layer."""

    name: str  # the Keras model's name, e.g. "dense_512_512"
    spec: ModelSpec
    kernels: tuple[np.ndarray, ...]  # float32, (inputs, outputs)
    biases: tuple[np.ndarray, ...]  # float32, (outputs,)


def read_dense_weights(path: Path) -> DenseWeights:
    """The dense classifier in a `.keras` file; BadInput naming the file when it is not one."""
    path = check_keras_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights_file = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError, RuntimeError, NotImplementedError,
            OverflowError) as error:  # what zipfile and zlib raise for damaged archives
        reason = {zipfile.BadZipFile: "not a zip archive", KeyError: "no config.json or model.weights.h5 in it"}
        raise BadInput(f"{path} is not a Keras model file ({reason.get(type(error), type(error).__name__)})") from None
    units, activation = _architecture(config, path)
    kernels, biases = _variables(weights_file, units, path)
    name = str(config.get("config", {}).get("name", path.stem)) if isinstance(config, dict) else path.stem
    return DenseWeights(name, ModelSpec(tuple(units[:-1]), activation), kernels, biases)


def _architecture(config, path: Path) -> tuple[list[int], str]:
    """Dense widths (the output layer's last) and the hidden activation, checked as model.spec_of checks."""
    try:
        layers = config["config"]["layers"]
        kinds = [layer["class_name"] for layer in layers]
        if kinds and kinds[0] == "InputLayer":
            shape = layers[0]["config"]["batch_shape"]
            layers, kinds = layers[1:], kinds[1:]
        else:
            shape = layers[0]["build_config"]["input_shape"]
        dense = [layer["config"] for layer in layers[1:]]
        if config["class_name"] != "Sequential" or not kinds or kinds[0] != "Flatten" \
                or any(kind != "Dense" for kind in kinds[1:]) or len(dense) < 2:
            raise BadInput(f"{path} is not Flatten -> Dense ... -> Dense(10); denselab handles dense classifiers only")
        if list(shape[1:]) != [IMAGE_SIDE, IMAGE_SIDE]:
            raise BadInput(f"{path} takes inputs of shape {shape}, not 28x28 images")
        if dense[-1]["units"] != NUM_CLASSES or dense[-1]["activation"] != "softmax":
            raise BadInput(f"{path} does not end in Dense(10, softmax)")
        activations = {layer["activation"] for layer in dense[:-1]}
        if len(activations) != 1 or not activations <= set(ACTIVATIONS):
            raise BadInput(f"{path} has hidden activations {sorted(map(str, activations))}; denselab runs one of "
                           f"{', '.join(ACTIVATIONS)}")
        if not all(layer.get("use_bias", True) for layer in dense):
            raise BadInput(f"{path} has a Dense layer without a bias")
        return [int(layer["units"]) for layer in dense], activations.pop()
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise BadInput(f"{path} has a config.json that is not a Keras model's ({type(error).__name__})") from None


def _variables(weights_file: bytes, units: list[int], path: Path):
    """Each Dense layer's kernel and bias. Keras stores layer variables under names made from the
    class name and the layer's position among its kind: layers/dense, layers/dense_1, ..."""
    import h5py

    kernels, biases, inputs = [], [], IMAGE_SIDE * IMAGE_SIDE
    try:
        with h5py.File(io.BytesIO(weights_file), "r") as weights:
            for index, outputs in enumerate(units):
                group = weights["layers"]["dense" if index == 0 else f"dense_{index}"]["vars"]
                kernel, bias = np.asarray(group["0"], np.float32), np.asarray(group["1"], np.float32)
                if kernel.shape != (inputs, outputs) or bias.shape != (outputs,):
                    raise BadInput(f"{path}: Dense layer {index + 1} holds weights of shape {kernel.shape}, "
                                   f"not ({inputs}, {outputs})")
                kernels.append(kernel)
                biases.append(bias)
                inputs = outputs
    except BadInput:
        raise
    except (OSError, KeyError, ValueError, TypeError, OverflowError, RuntimeError) as error:
        # h5py reports a damaged file through any of these (an OverflowError for a huge size field).
        raise BadInput(f"{path} has weights that are not a Keras model's ({type(error).__name__})") from None
    return tuple(kernels), tuple(biases)
