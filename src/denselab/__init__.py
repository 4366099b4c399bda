"""denselab: the "Exploring DNN learning" exercise on Fashion-MNIST as real software."""

import os

# Keras picks its backend when it is first imported. JAX trains these small dense models
# several times faster than TensorFlow on a CPU (docs/benchmarks.md), so it is the
# default; a KERAS_BACKEND set by the user wins.
os.environ.setdefault("KERAS_BACKEND", "jax")

from denselab.data.dataset import CLASS_NAMES, Dataset, normalize  # noqa: E402
from denselab.data.sources import load_dataset  # noqa: E402
from denselab.errors import BadInput  # noqa: E402
from denselab.model.run_dir import load_trained_model  # noqa: E402
from denselab.model.spec import ModelSpec, build_model  # noqa: E402
from denselab.training.config import TrainConfig  # noqa: E402
from denselab.training.fit import TrainingRun, save_run, train  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "CLASS_NAMES", "Dataset", "load_dataset", "normalize", "BadInput", "ModelSpec", "build_model",
    "TrainConfig", "TrainingRun", "load_trained_model", "save_run", "train",
]
