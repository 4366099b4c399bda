"""The `denselab` command: options, help and presentation; the work happens in the modules.

This package is the only place that knows Typer and Rich. Heavy modules (Keras, JAX,
TensorFlow) are imported inside the commands that need them, so `denselab --help` and
`denselab info` answer at once.
"""

from denselab.cli import (  # noqa: F401  (register the commands)
    boards_commands,
    export_commands,
    model_commands,
    search_commands,
    serve_commands,
    study_commands,
)
from denselab.cli.app import app, main

__all__ = ["app", "main"]
