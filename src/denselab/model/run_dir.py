"""A run's folder, the format every step after training reads.

`model.keras` (the deployable Keras model), `history.json` (loss, accuracy and seconds per
epoch) and `metrics.json` (the configuration and test metrics). `metrics.json` also tells
`evaluate`, `predict`, `export` and `serve` how the model's inputs were normalized and which
dataset's classes it predicts; a model without one (trained elsewhere) is taken to expect
/255.0-scaled Fashion-MNIST inputs.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from denselab.data.dataset import DEFAULT_DATASET, check_dataset_name, check_normalization
from denselab.errors import BadInput
from denselab.model.keras_file import DenseWeights, read_dense_weights
from denselab.model.predict import DensePredictor
from denselab.model.spec import keras_without_tensorflow, load_model
from denselab.outputs import prepare_output_dir, temporary_sibling, write_json_atomically

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"


def write_run_dir(out_dir: Path, model, history: list[dict], metrics: dict) -> Path:
    """Write model.keras, history.json and metrics.json into `out_dir`, each atomically."""
    out_dir = prepare_output_dir(out_dir)
    save_model(model, out_dir / MODEL_FILE)
    write_json_atomically(out_dir / HISTORY_FILE, history)
    write_json_atomically(out_dir / METRICS_FILE, metrics)
    return out_dir


def save_model(model, path: Path) -> Path:
    """Save a Keras model to `path` (.keras) through a temporary name and a rename."""
    path = Path(path)
    keras_without_tensorflow()
    temporary = temporary_sibling(path)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class TrainedWeights:
    """A model's weights with what its metrics.json says about its inputs."""

    path: Path
    weights: DenseWeights
    normalization: str
    dataset_name: str
    test_accuracy: float | None

    def predictor(self) -> DensePredictor:
        return DensePredictor.from_weights(self.weights, self.normalization)


def read_metadata(path: Path, normalization: str | None = None, dataset_name: str | None = None) -> tuple:
    """(normalization, dataset name, test accuracy) of the model at `path`, from the metrics.json beside it.

    Without metrics.json (a model trained elsewhere) the model is taken to expect
    /255.0-scaled Fashion-MNIST inputs, unless `normalization` / `dataset_name` say otherwise.
    """
    metadata = {}
    metrics_path = Path(path).parent / METRICS_FILE
    if metrics_path.is_file():
        try:
            metadata = json.loads(metrics_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadInput(f"{metrics_path} is not valid JSON; delete it or retrain") from None
        if not isinstance(metadata, dict):
            raise BadInput(f"{metrics_path} is not a JSON object; delete it or retrain")
    # The options are the user's; what metrics.json holds is named with its file.
    for check, given in ((check_normalization, normalization), (check_dataset_name, dataset_name)):
        if given is not None:
            check(given)
    try:
        normalization = normalization or metadata.get("normalization", "scale")
        dataset_name = dataset_name or metadata.get("dataset", DEFAULT_DATASET)
        for check, value in ((check_normalization, normalization), (check_dataset_name, dataset_name)):
            check(value if isinstance(value, str) else repr(value))  # a list would not even hash
        test_accuracy = metadata.get("test_accuracy")
        if test_accuracy is not None and not (type(test_accuracy) in (int, float) and 0 <= test_accuracy <= 1):
            raise BadInput(f"test_accuracy {test_accuracy!r} is not a fraction from 0 to 1")
    except BadInput as error:
        raise BadInput(f"{metrics_path}: {error}; delete it or retrain") from None
    return normalization, dataset_name, test_accuracy


def load_trained_weights(path: Path, normalization: str | None = None, dataset_name: str | None = None) -> TrainedWeights:
    """A .keras model's weights and metadata, for predicting, evaluating and serving without Keras."""
    weights = read_dense_weights(path)
    return TrainedWeights(Path(path), weights, *read_metadata(path, normalization, dataset_name))


@dataclass(frozen=True)
class TrainedModel:
    """A loaded model with what its metrics.json says about its inputs."""

    path: Path
    model: object = field(repr=False)
    normalization: str
    dataset_name: str
    test_accuracy: float | None

    def predictor(self) -> DensePredictor:
        return DensePredictor.from_keras(self.model, self.normalization)


def load_trained_model(path: Path, normalization: str | None = None, dataset_name: str | None = None) -> TrainedModel:
    """Load a .keras model and read metrics.json beside it, if there is one.

    Without metrics.json (a model trained elsewhere) the model is taken to expect
    /255.0-scaled Fashion-MNIST inputs, unless `normalization` / `dataset_name` say otherwise.
    """
    path = Path(path)
    model = load_model(path)
    normalization, dataset_name, test_accuracy = read_metadata(path, normalization, dataset_name)
    return TrainedModel(path, model, normalization, dataset_name, test_accuracy)
