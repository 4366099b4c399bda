"""`denselab export --runtime c`: the C runtime of an int8 model, written and checked three ways.

1. Host: built with the system C compiler (-std=c99 -Wall -Wextra -Werror), every test
   image compared with TensorFlow Lite Micro's interpreter.
2. Each Arm core of boards.toml (Cortex-M0+, M4, M7): built with arm-none-eabi-gcc and that
   core's flags; flash and RAM read from the linker map.
3. Each core's emulator: the same firmware under qemu-system-arm on a machine of that core
   (denselab.deploy.qemu), its outputs compared with the host's, instructions per inference
   counted. Each board's fit and latency use its own core's figures.

Sources are generated and checked in a temporary folder and only then written to the
output folder, so a model that is refused, or a check that breaks, leaves no files.
"""

import tempfile
from pathlib import Path

import numpy as np

from denselab.deploy import toolchain
from denselab.deploy.boards import boards_that_fit_c, io_bytes, load_boards
from denselab.deploy.c_runtime.cortex_m import QEMU_IMAGES, check_embedded_images, check_on_core
from denselab.deploy.c_runtime.footprint import c_flash_bytes
from denselab.deploy.c_runtime.host_check import check_on_host
from denselab.deploy.c_runtime.quantized import read_quantized_classifier
from denselab.deploy.c_runtime.source import c_sources
from denselab.deploy.cores import core_info
from denselab.deploy.toolchain import ARM_CORES, CORTEX_M4
from denselab.errors import BadInput
from denselab.outputs import prepare_output_dir, write_bytes_atomically

CHECK_PROGRAMS = ("cc", "arm-none-eabi-gcc", "qemu-system-arm")


def export_c_runtime(model_bytes: bytes, source: str, dataset, normalization: str, out_dir: Path, model_name: str,
                     check: bool = True, host_images: int | None = None, qemu_images: int | None = None) -> dict:
    """Write denselab_model.h/.c and main.c for the int8 model in `model_bytes`, checked unless `check` is False.

    Args:
        source: the model's file, named in errors.
        host_images: test images compared with TFLM on the host (all of them when None).
        qemu_images: test images embedded in the firmware and run under QEMU (QEMU_IMAGES when None).

    Returns:
        What `denselab export --json` prints under "c".
    """
    classifier = read_quantized_classifier(model_bytes, source)
    if classifier.input_size != dataset.test_images[0].size or classifier.classes != len(dataset.class_names):
        raise BadInput(f"{source} takes {classifier.input_size} inputs and gives {classifier.classes} classes; "
                       f"{dataset.name} has {dataset.test_images[0].size} pixels and {len(dataset.class_names)} classes")
    check_c_options(classifier.hidden_units, dataset.class_names, check, host_images, qemu_images)
    if check:
        for program in CHECK_PROGRAMS:
            toolchain.find(program)
    sources = c_sources(classifier, dataset.class_names, normalization, model_name)
    report = {"files": [], "checked": check, "hidden_units": list(classifier.hidden_units),
              "class_names": list(dataset.class_names)}
    with tempfile.TemporaryDirectory(prefix="denselab-c-runtime-") as staging:
        staging = Path(staging)
        for name, text in sources.items():
            (staging / name).write_text(text)
        if check:
            report.update(_checks(staging, model_bytes, classifier, dataset, normalization, host_images,
                                  QEMU_IMAGES if qemu_images is None else qemu_images))
        out_dir = prepare_output_dir(out_dir)
        report["files"] = [str(write_bytes_atomically(out_dir / name, text.encode())) for name, text in sources.items()]
    return report


def check_image_counts(host_images: int | None, qemu_images: int | None) -> None:
    """BadInput when --host-images or --qemu-images is given and below 1."""
    for option, count in (("--host-images", host_images), ("--qemu-images", qemu_images)):
        if count is not None and count < 1:
            raise BadInput(f"{option} must be at least 1, got {count}")


def check_c_options(hidden_units: tuple[int, ...], class_names: tuple[str, ...], check: bool = True,
                    host_images: int | None = None, qemu_images: int | None = None) -> None:
    """The options of `export_c_runtime` for a model of these layers, refused before anything is built or written.

    The QEMU firmware embeds its test images in the emulated board's flash beside the model,
    whose C runtime takes at most c_flash_bytes (denselab.deploy.c_runtime.footprint).
    """
    check_image_counts(host_images, qemu_images)
    if check:
        check_embedded_images(QEMU_IMAGES if qemu_images is None else qemu_images,
                              c_flash_bytes(tuple(hidden_units), tuple(class_names)))


