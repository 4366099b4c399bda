"""Three runtimes side by side on each board's Arm core: denselab's C runtime, TFLM with its
reference kernels and TFLM with CMSIS-NN's, on the same int8 models, measured in one run; and
the C runtime and CMSIS-NN's kernels again at -O2, to tell the code from the compiler's setting.

For each model and core (Cortex-M0+ on QEMU microbit, or mps2-an386 when too large for it;
Cortex-M4 on mps2-an386; Cortex-M7 on mps2-an500), per runtime ("cores" -> core -> row):
flash, RAM, instructions per inference (SysTick under QEMU's -icount shift=0) and whether the
outputs on the test images are identical to the Python TFLM interpreter's. Rows: "c" (as
exported and checked, -Os), "c-O2", "tflm-reference", "tflm-cmsis-nn" (TFLM's release build,
-Os) and "tflm-cmsis-nn-O2" (its kernels and CMSIS-NN's at -O2, its runtime at -Os). Where the
model fits the Arduino Uno, "avr": the Uno's sketch run under simavr, cycles per inference.
The models are the exercise's Dense(20) and 512 -> 512, trained for `epochs` epochs here, and
the winner of a finished Nano 33 BLE search where its search.json is found.
Usage: python bench/runtimes.py '{"epochs": 1, "images": 100}' (prints one JSON line).
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import denselab
from denselab.api import DEFAULT_SEARCH_OUT
from denselab.data.sources import load_dataset
from denselab.deploy.boards import board
from denselab.deploy.c_runtime.cortex_m import check_on_core
from denselab.deploy.export import ExportOptions
from denselab.deploy.tflm_build import tflm_library
from denselab.deploy.tflm_firmware import check_tflm_firmware, interpreter_outputs
from denselab.deploy.tflm_runtime import op_set
from denselab.deploy.toolchain import ARM_CORES
from denselab.errors import BadInput
from denselab.model.spec import ModelSpec
from denselab.training.config import TrainConfig

MODELS = {"Dense(20)": (20,), "512 -> 512": (512, 512)}
SEARCH_TARGET = "nano33ble"


# Row -> (kernels, kernel_optimization) of tflm_library.
TFLM_BUILDS = {"tflm-reference": ("reference", "-Os"), "tflm-cmsis-nn": ("cmsis-nn", "-Os"),
               "tflm-cmsis-nn-O2": ("cmsis-nn", "-O2")}


def measure(model, label: str, macs: int, images: int, dataset, folder: Path) -> dict:
    """The C runtime (checked by export itself, on every core, and here again at -O2) and the TFLM
    builds of one model on every core; and the Uno where the model fits it."""
    report, uno_refused = export_with_uno(model, images, dataset, folder)
    model_bytes = next(folder.glob("*_int8.tflite")).read_bytes()
    c, pixels = report["c"], dataset.test_images[:images]
    expected = interpreter_outputs(model_bytes, pixels)
    cores = {}
    for core in ARM_CORES:  # c["cores"] also holds the Uno's "avr", measured apart
        figures = c["cores"][core]
        rows = {"c": {"flash_bytes": figures["flash_bytes"], "ram_bytes": figures["ram_bytes"],
                      "instructions": figures["instructions_per_inference"], "machine": figures["machine"],
                      "identical": bool(c["host_identical_to_tflm"] and figures["identical"]),
                      "images": f"{c['host_images']} host, {c['qemu_images']} QEMU"}}
        footprint, run = check_on_core(folder, pixels.reshape(images, -1), ARM_CORES[core], optimization="-O2")
        rows["c-O2"] = {"flash_bytes": footprint.flash_bytes, "ram_bytes": footprint.ram_bytes,
                        "instructions": int(np.mean(run.instructions)), "machine": run.machine.name,
                        "identical": bool(np.array_equal(run.outputs, expected)), "images": f"{images} QEMU"}
        for key, (kernels, optimization) in TFLM_BUILDS.items():
            library = tflm_library(op_set(model_bytes), kernels, ARM_CORES[core], kernel_optimization=optimization)
            footprint, run = check_tflm_firmware(folder, library, images)
            rows[key] = {
                "flash_bytes": footprint.flash_bytes, "ram_bytes": footprint.ram_bytes, "machine": run.machine.name,
                "instructions": int(np.mean(run.instructions)),
                "identical": bool(np.array_equal(run.outputs, expected)), "images": f"{images} QEMU",
                "runtime_code_bytes": footprint.runtime_code_bytes, "arena_used_bytes": footprint.arena_used_bytes,
                "stack_bytes": footprint.stack_bytes}
        cores[core] = rows
    return {"model": label, "macs": macs, "int8_bytes": len(model_bytes), "cores": cores,
            "avr": avr_figures(report, macs), "avr_refused": uno_refused}


def export_with_uno(model, images: int, dataset, folder: Path) -> tuple[dict, str | None]:
    """The export's report, with the Uno's sketch run under simavr where the model fits the Uno;
    else the report without it and the one line that says why."""
    options = {"c_array": True, "c_array_images": images, "runtime": "c", "qemu_images": images}
    try:
        return denselab.export(model, ExportOptions(**options, arduino=True), folder, data=dataset).details, None
    except BadInput as refused:  # too big for the Uno (512 -> 512) or no simavr: said before any file is written
        return denselab.export(model, ExportOptions(**options), folder, data=dataset).details, str(refused)


def avr_figures(report: dict, macs: int) -> dict | None:
    """The Uno's figures (export's "avr" core, its sketch's cycles and latency), or None where not run."""
    avr = report["c"]["cores"].get("avr")
    if avr is None:
        return None
    uno = report["arduino"]["uno"]
    return {**avr, "cycles_per_mac": avr["cycles_per_inference"] / macs, "cycles_range": uno["cycles_range"],
            "latency_ms": uno["latency_ms"], "clock_hz": board("uno").clock_hz}


def search_winner() -> dict | None:
    found = DEFAULT_SEARCH_OUT / SEARCH_TARGET / "search.json"
    if not found.is_file():
        return None
    best = json.loads(found.read_text()).get("best")
    return best if best and Path(best["model_path"]).is_file() else None


def main(arguments: dict) -> dict:
    dataset = load_dataset("fashion-mnist", allow_download=False)
    results = []
    with tempfile.TemporaryDirectory(prefix="denselab-bench-runtimes-") as work:
        for label, hidden in MODELS.items():
            run = denselab.train(hidden, dataset, TrainConfig(epochs=arguments["epochs"], seed=0))
            results.append(measure(run, label, ModelSpec(hidden).macs(), arguments["images"], dataset,
                                   Path(work) / f"m{len(results)}"))
        winner = search_winner()
        if winner:
            config = winner["config"]
            hidden = " -> ".join(str(config[f"width_{layer + 1}"]) for layer in range(config["layers"]))
            results.append(measure(Path(winner["model_path"]), f"Nano 33 BLE search winner {hidden}", winner["macs"],
                                   arguments["images"], dataset, Path(work) / "winner"))
    return {"models": results, "search_winner": bool(winner)}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
