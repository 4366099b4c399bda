"""`denselab export`: a trained model as .tflite files, checked under TFLM, as C sources, and
with denselab's own C runtime; and the target board's verdict."""

from dataclasses import dataclass
from pathlib import Path

from denselab.data.dataset import DEFAULT_DATASET, check_normalization
from denselab.data.sources import load_dataset
from denselab.deploy import toolchain
from denselab.deploy.arduino.export import check_arduino_options, export_arduino_library
from denselab.deploy.boards import board, boards_that_fit, io_bytes, target_verdict
from denselab.deploy.c_array import tflm_program, write_c_sources
from denselab.deploy.c_runtime.export import (
    CHECK_PROGRAMS,
    add_uno,
    check_c_options,
    check_image_counts,
    export_c_runtime,
)
from denselab.deploy.c_runtime.quantized import read_quantized_classifier
from denselab.deploy.tflite import CALIBRATION_IMAGES, QUANTIZATIONS, check_quantize, export_model, op_names
from denselab.deploy.tflm import TFLM_IMAGES, arena_for_shapes, check_under_tflm
from denselab.deploy.tflm_build import checked_ops
from denselab.deploy.tflm_runtime import check_trees, op_set, tflm_runtimes
from denselab.deploy.toolchain import CORTEX_M4
from denselab.errors import BadInput
from denselab.model.spec import check_model_file, spec_of

QUANTIZE_ALL = "all"  # `quantize` of ExportOptions: every quantization, compared
RUNTIMES = ("tflm", "c")
MAX_C_ARRAY_IMAGES = 1000  # 784 bytes of flash each: 1000 fill most of a small board's flash


@dataclass(frozen=True)
class ExportOptions:
    """What `export` makes; the defaults are `denselab export`'s.

    The int8 model is always checked under TensorFlow Lite Micro. `runtime="c"` also writes
    denselab's C runtime, checked on the host against TFLM and on an emulated Cortex-M4
    unless `check` is False.
    """

    quantize: str = "int8"  # none, float16, dynamic, int8, or "all" to compare every one
    calibration: int = CALIBRATION_IMAGES  # training images that calibrate the int8 ranges
    c_array: bool = False  # also model_data.h/.cc and a TFLM main.cc
    c_array_images: int = 1  # test images main.cc classifies (the TFLM firmware check embeds 100)
    target: str | None = None  # a board of boards.toml to check the int8 model against
    tflm_images: int = TFLM_IMAGES  # test images run under TensorFlow Lite Micro
    runtime: str = "tflm"  # or "c": denselab's dependency-free C runtime as well
    check: bool = True  # check the C runtime (host build against TFLM, Cortex-M4, QEMU)
    host_images: int | None = None  # test images the host check compares [all]
    qemu_images: int | None = None  # test images run on the emulated Cortex-M4 [QEMU_IMAGES]
    normalization: str = "scale"  # for an int8 .tflite made elsewhere: its inputs' normalization
    arduino: bool = False  # also the C runtime as an Arduino library, checked on the Uno under simavr

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise BadInput(f"unknown runtime {self.runtime!r}; choose tflm or c")
        check_image_counts(self.host_images, self.qemu_images)
        for name in self.quantizations:
            check_quantize(name)
        check_normalization(self.normalization)
        if (self.target or self.c_array or self.runtime == "c") and "int8" not in self.quantizations:
            raise BadInput("--target, --c-array and --runtime c need the int8 export (--quantize int8 or --all)")
        if self.calibration < 1:
            raise BadInput(f"--calibration must be >= 1, got {self.calibration}")
        if not 1 <= self.c_array_images <= MAX_C_ARRAY_IMAGES:
            raise BadInput(f"--c-array-images must be from 1 to {MAX_C_ARRAY_IMAGES}, got {self.c_array_images}")
        if self.tflm_images < 1:
            raise BadInput(f"--tflm-images must be >= 1, got {self.tflm_images}")
        if self.target is not None:
            board(self.target)
        if self.arduino and self.runtime != "c":
            raise BadInput("--arduino makes an Arduino library of the C runtime: give --runtime c with it")

    @property
    def quantizations(self) -> list[str]:
        return list(QUANTIZATIONS) if self.quantize == QUANTIZE_ALL else [self.quantize]

    @property
    def c_options(self) -> dict:
        """The keyword arguments of export_c_runtime."""
        return {"check": self.check, "host_images": self.host_images, "qemu_images": self.qemu_images}


def _check_tools(options: ExportOptions) -> None:
    """What this machine must have for `options`, asked before anything is written: the C
    runtime's compilers and QEMU, and TFLM's trees where DENSELAB_TFLM_TREES names them."""
    if options.runtime == "c" and options.check:
        for program in CHECK_PROGRAMS:
            toolchain.find(program)
    check_trees()


