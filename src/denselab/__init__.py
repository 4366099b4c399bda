"""denselab: the "Exploring DNN learning" exercise on Fashion-MNIST as real software.

The public API is below (`denselab.train`, `evaluate`, `predict`, `export`, `explore`,
`search` and what they take and return); see denselab.api and the README's "From Python".
"""

import importlib
import os

# Keras picks its backend when it is first imported. JAX trains these small dense models
# several times faster than TensorFlow on a CPU (docs/benchmarks.md), so it is the
# default; a KERAS_BACKEND set by the user wins.
os.environ.setdefault("KERAS_BACKEND", "jax")

# Each public name and the module it lives in. They load on first use, so `import denselab`
# costs nothing and `denselab predict` never loads what only a study's report needs.
_PUBLIC = {
    "denselab.api": ("train", "evaluate", "predict", "export", "explore", "search", "serve_model", "info", "class_names",
                     "stored_runs", "stored_run",
                     "ExportReport", "Runner", "StudyResult", "SearchResult"),
    "denselab.deploy.export": ("ExportOptions",),
    "denselab.model_search.run": ("SearchSettings",),
    "denselab.data.dataset": ("CLASS_NAMES", "Dataset", "normalize"),
    "denselab.data.sources": ("load_dataset",),
    "denselab.errors": ("BadInput",),
    "denselab.model.evaluate": ("Evaluation",),
    "denselab.model.run_dir": ("load_trained_model", "TrainedModel"),
    "denselab.model.spec": ("ModelSpec", "build_model"),
    "denselab.study.file": ("Study", "load_study"),
    "denselab.training.config": ("TrainConfig",),
    "denselab.training.fit": ("TrainingRun", "save_run"),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}

__version__ = "0.1.0"
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'denselab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # found once; later lookups are plain attribute reads
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOME))
