"""The prediction service: a trained model (Keras or TensorFlow Lite) over HTTP, and its page.

The model is loaded once, when the app is created. The handlers only read the request
on the event loop; decoding images and running the model happen in Starlette's thread
pool, so a slow request does not hold up the others. The NumPy predictor is read-only
and a LiteRT interpreter is guarded by a lock.
"""

import errno
import json
import socket
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from denselab.data.dataset import CLASS_NAMES, IMAGE_SIDE
from denselab.data.images import MAX_IMAGE_SIDE, image_bytes_to_pixels
from denselab.data.sources import given_data_dir, load_dataset
from denselab.deploy.tflite import LiteRTClassifier, op_names
from denselab.errors import BadInput
from denselab.model.run_dir import METRICS_FILE, load_trained_weights, read_metadata
from denselab.model.spec import check_model_file

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_BATCH = 256
IMAGE_TYPES = ("image/png", "image/jpeg")


@dataclass
class LoadedModel:
    """What the service needs of a model: probabilities for uint8 pixels, and a description."""

    probabilities: object  # callable: (n, 28, 28) uint8 -> (n, 10)
    class_names: tuple[str, ...]
    description: dict


def load_for_serving(path: Path, normalization: str | None = None) -> LoadedModel:
    """Load a .keras or .tflite model (float or int8) for the service."""
    path = check_model_file(path)
    if path.suffix == ".tflite":
        return _load_tflite(path, normalization)
    trained = load_trained_weights(path, normalization)  # NumPy only: no Keras, JAX or TensorFlow
    predictor = trained.predictor()
    sizes = [predictor.weights[0].shape[0], *[kernel.shape[1] for kernel in predictor.weights]]
    return LoadedModel(predictor.probabilities, CLASS_NAMES[trained.dataset_name], {
        "format": "keras", "path": str(path), "name": trained.weights.name, "layer_sizes": sizes,
        "activation": predictor.activation, "parameters": trained.weights.spec.parameter_count(),
        "normalization": trained.normalization, "dataset": trained.dataset_name,
        "test_accuracy": trained.test_accuracy,
    })


def _load_tflite(path: Path, normalization: str | None) -> LoadedModel:
    try:
        model_bytes = path.read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror}") from None
    # metrics.json of the run sits beside the model, or one folder up for `denselab export`'s export/.
    folder = next((folder for folder in (path.parent, path.parent.parent) if (folder / METRICS_FILE).is_file()),
                  path.parent)
    normalization, dataset, _ = read_metadata(folder / path.name, normalization)
    try:
        classifier = LiteRTClassifier(model_bytes, normalization)
        operators = op_names(model_bytes)
    except (ValueError, RuntimeError) as error:
        raise BadInput(f"{path} is not a TensorFlow Lite model ({error})") from None
    if list(classifier.input["shape"]) != [1, IMAGE_SIDE, IMAGE_SIDE]:
        raise BadInput(f"{path} takes inputs of shape {list(classifier.input['shape'])}, not [1, 28, 28]")
    if list(classifier.output["shape"]) != [1, len(CLASS_NAMES[dataset])]:
        raise BadInput(f"{path} gives outputs of shape {list(classifier.output['shape'])}, "
                       f"not [1, {len(CLASS_NAMES[dataset])}] (one per class of {dataset})")
    lock = threading.Lock()

    def probabilities(pixels: np.ndarray) -> np.ndarray:
        with lock:  # one interpreter, one invocation at a time
            return classifier.probabilities(pixels)

    return LoadedModel(probabilities, CLASS_NAMES[dataset], {
        "format": "tflite", "path": str(path), "size_bytes": len(model_bytes),
        "input_type": np.dtype(classifier.input["dtype"]).name, "operators": operators,
        "normalization": normalization, "dataset": dataset, "test_accuracy": None,
    })


