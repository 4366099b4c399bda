"""What a board holds, and whether an architecture fits it before anything is trained.

Flash must hold the int8 model plus the runtime's code; RAM must hold the runtime's working
memory (TFLM's arena, or the C runtime's activations and stack) plus one int8 input image
and one int8 output. With the C runtime both follow from the layer sizes
(denselab.deploy.c_runtime.footprint, bounds checked against builds for the board's own core:
its Arm core, or the Uno's AVR with the Arduino core and Serial counted). For TFLM, the
int8 size and the arena depend on the architecture (the layer shapes), not on the
trained values, so they are measured on an untrained model of the same shape (with
nonzero biases, as trained ones have) and reused for every trial of it: the size agrees
with the trained model's to a few bytes (8 of 699 928 seen), the arena exactly. The finalists' own figures are measured again.
"""

import math
from dataclasses import dataclass

from denselab.data.dataset import NUM_CLASSES
from denselab.deploy.boards import Fit, fit, io_bytes_for, load_boards
from denselab.deploy.c_runtime.footprint import c_model_bytes, c_ram_bytes, fixed_flash_bytes
from denselab.deploy.cores import core_info
from denselab.deploy.tflite import int8_of_shape
from denselab.deploy.tflm import arena_for_shapes
from denselab.deploy.tflm_runtime import DENSE_OPS, tflm_runtime
from denselab.deploy.toolchain import CORTEX_M4
from denselab.errors import BadInput

RUNTIMES = ("tflm", "c")


@dataclass(frozen=True)
class Target:
    key: str  # a board of boards.toml, or "custom"
    name: str
    flash_bytes: int
    ram_bytes: int
    runtime: str
    runtime_flash_bytes: int  # the runtime's code: TFLM's (tflm_runtime), or a measured bound for the C runtime
    runtime_ram_bytes: int = 0  # TFLM's RAM besides the arena; the C runtime's is in each trial's figure
    runtime_basis: str = "measured"  # how the runtime's figures were got
    runtime_measured: bool = True
    core: str = CORTEX_M4.name  # whose figures judge it: the board's (measured) core; a custom budget's the M4

    @property
    def model_flash_limit(self) -> int:
        """The largest int8 model the flash holds beside the runtime."""
        return self.flash_bytes - self.runtime_flash_bytes

    def fit_of(self, model_bytes: int, working_ram: int) -> Fit:
        """denselab.deploy.boards.fit on this budget, with the runtime's code and RAM and the search's I/O."""
        # Every search runs on Fashion-MNIST (the CLI's and denselab.api's), so its output is NUM_CLASSES wide.
        return fit(self, model_bytes, working_ram + self.runtime_ram_bytes, io_bytes_for(NUM_CLASSES),
                   self.runtime_flash_bytes)

    def holds(self, flash_bytes: int, ram_bytes: int) -> Fit:
        """`fit` of a build whose flash and RAM already hold its runtime, as a C runtime's measured figures do."""
        return fit(self, flash_bytes, ram_bytes, io_bytes_for(NUM_CLASSES), 0)

    def fits(self, int8_bytes: int, arena_bytes: int) -> bool:
        return self.fit_of(int8_bytes, arena_bytes).fits

    def excess(self, int8_bytes: int, arena_bytes: int) -> float:
        """How far a model is over the budget, as a fraction (<= 0 when it fits): Optuna's constraint."""
        needed = self.fit_of(int8_bytes, arena_bytes)
        return max(-needed.flash_margin_bytes / self.flash_bytes, -needed.ram_margin_bytes / self.ram_bytes)

    def as_dict(self) -> dict:
        return {"name": self.key, "board": self.name, "flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "runtime": self.runtime, "runtime_flash_bytes": self.runtime_flash_bytes,
                "runtime_ram_bytes": self.runtime_ram_bytes, "runtime_flash_is_estimate": not self.runtime_measured,
                "runtime_basis": self.runtime_basis, "core": self.core}


