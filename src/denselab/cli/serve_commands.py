"""`denselab serve`: a trained model over HTTP, with a page to draw on."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from denselab.cli.app import DataDirOption, app, console
from denselab.errors import BadInput


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="A .keras model, or a .tflite file (float or int8).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    normalization: Annotated[Optional[str], typer.Option(help="Override the model's normalization.")] = None,
    data_dir: DataDirOption = None,
):
    """Serve predictions: POST /predict, GET / (a page to draw or upload), GET /docs (OpenAPI)."""
    from denselab.serve import create_app

    if not 0 < port < 65536:
        raise BadInput(f"--port {port} is not a port number (1-65535)")
    application = create_app(model, normalization, data_dir)
    import uvicorn

    console.print(f"serving {model} on http://{host}:{port}/ (API docs at /docs); Ctrl-C stops")
    uvicorn.run(application, host=host, port=port, log_level="warning")
