"""The C runtime as an Arduino library (the Arduino library specification, revision 2.2), and the
.zip that the Arduino IDE's "Sketch > Include Library > Add .ZIP Library..." takes.

    <folder>/library.properties
    <folder>/keywords.txt
    <folder>/README.md
    <folder>/src/denselab_model.h, denselab_model.c   (the C runtime's files, unchanged)
    <folder>/examples/Classify/Classify.ino

The library is made in a temporary folder and moved into place only when complete.
"""

import io
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from denselab import __version__
from denselab.deploy.arduino.sketch import EXAMPLE_NAME, classify_sketch
from denselab.deploy.boards import board
from denselab.deploy.c_runtime.footprint import c_flash_bytes
from denselab.deploy.c_runtime.source import HEADER, SOURCE
from denselab.errors import BadInput
from denselab.outputs import prepare_output_dir, write_bytes_atomically

DEFAULT_IMAGES = 3
IMAGE_BYTES = 784
# denselab has no public home; url= names the data set the model classifies.
URL = "https://github.com/zalandoresearch/fashion-mnist"
# How far into the test set the sketch looks for images small enough (coded) when flash is short.
SCAN_IMAGES = 1_000
_ZERO_RUN = re.compile(rb"\x00{1,255}")
API = {"KEYWORD2": ("denselab_predict", "denselab_quantize", "denselab_classify", "denselab_class_names"),
       "LITERAL1": ("DENSELAB_INPUT_SIZE", "DENSELAB_CLASSES", "DENSELAB_INPUT_SCALE", "DENSELAB_INPUT_ZERO_POINT",
                    "DENSELAB_OUTPUT_SCALE", "DENSELAB_OUTPUT_ZERO_POINT")}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the same model makes the same .zip


def library_name(model_name: str) -> str:
    """library.properties' name=: letters, digits, spaces, underscores, dots and dashes, not "Arduino..."."""
    clean = re.sub(r"[^A-Za-z0-9 _.-]+", "_", model_name).strip(" _.-") or "model"
    return f"denselab {clean}"


def encode_image(pixels: np.ndarray) -> bytes:
    """One image's 784 uint8 pixels, row by row, as the Classify sketch embeds them: zero-run-length
    coded, since Fashion-MNIST's backgrounds are zero (133-763 bytes, median 502, over the first
    1,000 test images). A byte 1-255 is one pixel; a 0 is followed by a count, 1-255, of zero
    pixels. A run never goes past the image's last pixel, so the images can be laid end to end."""
    # Greedy: a run of more than 255 zeros is cut into runs of 255 and the rest.
    return _ZERO_RUN.sub(lambda run: bytes((0, len(run.group()))), np.asarray(pixels, np.uint8).tobytes())


def image_rom_bytes(pixels: np.ndarray) -> int:
    """One embedded image's flash in the sketch: its coded bytes and its label byte."""
    return len(encode_image(pixels)) + 1


def uno_flash_bytes(hidden_units: tuple[int, ...], class_names, pixels: np.ndarray, inputs: int = IMAGE_BYTES) -> int:
    """The Classify sketch's flash on the Uno with `pixels` ((n, 784) uint8) embedded, an upper bound:
    the C runtime's AVR bound (denselab.deploy.c_runtime.footprint, the sketch but its images) and
    the images as coded."""
    images = np.asarray(pixels).reshape(-1, inputs)
    return c_flash_bytes(tuple(hidden_units), tuple(class_names), inputs, core="avr") + \
        sum(image_rom_bytes(row) for row in images)


