import keras
import pytest

from denselab.errors import BadInput
from denselab.model.spec import ACTIVATIONS, ModelSpec, build_model, load_model, parse_hidden_units, spec_of


@pytest.mark.parametrize("hidden", [(20,), (512,), (1024,), (512, 512)])
def test_architecture_and_counts_match_keras(hidden):
    spec = ModelSpec(hidden)
    model = build_model(spec)
    assert [type(layer).__name__ for layer in model.layers] == ["Flatten"] + ["Dense"] * (len(hidden) + 1)
    assert model.input_shape == (None, 28, 28) and model.output_shape == (None, 10)
    assert model.layers[-1].activation.__name__ == "softmax"
    assert spec.parameter_count() == model.count_params()
    assert spec.macs() == sum(layer.kernel.shape[0] * layer.kernel.shape[1] for layer in model.layers[1:])
    assert spec_of(model) == spec


def test_exercise_model_parameter_count():
    # 784*20 + 20 + 20*10 + 10, as model.summary() shows in the exercise.
    assert ModelSpec((20,)).parameter_count() == 15910


def test_compiled_as_the_exercise():
    model = build_model(ModelSpec((20,)))
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert model.loss.get_config()["from_logits"] is False


@pytest.mark.parametrize("text, expected", [("20", (20,)), ("512,512", (512, 512)), (" 64 32 ", (64, 32))])
def test_parse_hidden_units(text, expected):
    assert parse_hidden_units(text) == expected


@pytest.mark.parametrize("text, message", [
    ("0", "hidden layer size 0 must be a positive integer"),
    ("20,-3", "hidden layer size -3 must be a positive integer"),
    ("big", "hidden layer size 'big' is not an integer"),
    ("", "are empty"),
])
def test_bad_hidden_units(text, message):
    with pytest.raises(BadInput, match=message):
        parse_hidden_units(text)


def test_unknown_activation():
    with pytest.raises(BadInput, match="unknown activation 'swoosh'"):
        ModelSpec((20,), "swoosh")
    assert "relu" in ACTIVATIONS


def test_load_model_rejects_non_keras_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("not a zip")
    with pytest.raises(BadInput, match="model.keras is not a Keras model file"):
        load_model(path)
    with pytest.raises(BadInput, match="does not exist"):
        load_model(tmp_path / "absent.keras")


def test_load_model_rejects_other_input_shapes(tmp_path):
    model = keras.Sequential([keras.Input((32, 32)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "cifar.keras")
    with pytest.raises(BadInput, match=r"takes inputs of shape \(None, 32, 32\), not 28x28"):
        load_model(tmp_path / "cifar.keras")


def test_load_model_rejects_non_dense_models(tmp_path):
    model = keras.Sequential([
        keras.Input((28, 28)), keras.layers.Reshape((28, 28, 1)), keras.layers.Conv2D(4, 3),
        keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax"),
    ])
    model.save(tmp_path / "conv.keras")
    with pytest.raises(BadInput, match="dense classifiers only"):
        load_model(tmp_path / "conv.keras")


def test_load_model_round_trip(tmp_path):
    build_model(ModelSpec((30, 10), "tanh")).save(tmp_path / "m.keras")
    assert spec_of(load_model(tmp_path / "m.keras")) == ModelSpec((30, 10), "tanh")


def test_loading_a_model_on_jax_imports_no_tensorflow(trained_dir):
    """Keras's deserializer asks whether objects are TensorFlow types; model.load_model keeps that
    from importing TensorFlow (2-3 s and absl's log lines)."""
    import subprocess
    import sys

    code = ("import sys; from denselab.model.spec import load_model; load_model(sys.argv[1]); "
            "print('jax' in sys.modules, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(trained_dir / "model.keras")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "False"]
    assert "absl::InitializeLog" not in result.stderr
