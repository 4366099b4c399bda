"""`denselab serve`: a trained model over HTTP, with a page to draw on."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from denselab import api
from denselab.cli.app import DataDirOption, app, console


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="A .keras model, or a .tflite file (float or int8).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = api.SERVE_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = api.SERVE_PORT,
    normalization: Annotated[Optional[str], typer.Option(help="Override the model's normalization.")] = None,
    data_dir: DataDirOption = None,
):
    """Serve predictions: POST /predict, GET / (a page to draw or upload), GET /docs (OpenAPI)."""
    def started(url: str) -> None:
        console.print(f"serving {escape(str(model))} on {url}", highlight=False, soft_wrap=True)
        console.print(f"API docs at {url}docs; Ctrl-C stops", highlight=False)

    api.serve_model(model, host=host, port=port, normalization=normalization, data_dir=data_dir, on_start=started)
