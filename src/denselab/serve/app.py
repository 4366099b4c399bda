"""The prediction service: a trained model (Keras or TensorFlow Lite) over HTTP, and its page.

The model is loaded once, when the app is created (`denselab.serve.loading`). The handlers
only read the request on the event loop; decoding images (`denselab.serve.inputs`) and
running the model happen in Starlette's thread pool, so a slow request does not hold up
the others. The NumPy predictor is read-only and a LiteRT interpreter is guarded by a lock.
"""

import errno
import socket
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from denselab.data.sources import given_data_dir, load_dataset
from denselab.errors import BadInput
from denselab.serve.inputs import read_inputs
from denselab.serve.loading import LoadedModel, load_for_serving


def create_app(model_path: Path, normalization: str | None = None, data_dir: Path | None = None):
    """The FastAPI app serving one model, loaded now."""
    loaded = load_for_serving(model_path, normalization)
    if data_dir is not None:  # asked for by name: checked now, not at the first random test image
        given_data_dir(Path(data_dir), loaded.description["dataset"])
    names = loaded.class_names
    app = FastAPI(title="denselab", description="Fashion-MNIST dense classifier: " + loaded.description["path"])
    _answer_errors_in_json(app)
    test_images = _TestImages(loaded, data_dir)

    # The routes' names and docstrings are the operation ids and descriptions of /openapi.json.
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return (resources.files("denselab.serve") / "static" / "index.html").read_text()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/model")
    def model_info():
        return {**loaded.description, "classes": list(names)}

    @app.post("/predict")
    async def predict(request: Request):
        """One image: PNG/JPEG body, a multipart `file`, or JSON {"pixels": 28x28 numbers 0-255}."""
        pixels = await read_inputs(request, batch=False)
        return (await run_in_threadpool(_predictions, loaded, pixels))[0]

    @app.post("/predict/batch")
    async def predict_batch(request: Request):
        """Up to 256 inputs: JSON {"inputs": [{"pixels": ...}, ...]} or multipart files."""
        pixels = await read_inputs(request, batch=True)
        return {"predictions": await run_in_threadpool(_predictions, loaded, pixels)}

    @app.get("/random-test-image")
    def random_test_image():
        try:
            return test_images.pick()
        except BadInput as problem:  # no test set where the model's dataset should be
            return _error(404, str(problem))

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _answer_errors_in_json(app: FastAPI) -> None:
    """Every refusal, ours and FastAPI's and Starlette's, answers {"error": "..."}."""

    @app.exception_handler(BadInput)
    def bad_input(request, exc: BadInput):
        return _error(getattr(exc, "status", 400), str(exc))

    @app.exception_handler(RequestValidationError)
    def invalid_request(request, exc: RequestValidationError):
        return _error(422, "invalid request: " + "; ".join(str(e.get("msg")) for e in exc.errors()))

    @app.exception_handler(HTTPException)
    def http_problem(request, exc: HTTPException):
        # Starlette's own refusals (a multipart body it cannot parse, an unknown path)
        # answer in the same {"error": ...} form as ours.
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def _predictions(loaded: LoadedModel, pixels: np.ndarray) -> list[dict]:
    """One answer per image: each class's probability, the top class, and the pixels the model saw."""
    names = loaded.class_names
    started = time.perf_counter()
    probabilities = loaded.probabilities(pixels)
    latency_ms = (time.perf_counter() - started) * 1000
    answers = []
    for image, row in zip(pixels, probabilities):
        top = int(np.argmax(row))
        answers.append({
            "probabilities": {name: float(p) for name, p in zip(names, row)},
            "top_class": names[top], "confidence": float(row[top]),
            "latency_ms": latency_ms, "input": image.tolist(),
        })
    return answers


class _TestImages:
    """The test set of the model's dataset, read at the first request for one of its images."""

    def __init__(self, loaded: LoadedModel, data_dir: Path | None):
        self.dataset_name = loaded.description["dataset"]
        self.class_names = loaded.class_names
        self.data_dir = data_dir
        self.images = self.labels = None
        self.lock = threading.Lock()

    def pick(self) -> dict:
        """A test image chosen at random, its index and its true label; BadInput where there is no test set."""
        with self.lock:
            if self.labels is None:
                dataset = load_dataset(self.dataset_name, self.data_dir, allow_download=False)
                self.images, self.labels = dataset.test_images, dataset.test_labels
        index = int(np.random.default_rng().integers(len(self.labels)))
        return {"index": index, "pixels": self.images[index].tolist(),
                "true_label": self.class_names[int(self.labels[index])]}


# Why a socket could not be bound, in the user's terms.
_BIND_PROBLEMS = {
    errno.EADDRINUSE: "the port is already in use; choose another --port",
    errno.EADDRNOTAVAIL: "not an address of this machine; try --host 127.0.0.1",
    errno.EACCES: "permission denied (ports below 1024 need root)",
}


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port`, or BadInput naming the address and what is wrong.

    Bound here, before uvicorn starts, so that a port in use or a host that does not resolve
    is one line; uvicorn itself logs an error of its own and exits with status 3. Like
    uvicorn, IPv6 only for a host with a colon, and SO_REUSEADDR for a quick restart.
    """
    if not 0 < port < 65536:
        raise BadInput(f"--port {port} is not a port number (1-65535)")
    if not host.strip() or not host.isprintable():
        raise BadInput(f"--host {host!r} is not an address; give one of this machine's, e.g. 127.0.0.1")
    address = server_address(host, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        [(family, kind, protocol, _, where), *_] = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM,
                                                                      flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise BadInput(f"cannot listen on {address}: the host name does not resolve; try --host 127.0.0.1") from None
    listening = socket.socket(family, kind, protocol)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(where)
    except OSError as error:
        listening.close()
        raise BadInput(f"cannot listen on {address}: {_BIND_PROBLEMS.get(error.errno, error.strerror)}") from None
    return listening


def server_address(host: str, port: int) -> str:
    """host:port as it goes in a URL ([::1]:8000 for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve_forever(application, listening: socket.socket) -> None:
    """Run `application` with uvicorn on the bound socket until Ctrl-C; uvicorn logs warnings and errors only."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(application, log_level="warning"))
    with listening:
        server.run(sockets=[listening])
    if not server.started:
        raise RuntimeError("uvicorn stopped before it started serving")
