"""The images a prediction request carries, as uint8 pixels, or a BadInput saying what is wrong.

A request sends a PNG or JPEG body, multipart file(s), or JSON pixel arrays. Every refusal
is a BadInput; the ones that are not a plain 400 carry their HTTP status (413 for too
large, 415 for a content type the service does not read).
"""

import json

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from denselab.data.dataset import IMAGE_SIDE
from denselab.data.images import MAX_IMAGE_SIDE, image_bytes_to_pixels
from denselab.errors import BadInput

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_BATCH = 256
IMAGE_TYPES = ("image/png", "image/jpeg")


async def read_inputs(request: Request, batch: bool) -> np.ndarray:
    """Pixels (n, 28, 28) from the request: image bytes, multipart file(s), or JSON pixel arrays.

    Decoding images happens in Starlette's thread pool, so that a large image does not
    hold up the event loop.
    """
    most = MAX_BATCH if batch else 1
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_UPLOAD_BYTES * most:
        raise _too_large(f"request body of {int(length):,} bytes is over the limit")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _multipart_pixels(request, most)
    body = await request.body()
    if not body:
        raise BadInput("empty request body; send a PNG or JPEG, or JSON {\"pixels\": [[...28 numbers...] x 28]}")
    if content_type in IMAGE_TYPES:
        if batch:
            raise BadInput("/predict/batch takes JSON {\"inputs\": [{\"pixels\": ...}, ...]} or multipart files")
        return (await run_in_threadpool(_image_pixels, body, "upload"))[None]
    if content_type == "application/json":
        return _json_pixels(_json_document(body), batch)
    raise _unsupported(content_type)


async def _multipart_pixels(request: Request, most: int) -> np.ndarray:
    form = await request.form()
    # multi_items: several files under one field name (curl -F file=@a -F file=@b) are several images.
    files = [value for _, value in form.multi_items() if hasattr(value, "read")]
    if not files:
        raise BadInput("multipart body has no file field")
    if len(files) > most:
        raise BadInput(f"at most {most} files per request")
    uploads = [(await file.read(), file.filename or "upload") for file in files]
    return await run_in_threadpool(lambda: np.stack([_image_pixels(data, name) for data, name in uploads]))


def _json_pixels(document, batch: bool) -> np.ndarray:
    """Pixels from a JSON body: {"pixels": ...} for one image, {"inputs": [{"pixels": ...}, ...]} for a batch."""
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
