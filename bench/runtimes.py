"""Three runtimes side by side on the emulated Cortex-M4: denselab's C runtime, TFLM with its
reference kernels and TFLM with CMSIS-NN's, on the same int8 models, measured in one run.

For each model: flash, RAM, instructions per inference (SysTick under QEMU's -icount shift=0)
and per multiply-accumulate, and whether the outputs on the test images are identical to the
Python TFLM interpreter's. The models are the exercise's Dense(20) and 512 -> 512, trained for
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
from denselab.model.spec import ModelSpec
from denselab.training.config import TrainConfig

MODELS = {"Dense(20)": (20,), "512 -> 512": (512, 512)}
SEARCH_TARGET = "nano33ble"


def measure(model, label: str, macs: int, images: int, dataset, folder: Path) -> dict:
    """The C runtime (checked by export itself) and both TFLM builds of one model."""
    options = ExportOptions(c_array=True, c_array_images=images, runtime="c", qemu_images=images)
    report = denselab.export(model, options, folder, data=dataset).details
    model_bytes = next(folder.glob("*_int8.tflite")).read_bytes()
    c = report["c"]
    rows = {"c": {"flash_bytes": c["flash_bytes"], "ram_bytes": c["ram_bytes"],
                  "instructions": c["instructions_per_inference"],
                  "identical": bool(c["host_identical_to_tflm"] and c["qemu_identical"]),
                  "images": f"{c['host_images']} host, {c['qemu_images']} QEMU"}}
    expected = interpreter_outputs(model_bytes, dataset.test_images[:images])
    for kernels in KERNEL_SETS:
        footprint, run = check_tflm_firmware(folder, tflm_library(op_set(model_bytes), kernels), images)
        rows[f"tflm-{kernels}"] = {
            "flash_bytes": footprint.flash_bytes, "ram_bytes": footprint.ram_bytes,
            "instructions": int(np.mean(run.instructions)), "identical": bool(np.array_equal(run.outputs, expected)),
            "images": f"{images} QEMU", "runtime_code_bytes": footprint.runtime_code_bytes,
            "arena_used_bytes": footprint.arena_used_bytes, "stack_bytes": footprint.stack_bytes}
    return {"model": label, "macs": macs, "int8_bytes": len(model_bytes), "runtimes": rows}


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
