"""A convolutional teacher for knowledge distillation: trained once, used only while training, never shipped.

A student (the exercise's dense model) learns from the labels and from the teacher's
softened outputs on the same training images (TrainConfig.teacher, denselab.training.loop).
The teacher's logits on every training image are computed once after it trains, so a
student's step costs what it costs without a teacher, plus a softmax.

The teacher is a CNN (config.TEACHER_BLOCKS): "cnn", the issue's probe's, is conv 3x3 (32)
-> conv 3x3 (64) -> pool -> conv 3x3 (128) -> pool -> Dense(256) -> dropout 0.5 -> Dense(10);
"cnn-small" is conv (32) -> pool -> conv (64) -> pool -> the same head, a sixth of the MACs.
Both train on horizontally flipped images too, with AdamW and a cosine schedule, in
denselab's own JAX loop. Their convolutions are written as patches times a matrix
(`_patch_conv`): XLA's own convolution on this project's 2-core CPU ran cnn-small's training
epoch 6.7x slower (38 s against 5.6 s for 6,000 images, measured).

The teacher is a run like any other (`Teacher` is a runs.engine.Trainable, as a study variant
is): it trains once per (data, epochs, seed), its model and logits are files beside
the students' models, and the run store keeps its accuracy on the split it was scored on.
"""

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from denselab.data.dataset import IMAGE_SIDE, NUM_CLASSES, Dataset
from denselab.training import loop
from denselab.training.config import TEACHER_BLOCKS, TrainConfig

# Bump when the teacher or its training changes: teacher runs are keyed on it.
TEACHER_REVISION = 1
DENSE_UNITS = 256
DROPOUT = 0.5
WEIGHT_DECAY = 1e-4
BATCH_SIZE = 128
LOGIT_BATCH = 1000  # images per compiled call when the trained teacher labels the training set


def teacher_macs(kind: str) -> int:
    """Multiply-accumulates of the teacher `kind` for one image (the run engine's cost estimate)."""
    side, channels, macs = IMAGE_SIDE, 1, 0
    for block in TEACHER_BLOCKS[kind]:
        for filters in block:
            macs += side * side * 9 * channels * filters
            channels = filters
        side //= 2
    return macs + side * side * channels * DENSE_UNITS + DENSE_UNITS * NUM_CLASSES


@dataclass(frozen=True)
class _TeacherSpec:
    kind: str

    def macs(self) -> int:
        return teacher_macs(self.kind)


@dataclass(frozen=True)
class Teacher:
    """A teacher run to do: what the run engine trains (denselab.runs.engine.Trainable), as it does a study variant."""

    kind: str
    epochs: int
    dataset: str
    grouping_macs: int | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}-e{self.epochs}"

    @property
    def reason(self) -> str:
        return f"the {self.kind} teacher, used only while training students"

    @property
    def spec(self) -> _TeacherSpec:
        return _TeacherSpec(self.kind)

    @property
    def config(self) -> TrainConfig:
        """How the teacher trains; its seed is the run's."""
        return TrainConfig(epochs=self.epochs, batch_size=BATCH_SIZE, schedule="cosine", weight_decay=WEIGHT_DECAY,
                           augment="flip")

    def config_hash(self) -> str:
        settings = {"kind": self.kind, "dataset": self.dataset, "config": asdict(self.config),
                    "blocks": TEACHER_BLOCKS[self.kind], "dense": DENSE_UNITS, "dropout": DROPOUT, "revision": TEACHER_REVISION}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def teacher_of(config: TrainConfig, dataset: str) -> Teacher | None:
    """The teacher a student's config asks for; None without one."""
    return None if config.teacher == "none" else Teacher(config.teacher, config.teacher_epochs, dataset)


def _patch_conv():
    import keras
    from keras import ops

    class PatchConv(keras.layers.Layer):
        """A 3x3 'same' convolution with relu, as the 9 shifted copies of the input times one matrix."""

        def __init__(self, filters: int, **kwargs):
            super().__init__(**kwargs)
            self.filters = filters

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(9 * input_shape[-1], self.filters), initializer="he_uniform")
            self.bias = self.add_weight(shape=(self.filters,), initializer="zeros")

        def call(self, inputs):
            height, width = inputs.shape[1], inputs.shape[2]
            padded = ops.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]])
            patches = ops.concatenate([padded[:, row:row + height, column:column + width, :]
                                       for row in range(3) for column in range(3)], axis=-1)
            return ops.relu(ops.matmul(patches, self.kernel) + self.bias)

    return PatchConv


