"""Train a spec on a dataset: seeding, the exercise's early-stop callback, timing, saving.

A run's files live in one directory: `model.keras`, `history.json` (loss, accuracy and
seconds per epoch) and `metrics.json` (configuration and test metrics). `metrics.json`
also tells `evaluate` and `predict` how the model's inputs were normalized.
"""

import json
import os
import random
import secrets
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from denselab import loop, recipe
from denselab.data import NUM_CLASSES, Dataset, check_dataset_name, check_normalization, normalize
from denselab.errors import BadInput
from denselab.evaluate import Evaluation, evaluate_model
from denselab.keras_file import METRICS_FILE, read_metadata
from denselab.model import LEARNING_RATE, ModelSpec, build_model, compile_model, keras_without_tensorflow, load_model
from denselab.outputs import prepare_output_dir, temporary_sibling, write_json_atomically
from denselab.predict import DensePredictor

MODEL_FILE, HISTORY_FILE = "model.keras", "history.json"
# Bump when a change alters what training computes: the study store keys runs on it,
# so runs trained by older code are not reused as if they were current.
# 2: denselab.loop on JAX (its own shuffles), not Keras's fit. 3: a run records how it was
# executed, and a side-by-side run's seconds are its own share; older runs' times, a group's
# wall time for each seed, cannot be compared with them.
TRAINING_REVISION = 3


