"""Board budgets: whether a model fits a board of boards.toml, or a search's custom budget.

One rule, `fit`, answers it for every caller (export, the study report, the search and its
finalists), so a verdict cannot differ between them: flash must hold the model plus the
runtime's code; RAM must hold the runtime's working memory plus one int8 input and one int8
output. Each board is judged on figures of its own core (denselab.deploy.cores). For TFLM
(`tflm_fit`) the code, and the RAM besides the model's arena (static data, the interpreter,
one Invoke()'s stack), are denselab.deploy.tflm_runtime's for that core: measured, or an
estimate that says so; a core TFLM does not run on (the Uno's 8-bit AVR) never fits. The C
runtime's flash and RAM are measured on the core, or bounded from the layer sizes
(denselab.deploy.c_runtime.footprint), and already hold its code and stack.
"""

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from denselab.data.dataset import IMAGE_SIDE
from denselab.deploy.c_runtime.footprint import c_flash_bytes, c_ram_bytes
from denselab.deploy.cores import core_info, measured_core
from denselab.deploy.tflm_runtime import TFLMRuntime
from denselab.errors import BadInput


@dataclass(frozen=True)
class Board:
    key: str
    name: str
    chip: str
    core: str  # denselab.deploy.cores.CORES
    flash_bytes: int  # usable: the bootloader taken off
    flash_source: str
    ram_bytes: int
    ram_source: str
    clock_hz: int

    @property
    def measured_core(self) -> str:
        """The core whose measured figures this board's fits use (its own, where it is checked here)."""
        return measured_core(self.core)

    @property
    def check_note(self) -> str:
        """What this board's fit rests on: "checked on QEMU microbit (Cortex-M0) ...", or not checked here."""
        return core_info(self.core).note


