"""`denselab boards`: each board's core, memory, what checks it here, and the largest model it holds."""

import re

from rich import box
from rich.markup import escape
from rich.table import Table

from denselab.cli.app import DataDirOption, JsonOption, app, console, measure_tflm_first, print_json

SHORT_CORES = {"cortex-m0plus": "M0+", "cortex-m4": "M4", "cortex-m7": "M7", "avr": "AVR", "xtensa-lx6": "LX6"}


def _checked_on(row: dict) -> str:
    if not row["checked_here"]:
        return "not here"
    # "checked on QEMU microbit (Cortex-M0), or mps2-an386 (Cortex-M4) when ..." -> "microbit, mps2-an386"
    machines = re.findall(r"(?:QEMU |or |^)([\w-]+) \(", row["check_note"].removeprefix("checked on "))
    return ", ".join(machines)


@app.command()
def boards(data_dir: DataDirOption = None, as_json: JsonOption = False):
    """Every board: core, usable flash and RAM, its emulator here, the largest Dense(N) per runtime."""
    from denselab.deploy.largest import boards_report

    measure_tflm_first()
    rows = boards_report(data_dir)
    if as_json:
        print_json({"boards": rows})
        return
    _print_table(rows)
    console.print("flash and RAM: what a program may use (the bootloader taken off); C and TFLM: the "
                  "largest N with denselab's C runtime and with TensorFlow Lite Micro; - TFLM does not "
                  "run there (it needs a 32-bit core). --json says where each figure comes from.")
    for row in rows:
        if not row["checked_here"]:
            console.print(f"{row['key']}: {escape(row['check_note'])}; judged on the Cortex-M4's figures")


def _print_table(rows: list[dict]) -> None:
    table = Table(title="the largest Flatten -> Dense(N) -> Dense(10) each board holds", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    for header in ("board", "core", "flash B", "RAM B", "C", "TFLM", "checked on"):
        table.add_column(header, no_wrap=True, min_width=5 if header in ("C", "TFLM") else None,
                         justify="right" if header in ("flash B", "RAM B", "C", "TFLM") else "left")
    for row in rows:
        tflm = "-" if row["tflm_units"] is None else f"{row['tflm_units']:,}"
        table.add_row(row["key"], SHORT_CORES.get(row["core"], row["core"]), f"{row['flash_bytes']:,}",
                      f"{row['ram_bytes']:,}", f"{row['c_units']:,}", tflm, escape(_checked_on(row)))
    console.print(table)
