"""The Typer app, its consoles and the options several commands share.

The command modules (`model_commands`, `study_commands`) register themselves on `app`;
`denselab.cli.main` runs it.
"""

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from denselab.errors import BadInput
from denselab.quiet import VERBOSE_VARIABLE

app = typer.Typer(
    help="The 'Exploring DNN learning' exercise on Fashion-MNIST: train, evaluate and predict with dense networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def options(verbose: Annotated[bool, typer.Option(
        "--verbose", help="Let other libraries' log lines (TensorFlow, absl, LiteRT, TFLM, JAX, Ray) reach the terminal.",
)] = False):
    """The 'Exploring DNN learning' exercise on Fashion-MNIST: train, evaluate and predict with dense networks."""
    if verbose:
        os.environ[VERBOSE_VARIABLE] = "1"  # read by denselab.quiet, here and in worker processes


console = Console()
err_console = Console(stderr=True)

DatasetOption = Annotated[str, typer.Option("--dataset", help="fashion-mnist or mnist.")]
DataDirOption = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Directory with the dataset's four IDX files, or with a <dataset>/ folder holding them "
                 "(else $DENSELAB_DATA/<dataset>/, Debian's package, Keras's cache)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def print_json(value) -> None:
    print(json.dumps(value))


def measure_tflm_first() -> None:
    """Before a command that needs TFLM's figures: where they must still be measured (TFLM built,
    minutes the first time), say so on a terminal and measure them, rather than stall silently."""
    from denselab.deploy.tflm_runtime import needs_measuring, tflm_runtimes

    if err_console.is_terminal and needs_measuring():
        err_console.print("TensorFlow Lite Micro: building it for each Arm core and measuring its code "
                          "and RAM, once (minutes the first time)", highlight=False)
        tflm_runtimes()


def main() -> None:
    """Entry point: run the app, turning every user error into one line and exit code 2."""
    try:
        exit_code = app(standalone_mode=False)
    except BadInput as error:
        # escape(): messages quote the user's text, e.g. "[defaults]", which is not markup.
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.TyperException as error:
        # Typer's usage errors (its vendored click's); "no arguments" carries the help text.
        if type(error).__name__ == "NoArgsIsHelpError":
            print(error.format_message())
            sys.exit(0)
        err_console.print(f"[bold red]error:[/] {escape(error.format_message())}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    sys.exit(exit_code or 0)
