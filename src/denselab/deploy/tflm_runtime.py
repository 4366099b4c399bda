"""What TensorFlow Lite Micro itself takes on a board, measured once per op set and kept.

Every TFLM verdict (export --target, the study report's boards, search --runtime tflm) adds
these figures to the model's own: flash for TFLM's runtime code, RAM for its static data, the
interpreter and op resolver objects and the stack of one Invoke(). They are measured, not
guessed: a probe firmware (the TFLM program `export --c-array` writes, for a model of the op
set) is built against each TFLM tree found (denselab.deploy.tflm_build), for each Arm core of
boards.toml, and run under QEMU on an emulator of that core (denselab.deploy.tflm_firmware).
Each board is judged on its own core's figures (`tflm_runtimes`). The larger figure of the
reference and CMSIS-NN builds is kept, so that "fits" holds with either kernel set. They do
not depend on the model's sizes, only on its ops and the core: the probe's figures are cached
beside the libraries under the library's key.

Where no tree is found (DENSELAB_TFLM_TREES unset), or the firmware cannot be built here, the
figures are ESTIMATE's and every verdict says so. The model's arena is not part of this: it is
measured per model by the Python TFLM interpreter on the 64-bit host, which needs more than the
32-bit core (3,376 bytes against 2,548 on the Cortex-M4 for Dense(20), seen), so it bounds it.
"""

import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from denselab.data.dataset import IMAGE_SIDE
from denselab.deploy.cores import CORES
from denselab.deploy.toolchain import ARM_CORES, CORTEX_M4
from denselab.errors import BadInput

# The ops of the exercise's family in int8 (Flatten -> RESHAPE, Dense -> FULLY_CONNECTED, softmax).
DENSE_OPS = ("FULLY_CONNECTED", "RESHAPE", "SOFTMAX")
PROBE_UNITS = (16,)  # the probe model: its sizes do not change what TFLM's code and objects take
KERNEL_SETS = {"reference": "reference", "cmsis-nn": "CMSIS-NN"}  # the kernels, and their names in text


@dataclass(frozen=True)
class TFLMRuntime:
    """TFLM's own flash and RAM, besides the model's array and its arena."""

    code_bytes: int  # the TFLM library's objects and the C library code only they pull in
    ram_bytes: int  # TFLM's .data and .bss, the interpreter and resolver, one Invoke()'s stack
    measured: bool
    basis: str  # what the figures are, for each verdict to say

    def as_dict(self) -> dict:
        return asdict(self)


# Where nothing can be measured. A bound on what was measured on this project's machine for the
# dense op set (README, "Every board on its own core"), on every Arm core: at most 40,509 bytes
# of code (the Cortex-M0+ with CMSIS-NN; 26,212-36,485 with the reference kernels) and 901
# bytes of RAM. The margin covers the kernels of other activations.
ESTIMATE_CODE_BYTES = 48_000
ESTIMATE_RAM_BYTES = 2_048


def estimate(reason: str) -> TFLMRuntime:
    return TFLMRuntime(ESTIMATE_CODE_BYTES, ESTIMATE_RAM_BYTES, False,
                       f"estimated ({reason}): a bound on TFLM's Cortex-M builds as denselab measured them")


def op_set(model_bytes: bytes) -> tuple[str, ...]:
    """The int8 model's ops, sorted, each once: what tflm_runtime is keyed by."""
    from denselab.deploy.tflite import op_names

    return tuple(sorted(set(op_names(model_bytes))))


def tflm_runtimes(ops: tuple[str, ...] = DENSE_OPS, model_bytes: bytes | None = None) -> dict[str, TFLMRuntime]:
    """tflm_runtime of `ops` on every Arm core, by core name: what boards.py judges each board by."""
    return {core: tflm_runtime(ops, model_bytes, core) for core in ARM_CORES}


