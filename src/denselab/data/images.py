"""Image files (PNG, JPEG, ...) turned into the dataset's 28x28 uint8 form."""

import io
from pathlib import Path

import numpy as np

from denselab.data.dataset import IMAGE_SIDE
from denselab.errors import BadInput

# Larger images are refused before decoding: a few MB of PNG can hold gigabytes of pixels.
MAX_IMAGE_SIDE = 4096


def image_bytes_to_pixels(data: bytes, source: str) -> np.ndarray:
    """Decode a PNG/JPEG (or any image Pillow reads) into the dataset's 28x28 uint8 form.

    The image becomes grayscale, is inverted when its background is light (the dataset
    is light-on-dark), and is fitted into 28x28 keeping its aspect ratio, centred on a
    black background. A 28x28 light-on-dark image passes through unchanged.
    """
    from PIL import Image, UnidentifiedImageError

    too_large = f"{source} is larger than {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels"
    try:
        image = Image.open(io.BytesIO(data))
        if image.width > MAX_IMAGE_SIDE or image.height > MAX_IMAGE_SIDE:
            raise BadInput(f"{source} is {image.width}x{image.height} pixels; the limit is {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}")
        image.load()
    except BadInput:
        raise
    except Image.DecompressionBombError:
        raise BadInput(too_large) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = "not an image" if isinstance(error, UnidentifiedImageError) else f"a damaged image ({error})"
        raise BadInput(f"{source} is {reason}") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas count as paper: put the drawing on white before going gray.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:
        gray = 255 - gray
    return fit_to_square(gray)


def fit_to_square(gray: np.ndarray, side: int = IMAGE_SIDE) -> np.ndarray:
    """Resize a light-on-dark gray image so its longer side is `side`, centred on black."""
    from PIL import Image

    height, width = gray.shape
    if (height, width) == (side, side):
        return gray.copy()
    scale = side / max(height, width)
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    # Shrinking averages each output pixel's area (no ringing around the strong edges
    # of drawings); enlarging a tiny image interpolates smoothly.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    resized = Image.fromarray(gray).resize((new_width, new_height), resample)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - new_height) // 2, (side - new_width) // 2
    square[top: top + new_height, left: left + new_width] = np.asarray(resized)
    return square


def load_image_file(path: Path) -> np.ndarray:
    """Read an image file into the dataset's 28x28 uint8 form (see `image_bytes_to_pixels`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read image {path}: {error.strerror}") from None
    return image_bytes_to_pixels(data, str(path))
