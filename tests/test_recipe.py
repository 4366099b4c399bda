"""Training-only choices: they change the weights, never the deployed graph.

References: the folded first layer against the standardizing layer it replaces, and a
recipe-trained model against the exercise's own architecture and int8 export.
"""

import numpy as np
import pytest

from denselab.data.dataset import normalize
from denselab.errors import BadInput
from denselab.model.spec import ModelSpec, build_model, spec_of
from denselab.model.predict import DensePredictor
from denselab.training.recipe import fold_standardization, input_statistics
from denselab.study.file import load_study, parse_study
from denselab.training.config import TrainConfig
from denselab.training.fit import train

FULL_RECIPE = dict(dropout_input=0.1, dropout_hidden=0.3, weight_decay=5e-5, label_smoothing=0.1,
                   schedule="cosine", augment="shift+flip", standardize=True)


def test_folding_standardization_into_the_first_layer_changes_no_output(fashion):
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(ModelSpec((16, 8)))
    inputs = normalize(fashion.test_images[:200])
    mean, std = input_statistics(normalize(fashion.train_images[:5000]))
    standardized = (inputs - mean) / std
    expected = model.predict(standardized, verbose=0)
    fold_standardization(model, mean, std)
    np.testing.assert_allclose(model.predict(inputs, verbose=0), expected, rtol=1e-4, atol=1e-6)


def test_a_model_trained_with_every_choice_deploys_as_the_exercise_family(fashion):
    small = fashion.subset(train=6000, test=1000)
    run = train(ModelSpec((64,)), small, TrainConfig(epochs=2, seed=4, **FULL_RECIPE))
    # Only Flatten and Dense layers remain, ending in softmax: the graph that ships.
    assert spec_of(run.model) == ModelSpec((64,))
    assert [type(layer).__name__ for layer in run.model.layers] == ["Flatten", "Dense", "Dense"]
    assert run.evaluation.test_accuracy > 0.7
    assert len(run.history) == 2 and all(0 < record["accuracy"] <= 1 for record in run.history)
    # The evaluation is that of the plain model on plain /255 inputs: standardization is folded in.
    probabilities = DensePredictor.from_keras(run.model, "scale").probabilities(small.test_images)
    assert float((probabilities.argmax(axis=1) == small.test_labels).mean()) == run.evaluation.test_accuracy


def test_each_choice_changes_the_weights_and_the_same_seed_repeats_them(fashion):
    small = fashion.subset(train=3000, test=500)
    plain = train(ModelSpec((32,)), small, TrainConfig(epochs=1, seed=9))
    for name, value in FULL_RECIPE.items():
        first = train(ModelSpec((32,)), small, TrainConfig(epochs=1, seed=9, **{name: value}))
        again = train(ModelSpec((32,)), small, TrainConfig(epochs=1, seed=9, **{name: value}))
        assert first.history[0]["loss"] != plain.history[0]["loss"], name
        assert first.history[0]["loss"] == again.history[0]["loss"], name


@pytest.mark.parametrize("settings, message", [
    ({"dropout_input": 1.0}, "dropout-input must be in [0, 1)"),
    ({"label_smoothing": -0.1}, "label-smoothing must be in [0, 1)"),
    ({"schedule": "linear"}, "unknown schedule 'linear'"),
    ({"augment": "rotate"}, "unknown augmentation 'rotate'"),
])
def test_bad_choices_are_refused(settings, message):
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace(")", r"\)")):
        TrainConfig(**settings)


def test_study_files_take_the_choices_and_old_hashes_stay():
    text = """
name = "r"
[[variants]]
name = "v"
reason = "every training-only choice"
dropout_input = 0.1
dropout_hidden = 0
weight_decay = 5e-5
label_smoothing = 0.1
schedule = "cosine"
augment = "flip"
standardize = true
"""
    config = parse_study(text, "r.toml").variant("v").config
    assert config.recipe_settings() == {"dropout_input": 0.1, "weight_decay": 5e-5, "label_smoothing": 0.1,
                                        "schedule": "cosine", "augment": "flip", "standardize": True}
    with pytest.raises(BadInput, match="'standardize' must be true or false"):
        parse_study(text.replace("standardize = true", "standardize = 1"), "r.toml")
    # Defaults stay out of the hash, so adding a setting keeps stored runs' keys. Pinned: the
    # built-in study's hashes at TRAINING_REVISION 3 (revision 1 gave a7612cfcecf630d3 and
    # cb999df9e5288a1b, revision 2 896502e1e6cc6316 and 01db2b01b1ab3fd8; a new revision must
    # change them, so old runs are not reused).
    assert load_study().variant("base").config_hash() == "69f55fb459e59484"
    assert load_study().variant("deeper").config_hash() == "2dad40c9c35c124a"