def tflm_runtime(ops: tuple[str, ...] = DENSE_OPS, model_bytes: bytes | None = None,
                 core: str = CORTEX_M4.name) -> TFLMRuntime:
    """TFLM's runtime figures for the op set `ops` (default: the exercise's DENSE_OPS) on `core`.

    Measured on the first call for an op set and kept in the TFLM cache, on a probe firmware of
    `model_bytes` (a model of those ops; probe_model() for DENSE_OPS). ESTIMATE's where no TFLM
    tree is found, where an op is one denselab's firmware does not build, where no model of the
    ops is at hand, or where the Arm compiler or QEMU is missing. A damaged tree raises BadInput naming it.
    """
    from denselab.deploy.tflm_build import TREES_VARIABLE, checked_ops

    ops = tuple(sorted(set(ops)))
    if not os.environ.get(TREES_VARIABLE):
        return estimate(f"{TREES_VARIABLE} is unset, so no TFLM tree was found")
    try:
        checked_ops(ops)
    except BadInput as error:
        return estimate(str(error).split("; ")[0].removeprefix("TFLM firmware: "))
    return _measured(os.environ[TREES_VARIABLE], ops, model_bytes, core)


def needs_measuring(ops: tuple[str, ...] = DENSE_OPS) -> bool:
    """Whether tflm_runtimes(ops) would build and run a probe firmware now (no figures kept yet)."""
    from denselab.deploy.tflm_build import KERNELS, TREES_VARIABLE

    trees = os.environ.get(TREES_VARIABLE)
    if not trees or not all(shutil.which(program) for program in ("arm-none-eabi-gcc", "qemu-system-arm")):
        return False
    return any(read_figures(_entry(tuple(sorted(set(ops))), kernels, core)) is None
               for kernels in _present(trees, KERNELS) for core in ARM_CORES)


def check_trees() -> None:
    """BadInput, one line naming the folder, where DENSELAB_TFLM_TREES names a missing or damaged tree:
    asked before anything is written, since every TFLM verdict would fail on it."""
    from denselab.deploy.tflm_build import KERNELS, TREES_VARIABLE, find_tree

    trees = os.environ.get(TREES_VARIABLE)
    if trees:
        for kernels in _present(trees, KERNELS):
            find_tree(kernels)


def trees_status() -> dict:
    """Where TFLM's trees are, and so whether TFLM verdicts are measured or estimated (`denselab info`)."""
    from denselab.deploy.tflm_build import TREES_VARIABLE

    trees = os.environ.get(TREES_VARIABLE) or None
    try:
        check_trees()
    except BadInput as error:
        return {"trees": trees, "verdicts": None, "problem": str(error)}
    return {"trees": trees, "verdicts": "measured" if trees else "estimated", "problem": None}


def _present(trees: str, folders: dict[str, str]) -> list[str]:
    """The kernel sets whose tree is in `trees`; the reference tree is expected there whatever it holds."""
    return [kernels for kernels in KERNEL_SETS if kernels == "reference" or (Path(trees) / folders[kernels]).exists()]


def _measured(trees: str, ops: tuple[str, ...], model_bytes: bytes | None, core: str) -> TFLMRuntime:
    from denselab.deploy import toolchain
    from denselab.deploy.tflm_build import KERNELS

    try:
        for program in ("arm-none-eabi-gcc", "qemu-system-arm"):
            toolchain.find(program)
    except BadInput as error:
        return estimate(str(error).split(":")[0])
    present = _present(trees, KERNELS)
    if model_bytes is None and ops != DENSE_OPS and not all(_entry(ops, kernels, core).is_file()
                                                            for kernels in present):
        return estimate(f"no model of the ops {', '.join(ops)} to measure TFLM with")
    figures = [_known(trees, ops, kernels, model_bytes, core) for kernels in present]
    code = max(figure["code_bytes"] for figure in figures)
    ram = max(figure["static_ram_bytes"] + figure["interpreter_bytes"] + figure["stack_bytes"] for figure in figures)
    builds = (f"the larger of TFLM's {' and '.join(KERNEL_SETS[kernels] for kernels in present)} builds"
              if len(present) > 1 else f"TFLM's {KERNEL_SETS[present[0]]} build")
    return TFLMRuntime(code, ram, True,
                       f"measured on the {CORES[core].title}, {builds} (arm-none-eabi-gcc -Os, release)")


