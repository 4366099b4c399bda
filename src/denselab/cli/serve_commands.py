"""`denselab serve`: a trained model over HTTP, with a page to draw on."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from denselab.cli.app import DataDirOption, app, console
from denselab.extras import require_extra


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="A .keras model, or a .tflite file (float or int8).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    normalization: Annotated[Optional[str], typer.Option(help="Override the model's normalization.")] = None,
    data_dir: DataDirOption = None,
):
    """Serve predictions: POST /predict, GET / (a page to draw or upload), GET /docs (OpenAPI)."""
    require_extra("serve")  # all of it, now: uvicorn is first imported after the model loads, multipart at an upload
    from denselab.serve.app import create_app, listening_socket, serve_forever, server_address

    application = create_app(model, normalization, data_dir)
    listening = listening_socket(host, port)
    url = f"http://{server_address(host, port)}/"
    console.print(f"serving {escape(str(model))} on {url}", highlight=False, soft_wrap=True)
    console.print(f"API docs at {url}docs; Ctrl-C stops", highlight=False)
    serve_forever(application, listening)
