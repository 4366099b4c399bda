import json

import numpy as np
import pytest

from denselab.errors import BadInput
from denselab.training.loop import Execution
from denselab.model.spec import ModelSpec
from denselab.training.config import TrainConfig
from denselab.model.run_dir import load_trained_model
from denselab.training.fit import save_run, train


def test_exercise_model_one_epoch_on_the_real_data(fashion):
    run = train(ModelSpec((20,)), fashion, TrainConfig(epochs=1, seed=1))
    assert run.evaluation.test_accuracy >= 0.80
    assert run.epochs_run == 1 and run.history[0]["epoch"] == 1
    assert run.summary()["params"] == 15910


def test_same_seed_same_metrics(fashion):
    small = fashion.subset(train=12000)
    first, second = (train(ModelSpec((20,)), small, TrainConfig(epochs=2, seed=11)) for _ in range(2))
    for key in ("loss", "accuracy"):
        assert [r[key] for r in first.history] == [r[key] for r in second.history]
    assert first.evaluation == second.evaluation
    different = train(ModelSpec((20,)), small, TrainConfig(epochs=2, seed=12))
    assert different.evaluation.test_loss != first.evaluation.test_loss


def test_steps_per_execution_changes_speed_not_results(fashion):
    # The default packs 64 batches into one compiled call; the updates must be those of
    # plain one-batch-per-call training. 2001 examples leave a partial last group and a
    # partial last batch.
    small = fashion.subset(train=2001, test=500)
    plain = train(ModelSpec((20,)), small, TrainConfig(epochs=2, seed=5, steps_per_execution=1))
    packed = train(ModelSpec((20,)), small, TrainConfig(epochs=2, seed=5, steps_per_execution=64))
    np.testing.assert_allclose([r["loss"] for r in packed.history], [r["loss"] for r in plain.history], rtol=1e-5)
    assert packed.evaluation.test_accuracy == pytest.approx(plain.evaluation.test_accuracy, abs=0.002)


def test_callback_stops_at_min_epochs_not_before(fashion):
    # One epoch already passes 0.5 training accuracy; the exercise's callback still trains a second.
    small = fashion.subset(train=12000, test=500)
    run = train(ModelSpec((20,)), small, TrainConfig(epochs=5, seed=2, stop_at_accuracy=0.5, min_epochs=2))
    assert run.history[0]["accuracy"] > 0.5
    assert run.epochs_run == 2


def test_callback_runs_every_epoch_when_threshold_never_reached(fashion):
    small = fashion.subset(train=3000, test=500)
    run = train(ModelSpec((20,)), small, TrainConfig(epochs=3, seed=2, stop_at_accuracy=1.0, min_epochs=2))
    assert run.epochs_run == 3


def test_progress_reports_every_epoch_end(fashion):
    calls = []
    small = fashion.subset(train=3000, test=500)
    train(ModelSpec((20,)), small, TrainConfig(epochs=2, seed=2), on_progress=lambda *args: calls.append(args))
    ends = [(epoch, done) for epoch, done, total, record in calls if record]
    assert ends == [(1, 94), (2, 94)]  # ceil(3000 / 32) batches


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"batch_size": 0}, "batch-size must be an integer >= 1"),
    ({"stop_at_accuracy": 0.0}, r"stop-at-accuracy must be in \(0, 1\]"),
    ({"stop_at_accuracy": 1.5}, r"stop-at-accuracy must be in \(0, 1\]"),
    ({"normalization": "zscore"}, "unknown normalization 'zscore'"),
    ({"learning_rate": -1.0}, "learning-rate must be > 0"),
])
def test_bad_config(changes, message):
    with pytest.raises(BadInput, match=message):
        TrainConfig(**changes)


def test_random_seed_is_recorded_so_the_run_can_be_repeated():
    assert TrainConfig().with_seed().seed is not None
    assert TrainConfig(seed=3).with_seed().seed == 3


def test_saved_run_files(fashion, tmp_path):
    small = fashion.subset(train=3000, test=500)
    run = train(ModelSpec((20,)), small, TrainConfig(epochs=2, seed=2, normalization="none"))
    out = save_run(run, tmp_path / "run")
    assert sorted(path.name for path in out.iterdir()) == ["history.json", "metrics.json", "model.keras"]
    history = json.loads((out / "history.json").read_text())
    assert [set(record) for record in history] == [{"epoch", "loss", "accuracy", "seconds"}] * 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["normalization"] == "none" and metrics["seed"] == 2
    assert metrics["test_accuracy"] == run.evaluation.test_accuracy
    trained = load_trained_model(out / "model.keras")
    assert trained.normalization == "none" and trained.dataset_name == "fashion-mnist"
    np.testing.assert_allclose(
        trained.predictor().probabilities(small.test_images[:5]),
        run.model.predict(small.test_images[:5].astype("float32"), verbose=0), atol=1e-4,
    )