_KNOWN: dict[tuple[str, tuple[str, ...], str, str], dict] = {}  # this process's figures, not re-read per verdict


def _known(trees: str, ops: tuple[str, ...], kernels: str, model_bytes: bytes | None, core: str) -> dict:
    if (trees, ops, kernels, core) not in _KNOWN:
        _KNOWN[trees, ops, kernels, core] = measure(ops, kernels, model_bytes, core)
    return _KNOWN[trees, ops, kernels, core]


def _entry(ops: tuple[str, ...], kernels: str, core: str = CORTEX_M4.name) -> Path:
    from denselab.deploy.tflm_build import build_plan, cache_folder

    return cache_folder() / f"runtime-{build_plan(ops, kernels, ARM_CORES[core]).entry_name}.json"


FIGURES = ("code_bytes", "static_ram_bytes", "interpreter_bytes", "stack_bytes")


def measure(ops: tuple[str, ...], kernels: str, model_bytes: bytes | None = None, core: str = CORTEX_M4.name) -> dict:
    """The probe firmware's TFLM figures with `kernels` on `core`, from the cache or built and run now.

    Returns:
        The FIGURES in bytes, the op set and the kernels. A cache entry that does not read as
        such figures (damaged by hand or by the disk) is measured again and replaced.
    """
    from denselab.deploy.tflm_build import cache_folder

    cache, entry = cache_folder(), _entry(ops, kernels, core)
    if (kept := read_figures(entry)) is not None:
        return kept
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(cache / f"{entry.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process measures; the others wait and read its figures
        if (kept := read_figures(entry)) is not None:
            return kept
        figures = _probe(ops, kernels, probe_model() if model_bytes is None else model_bytes, core)
        temporary = entry.with_name(f".{entry.name}.{os.getpid()}")
        temporary.write_text(json.dumps(figures, indent=1) + "\n")
        temporary.rename(entry)  # never half-written
    return figures


def read_figures(entry: Path) -> dict | None:
    """A cache entry's figures, or None where it is missing or is not the FIGURES as byte counts
    with the core they were measured on (an entry of an older denselab has no core)."""
    try:
        figures = json.loads(entry.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(figures, dict) or not isinstance(figures.get("core"), str) or \
            not all(type(figures.get(name)) is int and figures[name] >= 0 for name in FIGURES):
        return None
    return figures


def _probe(ops: tuple[str, ...], kernels: str, model_bytes: bytes, core: str) -> dict:
    from denselab.deploy.c_array import tflm_program, write_c_sources
    from denselab.deploy.tflm import arena_for_shapes
    from denselab.deploy.tflm_build import tflm_library
    from denselab.deploy.tflm_firmware import check_tflm_firmware

    library = tflm_library(ops, kernels, ARM_CORES[core])
    image = np.zeros((1, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    classes = tuple(f"class {index}" for index in range(10))
    with tempfile.TemporaryDirectory(prefix="denselab-tflm-probe-") as folder:
        # The program export --c-array writes for the probe model, on one blank image.
        write_c_sources(Path(folder), tflm_program(model_bytes, "probe", arena_for_shapes(model_bytes), image, [0],
                                                   classes, "scale"))
        footprint, _ = check_tflm_firmware(Path(folder), library, 1)
    return {"ops": list(ops), "kernels": kernels, "core": core, "code_bytes": footprint.runtime_code_bytes,
            "static_ram_bytes": footprint.static_ram_bytes, "interpreter_bytes": footprint.interpreter_bytes,
            "stack_bytes": footprint.stack_bytes}


def probe_model() -> bytes:
    """An int8 model of DENSE_OPS: Dense(16) on Fashion-MNIST's shape, untrained."""
    from denselab.deploy.tflite import int8_of_shape

    calibration = np.random.default_rng(0).integers(0, 256, (32, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    return int8_of_shape(PROBE_UNITS, calibration)