def uno_images(hidden_units: tuple[int, ...], class_names, model_name: str, test_pixels: np.ndarray,
               wanted: int = DEFAULT_IMAGES) -> list[int]:
    """The test-set indices of the images the Classify sketch embeds, at most `wanted`: the first of the
    first SCAN_IMAGES test images, in order, that still fit the Uno's flash beside the model (the
    first `wanted` when there is room for them).

    BadInput, naming the figures, when not even the smallest of them fits.
    """
    limit, runtime = board("uno").flash_bytes, c_flash_bytes(tuple(hidden_units), tuple(class_names), core="avr")
    sizes = [image_rom_bytes(row) for row in np.asarray(test_pixels).reshape(-1, IMAGE_BYTES)[:SCAN_IMAGES]]
    chosen, used = [], runtime
    for index, size in enumerate(sizes):
        if len(chosen) == wanted:
            break
        if used + size <= limit:
            chosen.append(index)
            used += size
    if chosen:
        return chosen
    raise BadInput(f"{model_name} is too big for the Arduino Uno: its Classify sketch needs about "
                   f"{runtime + min(sizes, default=0):,} bytes of flash with one test image ({runtime:,} without), "
                   f"the Uno has {limit:,}; leave out --arduino")


def write_arduino_library(sources: dict[str, str], model_name: str, class_names, hidden_units: tuple[int, ...],
                          test_pixels: np.ndarray, test_labels, boards_note: str, out_dir: Path,
                          check: Callable[[Path, list[int]], dict] | None = None) -> dict:
    """Write the library folder and its .zip into `out_dir`; their paths, its name and the images embedded.

    Args:
        sources: the C runtime's files (source.c_sources); the header and the runtime are copied.
        test_pixels, test_labels: (n, 784) uint8 test images in the test set's order and their
            classes; those uno_images picks (the first ones that fit the Uno beside the model) are
            embedded.
        boards_note: which boards the model fits, for the README.
        check: called with the finished library folder (still in its temporary place) and the
            test-set indices of the images embedded; what it returns (the Uno's figures) goes into
            the README and the result.
    """
    indices = uno_images(hidden_units, class_names, model_name, test_pixels)
    name = library_name(model_name)
    folder_name = name.replace(" ", "_")
    out_dir = prepare_output_dir(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".denselab-arduino-", dir=out_dir))
    try:
        folder = staging / folder_name
        _write_files(folder, name, model_name, sources, class_names, indices,
                     np.asarray(test_pixels)[indices], np.asarray(test_labels)[indices])
        uno = check(folder, indices) if check is not None else None
        (folder / "README.md").write_text(_readme(name, model_name, sources, boards_note, indices, uno))
        archive = _zip(folder)
        target, zip_path = out_dir / folder_name, out_dir / f"{folder_name}.zip"
        if target.exists():
            os.replace(target, staging / "previous")  # the old library goes with the staging folder
        os.replace(folder, target)
        write_bytes_atomically(zip_path, archive)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"name": name, "library": str(target), "zip": str(zip_path), "images": len(indices), "indices": indices,
            "uno": uno}


def _write_files(folder: Path, name: str, model_name: str, sources: dict[str, str], class_names,
                 indices: list[int], pixels: np.ndarray, labels) -> None:
    example = folder / "examples" / EXAMPLE_NAME
    example.mkdir(parents=True)
    (folder / "src").mkdir()
    for file in (HEADER, SOURCE):
        (folder / "src" / file).write_text(sources[file])
    coded = [encode_image(row) for row in pixels]
    (example / f"{EXAMPLE_NAME}.ino").write_text(classify_sketch(model_name, coded, indices, labels, class_names))
    (folder / "library.properties").write_text(library_properties(name, model_name, len(class_names)))
    lines = [f"{word}\t{kind}" for kind, words in API.items() for word in words]
    (folder / "keywords.txt").write_text("# Syntax colouring for the Arduino IDE\n" + "\n".join(lines) + "\n")