MAX_SEED = 2**32 - 1  # NumPy's and Optuna's seeds are 32-bit
SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("none", "flip", "shift", "shift+flip")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults are the exercise's."""

    epochs: int = 5  # the exercise trains for 5 epochs
    batch_size: int = 32  # Keras's default, which the exercise uses
    learning_rate: float = LEARNING_RATE
    normalization: str = "scale"  # /255.0 as in the exercise; "none" for its raw-pixel experiment
    seed: int | None = None  # None: a random seed, recorded so the run can be repeated
    stop_at_accuracy: float | None = None  # the exercise's callback: stop once accuracy > this...
    min_epochs: int = 2  # ...but never before this many epochs
    # Batches per compiled call. It changes speed only: the batches, their order and the
    # updates are the same as with 1 (see tests/test_train.py).
    steps_per_execution: int = 64
    # Training-only choices (denselab.recipe): they change how the weights are found, never
    # the deployed graph, which stays Flatten -> Dense ... -> Dense(10, softmax). The
    # defaults are the exercise's plain Adam training.
    dropout_input: float = 0.0  # fraction of input pixels dropped in each training step
    dropout_hidden: float = 0.0  # fraction of each hidden layer's outputs dropped
    weight_decay: float = 0.0  # > 0: AdamW with this decoupled weight decay
    label_smoothing: float = 0.0  # target mass spread evenly over the 10 classes
    schedule: str = "constant"  # or "cosine": the learning rate decays to 0 over all epochs
    augment: str = "none"  # "flip", "shift" (±2 px) or "shift+flip", on training images only
    standardize: bool = False  # train on (x - mean) / std of the training inputs, folded in after

    def __post_init__(self):
        for name in ("epochs", "batch_size", "min_epochs", "steps_per_execution"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BadInput(f"{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED):
            raise BadInput(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        if not self.learning_rate > 0:
            raise BadInput(f"learning-rate must be > 0, got {self.learning_rate!r}")
        if self.stop_at_accuracy is not None and not 0 < self.stop_at_accuracy <= 1:
            raise BadInput(f"stop-at-accuracy must be in (0, 1], got {self.stop_at_accuracy!r}")
        check_normalization(self.normalization)
        for name in ("dropout_input", "dropout_hidden", "label_smoothing"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise BadInput(f"{name.replace('_', '-')} must be in [0, 1), got {value!r}")
        if not 0 <= self.weight_decay < 1:
            raise BadInput(f"weight-decay must be in [0, 1), got {self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            raise BadInput(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.augment not in AUGMENTATIONS:
            raise BadInput(f"unknown augmentation {self.augment!r}; choose one of {', '.join(AUGMENTATIONS)}")

    def recipe_settings(self) -> dict:
        """The training-only choices that differ from the exercise's plain training."""
        return {name: getattr(self, name) for name in RECIPE_FIELDS if getattr(self, name) != RECIPE_DEFAULTS[name]}

    def with_seed(self) -> "TrainConfig":
        """This config with a concrete seed: the given one, or a fresh random one."""
        return self if self.seed is not None else replace(self, seed=secrets.randbelow(2**31))


RECIPE_FIELDS = ("dropout_input", "dropout_hidden", "weight_decay", "label_smoothing", "schedule", "augment",
                 "standardize")
RECIPE_DEFAULTS = {name: TrainConfig.__dataclass_fields__[name].default for name in RECIPE_FIELDS}


# (epoch 1-based, batches done, batches per epoch, logs) -> None
ProgressFn = Callable[[int, int, int, dict], None]


@dataclass
class TrainingRun:
    """A trained model with its configuration, history and test metrics."""

    spec: ModelSpec
    config: TrainConfig
    dataset_name: str
    dataset_source: str
    model: object = field(repr=False)
    history: list[dict]
    evaluation: Evaluation
    execution: loop.Execution  # alone or side by side: what its times can be compared with

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def seconds_per_epoch(self) -> float:
        """Median epoch time, leaving out the first epoch (it includes compilation) when others ran."""
        seconds = [record["seconds"] for record in self.history]
        return statistics.median(seconds[1:] or seconds)

    def summary(self) -> dict:
        """What `denselab train --json` prints and metrics.json holds."""
        return {
            "model": self.spec.name,
            "hidden_units": list(self.spec.hidden_units),
            "activation": self.spec.activation,
            "params": self.spec.parameter_count(),
            "dataset": self.dataset_name,
            "dataset_source": self.dataset_source,
            "keras_backend": _keras_backend(),
            **{key: value for key, value in asdict(self.config).items()},
            "epochs_run": self.epochs_run,
            "seconds_per_epoch": self.seconds_per_epoch,
            "test_accuracy": self.evaluation.test_accuracy,
            "test_loss": self.evaluation.test_loss,
            "history": self.history,
            "execution": asdict(self.execution),
        }


def _keras_backend() -> str:
    import keras

    return keras.backend.backend()


def train(
    spec: ModelSpec,
    dataset: Dataset,
    config: TrainConfig = TrainConfig(),
    on_progress: ProgressFn | None = None,
) -> TrainingRun:
    """Build `spec`, train it on the dataset's training split and evaluate it on the test split.

    Seeds Python's, NumPy's and the backend's generators with `config.seed` (a random
    seed when None, recorded in the result), so the same seed gives the same run on the
    same machine and backend.
    """
    return train_seeds(spec, dataset, [config], [on_progress])[0]


def train_seeds(
    spec: ModelSpec,
    dataset: Dataset,
    configs: list[TrainConfig],
    on_progress: list[ProgressFn | None] | None = None,
    together: bool | None = None,
    grouping_macs: int | None = None,
) -> list[TrainingRun]:
    """Train `spec` once per config; the configs differ only in their seeds.

    On the JAX backend the runs go through denselab.loop, all in one compiled program when
    `together`, else one after another. By default they go together where that is faster
    on this device for a model of `grouping_macs` MACs (loop.grouping_pays; default: this
    model's): a study passes its largest MACs among variants whose times it compares, so
    that both sides train the same way. Each run's result is the one it gets when trained
    alone, to float tolerance (tests/test_train.py). Other backends train with Keras's fit.
    """
    configs = [config.with_seed() for config in configs]
    if len({replace(config, seed=None) for config in configs}) != 1:
        raise ValueError("train_seeds takes configs that differ only in their seeds")
    on_progress = on_progress or [None] * len(configs)
    cache_compiled_programs()
    if _keras_backend() != "jax":
        return [_train_with_keras_fit(spec, dataset, config, report) for config, report in zip(configs, on_progress)]
    import jax

    config = configs[0]
    mean, std = recipe.input_statistics(normalize(dataset.train_images, config.normalization)) \
        if config.standardize else (0.0, 1.0)
    steps_per_epoch = -(-len(dataset.train_labels) // config.batch_size)
    members, models = [], []
    for member_config, report in zip(configs, on_progress):
        seed_everything(member_config.seed)
        model = build_model(spec, config.learning_rate, config.steps_per_execution)
        trainer, optimizer = training_parts(model, member_config, steps_per_epoch, mean, std)
        members.append(loop.Member(trainer, optimizer, member_config.seed, report))
        models.append(model)
    if together is None:
        together = len(members) > 1 and loop.grouping_pays(grouping_macs or spec.macs())
    execution = loop.Execution.of(together, len(members), jax.default_backend())
    divisor = 255.0 if config.normalization == "scale" else 1.0
    loop.fit(members, dataset.train_images, dataset.train_labels, config, divisor, together)
    return [_finished(spec, dataset, member_config, model, member.optimizer, member.history_, mean, std, execution)
            for member_config, model, member in zip(configs, models, members)]


def _finished(spec, dataset, config, model, optimizer, history, mean, std, execution) -> TrainingRun:
    """The exercise's softmax model back (see training_parts), compiled with its trained optimizer, and evaluated."""
    import keras

    model.layers[-1].activation = keras.activations.softmax
    compile_model(model, config.learning_rate, config.steps_per_execution, optimizer=optimizer)
    if config.standardize:
        recipe.fold_standardization(model, mean, std)
    predictor = DensePredictor.from_keras(model, config.normalization)
    evaluation = evaluate_model(predictor, dataset.test_images, dataset.test_labels)
    return TrainingRun(spec, config, dataset.name, dataset.source, model, history, evaluation, execution)


def _train_with_keras_fit(spec, dataset, config, on_progress) -> TrainingRun:
    """Training on a backend other than JAX: Keras's fit on the recipe's training model."""
    seed_everything(config.seed)
    model = build_model(spec, config.learning_rate, config.steps_per_execution)
    train_inputs = normalize(dataset.train_images, config.normalization)
    loss, train_labels = recipe.loss_and_labels(config, dataset.train_labels, NUM_CLASSES)
    steps_per_epoch = -(-len(train_labels) // config.batch_size)
    history: list[dict] = []
    from denselab.keras_callbacks import accuracy_threshold_stop, epoch_recorder

    callbacks = [epoch_recorder(history, steps_per_epoch, on_progress)]
    if config.stop_at_accuracy is not None:
        callbacks.append(accuracy_threshold_stop(config.stop_at_accuracy, config.min_epochs))
    mean, std = recipe.input_statistics(train_inputs) if config.standardize else (0.0, 1.0)
    trainer, optimizer = training_parts(model, config, steps_per_epoch, mean, std)
    trainer.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], steps_per_execution=config.steps_per_execution)
    trainer.fit(train_inputs, train_labels, epochs=config.epochs, batch_size=config.batch_size,
                callbacks=callbacks, verbose=0)
    execution = loop.Execution.of(False, 1, f"{_keras_backend()} backend")
    return _finished(spec, dataset, config, model, optimizer, history, mean, std, execution)


def cache_compiled_programs() -> None:
    """Keep JAX's compiled training programs on disk, so later processes skip compilation.

    Each run compiles its training step (about 1 s, measured); the same model trained
    again with another seed, in a study or by a second `denselab train`, compiles to the
    same program. The cache lives in $DENSELAB_CACHE (default ~/.cache/denselab) under jax/.
    """
    import keras

    if keras.backend.backend() != "jax":
        return
    import jax

    root = os.environ.get("DENSELAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "denselab"
    jax.config.update("jax_compilation_cache_dir", str(Path(root) / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and Keras's generators, as `keras.utils.set_random_seed` does.

    That function also imports TensorFlow whenever it is installed, only to seed
    tf.data, which costs ~4 s per process on the JAX backend (measured) and seeds nothing
    denselab uses there. On the TensorFlow backend it is called as it is.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    # The two global attributes set_random_seed resets: Keras's seed and its generator.
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def training_parts(model, config: TrainConfig, steps_per_epoch: int, mean: float, std: float):
    """The recipe's training model (denselab.recipe) around `model`, and its built optimizer.

    Training reads the logits, with the softmax folded into the loss, so `model`'s last
    layer is linear until `_finished` puts the softmax back. Cross-entropy of softmax
    probabilities is computed on the JAX backend as log(clip(p, 1e-7, 1)), whose gradient
    is zero wherever p < 1e-7. On raw 0-255 pixels (the exercise's un-normalized
    experiment) a deep model starts with logits so large that nearly every p is below
    that, and training never moves: 10% accuracy (seen). TensorFlow's backend avoids this
    by reading the logits behind the softmax; doing the same here keeps the exercise's
    results on both backends. The loss is the same function of the weights.
    """
    import keras

    model.layers[-1].activation = keras.activations.linear
    trainer = recipe.training_model(model, config, mean, std)
    optimizer = recipe.optimizer(config, steps_per_epoch)
    optimizer.build(trainer.trainable_variables)
    return trainer, optimizer


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


def save_run(run: TrainingRun, out_dir: Path) -> Path:
    """Write model.keras, history.json and metrics.json into `out_dir`, each atomically."""
    out_dir = prepare_output_dir(out_dir)
    save_model(run.model, out_dir / MODEL_FILE)
    write_json_atomically(out_dir / HISTORY_FILE, run.history)
    summary = run.summary()
    summary["per_class_accuracy"] = run.evaluation.per_class_accuracy
    write_json_atomically(out_dir / METRICS_FILE, summary)
    return out_dir


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
