"""The model behind the service: a .keras file read with NumPy alone, or a .tflite file run by LiteRT."""

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.data.dataset import CLASS_NAMES, IMAGE_SIDE
from denselab.deploy.tflite import LiteRTClassifier, op_names
from denselab.errors import BadInput
from denselab.model.run_dir import METRICS_FILE, load_trained_weights, read_metadata
from denselab.model.spec import check_model_file


@dataclass
class LoadedModel:
    """What the service needs of a model: probabilities for uint8 pixels, and a description."""

    probabilities: object  # callable: (n, 28, 28) uint8 -> (n, 10)
    class_names: tuple[str, ...]
    description: dict


def load_for_serving(path: Path, normalization: str | None = None) -> LoadedModel:
    """Load a .keras or .tflite model (float or int8) for the service."""
    path = check_model_file(path)
    if path.suffix == ".tflite":
        return _load_tflite(path, normalization)
    trained = load_trained_weights(path, normalization)  # NumPy only: no Keras, JAX or TensorFlow
    predictor = trained.predictor()
    sizes = [predictor.weights[0].shape[0], *[kernel.shape[1] for kernel in predictor.weights]]
    return LoadedModel(predictor.probabilities, CLASS_NAMES[trained.dataset_name], {
        "format": "keras", "path": str(path), "name": trained.weights.name, "layer_sizes": sizes,
        "activation": predictor.activation, "parameters": trained.weights.spec.parameter_count(),
        "normalization": trained.normalization, "dataset": trained.dataset_name,
        "test_accuracy": trained.test_accuracy,
    })


def _load_tflite(path: Path, normalization: str | None) -> LoadedModel:
    try:
        model_bytes = path.read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror}") from None
    # metrics.json of the run sits beside the model, or one folder up for `denselab export`'s export/.
    folder = next((folder for folder in (path.parent, path.parent.parent) if (folder / METRICS_FILE).is_file()),
                  path.parent)
    normalization, dataset, _ = read_metadata(folder / path.name, normalization)
    try:
        classifier = LiteRTClassifier(model_bytes, normalization)
        operators = op_names(model_bytes)
    except (ValueError, RuntimeError) as error:
        raise BadInput(f"{path} is not a TensorFlow Lite model ({error})") from None
    if list(classifier.input["shape"]) != [1, IMAGE_SIDE, IMAGE_SIDE]:
        raise BadInput(f"{path} takes inputs of shape {list(classifier.input['shape'])}, not [1, 28, 28]")
    if list(classifier.output["shape"]) != [1, len(CLASS_NAMES[dataset])]:
        raise BadInput(f"{path} gives outputs of shape {list(classifier.output['shape'])}, "
                       f"not [1, {len(CLASS_NAMES[dataset])}] (one per class of {dataset})")
    lock = threading.Lock()

    def probabilities(pixels: np.ndarray) -> np.ndarray:
        with lock:  # one interpreter, one invocation at a time
            return classifier.probabilities(pixels)

    return LoadedModel(probabilities, CLASS_NAMES[dataset], {
        "format": "tflite", "path": str(path), "size_bytes": len(model_bytes),
        "input_type": np.dtype(classifier.input["dtype"]).name, "operators": operators,
        "normalization": normalization, "dataset": dataset, "test_accuracy": None,
    })
