"""`denselab export`: TensorFlow Lite files, C sources and the microcontroller check."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from denselab import api
from denselab.cli.app import DataDirOption, JsonOption, app, console, measure_tflm_first, print_json
from denselab.deploy.boards import load_boards
from denselab.deploy.cores import CORES
from denselab.deploy.export import QUANTIZE_ALL, ExportOptions

# The options' defaults are ExportOptions': one home for each.
EXPORT = ExportOptions()


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="A .keras model file, or an int8 .tflite file for --runtime c.")],
    quantize: Annotated[str, typer.Option(help="none, float16, dynamic or int8 (full-integer).")] = EXPORT.quantize,
    export_all: Annotated[bool, typer.Option("--all", help="Export every quantization and compare them.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output directory [MODEL's directory/export].")] = None,
    calibration: Annotated[int, typer.Option(help="Training images that calibrate int8 ranges.")] = EXPORT.calibration,
    c_array: Annotated[bool, typer.Option("--c-array", help="Write model_data.h/.cc and a TFLM main.cc.")] =
        EXPORT.c_array,
    c_array_images: Annotated[int, typer.Option(help="Test images main.cc embeds and classifies.")] =
        EXPORT.c_array_images,
    target: Annotated[Optional[str], typer.Option(help="Board to check the int8 model against (see boards.toml).")] =
        EXPORT.target,
    tflm_images: Annotated[int, typer.Option(help="Test images run under TensorFlow Lite Micro.")] = EXPORT.tflm_images,
    runtime: Annotated[str, typer.Option(
        help="tflm, or c: also write denselab's dependency-free C runtime (denselab_model.h/.c, main.c).")] =
        EXPORT.runtime,
    check: Annotated[bool, typer.Option(
        help="Check the C runtime: host build against TFLM, Cortex-M4 build, QEMU run.")] = EXPORT.check,
    host_images: Annotated[Optional[int], typer.Option(help="Test images the host check compares [all].")] =
        EXPORT.host_images,
    qemu_images: Annotated[Optional[int], typer.Option(help="Test images run on the emulated Cortex-M4 [100].")] =
        EXPORT.qemu_images,
    normalization: Annotated[str, typer.Option(
        help="For a .tflite MODEL: scale (pixels/255, as denselab exports) or none.")] = EXPORT.normalization,
    arduino: Annotated[bool, typer.Option("--arduino", help=(
        "With --runtime c: also an Arduino library (OUT/arduino/), its example run on the Uno under simavr."))] =
        EXPORT.arduino,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
):
    """Convert a trained model to TensorFlow Lite, check it under TensorFlow Lite Micro, size it for a board."""
    options = ExportOptions(quantize=QUANTIZE_ALL if export_all else quantize, calibration=calibration,
                            c_array=c_array, c_array_images=c_array_images, target=target, tflm_images=tflm_images,
                            runtime=runtime, check=check, host_images=host_images, qemu_images=qemu_images,
                            normalization=normalization, arduino=arduino)
    measure_tflm_first()
    _print_report(api.export(model, options, out, data_dir=data_dir).as_dict(), as_json)


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    if report["exports"]:
        _print_exports(report)
    if report["c"]:
        _print_c_runtime(report["c"])
    if report["target"]:
        _print_target(report["target"])
    for path in report["c_sources"]:
        console.print(f"wrote {escape(path)}")
    if report.get("arduino"):
        _print_arduino(report["arduino"])


def _print_arduino(arduino: dict) -> None:
    console.print(f"wrote {escape(arduino['library'])}/")
    console.print(f"wrote {escape(arduino['zip'])}")
    uno = arduino["uno"]
    if uno is None:
        return
    verdict = "[green]fits[/]" if uno["fits"] else "[red]does not fit[/]"
    same = "identical to TFLM's" if uno["identical_to_tflm"] else "[red]different from TFLM's[/]"
    console.print(f"Arduino Uno: {verdict} (flash {uno['flash_bytes']:,} of {uno['flash_limit']:,}, RAM "
                  f"{uno['ram_bytes']:,} of {uno['ram_limit']:,} bytes)")
    console.print(f"  simavr, {uno['images']} images: outputs {same}, {uno['cycles_per_inference']:,} cycles "
                  f"({uno['latency_ms']:g} ms)")


def _print_target(fit: dict) -> None:
    verdict = "[green]fits[/]" if fit["fits"] else "[red]does not fit[/]"
    if fit["flash_margin_bytes"] is None:  # a runtime that does not run on the board's core
        console.print(f"{escape(fit['board'])}: {verdict} ({escape(fit['reason'])})")
        return
    basis = f"C runtime, {'estimated' if fit['flash_is_estimate'] else 'measured'}" if fit["runtime"] == "c" else \
        f"TFLM, its own code and RAM {'estimated' if fit['flash_is_estimate'] else 'measured'}"
    where = f"on its {CORES[fit['core']].title}" if fit["checked_here"] else escape(fit["check_note"])
    console.print(f"{escape(fit['board'])}: {verdict} ({basis} {where}; flash margin {fit['flash_margin_bytes']:,} "
                  f"bytes, RAM margin {fit['ram_margin_bytes']:,} bytes)")


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
        runtime = report["tflm_runtime"]
        console.print(f"TFLM itself: {runtime['code_bytes']:,} bytes of code, {runtime['ram_bytes']:,} bytes of RAM "
                      f"besides the arena, {escape(runtime['basis'])}")
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
    qemu = "identical to the host's" if c["qemu_identical"] else "[red]not all identical to the host's[/]"
    console.print(f"On each Arm core (-Os) under QEMU, {c['qemu_images']} images, outputs {qemu}:")
    for core, figures in c["cores"].items():
        if core == "avr":
            continue  # the Uno's sketch under simavr: --arduino's lines
        same = "" if figures["identical"] else " [red]outputs differ[/]"
        console.print(f"  {core} ({figures['machine']}): flash {figures['flash_bytes']:,}, RAM "
                      f"{figures['ram_bytes']:,} bytes, {figures['instructions_per_inference']:,} instr.{same}")
    boards = load_boards()
    # The Uno's latency is cycles measured under simavr, which --arduino's lines give.
    estimates = ", ".join(f"{board} {ms:g} ms" for board, ms in c["latency_estimate_ms"].items()
                          if boards[board].core != "avr")
    console.print(f"latency (Arm: one instruction per cycle, an estimate): {estimates}")
    for key, board in boards.items():
        if key not in c["latency_estimate_ms"]:
            note = board.check_note if not CORES[board.core].checked else "not built (export --arduino runs it)"
            console.print(f"{key}: {escape(note)}")
    console.print("fits with the C runtime: " + (", ".join(c["boards_that_fit"]) or "no listed board"))