def test_out_dir_that_is_a_file(fashion, tmp_path):
    run = train(ModelSpec((20,)), fashion.subset(train=320, test=50), TrainConfig(epochs=1, seed=2))
    (tmp_path / "taken").write_text("")
    with pytest.raises(BadInput, match="taken is a file"):
        save_run(run, tmp_path / "taken")


def test_unnormalized_deep_model_learns_on_every_backend(fashion):
    # On raw 0-255 pixels a softmax-probability loss has zero gradient on JAX and the
    # model stays at 10% (seen before train.training_parts); the exercise's
    # TensorFlow code reaches ~0.75 after one epoch.
    small = fashion.subset(train=12000, test=1000)
    run = train(ModelSpec((512, 512)), small, TrainConfig(epochs=1, seed=0, normalization="none"))
    assert run.evaluation.test_accuracy > 0.5
    assert run.model.layers[-1].activation.__name__ == "softmax"  # handed back as the exercise's model


def keras_reference_weights(spec, dataset, config):
    """Keras's own training step, batch for batch: the seed's initial weights, the loop's
    shuffled batches (loop.batch_plan with the seed's generator), and train_on_batch on the
    recipe's training model with its optimizer and loss."""
    from denselab.training import recipe
    from denselab.data.dataset import NUM_CLASSES, normalize
    from denselab.training.loop import batch_plan
    from denselab.model.spec import build_model
    from denselab.training.fit import seed_everything, training_parts

    seed_everything(config.seed)
    model = build_model(spec)
    steps = -(-len(dataset.train_labels) // config.batch_size)
    trainer, optimizer = training_parts(model, config, steps, 0.0, 1.0)
    loss, labels = recipe.loss_and_labels(config, dataset.train_labels, NUM_CLASSES)
    trainer.compile(optimizer=optimizer, loss=loss)
    inputs = normalize(dataset.train_images, config.normalization)
    rng = np.random.default_rng(config.seed)
    for _ in range(config.epochs):
        for indices, weights in zip(*batch_plan(len(labels), config.batch_size, rng)):
            chosen = indices[weights > 0]  # the partial last batch, without its padding
            trainer.train_on_batch(inputs[chosen], labels[chosen])
    return model.get_weights()


@pytest.mark.parametrize("settings", [{}, {"weight_decay": 0.01, "label_smoothing": 0.1, "schedule": "cosine"}],
                         ids=["exercise", "adamw-smoothing-cosine"])
def test_loop_updates_equal_keras_train_on_batch(fashion, settings):
    # 500 examples: 15 full batches and a partial one of 20; 6 steps per chunk make 3 chunks of 6, the last with 2 skipped steps.
    small = fashion.subset(train=500, test=100)
    config = TrainConfig(epochs=2, seed=3, steps_per_execution=6, **settings)
    run = train(ModelSpec((32, 16)), small, config)
    reference = keras_reference_weights(ModelSpec((32, 16)), small, config)
    for ours, theirs in zip(run.model.get_weights(), reference, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=2e-6)


def test_seeds_trained_together_equal_seeds_trained_alone(fashion):
    """Three seeds in one vmapped program against each alone, with dropout, augmentation and
    the exercise's callback stopping some members before others."""
    from denselab.training.fit import train_seeds

    small = fashion.subset(train=1500, test=500)
    spec = ModelSpec((48, 24))
    recipe_settings = {"dropout_input": 0.1, "dropout_hidden": 0.2, "augment": "shift+flip"}
    free = train_seeds(spec, small, [TrainConfig(epochs=3, seed=seed, **recipe_settings) for seed in (1, 2, 3)],
                       together=False)
    # A threshold between the members' epoch-2 accuracies: some stop after epoch 2, some go on.
    second = sorted(run.history[1]["accuracy"] for run in free)
    assert second[0] < second[-1]
    threshold = (second[0] + second[-1]) / 2
    configs = [TrainConfig(epochs=3, seed=seed, stop_at_accuracy=threshold, **recipe_settings) for seed in (1, 2, 3)]
    alone = train_seeds(spec, small, configs, together=False)
    together = train_seeds(spec, small, configs, together=True)
    assert sorted(run.epochs_run for run in together) != [3, 3, 3] and min(run.epochs_run for run in together) == 2
    # Each run says how it trained, and a grouped run's seconds are its share of the program's.
    assert {run.execution for run in alone} == {Execution("alone", 1, "cpu")}
    assert {run.execution for run in together} == {Execution("side by side", 3, "cpu")}
    assert all("group_seconds" not in record for run in alone for record in run.history)
    for record in (record for run in together for record in run.history):
        assert record["seconds"] == pytest.approx(record["group_seconds"] / 3)
    for single, grouped in zip(alone, together, strict=True):
        assert single.epochs_run == grouped.epochs_run
        for key in ("loss", "accuracy"):
            np.testing.assert_allclose([r[key] for r in grouped.history], [r[key] for r in single.history], rtol=1e-5)
        assert grouped.evaluation.test_accuracy == pytest.approx(single.evaluation.test_accuracy, abs=0.002)
        for ours, theirs in zip(grouped.model.get_weights(), single.model.get_weights(), strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)


def test_train_seeds_refuses_configs_that_differ_beyond_the_seed(fashion):
    from denselab.training.fit import train_seeds

    with pytest.raises(ValueError, match="differ only in their seeds"):
        train_seeds(ModelSpec((20,)), fashion, [TrainConfig(seed=1), TrainConfig(seed=2, epochs=3)])


# --- seed_everything: Keras's own seeding without its TensorFlow import ------------------

def seeded_state(seed_with, seed, small) -> dict:
    """Seed with `seed_with(seed)`, then read everything Keras's seeding decides on the JAX
    backend: the seed Keras records, a model's initial weights, an unseeded draw from Keras's
    global generator, and the first-epoch loss of plain fit (NumPy shuffles the batches)."""
    import keras
    from keras.src.utils import rng_utils

    from denselab.data.dataset import normalize
    from denselab.model.spec import build_model

    seed_with(seed)
    model = build_model(ModelSpec((20,)))
    state = {
        "recorded_seed": rng_utils.get_random_seed(),
        "weights": [weights.copy() for weights in model.get_weights()],
        "unseeded_draw": keras.ops.convert_to_numpy(keras.random.uniform((4,))),
    }
    history = model.fit(normalize(small.train_images), small.train_labels, epochs=1, batch_size=32, verbose=0)
    return state | {"first_loss": history.history["loss"][0]}


def assert_same_state(state, expected):
    assert state["recorded_seed"] == expected["recorded_seed"]
    for weights, expected_weights in zip(state["weights"], expected["weights"], strict=True):
        np.testing.assert_array_equal(weights, expected_weights)
    np.testing.assert_array_equal(state["unseeded_draw"], expected["unseeded_draw"])
    assert state["first_loss"] == expected["first_loss"]


def test_seed_everything_seeds_as_keras_set_random_seed_does(fashion):
    """seed_everything resets private Keras globals (keras.src...); a Keras release that
    renames them or seeds another state must fail here, not quietly change runs."""
    import keras

    from denselab.training.fit import seed_everything

    small = fashion.subset(train=2000, test=10)
    # Each seeding follows one that has drawn numbers, so a state that seed_everything
    # fails to reset shows up as a difference.
    ours = seeded_state(seed_everything, 21, small)
    reference = seeded_state(keras.utils.set_random_seed, 21, small)
    ours_again = seeded_state(seed_everything, 21, small)
    assert_same_state(ours, reference)
    assert_same_state(ours_again, reference)
    other_seed = seeded_state(seed_everything, 22, small)
    assert not np.array_equal(other_seed["weights"][0], reference["weights"][0])
    assert not np.array_equal(other_seed["unseeded_draw"], reference["unseeded_draw"])


def test_train_with_seed_everything_equals_train_with_keras_seeding(fashion, monkeypatch):
    import importlib

    import keras

    train_module = importlib.import_module("denselab.training.fit")
    small = fashion.subset(train=2000, test=500)
    ours = train(ModelSpec((20,)), small, TrainConfig(epochs=1, seed=8))
    monkeypatch.setattr(train_module, "seed_everything", keras.utils.set_random_seed)
    reference = train(ModelSpec((20,)), small, TrainConfig(epochs=1, seed=8))
    assert ours.history[0]["loss"] == reference.history[0]["loss"]
    assert ours.evaluation == reference.evaluation


def test_training_and_saving_on_jax_import_no_tensorflow(fashion_slice_dir, tmp_path):
    """Keras asks whether an object is a TensorFlow type while saving, which imported TensorFlow
    (2-3 s and absl's log lines on stderr); train.save_model stops that. `-X importtime` lists
    every module the command imported."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "denselab", "train", "--hidden", "8", "--epochs", "1",
         "--seed", "0", "--data-dir", str(fashion_slice_dir), "--out", str(tmp_path / "run"), "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "keras" in imported and "jax" in imported  # the listing is real
    assert not {name for name in imported if name.split(".")[0] == "tensorflow"}
    assert "absl::InitializeLog" not in result.stderr
    assert (tmp_path / "run" / "model.keras").is_file()
