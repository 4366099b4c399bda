"""Board budgets: whether a model fits a board of boards.toml, or a search's custom budget.

One rule, `fit`, answers it for every caller (export, the study report, the search and its
finalists), so a verdict cannot differ between them: flash must hold the model plus the
runtime's code; RAM must hold the runtime's working memory plus one int8 input and one int8
output. For TFLM (`tflm_fit`) the code, and the RAM besides the model's arena (static data,
the interpreter, one Invoke()'s stack), are denselab.deploy.tflm_runtime's: measured, or an
estimate that says so. The C runtime's flash and RAM are measured, or bounded from the layer
sizes, and already hold its code and stack.
"""

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from denselab.data.dataset import IMAGE_SIDE
from denselab.deploy.c_runtime.footprint import c_flash_bytes, c_ram_bytes
from denselab.deploy.tflm_runtime import TFLMRuntime
from denselab.errors import BadInput


@dataclass(frozen=True)
class Board:
    key: str
    name: str
    chip: str
    flash_bytes: int
    ram_bytes: int
    clock_hz: int


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
    return {key: Board(key, **fields) for key, fields in document["boards"].items()}


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


def boards_that_fit(model_bytes: int, arena_bytes: int, io_bytes: int, runtime: TFLMRuntime) -> list[str]:
    """Boards that hold this int8 model under TFLM, with its arena."""
    return [key for key, board in load_boards().items()
            if tflm_fit(board, model_bytes, arena_bytes, io_bytes, runtime).fits]


def boards_that_hold(flash_bytes: int, ram_bytes: int, io_bytes: int) -> list[str]:
    """Boards that hold a build whose flash figure already includes its runtime's code, as the C runtime's does."""
    return [key for key, board in load_boards().items() if fit(board, flash_bytes, ram_bytes, io_bytes, 0).fits]


def boards_that_fit_c(hidden_units: tuple[int, ...], class_names: tuple[str, ...], io_bytes: int) -> list[str]:
    """Boards that hold the C runtime of this architecture, on denselab.deploy.c_runtime.footprint's bounds."""
    return boards_that_hold(c_flash_bytes(hidden_units, class_names), c_ram_bytes(hidden_units), io_bytes)


def io_bytes_for(classes: int) -> int:
    """RAM an application holds besides the runtime's: one int8 input image and one int8 output of `classes`."""
    return IMAGE_SIDE * IMAGE_SIDE + classes


def io_bytes(dataset) -> int:
    """io_bytes_for the dataset's classes."""
    return io_bytes_for(len(dataset.class_names))


def target_verdict(target: str, report: dict, model_bytes: int, arena_bytes: int, needed_io: int,
                   runtime: TFLMRuntime) -> dict:
    """The board's verdict: on the C runtime's measured figures when the report has them, else under TFLM's."""
    chosen, c = board(target), report.get("c")
    if c and c.get("checked"):
        verdict = fit(chosen, c["flash_bytes"], c["ram_bytes"], needed_io, 0).as_dict()
        return {**verdict, "runtime": "c", "flash_is_estimate": False}
    verdict = tflm_fit(chosen, model_bytes, arena_bytes, needed_io, runtime).as_dict()
    return {**verdict, "runtime": "tflm", "flash_is_estimate": not runtime.measured, "tflm_runtime": runtime.as_dict()}
