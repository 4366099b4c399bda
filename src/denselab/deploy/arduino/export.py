"""`denselab export --runtime c --arduino`: the C runtime as an Arduino library in OUT/arduino/,
with its example built for the Uno and run under simavr against TFLM's interpreter (unless
--no-check)."""

from pathlib import Path

import numpy as np

from denselab.deploy.arduino.library import IMAGE_BYTES, image_rom_bytes, uno_images, write_arduino_library
from denselab.deploy.arduino.tools import check_arduino_tools
from denselab.deploy.arduino.uno import check_on_uno
from denselab.deploy.boards import board, load_boards
from denselab.deploy.c_runtime.quantized import read_quantized_classifier
from denselab.deploy.c_runtime.source import c_sources
from denselab.deploy.tflm_firmware import interpreter_outputs

ARDUINO_FOLDER = "arduino"


def check_arduino_options(hidden_units: tuple[int, ...], class_names, model_name: str, check: bool,
                          test_images: np.ndarray | None = None) -> None:
    """Refused before anything is written: the model too big for the Uno beside one of `test_images`
    (the data set's, in order), or a tool the check needs missing.

    Without `test_images`, an all-zero image stands for them: the smallest any image codes to, so
    only a model that cannot fit with any image is refused here.
    """
    pixels = np.zeros((1, IMAGE_BYTES), np.uint8) if test_images is None else test_images
    uno_images(tuple(hidden_units), class_names, model_name, pixels)
    if check:
        check_arduino_tools()


def export_arduino_library(model_bytes: bytes, source: str, dataset, normalization: str, out_dir: Path,
                           model_name: str, check: bool, c_report: dict) -> dict:
    """Write OUT/arduino/<library>/ and its .zip; checked on the Uno unless `check` is False.

    Args:
        source: the model's file, named in errors.
        c_report: export_c_runtime's report, whose boards_that_fit the library's README names.

    Returns:
        What `denselab export --json` prints under "arduino".
    """
    classifier = read_quantized_classifier(model_bytes, source)
    sources = c_sources(classifier, dataset.class_names, normalization, model_name)
    images, labels = dataset.test_images, dataset.test_labels

    def on_uno(library: Path, indices: list[int]) -> dict:
        flash, variables, run = check_on_uno(library, len(indices))
        expected = interpreter_outputs(model_bytes, images[indices], normalization)
        cycles, uno, ram = int(np.mean(run.cycles)), board("uno"), variables + run.stack_bytes
        return {
            "flash_bytes": flash, "ram_bytes": ram, "variables_bytes": variables, "stack_bytes": run.stack_bytes,
            "flash_limit": uno.flash_bytes, "ram_limit": uno.ram_bytes,
            "fits": flash <= uno.flash_bytes and ram <= uno.ram_bytes,
            # What the C runtime takes on the Uno, as every fit counts it: the sketch but its test
            # images, and its RAM but the image buffer, which is the application's int8 input.
            "runtime_flash_bytes": flash - sum(image_rom_bytes(image) for image in images[indices]),
            "runtime_ram_bytes": ram - IMAGE_BYTES,
            "cycles_per_inference": cycles, "cycles_range": [int(run.cycles.min()), int(run.cycles.max())],
            "latency_ms": round(1000 * cycles / uno.clock_hz, 3),
            "identical_to_tflm": bool(np.array_equal(run.outputs, expected)),
            "classes_agree": run.classes == [int(row.argmax()) for row in run.outputs]
            and run.labels == [int(label) for label in labels[indices]],
            "images": len(indices),
        }

    note = _boards_note(c_report["boards_that_fit"] if c_report.get("checked") else None)
    result = write_arduino_library(sources, model_name, dataset.class_names, classifier.hidden_units,
                                   images, labels, note, out_dir / ARDUINO_FOLDER,
                                   on_uno if check else None)
    return {"library": result["library"], "zip": result["zip"], "name": result["name"],
            "images": result["images"], "indices": result["indices"], "checked": check, "uno": result["uno"]}


def _boards_note(keys: list[str] | None) -> str:
    boards = load_boards()
    names = [boards[key].name if key in boards else key for key in keys or []]
    listed = "not checked (exported with --no-check)" if keys is None else ", ".join(names) or "none listed"
    return f"{listed}. The Arduino Uno (ATmega328P): see below."
