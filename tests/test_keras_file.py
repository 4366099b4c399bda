"""Reading .keras files without Keras, against Keras's own loading; and the commands that use it
importing neither Keras, JAX nor TensorFlow."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from denselab.errors import BadInput
from denselab.model.run_dir import load_trained_weights
from denselab.model.keras_file import read_dense_weights
from denselab.model.spec import ACTIVATIONS, ModelSpec, build_model, load_model
from denselab.model.predict import DensePredictor
from denselab.model.run_dir import save_model

HEAVY = ("keras", "jax", "jaxlib", "tensorflow", "ai_edge_litert", "tflite_micro", "optuna", "ray")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_weights_and_probabilities_equal_keras_loading(activation, fashion, tmp_path):
    model = build_model(ModelSpec((24, 16), activation))
    for layer in model.layers[1:]:  # nonzero biases, so that a mixed-up bias would show
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, np.random.default_rng(len(bias)).normal(0, 0.1, bias.shape).astype(np.float32)])
    path = save_model(model, tmp_path / "model.keras")
    reference = load_model(path)  # Keras's own loading
    ours = read_dense_weights(path)
    assert ours.spec == ModelSpec((24, 16), activation) and ours.name == reference.name
    expected = [layer.get_weights() for layer in reference.layers if layer.weights]
    for kernel, bias, (expected_kernel, expected_bias) in zip(ours.kernels, ours.biases, expected):
        assert np.array_equal(kernel, expected_kernel) and np.array_equal(bias, expected_bias)
    images = fashion.test_images[:200]
    for normalization in ("scale", "none"):
        from_file = DensePredictor.from_weights(ours, normalization).probabilities(images)
        from_keras = DensePredictor.from_keras(reference, normalization).probabilities(images)
        assert np.array_equal(from_file, from_keras)
    scaled = images.astype(np.float32) / 255.0
    assert np.allclose(DensePredictor.from_weights(ours).probabilities(images), reference.predict(scaled, verbose=0),
                       atol=1e-5)


def test_a_trained_run_reads_back_with_its_metadata(trained_dir, fashion):
    trained = load_trained_weights(trained_dir / "model.keras")
    metrics = json.loads((trained_dir / "metrics.json").read_text())
    assert (trained.normalization, trained.dataset_name, trained.test_accuracy) == \
        (metrics["normalization"], metrics["dataset"], metrics["test_accuracy"])
    predicted = trained.predictor().probabilities(fashion.test_images).argmax(axis=1)
    assert float((predicted == fashion.test_labels).mean()) == pytest.approx(metrics["test_accuracy"], abs=1e-4)


def keras_file_with(tmp_path, config=None, weights=None, source=None) -> str:
    """A copy of a real .keras file with its config.json or model.weights.h5 replaced."""
    source = source or save_model(build_model(ModelSpec((8,))), tmp_path / "source.keras")
    path = tmp_path / "changed.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as changed:
        for name in original.namelist():
            data = original.read(name)
            if name == "config.json" and config is not None:
                data = json.dumps(config(json.loads(data))).encode()
            if name == "model.weights.h5" and weights is not None:
                data = weights
            changed.writestr(name, data)
    return path


def _last_units(config, units):
    config["config"]["layers"][-1]["config"]["units"] = units
    return config


@pytest.mark.parametrize("change, fragment", [
    (lambda c: _last_units(c, 7), "does not end in Dense(10, softmax)"),
    (lambda c: {**c, "class_name": "Functional"}, "dense classifiers only"),
    (lambda c: {"config": 3}, "config.json that is not a Keras model's"),
    (lambda c: _hidden_activation(c, "gelu"), "hidden activations ['gelu']"),
])
def test_bad_configs_are_one_line_errors(change, fragment, tmp_path):
    with pytest.raises(BadInput, match=None) as raised:
        read_dense_weights(keras_file_with(tmp_path, config=change))
    assert fragment in str(raised.value) and "changed.keras" in str(raised.value)


def _hidden_activation(config, name):
    config["config"]["layers"][2]["config"]["activation"] = name
    return config


def test_weights_of_another_shape_or_not_hdf5_are_refused(tmp_path):
    other = save_model(build_model(ModelSpec((9,))), tmp_path / "other.keras")
    with zipfile.ZipFile(other) as archive:
        other_weights = archive.read("model.weights.h5")
    with pytest.raises(BadInput, match=r"Dense layer 1 holds weights of shape \(784, 9\), not \(784, 8\)"):
        read_dense_weights(keras_file_with(tmp_path, weights=other_weights))
    with pytest.raises(BadInput, match="weights that are not a Keras model's"):
        read_dense_weights(keras_file_with(tmp_path, weights=b"not hdf5"))
    (tmp_path / "text.keras").write_text("not a zip")
    with pytest.raises(BadInput, match="text.keras is not a Keras model file"):
        read_dense_weights(tmp_path / "text.keras")


@pytest.mark.parametrize("command", [["predict", "--index", "0", "--json"], ["evaluate", "--json"]])
def test_predict_and_evaluate_import_no_keras_jax_or_tensorflow(command, trained_dir):
    """`python -X importtime` lists every module a command imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "denselab", command[0],
                             trained_dir / "model.keras", *command[1:]], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "numpy" in imported and "h5py" in imported  # the listing is real
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


def test_serving_a_keras_model_imports_no_keras_jax_or_tensorflow(trained_dir):
    code = ("import sys; from denselab.serve.app import create_app; create_app(sys.argv[1]); "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    result = subprocess.run([sys.executable, "-c", code, str(trained_dir / "model.keras")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"

