"""`denselab export`: a trained model as .tflite files, checked under TFLM, as C sources, and
with denselab's own C runtime; and the target board's verdict."""

from pathlib import Path

from denselab.deploy.boards import boards_that_fit, io_bytes, target_verdict
from denselab.deploy.c_array import c_array_sources, main_program, write_c_sources
from denselab.deploy.c_runtime.export import check_c_options, export_c_runtime
from denselab.deploy.tflite import CALIBRATION_IMAGES, export_model, op_names
from denselab.deploy.tflm import TFLM_IMAGES, check_under_tflm
from denselab.errors import BadInput
from denselab.model.spec import spec_of


def export_for_microcontroller(
    trained, dataset, quantizations: list[str], out_dir: Path, calibration: int = CALIBRATION_IMAGES,
    c_array: bool = False, target: str | None = None, tflm_images: int = TFLM_IMAGES,
    runtime: str = "tflm", c_options: dict | None = None,
) -> dict:
    """Export `trained` (denselab.model.run_dir.TrainedModel) in each quantization and, for int8, check it under TFLM.

    With `runtime="c"` the int8 model also becomes the C runtime (denselab.deploy.c_runtime.export,
    called with `c_options`), and the target's verdict uses the C runtime's measured flash
    and RAM instead of TFLM's estimate.

    Returns:
        What `denselab export --json` prints: the exports, the TFLM check, MACs, the C
        runtime, and the target board's verdict (the last three only where an int8 export exists).
    """
    model, normalization = trained.model, trained.normalization
    if runtime == "c":  # refused before any file is written
        check_c_options(spec_of(model).hidden_units, dataset.class_names, **(c_options or {}))
    exports = export_model(model, quantizations, dataset, out_dir, normalization, calibration)
    report = {
        "model": model.name, "keras_test_accuracy": exports[0].test_accuracy + exports[0].accuracy_drop,
        "exports": [result.as_dict() for result in exports], "tflm": None, "macs": spec_of(model).macs(),
        "target": None, "boards_that_fit": [], "c_sources": [], "c": None,
    }
    int8 = next((result for result in exports if result.quantize == "int8"), None)
    if int8 is None:
        if target or c_array or runtime == "c":
            raise BadInput("--target, --c-array and --runtime c need the int8 export (--quantize int8 or --all)")
        return report
    model_bytes = int8.path.read_bytes()
    count = min(tflm_images, len(dataset.test_labels))
    check = check_under_tflm(model_bytes, dataset.test_images[:count], dataset.test_labels[:count], normalization)
    report["tflm"] = check.as_dict()
    needed_io = io_bytes(dataset)
    report["boards_that_fit"] = boards_that_fit(len(model_bytes), check.arena_bytes, needed_io)
    if runtime == "c":
        report["c"] = export_c_runtime(model_bytes, str(int8.path), dataset, normalization, out_dir, model.name,
                                       **(c_options or {}))
    if target:
        report["target"] = target_verdict(target, report, len(model_bytes), check.arena_bytes, needed_io)
    if c_array:
        sources = c_array_sources(model_bytes, model.name)
        sources["main.cc"] = main_program(
            model.name, op_names(model_bytes), check.arena_bytes,
            dataset.test_images[0], dataset.class_names[int(dataset.test_labels[0])], dataset.class_names, normalization,
        )
        report["c_sources"] = [str(path) for path in write_c_sources(out_dir, sources)]
    return report