def _checks(sources: Path, model_bytes: bytes, classifier, dataset, normalization: str, host_images: int | None,
            qemu_images: int) -> dict:
    count = len(dataset.test_images) if host_images is None else min(host_images, len(dataset.test_images))
    pixels = dataset.test_images[:count].reshape(count, -1)
    host = check_on_host(sources, model_bytes, classifier, pixels, dataset.test_labels[:count], normalization)
    on_device = min(qemu_images, count)
    cores = {name: _core_check(sources, pixels[:on_device], host.outputs[:on_device], core)
             for name, core in ARM_CORES.items()}
    m4 = cores[CORTEX_M4.name]
    return {
        "host_images": host.images,
        "host_identical_to_tflm": host.identical,
        "host_differing_images": host.differing_images,
        "differing_images": host.differing,  # every index; the first ten with the layer where they part
        "first_differences": host.first_differences,
        "top1_agreement": host.top1_agreement,
        "host_accuracy": host.accuracy,
        # The Cortex-M4's figures (the Nano 33 BLE's core) at the top, as before; every core's in "cores".
        **{key: m4[key] for key in ("flash_bytes", "ram_bytes", "flash", "ram", "instructions_per_inference",
                                    "instructions_range", "instruction_resolution")},
        "qemu_images": on_device,
        "qemu_identical": all(core["identical"] for core in cores.values()),
        "qemu_classify_agrees": all(core["classify_agrees"] for core in cores.values()),
        "cores": cores,
        **board_figures(classifier.hidden_units, dataset, cores),
    }


def _core_check(sources: Path, pixels: np.ndarray, expected: np.ndarray, core) -> dict:
    footprint, emulated = check_on_core(sources, pixels, core)
    return {
        "machine": emulated.machine.name,
        "flash_bytes": footprint.flash_bytes,
        "ram_bytes": footprint.ram_bytes,
        "flash": {"text": footprint.text, "rodata": footprint.rodata, "data": footprint.data},
        "ram": {"data": footprint.data, "bss": footprint.bss, "stack": footprint.stack},
        "identical": bool(np.array_equal(emulated.outputs, expected)),
        "classify_agrees": emulated.first_class == int(expected[0].argmax()),
        "instructions_per_inference": int(np.mean(emulated.instructions)),
        "instructions_range": [int(emulated.instructions.min()), int(emulated.instructions.max())],
        "instruction_resolution": emulated.machine.instructions_per_tick,
    }


def add_uno(c: dict, uno: dict | None, dataset) -> None:
    """Put the Uno's run (export --arduino: its sketch built and run under simavr) among the cores of
    the C runtime's report `c`, and judge every board again with it."""
    if not c.get("checked") or not uno:
        return
    c["cores"]["avr"] = {"machine": "simavr atmega328p", "flash_bytes": uno["runtime_flash_bytes"],
                         "ram_bytes": uno["runtime_ram_bytes"], "identical": uno["identical_to_tflm"],
                         "classify_agrees": uno["classes_agree"], "cycles_per_inference": uno["cycles_per_inference"],
                         "images": uno["images"]}
    c.update(board_figures(tuple(c["hidden_units"]), dataset, c["cores"]))


def board_figures(hidden_units: tuple[int, ...], dataset, cores: dict) -> dict:
    """Each board's latency and fit on its own core's measured figures (`cores`, by core name)."""
    boards, latency = load_boards(), {}
    for key, board in boards.items():
        figures = cores.get(board.measured_core)
        if figures is None or not core_info(board.core).checked:
            continue  # no figures of its own core here (the ESP32's Xtensa; the Uno unless it was built)
        if "cycles_per_inference" in figures:  # the AVR: cycles measured under simavr
            latency[key] = round(1000 * figures["cycles_per_inference"] / board.clock_hz, 3)
        else:
            # An estimate: one instruction per cycle at the board's clock. Multiplies and loads
            # take 1-2 cycles and flash wait states add more, differently on each core.
            latency[key] = round(1000 * figures["instructions_per_inference"] / board.clock_hz, 3)
    measured = {core: (figures["flash_bytes"], figures["ram_bytes"]) for core, figures in cores.items()}
    return {"latency_estimate_ms": latency,
            "boards_that_fit": boards_that_fit_c(tuple(hidden_units), dataset.class_names, io_bytes(dataset),
                                                 measured)}