def export_for_microcontroller(trained, dataset, options: ExportOptions, out_dir: Path) -> dict:
    """Export `trained` (a TrainingRun or TrainedModel) in each quantization and, for int8, check it under TFLM.

    With `runtime="c"` the int8 model also becomes the C runtime (denselab.deploy.c_runtime.export),
    and the target's verdict uses the C runtime's measured flash and RAM instead of TFLM's.

    Returns:
        What `denselab export --json` prints: the exports, the TFLM check, TFLM's own flash and
        RAM (tflm_runtime), MACs, the C runtime, and the target board's verdict (all but the
        exports only where an int8 export exists).
    """
    model, normalization = trained.model, trained.normalization
    _check_tools(options)  # refused before any file is written
    if options.runtime == "c":
        check_c_options(spec_of(model).hidden_units, dataset.class_names, **options.c_options)
    if options.arduino:
        check_arduino_options(spec_of(model).hidden_units, dataset.class_names, model.name, options.check,
                              dataset.test_images)

    def accept(quantize: str, model_bytes: bytes) -> None:
        # main.cc registers every op of the int8 model: each must be one TFLM's firmware can build.
        if quantize == "int8" and options.c_array:
            checked_ops(op_names(model_bytes))

    exports = export_model(model, options.quantizations, dataset, out_dir, normalization, options.calibration, accept)
    report = {
        "model": model.name, "keras_test_accuracy": exports[0].test_accuracy + exports[0].accuracy_drop,
        "exports": [result.as_dict() for result in exports], "tflm": None, "macs": spec_of(model).macs(),
        "tflm_runtime": None, "target": None, "boards_that_fit": [], "c_sources": [], "c": None,
    }
    int8 = next((result for result in exports if result.quantize == "int8"), None)
    if int8 is None:  # ExportOptions refuses a target, C sources or the C runtime without it
        return report
    model_bytes = int8.path.read_bytes()
    count = min(options.tflm_images, len(dataset.test_labels))
    check = check_under_tflm(model_bytes, dataset.test_images[:count], dataset.test_labels[:count], normalization)
    report["tflm"] = check.as_dict()
    needed_io, runtimes = io_bytes(dataset), tflm_runtimes(op_set(model_bytes), model_bytes)
    core = board(options.target).measured_core if options.target else CORTEX_M4.name
    report["tflm_runtime"] = runtimes.get(core, runtimes[CORTEX_M4.name]).as_dict()
    report["tflm_runtimes"] = {core: runtime.as_dict() for core, runtime in runtimes.items()}
    report["boards_that_fit"] = boards_that_fit(len(model_bytes), check.arena_bytes, needed_io, runtimes)
    if options.runtime == "c":
        report["c"] = export_c_runtime(model_bytes, str(int8.path), dataset, normalization, out_dir, model.name,
                                       **options.c_options)
    if options.arduino:
        report["arduino"] = export_arduino_library(model_bytes, str(int8.path), dataset, normalization, out_dir,
                                                   model.name, options.check, report["c"])
        add_uno(report["c"], report["arduino"]["uno"], dataset)
    if options.target:
        report["target"] = target_verdict(options.target, report, len(model_bytes), check.arena_bytes, needed_io,
                                          runtimes)
    if options.c_array:
        count = options.c_array_images
        sources = tflm_program(model_bytes, model.name, check.arena_bytes, dataset.test_images[:count],
                               dataset.test_labels[:count].tolist(), dataset.class_names, normalization)
        report["c_sources"] = [str(path) for path in write_c_sources(out_dir, sources)]
    return report


def export_tflite_file(model: Path, options: ExportOptions, out_dir: Path, data_dir: Path | None) -> dict:
    """An int8 .tflite made elsewhere: only the C runtime can be made from it."""
    if options.runtime != "c":
        raise BadInput(f"{model} is a .tflite file: give --runtime c to make the C runtime from it, "
                       "or export a .keras model")
    try:
        model_bytes = check_model_file(model).read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read {model}: {error.strerror}") from None
    dataset = load_dataset(DEFAULT_DATASET, data_dir)
    _check_tools(options)
    if options.arduino:
        check_arduino_options(read_quantized_classifier(model_bytes, str(model)).hidden_units, dataset.class_names,
                              model.stem, options.check, dataset.test_images)
    report = {"model": model.stem, "exports": [], "tflm": None, "tflm_runtime": None, "macs": None, "target": None,
              "boards_that_fit": [], "c_sources": [],
              "c": export_c_runtime(model_bytes, str(model), dataset, options.normalization, out_dir, model.stem,
                                    **options.c_options)}
    if options.arduino:
        report["arduino"] = export_arduino_library(model_bytes, str(model), dataset, options.normalization, out_dir,
                                                   model.stem, options.check, report["c"])
        add_uno(report["c"], report["arduino"]["uno"], dataset)
    if options.target:
        # Under TFLM where the C runtime was not checked: its arena, as the int8 export's is.
        runtimes = tflm_runtimes(op_set(model_bytes), model_bytes)
        report["target"] = target_verdict(options.target, report, len(model_bytes), arena_for_shapes(model_bytes),
                                          io_bytes(dataset), runtimes)
    return report