def library_properties(name: str, model_name: str, classes: int) -> str:
    fields = {
        "name": name, "version": __version__, "author": "denselab", "maintainer": "denselab",
        "sentence": f"The dense int8 classifier {model_name}, exported by denselab, in plain C99.",
        "paragraph": f"Classifies a 28x28 grayscale image into {classes} classes with outputs equal to "
                     "TensorFlow Lite Micro's, without its interpreter; the tables stay in flash on AVR.",
        "category": "Data Processing", "url": URL, "architectures": "*", "includes": HEADER,
    }
    return "".join(f"{key}={value}\n" for key, value in fields.items())


def _zip(folder: Path) -> bytes:
    """The library as a .zip whose top level is its folder, as the IDE expects."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            relative = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            if path.is_dir():
                archive.writestr(zipfile.ZipInfo(relative + "/", _ZIP_TIME), "")
            else:
                info = zipfile.ZipInfo(relative, _ZIP_TIME)
                info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
                archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _readme(name: str, model_name: str, sources: dict[str, str], boards_note: str, indices: list[int],
            uno: dict | None) -> str:
    sizes = re.findall(r"/\* (\d+) outputs x (\d+) inputs \*/", sources[SOURCE])
    shape = " -> ".join([sizes[0][1], *(outputs for outputs, _ in sizes)]) if sizes else "dense"
    figures = "Not built here (exported with --no-check)." if uno is None else (
        f"Built with arduino-builder for arduino:avr:uno and run under simavr: the sketch takes "
        f"{uno['flash_bytes']:,} of {uno['flash_limit']:,} bytes of flash ({len(indices)} test images, coded, "
        f"{uno['flash_bytes'] - uno['runtime_flash_bytes']:,} of them) and {uno['ram_bytes']:,} of "
        f"{uno['ram_limit']:,} bytes of RAM (global variables {uno['variables_bytes']:,}, the 784-byte image "
        f"buffer among them, and the deepest stack, {uno['stack_bytes']:,}), and "
        f"one inference {uno['cycles_per_inference']:,} cycles ({uno['latency_ms']:g} ms at 16 MHz); "
        f"its outputs are {'identical' if uno['identical_to_tflm'] else 'NOT identical'} to TensorFlow Lite "
        f"Micro's interpreter's.")
    return _README.format(name=name, model=model_name, shape=shape, boards=boards_note, images=len(indices),
                          indices=", ".join(map(str, indices)),
                          example=EXAMPLE_NAME, header=HEADER, figures=figures)


_README = """# {name}

The dense int8 classifier `{model}` ({shape}: Flatten, dense layers, softmax), exported by
denselab as a C99 runtime: no interpreter, no dynamic memory, integer arithmetic only. Its
outputs equal TensorFlow Lite Micro's for the same int8 input. On AVR the tables stay in flash.

Boards: {boards}

## Adding it

In the Arduino IDE: Sketch > Include Library > Add .ZIP Library..., and choose this library's
.zip. Then File > Examples > {name} > {example} opens the example, which classifies {images}
embedded Fashion-MNIST test image(s) (the test set's images {indices}) and prints each one's
class, its true class, the int8 outputs and the time of one inference to the Serial Monitor
(115200 baud).

## The API (`{header}`)

- `void denselab_quantize(const uint8_t pixels[DENSELAB_INPUT_SIZE], int8_t input[DENSELAB_INPUT_SIZE])`:
  28x28 grayscale pixels, 0-255, light on dark, row by row, as the model's int8 input. `input`
  may be `pixels` itself, which saves 784 bytes of RAM.
- `void denselab_predict(const int8_t input[DENSELAB_INPUT_SIZE], int8_t output[DENSELAB_CLASSES])`:
  the int8 outputs; class c's probability is
  `(output[c] - DENSELAB_OUTPUT_ZERO_POINT) * DENSELAB_OUTPUT_SCALE`.
- `int denselab_classify(const uint8_t pixels[DENSELAB_INPUT_SIZE])`: the top class (it needs
  784 bytes of stack for the input).
- `denselab_class_names[c]`: class c's name.

## Arduino Uno

{figures}
"""
