"""`denselab export`: TensorFlow Lite files, C sources and the microcontroller check."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from denselab.cli.app import DataDirOption, JsonOption, app, console, print_json
from denselab.errors import BadInput


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="A .keras model file.")],
    quantize: Annotated[str, typer.Option(help="none, float16, dynamic or int8 (full-integer).")] = "int8",
    export_all: Annotated[bool, typer.Option("--all", help="Export every quantization and compare them.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output directory [MODEL's directory/export].")] = None,
    calibration: Annotated[int, typer.Option(help="Training images that calibrate int8 ranges.")] = 500,
    c_array: Annotated[bool, typer.Option("--c-array", help="Write model_data.h/.cc and a TFLM main.cc.")] = False,
    target: Annotated[Optional[str], typer.Option(help="Board to check the int8 model against (see boards.toml).")] = None,
    tflm_images: Annotated[int, typer.Option(help="Test images run under TensorFlow Lite Micro.")] = 1000,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
):
    """Convert a trained model to TensorFlow Lite, check it under TensorFlow Lite Micro, size it for a board."""
    from denselab.data import load_dataset
    from denselab.export import QUANTIZATIONS, check_quantize
    from denselab.firmware import export_for_microcontroller, load_boards
    from denselab.train import load_trained_model

    quantizations = list(QUANTIZATIONS) if export_all else [quantize]
    for name in quantizations:
        check_quantize(name)
    if calibration < 1:
        raise BadInput(f"--calibration must be >= 1, got {calibration}")
    if tflm_images < 1:
        raise BadInput(f"--tflm-images must be >= 1, got {tflm_images}")
    boards, _ = load_boards()
    if target is not None and target not in boards:
        raise BadInput(f"unknown target {target!r}; choose one of {', '.join(boards)}")
    out = out or model.parent / "export"
    if out.exists() and not out.is_dir():
        raise BadInput(f"output directory {out} is a file; choose another --out")
    trained = load_trained_model(model)
    dataset = load_dataset(trained.dataset_name, data_dir)

    report = export_for_microcontroller(trained, dataset, quantizations, out, calibration, c_array, target, tflm_images)
    if as_json:
        print_json(report)
        return
    table = Table("quantize", "bytes", "test accuracy", "drop (pp)", "top-1 agreement", "file",
                  title=f"{escape(report['model'])}: Keras test accuracy {report['keras_test_accuracy']:.4f}",
                  box=box.SIMPLE_HEAD)
    for row in report["exports"]:
        table.add_row(row["quantize"], f"{row['size_bytes']:,}", f"{row['test_accuracy']:.4f}",
                      f"{row['accuracy_drop'] * 100:+.2f}", f"{row['top1_agreement']:.4f}", escape(row["path"]))
    console.print(table)
    console.print(f"MACs per inference: {report['macs']:,}")
    if report["tflm"]:
        tflm = report["tflm"]
        console.print(f"TensorFlow Lite Micro: {tflm['images']} test images, accuracy {tflm['accuracy']:.4f}, "
                      f"outputs {'identical to' if tflm['identical_to_reference'] else '[red]different from[/]'} "
                      f"LiteRT's reference kernels; smallest arena {tflm['arena_bytes']:,} bytes")
        console.print("fits: " + (", ".join(report["boards_that_fit"]) or "no listed board"))
    if report["target"]:
        fit = report["target"]
        verdict = "[green]fits[/]" if fit["fits"] else "[red]does not fit[/]"
        console.print(f"{escape(fit['board'])}: {verdict} (flash margin {fit['flash_margin_bytes']:,} bytes, "
                      f"RAM margin {fit['ram_margin_bytes']:,} bytes)")
    for path in report["c_sources"]:
        console.print(f"wrote {escape(path)}")
