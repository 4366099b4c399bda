"""Three runtimes side by side on each board's Arm core: denselab's C runtime, TFLM with its
reference kernels and TFLM with CMSIS-NN's, on the same int8 models, measured in one run.

For each model and core (Cortex-M0+ on QEMU microbit, or mps2-an386 when too large for it;
Cortex-M4 on mps2-an386; Cortex-M7 on mps2-an500): flash, RAM, instructions per inference
(SysTick under QEMU's -icount shift=0) and per multiply-accumulate, and whether the outputs on
the test images are identical to the Python TFLM interpreter's. The models are the exercise's Dense(20) and 512 -> 512, trained for
`epochs` epochs here, and the winner of a finished Nano 33 BLE search where its search.json is
found. Usage: python bench/runtimes.py '{"epochs": 1, "images": 100}' (prints one JSON line).
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import denselab
from denselab.api import DEFAULT_SEARCH_OUT
from denselab.data.sources import load_dataset
from denselab.deploy.export import ExportOptions
from denselab.deploy.tflm_build import tflm_library
from denselab.deploy.tflm_firmware import check_tflm_firmware, interpreter_outputs
from denselab.deploy.tflm_runtime import KERNEL_SETS, op_set
from denselab.deploy.toolchain import ARM_CORES
from denselab.model.spec import ModelSpec
from denselab.training.config import TrainConfig

MODELS = {"Dense(20)": (20,), "512 -> 512": (512, 512)}
SEARCH_TARGET = "nano33ble"


def measure(model, label: str, macs: int, images: int, dataset, folder: Path) -> dict:
    """The C runtime (checked by export itself, on every core) and both TFLM builds of one model on every core."""
    options = ExportOptions(c_array=True, c_array_images=images, runtime="c", qemu_images=images)
    report = denselab.export(model, options, folder, data=dataset).details
    model_bytes = next(folder.glob("*_int8.tflite")).read_bytes()
    c = report["c"]
    expected = interpreter_outputs(model_bytes, dataset.test_images[:images])
    cores = {}
    for core, figures in c["cores"].items():
        rows = {"c": {"flash_bytes": figures["flash_bytes"], "ram_bytes": figures["ram_bytes"],
                      "instructions": figures["instructions_per_inference"], "machine": figures["machine"],
                      "identical": bool(c["host_identical_to_tflm"] and figures["identical"]),
                      "images": f"{c['host_images']} host, {c['qemu_images']} QEMU"}}
        for kernels in KERNEL_SETS:
            library = tflm_library(op_set(model_bytes), kernels, ARM_CORES[core])
            footprint, run = check_tflm_firmware(folder, library, images)
            rows[f"tflm-{kernels}"] = {
                "flash_bytes": footprint.flash_bytes, "ram_bytes": footprint.ram_bytes, "machine": run.machine.name,
                "instructions": int(np.mean(run.instructions)),
                "identical": bool(np.array_equal(run.outputs, expected)), "images": f"{images} QEMU",
                "runtime_code_bytes": footprint.runtime_code_bytes, "arena_used_bytes": footprint.arena_used_bytes,
                "stack_bytes": footprint.stack_bytes}
        cores[core] = rows
    return {"model": label, "macs": macs, "int8_bytes": len(model_bytes), "cores": cores}


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