def _max_pool(inputs):
    """2x2 max pooling by a reshape, which XLA's CPU backend runs faster than its own pooling window."""
    from keras import ops

    _, height, width, channels = inputs.shape
    return ops.max(ops.reshape(inputs, (-1, height // 2, 2, width // 2, 2, channels)), axis=(2, 4))


def teacher_model(seed: int, kind: str = "cnn"):
    """The CNN `kind` (TEACHER_BLOCKS), ending in logits; flips and dropout act only in training."""
    import keras

    patch_conv = _patch_conv()
    inputs = keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE))
    x = keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1))(inputs)
    x = keras.layers.RandomFlip("horizontal", seed=seed)(x)
    for block in TEACHER_BLOCKS[kind]:
        for filters in block:
            x = patch_conv(filters)(x)
        x = keras.layers.Lambda(_max_pool)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(DENSE_UNITS, activation="relu")(x)
    x = keras.layers.Dropout(DROPOUT, seed=seed)(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="cnn_teacher")


@dataclass
class TrainedTeacher:
    model: object
    logits: np.ndarray  # float32, one row per training image, in the dataset's order
    history: list[dict]
    accuracy: float  # on the dataset's scored split (a search's validation split, or the test set)
    execution: loop.Execution


def train_teacher(teacher: Teacher, dataset: Dataset, seed: int, on_progress=None) -> TrainedTeacher:
    """Train the teacher on `dataset`'s training images, then label them with its logits."""
    import jax

    from denselab.training.fit import cache_compiled_programs, seed_everything
    from denselab.training.recipe import optimizer as build_optimizer
    cache_compiled_programs()
    seed_everything(seed)
    config = TrainConfig(**{**asdict(teacher.config), "seed": seed})
    model = teacher_model(seed, teacher.kind)
    optimizer = build_optimizer(config, -(-len(dataset.train_labels) // config.batch_size))
    optimizer.build(model.trainable_variables)
    member = loop.Member(model, optimizer, seed, on_progress)
    loop.fit([member], dataset.train_images, dataset.train_labels, config, 255.0, together=False)
    logits = teacher_logits(model, dataset.train_images)
    scored = teacher_logits(model, dataset.test_images).argmax(axis=1)  # the split it is scored on
    accuracy = float((scored == dataset.test_labels).mean())
    return TrainedTeacher(model, logits, member.history_, accuracy, loop.Execution.of(False, 1, jax.default_backend()))


def teacher_logits(model, images: np.ndarray) -> np.ndarray:
    """The model's logits for uint8 images (divided by 255 as in training), in inference mode."""
    import jax
    import jax.numpy as jnp

    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]

    @jax.jit
    def run(batch):
        logits, _ = model.stateless_call(trainable, non_trainable, batch.astype(jnp.float32) / 255.0, training=False)
        return logits

    padded = -len(images) % LOGIT_BATCH  # one compiled shape for every batch
    batches = np.concatenate([images, np.zeros((padded, *images.shape[1:]), images.dtype)])
    out = [np.asarray(run(jnp.asarray(batches[start:start + LOGIT_BATCH])))
           for start in range(0, len(batches), LOGIT_BATCH)]
    return np.concatenate(out)[: len(images)].astype(np.float32)


def train_teacher_runs(teacher: Teacher, dataset: Dataset, seeds: list[int], on_progress=None) -> list[dict]:
    """The run engine's task for teachers: one stored result per seed, the model and logits as bytes."""
    from denselab.model.run_dir import save_model

    results = []
    for position, seed in enumerate(seeds):
        trained = train_teacher(teacher, dataset, seed, on_progress[position] if on_progress else None)
        with tempfile.TemporaryDirectory(prefix="denselab-teacher-") as folder:
            model_bytes = save_model(trained.model, Path(folder) / "teacher.keras").read_bytes()
            logits_path = Path(folder) / "logits.npy"
            np.save(logits_path, trained.logits)
            logits_bytes = logits_path.read_bytes()
        history = trained.history
        results.append({  # the store's result columns; a teacher has no loss or per-class figures
            "params": int(sum(np.prod(variable.shape) for variable in trained.model.trainable_variables)),
            "epochs_run": len(history), "train_seconds": sum(record["seconds"] for record in history),
            "seconds_per_epoch": loop.median_epoch_seconds(history), "execution": asdict(trained.execution),
            "train_accuracy": history[-1]["accuracy"], "test_accuracy": trained.accuracy, "history": history,
            "keras_backend": "jax", "model_bytes": model_bytes, "artifacts": {"logits.npy": logits_bytes},
        })
    return results
