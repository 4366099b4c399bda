"""Train a spec on a dataset: seeding, the exercise's early-stop callback, timing, saving.

A run saves itself as a run folder (denselab.model.run_dir).
"""

import os
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from denselab.data.dataset import NUM_CLASSES, Dataset, normalize
from denselab.errors import BadInput
from denselab.model.evaluate import Evaluation, evaluate_model
from denselab.model.predict import DensePredictor
from denselab.model.run_dir import write_run_dir
from denselab.model.spec import ModelSpec, build_model, compile_model
from denselab.training import loop, recipe
from denselab.training.config import TrainConfig
from denselab.training.keras_callbacks import accuracy_threshold_stop, epoch_recorder

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
    def normalization(self) -> str:
        return self.config.normalization

    @property
    def test_accuracy(self) -> float:
        return self.evaluation.test_accuracy

    def predictor(self) -> DensePredictor:
        """The model as NumPy matrix products, taking raw 0-255 pixels (denselab.model.predict)."""
        return DensePredictor.from_keras(self.model, self.config.normalization)

    def save(self, out_dir: Path) -> Path:
        """Write this run as a run folder (model.keras, history.json, metrics.json); returns the folder."""
        return save_run(self, out_dir)

    @property
    def seconds_per_epoch(self) -> float:
        """Median epoch time, the first epoch (with compilation) left out (loop.median_epoch_seconds)."""
        return loop.median_epoch_seconds(self.history)

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

    On the JAX backend the runs go through denselab.training.loop, all in one compiled program when
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
    loop.fit(members, dataset.train_images, dataset.train_labels, config, divisor, together,
             teacher_logits=_teacher_logits(config, dataset))
    return [_finished(spec, dataset, member_config, model, member.optimizer, member.history_, mean, std, execution)
            for member_config, model, member in zip(configs, models, members)]


def _teacher_logits(config: TrainConfig, dataset: Dataset):
    """The teacher's logits on the training images, which whoever trained the teacher attached to the data.

    Training never trains a teacher itself: the run engine attaches a stored teacher's, and
    denselab.api.train trains one first. A student without them is refused rather than
    quietly taught by a teacher that nothing stores or reports.
    """
    if config.teacher == "none":
        return None
    if dataset.teacher_logits is None:
        raise ValueError(f"the config asks for a {config.teacher} teacher, but the data carries no teacher logits")
    if len(dataset.teacher_logits) != len(dataset.train_labels):
        raise ValueError(f"the teacher's logits cover {len(dataset.teacher_logits)} images, "
                         f"not the {len(dataset.train_labels)} training images")
    return dataset.teacher_logits


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
    if config.teacher != "none":
        raise BadInput(f"a teacher trains in denselab's JAX loop; set KERAS_BACKEND=jax, not {_keras_backend()}")
    seed_everything(config.seed)
    model = build_model(spec, config.learning_rate, config.steps_per_execution)
    train_inputs = normalize(dataset.train_images, config.normalization)
    loss, train_labels = recipe.loss_and_labels(config, dataset.train_labels, NUM_CLASSES)
    steps_per_epoch = -(-len(train_labels) // config.batch_size)
    history: list[dict] = []

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
    # Keras's private modules: tests/test_private_apis.py fails first when they change.
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def training_parts(model, config: TrainConfig, steps_per_epoch: int, mean: float, std: float):
    """The recipe's training model (denselab.training.recipe) around `model`, and its built optimizer.

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


def save_run(run: TrainingRun, out_dir: Path) -> Path:
    """Write the run's folder (denselab.model.run_dir): model, history and metrics, each atomically."""
    summary = run.summary()
    summary["per_class_accuracy"] = run.evaluation.per_class_accuracy
    return write_run_dir(out_dir, run.model, run.history, summary)