class Budget(Protocol):
    """What a model must fit: a Board, or a search's Target (which may be a custom budget)."""

    @property
    def key(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def flash_bytes(self) -> int: ...

    @property
    def ram_bytes(self) -> int: ...


def load_boards() -> dict[str, Board]:
    """The boards of boards.toml by key."""
    document = tomllib.loads((resources.files("denselab.deploy") / "boards.toml").read_text())
    boards = {key: Board(key, **fields) for key, fields in document["boards"].items()}
    for chosen in boards.values():
        core_info(chosen.core)  # a misspelt core is a denselab bug, found on the first read
    return boards


def board(target: str) -> Board:
    """The board of boards.toml named `target`, or BadInput listing them."""
    boards = load_boards()
    if target not in boards:
        raise BadInput(f"unknown target {target!r}; choose one of {', '.join(boards)}")
    return boards[target]


@dataclass(frozen=True)
class Fit:
    board: Budget
    flash_needed: int
    ram_needed: int

    @property
    def flash_margin_bytes(self) -> int:
        return self.board.flash_bytes - self.flash_needed

    @property
    def ram_margin_bytes(self) -> int:
        return self.board.ram_bytes - self.ram_needed

    @property
    def fits(self) -> bool:
        return self.flash_margin_bytes >= 0 and self.ram_margin_bytes >= 0

    def as_dict(self) -> dict:
        return {"name": self.board.key, "board": self.board.name, "fits": self.fits,
                "flash_margin_bytes": self.flash_margin_bytes, "ram_margin_bytes": self.ram_margin_bytes}


def fit(budget: Budget, model_bytes: int, working_ram: int, io: int, runtime_flash: int) -> Fit:
    """Whether a model fits `budget`: flash for the model and the runtime's code, RAM for its working memory and I/O.

    Args:
        working_ram: TFLM's arena, or the C runtime's activations and stack.
        io: the application's int8 input and output buffers (io_bytes).
        runtime_flash: the runtime's code; 0 where `model_bytes` already holds it, as a C
            runtime's measured flash and c_flash_bytes do.
    """
    return Fit(budget, model_bytes + runtime_flash, working_ram + io)


def tflm_fit(budget: Budget, model_bytes: int, arena_bytes: int, io: int, runtime: TFLMRuntime) -> Fit:
    """`fit` under TFLM: the model and TFLM's code in flash; the arena, TFLM's own RAM and the I/O in RAM."""
    return fit(budget, model_bytes, arena_bytes + runtime.ram_bytes, io, runtime.code_bytes)


TFLMRuntimes = Mapping[str, TFLMRuntime]  # TFLM's figures by core (denselab.deploy.tflm_runtime.tflm_runtimes)


def tflm_fit_on(chosen: Board, model_bytes: int, arena_bytes: int, io: int, runtimes: TFLMRuntimes) -> Fit | None:
    """`tflm_fit` of a board of boards.toml on its own core's TFLM figures; None where TFLM does not run on it."""
    if not core_info(chosen.core).tflm:
        return None
    return tflm_fit(chosen, model_bytes, arena_bytes, io, runtimes[chosen.measured_core])


def boards_that_fit(model_bytes: int, arena_bytes: int, io_bytes: int, runtimes: TFLMRuntimes) -> list[str]:
    """Boards that hold this int8 model under TFLM, with its arena, each on its core's TFLM figures."""
    fits = {key: tflm_fit_on(chosen, model_bytes, arena_bytes, io_bytes, runtimes)
            for key, chosen in load_boards().items()}
    return [key for key, verdict in fits.items() if verdict is not None and verdict.fits]


CFigures = Mapping[str, tuple[int, int]]  # the C runtime's measured (flash, RAM) by core


def c_figures(chosen: Board, hidden_units: tuple[int, ...], class_names: tuple[str, ...],
              measured: CFigures | None = None) -> tuple[int, int, bool]:
    """The C runtime's (flash, RAM, measured) on `chosen`'s core: measured there, else footprint's bounds.
    A board whose core is not checked here (the ESP32) takes its stand-in's figures, which are not its own."""
    core = chosen.measured_core
    if measured and core in measured:
        return (*measured[core], core_info(chosen.core).checked)
    return c_flash_bytes(hidden_units, class_names, core=core), c_ram_bytes(hidden_units, core=core), False


def boards_that_fit_c(hidden_units: tuple[int, ...], class_names: tuple[str, ...], io_bytes: int,
                      measured: CFigures | None = None) -> list[str]:
    """Boards that hold the C runtime of this architecture: on each core's measured figures where given,
    else on denselab.deploy.c_runtime.footprint's bounds for that core."""
    return [key for key, chosen in load_boards().items()
            if fit(chosen, *c_figures(chosen, hidden_units, class_names, measured)[:2], io_bytes, 0).fits]


def io_bytes_for(classes: int) -> int:
    """RAM an application holds besides the runtime's: one int8 input image and one int8 output of `classes`."""
    return IMAGE_SIDE * IMAGE_SIDE + classes


def io_bytes(dataset) -> int:
    """io_bytes_for the dataset's classes."""
    return io_bytes_for(len(dataset.class_names))


def target_verdict(target: str, report: dict, model_bytes: int, arena_bytes: int, needed_io: int,
                   runtimes: TFLMRuntimes) -> dict:
    """The board's verdict: on the C runtime's figures for its core when the report has the C runtime
    checked, else under TFLM's."""
    chosen, c = board(target), report.get("c")
    common = {"core": chosen.core, "checked_here": core_info(chosen.core).checked, "check_note": chosen.check_note}
    if c and c.get("checked"):
        flash, ram, measured = c_figures(chosen, tuple(c["hidden_units"]), tuple(c["class_names"]),
                                         {core: (figures["flash_bytes"], figures["ram_bytes"])
                                          for core, figures in c["cores"].items()})
        verdict = fit(chosen, flash, ram, needed_io, 0).as_dict()
        return {**verdict, **common, "runtime": "c", "flash_is_estimate": not measured}
    verdict = tflm_fit_on(chosen, model_bytes, arena_bytes, needed_io, runtimes)
    if verdict is None:
        return {"name": chosen.key, "board": chosen.name, "fits": False, "flash_margin_bytes": None,
                "ram_margin_bytes": None, **common, "runtime": "tflm", "flash_is_estimate": False,
                "reason": f"TFLM does not run on the {core_info(chosen.core).description}: it needs a 32-bit core; "
                          "use --runtime c"}
    runtime = runtimes[chosen.measured_core]
    return {**verdict.as_dict(), **common, "runtime": "tflm", "flash_is_estimate": not runtime.measured,
            "tflm_runtime": runtime.as_dict()}