def resolve_target(board: str | None, flash_kb: float | None, ram_kb: float | None, runtime: str = "tflm") -> Target:
    """A board of boards.toml (`board`), or a custom budget of `flash_kb` and `ram_kb` kilobytes.

    Under TFLM the runtime's figures are tflm_runtime's for the search space's ops (measured the
    first time, which builds TFLM when it is not cached); under the C runtime, its fixed flash on the core.
    """
    if runtime not in RUNTIMES:
        raise BadInput(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    boards = load_boards()
    if board is not None and (flash_kb is not None or ram_kb is not None):
        raise BadInput("give either --target BOARD or a custom budget (--flash KB --ram KB), not both")
    if board is not None:
        if board not in boards:
            raise BadInput(f"unknown target {board!r}; choose one of {', '.join(boards)}, or give --flash KB --ram KB")
        chosen = boards[board]
        key, name, flash, ram, core = board, chosen.name, chosen.flash_bytes, chosen.ram_bytes, chosen.measured_core
        if runtime == "tflm" and not core_info(chosen.core).tflm:
            raise BadInput(f"TFLM does not run on the {chosen.name}'s {core_info(chosen.core).description}: "
                           "it needs a 32-bit core; search it with --runtime c")
    else:
        if flash_kb is None or ram_kb is None:
            raise BadInput("a search needs --target BOARD, or a custom budget with both --flash KB and --ram KB")
        for option, value in (("--flash", flash_kb), ("--ram", ram_kb)):
            if not 0 < value < math.inf:
                raise BadInput(f"{option} must be a positive number of kilobytes, got {value}")
        key, name = "custom", f"custom budget ({flash_kb:g} KB flash, {ram_kb:g} KB RAM)"
        flash, ram, core = int(flash_kb * 1024), int(ram_kb * 1024), CORTEX_M4.name
    if runtime == "c":
        return Target(key, name, flash, ram, runtime, fixed_flash_bytes(core), 0,
                      f"denselab's C runtime: its code at most this on the {core_info(core).title}"
                      + (" (the whole Arduino sketch but the model)" if core == "avr" else "") + ", measured",
                      core=core)
    # The search space is the exercise's family with relu (space.py), so its ops are DENSE_OPS.
    tflm = tflm_runtime(DENSE_OPS, core=core)
    return Target(key, name, flash, ram, runtime, tflm.code_bytes, tflm.ram_bytes, tflm.basis, tflm.measured, core)


class Footprints:
    """int8 size and TFLM arena of architectures, measured once each on an untrained model."""

    def __init__(self, calibration_images):
        self.calibration_images = calibration_images
        self.measured: dict[tuple[int, ...], tuple[int, int]] = {}

    def __call__(self, hidden_units: tuple[int, ...]) -> tuple[int, int]:
        if hidden_units not in self.measured:
            self.measured[hidden_units] = self._measure(hidden_units)
        return self.measured[hidden_units]

    def _measure(self, hidden_units):
        model_bytes = int8_of_shape(hidden_units, self.calibration_images)
        return len(model_bytes), arena_for_shapes(model_bytes)


class CFootprints:
    """The C runtime's model flash and working RAM of architectures, computed from the layer sizes."""

    def __init__(self, class_names: tuple[str, ...], core: str = CORTEX_M4.name):
        self.class_names, self.core = class_names, core

    def __call__(self, hidden_units: tuple[int, ...]) -> tuple[int, int]:
        return (c_model_bytes(hidden_units, self.class_names, core=self.core),
                c_ram_bytes(hidden_units, core=self.core))


def footprints_for(target: Target, calibration_images, class_names: tuple[str, ...]):
    """What sizes an architecture for the target's runtime: Footprints (TFLM) or CFootprints."""
    return CFootprints(class_names, target.core) if target.runtime == "c" else Footprints(calibration_images)