def pixels_from_json(value, where: str = "pixels") -> np.ndarray:
    """A 28x28 list of numbers 0-255 as uint8 pixels, or a BadInput naming what is wrong."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except OverflowError:
        # JSON integers have no limit; one past float64's range cannot be a pixel.
        raise BadInput(f"{where} holds values outside 0-255") from None
    except (ValueError, TypeError):
        raise BadInput(f"{where} must be 28 rows of 28 numbers") from None
    if array.shape != (IMAGE_SIDE, IMAGE_SIDE):
        raise BadInput(f"{where} has shape {list(array.shape)}; expected 28 rows of 28 numbers")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise BadInput(f"{where} holds values outside 0-255")
    return np.rint(array).astype(np.uint8)


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


def create_app(model_path: Path, normalization: str | None = None, data_dir: Path | None = None):
    """The FastAPI app serving one model, loaded now."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    loaded = load_for_serving(model_path, normalization)
    if data_dir is not None:  # asked for by name: checked now, not at the first random test image
        given_data_dir(Path(data_dir), loaded.description["dataset"])
    names = loaded.class_names
    app = FastAPI(title="denselab", description="Fashion-MNIST dense classifier: " + loaded.description["path"])
    test_set = {}  # loaded on first use of /random-test-image
    test_set_lock = threading.Lock()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(BadInput)
    def bad_input(request, exc: BadInput):
        return error(getattr(exc, "status", 400), str(exc))

    @app.exception_handler(RequestValidationError)
    def invalid_request(request, exc: RequestValidationError):
        return error(422, "invalid request: " + "; ".join(str(e.get("msg")) for e in exc.errors()))

    @app.exception_handler(HTTPException)
    def http_problem(request, exc: HTTPException):
        # Starlette's own refusals (a multipart body it cannot parse, an unknown path)
        # answer in the same {"error": ...} form as ours.
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    def answer(pixels: np.ndarray) -> list[dict]:
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

    async def read_inputs(request: Request, batch: bool) -> np.ndarray:
        """Pixels from the request: image bytes, multipart file(s), or JSON pixel arrays."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_UPLOAD_BYTES * (MAX_BATCH if batch else 1):
            raise _too_large(f"request body of {int(length):,} bytes is over the limit")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            form = await request.form()
            files = [value for value in form.values() if hasattr(value, "read")]
            if not files:
                raise BadInput("multipart body has no file field")
            if len(files) > (MAX_BATCH if batch else 1):
                raise BadInput(f"at most {MAX_BATCH if batch else 1} files per request")
            uploads = [(await file.read(), file.filename or "upload") for file in files]
            return await run_in_threadpool(lambda: np.stack([_image_pixels(data, name) for data, name in uploads]))
        body = await request.body()
        if not body:
            raise BadInput("empty request body; send a PNG or JPEG, or JSON {\"pixels\": [[...28 numbers...] x 28]}")
        if content_type in IMAGE_TYPES:
            if batch:
                raise BadInput("/predict/batch takes JSON {\"inputs\": [{\"pixels\": ...}, ...]} or multipart files")
            return (await run_in_threadpool(_image_pixels, body, "upload"))[None]
        if content_type == "application/json":
            document = _json_document(body)
            if not isinstance(document, dict):
                raise BadInput("JSON body must be an object")
            if not batch:
                if "pixels" not in document:
                    raise BadInput("JSON body needs \"pixels\": 28 rows of 28 numbers 0-255")
                return pixels_from_json(document["pixels"])[None]
            inputs = document.get("inputs")
            if not isinstance(inputs, list) or not inputs:
                raise BadInput("JSON body needs \"inputs\": a non-empty list of {\"pixels\": ...}")
            if len(inputs) > MAX_BATCH:
                raise BadInput(f"{len(inputs)} inputs; at most {MAX_BATCH} per batch")
            return np.stack([pixels_from_json(item.get("pixels") if isinstance(item, dict) else None,
                                              f"inputs[{i}].pixels") for i, item in enumerate(inputs)])
        raise _unsupported(content_type)

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
        return (await run_in_threadpool(answer, pixels))[0]

    @app.post("/predict/batch")
    async def predict_batch(request: Request):
        """Up to 256 inputs: JSON {"inputs": [{"pixels": ...}, ...]} or multipart files."""
        pixels = await read_inputs(request, batch=True)
        return {"predictions": await run_in_threadpool(answer, pixels)}

    @app.get("/random-test-image")
    def random_test_image():
        with test_set_lock:
            if not test_set:
                try:
                    dataset = load_dataset(loaded.description["dataset"], data_dir, allow_download=False)
                except BadInput as problem:
                    return error(404, str(problem))
                test_set.update(images=dataset.test_images, labels=dataset.test_labels)
        index = int(np.random.default_rng().integers(len(test_set["labels"])))
        return {"index": index, "pixels": test_set["images"][index].tolist(),
                "true_label": names[int(test_set["labels"][index])]}

    return app


class _StatusError(BadInput):
    """A BadInput with its own HTTP status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _too_large(message: str) -> BadInput:
    return _StatusError(message + f" ({MAX_UPLOAD_BYTES // (1024 * 1024)} MB per image)", 413)


def _unsupported(content_type: str) -> BadInput:
    return _StatusError(f"content type {content_type or '(none)'!r} is not supported; send image/png, "
                        "image/jpeg, multipart/form-data or application/json", 415)


def _json_document(body: bytes):
    """The parsed JSON body. ValueError covers a syntax error, bytes that are not UTF-8
    and an integer over Python's 4300-digit conversion limit; RecursionError, nesting
    deeper than Python's recursion limit."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadInput("body is not valid JSON") from None


def _image_pixels(data: bytes, source: str) -> np.ndarray:
    if len(data) > MAX_UPLOAD_BYTES:
        raise _too_large(f"{source} is {len(data):,} bytes")
    if not data:
        raise BadInput(f"{source} is empty")
    try:
        return image_bytes_to_pixels(data, source)
    except BadInput as problem:
        status = 413 if f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}" in str(problem) else 400
        raise _StatusError(str(problem), status) from None
