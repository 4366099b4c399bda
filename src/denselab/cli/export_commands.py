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
    model: Annotated[Path, typer.Argument(help="A .keras model file, or an int8 .tflite file for --runtime c.")],
    quantize: Annotated[str, typer.Option(help="none, float16, dynamic or int8 (full-integer).")] = "int8",
    export_all: Annotated[bool, typer.Option("--all", help="Export every quantization and compare them.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output directory [MODEL's directory/export].")] = None,
    calibration: Annotated[int, typer.Option(help="Training images that calibrate int8 ranges.")] = 500,
    c_array: Annotated[bool, typer.Option("--c-array", help="Write model_data.h/.cc and a TFLM main.cc.")] = False,
    target: Annotated[Optional[str], typer.Option(help="Board to check the int8 model against (see boards.toml).")] = None,
    tflm_images: Annotated[int, typer.Option(help="Test images run under TensorFlow Lite Micro.")] = 1000,
    runtime: Annotated[str, typer.Option(
        help="tflm, or c: also write denselab's dependency-free C runtime (denselab_model.h/.c, main.c).")] = "tflm",
    check: Annotated[bool, typer.Option(
        help="Check the C runtime: host build against TFLM, Cortex-M4 build, QEMU run.")] = True,
    host_images: Annotated[Optional[int], typer.Option(help="Test images the host check compares [all].")] = None,
    qemu_images: Annotated[Optional[int], typer.Option(help="Test images run on the emulated Cortex-M4 [100].")] = None,
    normalization: Annotated[str, typer.Option(
        help="For a .tflite MODEL: scale (pixels/255, as denselab exports) or none.")] = "scale",
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
):
    """Convert a trained model to TensorFlow Lite, check it under TensorFlow Lite Micro, size it for a board."""
    from denselab.data.dataset import check_normalization
    from denselab.data.sources import load_dataset
    from denselab.deploy import toolchain
    from denselab.deploy.boards import load_boards
    from denselab.deploy.c_runtime.export import CHECK_PROGRAMS, check_image_counts
    from denselab.deploy.export import export_for_microcontroller
    from denselab.deploy.tflite import QUANTIZATIONS, check_quantize
    from denselab.model.run_dir import load_trained_model

    if runtime not in ("tflm", "c"):
        raise BadInput(f"unknown runtime {runtime!r}; choose tflm or c")
    check_image_counts(host_images, qemu_images)
    c_options = {"check": check, "host_images": host_images, "qemu_images": qemu_images}
    if runtime == "c" and check:
        for program in CHECK_PROGRAMS:  # before anything is written
            toolchain.find(program)
    if model.suffix == ".tflite":
        check_normalization(normalization)
        report = _export_tflite_file(model, runtime, target, out, normalization, c_options, data_dir)
        _print_report(report, as_json)
        return

    quantizations = list(QUANTIZATIONS) if export_all else [quantize]
    for name in quantizations:
        check_quantize(name)
    if (target or c_array or runtime == "c") and "int8" not in quantizations:  # refused before any file is written
        raise BadInput("--target, --c-array and --runtime c need the int8 export (--quantize int8 or --all)")
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

    report = export_for_microcontroller(trained, dataset, quantizations, out, calibration, c_array, target, tflm_images,
                                        runtime, c_options)
    _print_report(report, as_json)


