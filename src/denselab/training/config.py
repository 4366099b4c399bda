"""How a model trains: TrainConfig, whose defaults are the exercise's, and its rules."""

import secrets
from dataclasses import dataclass, replace

from denselab.data.dataset import check_normalization
from denselab.errors import BadInput
from denselab.model.spec import LEARNING_RATE

# Bump when a change alters what training computes: the study store keys runs on it,
# so runs trained by older code are not reused as if they were current.
# 2: denselab.training.loop on JAX (its own shuffles), not Keras's fit. 3: a run records how it was
# executed, and a side-by-side run's seconds are its own share; older runs' times, a group's
# wall time for each seed, cannot be compared with them.
TRAINING_REVISION = 3


MAX_SEED = 2**32 - 1  # NumPy's and Optuna's seeds are 32-bit
SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("none", "flip", "shift", "shift+flip")
# The teachers (denselab.training.teacher), used only while training: each a CNN of blocks, each
# block its 3x3 convolutions' filters and then a 2x2 max pool. "cnn" is the issue's probe's
# teacher (0.9347 there); "cnn-small" costs a sixth of its MACs.
TEACHER_BLOCKS = {"cnn": ((32, 64), (128,)), "cnn-small": ((32,), (64,))}
TEACHERS = ("none", *TEACHER_BLOCKS)
MAX_TEACHER_EPOCHS = 1000  # each is an epoch of a CNN over the whole training set


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
    # Training-only choices (denselab.training.recipe): they change how the weights are found, never
    # the deployed graph, which stays Flatten -> Dense ... -> Dense(10, softmax). The
    # defaults are the exercise's plain Adam training.
    dropout_input: float = 0.0  # fraction of input pixels dropped in each training step
    dropout_hidden: float = 0.0  # fraction of each hidden layer's outputs dropped
    weight_decay: float = 0.0  # > 0: AdamW with this decoupled weight decay
    label_smoothing: float = 0.0  # target mass spread evenly over the 10 classes
    schedule: str = "constant"  # or "cosine": the learning rate decays to 0 over all epochs
    augment: str = "none"  # "flip", "shift" (±2 px) or "shift+flip", on training images only
    standardize: bool = False  # train on (x - mean) / std of the training inputs, folded in after
    # Knowledge distillation (Hinton, Vinyals & Dean 2015): the loss is
    # (1 - distill_weight) * CE(labels) + distill_weight * T^2 * KL(teacher_T || student_T) at
    # T = distill_temperature, with the teacher's outputs on the same training images. The
    # teacher (denselab.training.teacher) trains once per data, teacher_epochs and teacher_seed
    # and is never exported. T = 2 and weight 0.5 were the best pair on the validation split with
    # a search's cnn teacher (bench/distill_settings.py, docs/benchmarks.md); the probe
    # preferred T = 4, weight 0.7, but it chose on the test set, which selects nothing here.
    teacher: str = "none"
    teacher_epochs: int = 15
    teacher_seed: int = 0
    distill_temperature: float = 2.0
    distill_weight: float = 0.5

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
        self._check_distillation()

    def _check_distillation(self) -> None:
        if self.teacher not in TEACHERS:
            raise BadInput(f"unknown teacher {self.teacher!r}; choose one of {', '.join(TEACHERS)}")
        if (isinstance(self.teacher_epochs, bool) or not isinstance(self.teacher_epochs, int)
                or not 1 <= self.teacher_epochs <= MAX_TEACHER_EPOCHS):
            raise BadInput(f"teacher-epochs must be an integer from 1 to {MAX_TEACHER_EPOCHS}, "
                           f"got {self.teacher_epochs!r}")
        if isinstance(self.teacher_seed, bool) or not isinstance(self.teacher_seed, int) \
                or not 0 <= self.teacher_seed <= MAX_SEED:
            raise BadInput(f"teacher-seed must be an integer from 0 to {MAX_SEED}, got {self.teacher_seed!r}")
        if not 0 < self.distill_temperature <= 100:
            raise BadInput(f"distill-temperature must be in (0, 100], got {self.distill_temperature!r}")
        if not 0 <= self.distill_weight <= 1:
            raise BadInput(f"distill-weight must be in [0, 1], got {self.distill_weight!r}")

    def recipe_settings(self) -> dict:
        """The training-only choices that differ from the exercise's plain training."""
        return {name: getattr(self, name) for name in RECIPE_FIELDS if getattr(self, name) != RECIPE_DEFAULTS[name]}

    def with_seed(self) -> "TrainConfig":
        """This config with a concrete seed: the given one, or a fresh random one."""
        return self if self.seed is not None else replace(self, seed=secrets.randbelow(2**31))


DISTILLATION_FIELDS = ("teacher", "teacher_epochs", "teacher_seed", "distill_temperature", "distill_weight")
RECIPE_FIELDS = ("dropout_input", "dropout_hidden", "weight_decay", "label_smoothing", "schedule", "augment",
                 "standardize", *DISTILLATION_FIELDS)
RECIPE_DEFAULTS = {name: TrainConfig.__dataclass_fields__[name].default for name in RECIPE_FIELDS}
