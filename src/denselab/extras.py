"""Which optional part of denselab (a pip extra) provides which import, and the error when one is missing.

`pip install denselab` installs what training, evaluating and predicting need. Deploying,
searching, serving and Ray come as extras (pyproject.toml's optional-dependencies), so a
notebook's environment does not take TensorFlow or Ray for a model it only trains. An
extra's modules are imported inside the functions that use them, under `extra_imports()`,
which turns a missing one into a BadInput saying what to install; the serving app, built on
FastAPI's types, needs its extra when imported, and `denselab serve` checks it first.
"""

import contextlib
import importlib.util
from typing import NamedTuple

from denselab.errors import BadInput


class Provider(NamedTuple):
    distribution: str  # what the extra lists in pyproject.toml: the module's own, or one that requires it
    extra: str


# Every module of an extra that denselab imports or needs, by its top-level name. tests/test_extras.py
# checks this against pyproject.toml and the installed distributions.
MODULES = {
    "tensorflow": Provider("tensorflow-cpu", "deploy"),
    "ai_edge_litert": Provider("ai-edge-litert", "deploy"),
    "tflite_micro": Provider("tflite-micro", "deploy"),
    "optuna": Provider("optuna", "search"),
    "fastapi": Provider("fastapi", "serve"),
    "uvicorn": Provider("uvicorn", "serve"),
    "starlette": Provider("fastapi", "serve"),  # FastAPI's own framework, which the app uses directly
    # Not imported by denselab: Starlette needs it for the multipart uploads /predict takes.
    "python_multipart": Provider("python-multipart", "serve"),
    "ray": Provider("ray", "ray"),
}

# What each extra is for, as the subject of "... needs X, which is not installed".
PURPOSES = {
    "deploy": "deploying models",
    "search": "the model search",
    "serve": "serving a model",
    "ray": "the Ray executor",
}


def missing_message(module: str) -> str:
    """The one line that says which extra provides `module` (a top-level name of MODULES) and how to install it."""
    distribution, extra = MODULES[module]
    return f"{PURPOSES[extra]} needs {distribution}, which is not installed: pip install 'denselab[{extra}]'"


@contextlib.contextmanager
def extra_imports():
    """Wraps the import statements of an extra's modules: one that is not installed is a BadInput.

    Only a module of MODULES that is not installed counts: any other ModuleNotFoundError (a
    submodule missing from a broken installation, say) keeps its traceback.
    """
    try:
        yield
    except ModuleNotFoundError as error:
        module = (error.name or "").partition(".")[0]
        if module not in MODULES or _installed(module):
            raise
        raise BadInput(missing_message(module)) from None


def require_extra(extra: str) -> None:
    """BadInput unless every module of `extra` is installed: found, not imported, so it costs nothing.

    For a command to refuse at once, before it loads a model for what it cannot finish.
    """
    if extra not in PURPOSES:
        raise ValueError(f"no extra {extra!r}; denselab's extras are {', '.join(PURPOSES)}")
    for module, provider in MODULES.items():
        if provider.extra == extra and not _installed(module):
            raise BadInput(missing_message(module))


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it; a module in sys.modules without a spec
        return False