def _export_tflite_file(model: Path, runtime: str, target: str | None, out: Path | None, normalization: str,
                        c_options: dict, data_dir) -> dict:
    """An int8 .tflite made elsewhere: only the C runtime can be made from it."""
    from denselab.data.sources import load_dataset
    from denselab.deploy.boards import io_bytes, load_boards, target_verdict
    from denselab.deploy.c_runtime.export import export_c_runtime
    from denselab.model.spec import check_model_file

    if runtime != "c":
        raise BadInput(f"{model} is a .tflite file: give --runtime c to make the C runtime from it, "
                       "or export a .keras model")
    boards, _ = load_boards()
    if target is not None and target not in boards:
        raise BadInput(f"unknown target {target!r}; choose one of {', '.join(boards)}")
    try:
        model_bytes = check_model_file(model).read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read {model}: {error.strerror}") from None
    dataset = load_dataset("fashion-mnist", data_dir)
    out = out or model.parent / "c"
    report = {"model": model.stem, "exports": [], "tflm": None, "macs": None, "target": None,
              "boards_that_fit": [], "c_sources": [],
              "c": export_c_runtime(model_bytes, str(model), dataset, normalization, out, model.stem, **c_options)}
    if target:
        report["target"] = target_verdict(target, report, len(model_bytes), 0, io_bytes(dataset))
    return report


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    if report["exports"]:
        _print_exports(report)
    if report["c"]:
        _print_c_runtime(report["c"])
    if report["target"]:
        fit = report["target"]
        verdict = "[green]fits[/]" if fit["fits"] else "[red]does not fit[/]"
        basis = "TFLM, runtime flash estimated" if fit["flash_is_estimate"] else "C runtime, measured"
        console.print(f"{escape(fit['board'])}: {verdict} ({basis}; flash margin {fit['flash_margin_bytes']:,} "
                      f"bytes, RAM margin {fit['ram_margin_bytes']:,} bytes)")
    for path in report["c_sources"]:
        console.print(f"wrote {escape(path)}")


def _print_exports(report: dict) -> None:
    # 80 columns: the files are listed under the table, where a long path may wrap.
    table = Table(title=f"{escape(report['model'])}: Keras test accuracy {report['keras_test_accuracy']:.4f}",
                  box=box.SIMPLE_HEAD)
    for header in ("quantize", "bytes", "test accuracy", "drop (pp)", "top-1 agreement"):
        table.add_column(header, no_wrap=True, justify="left" if header == "quantize" else "right")
    for row in report["exports"]:
        table.add_row(row["quantize"], f"{row['size_bytes']:,}", f"{row['test_accuracy']:.4f}",
                      f"{row['accuracy_drop'] * 100:+.2f}", f"{row['top1_agreement']:.4f}")
    console.print(table)
    console.print("files: " + ", ".join(escape(row["path"]) for row in report["exports"]), highlight=False)
    console.print(f"MACs per inference: {report['macs']:,}")
    if report["tflm"]:
        tflm = report["tflm"]
        console.print(f"TensorFlow Lite Micro: {tflm['images']} test images, accuracy {tflm['accuracy']:.4f}, "
                      f"outputs {'identical to' if tflm['identical_to_reference'] else '[red]different from[/]'} "
                      f"LiteRT's reference kernels; smallest arena {tflm['arena_bytes']:,} bytes")
        console.print("fits with TFLM: " + (", ".join(report["boards_that_fit"]) or "no listed board"))


def _print_c_runtime(c: dict) -> None:
    for path in c["files"]:
        console.print(f"wrote {escape(path)}")
    if not c["checked"]:
        console.print("C runtime not checked (--no-check)")
        return
    same = "[green]identical to TFLM's[/]" if c["host_identical_to_tflm"] else \
        f"[red]different from TFLM's on {c['host_differing_images']} images[/]"
    console.print(f"C runtime on the host: {c['host_images']:,} test images, outputs {same}, "
                  f"top-1 agreement {c['top1_agreement']:.4f}, accuracy {c['host_accuracy']:.4f}")
    for difference in c["first_differences"]:
        console.print(f"  image {difference['image']}: first differs at layer {difference['layer']} "
                      f"(by {difference['largest_difference']} int8 steps)")
    console.print(f"Cortex-M4 (-Os): flash {c['flash_bytes']:,} bytes, RAM {c['ram_bytes']:,} bytes "
                  f"(stack {c['ram']['stack']} bytes)")
    qemu = "identical to the host's" if c["qemu_identical"] else "[red]different from the host's[/]"
    console.print(f"QEMU mps2-an386: {c['qemu_images']} images, outputs {qemu}; "
                  f"{c['instructions_per_inference']:,} instructions per inference")
    estimates = ", ".join(f"{board} {ms:g} ms" for board, ms in c["latency_estimate_ms"].items())
    console.print(f"estimated latency (one instruction per cycle, not measured): {estimates}")
    console.print("fits with the C runtime: " + (", ".join(c["boards_that_fit"]) or "no listed board"))
