"""Board budgets: which boards of boards.toml a model fits, with TFLM or with denselab's C runtime.

Flash must hold the model plus the runtime's code (TFLM's an estimate from boards.toml; the
C runtime's measured, and already part of its flash figure); RAM must hold the runtime's
working memory (TFLM's arena, or the C runtime's activations and stack) plus one int8 input
and one int8 output.
"""

import tomllib
from dataclasses import dataclass
from importlib import resources

from denselab.data.dataset import IMAGE_SIDE
from denselab.deploy.c_runtime.footprint import c_flash_bytes, c_ram_bytes
from denselab.errors import BadInput


@dataclass(frozen=True)
class Board:
    key: str
    name: str
    chip: str
    flash_bytes: int
    ram_bytes: int
    clock_hz: int


def load_boards() -> tuple[dict[str, Board], int]:
    """The boards of boards.toml by key, and the estimated flash bytes of the TFLM runtime."""
    document = tomllib.loads((resources.files("denselab.deploy") / "boards.toml").read_text())
    boards = {key: Board(key, **fields) for key, fields in document["boards"].items()}
    return boards, document["runtime_flash_bytes"]


@dataclass(frozen=True)
class Fit:
    board: Board
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


def board_fit(target: str, model_bytes: int, arena_bytes: int, io_bytes: int, runtime_flash: int | None = None) -> Fit:
    """Whether a model fits a board: flash for model + runtime, RAM for arena + input + output.

    `runtime_flash` defaults to TFLM's estimated code size; the C runtime's measured flash
    already holds its code, so it passes 0.
    """
    boards, tflm_flash = load_boards()
    if target not in boards:
        raise BadInput(f"unknown target {target!r}; choose one of {', '.join(boards)}")
    return Fit(boards[target], model_bytes + (tflm_flash if runtime_flash is None else runtime_flash),
               arena_bytes + io_bytes)


def boards_that_fit(model_bytes: int, arena_bytes: int, io_bytes: int) -> list[str]:
    boards, _ = load_boards()
    return [key for key in boards if board_fit(key, model_bytes, arena_bytes, io_bytes).fits]


def boards_that_fit_c(hidden_units: tuple[int, ...], class_names: tuple[str, ...], io_bytes: int) -> list[str]:
    """Boards whose flash holds the C runtime of this architecture and whose RAM holds its
    activations, stack, input and output (denselab.deploy.c_runtime.footprint's bounds)."""
    boards, _ = load_boards()
    flash, ram = c_flash_bytes(hidden_units, class_names), c_ram_bytes(hidden_units) + io_bytes
    return [key for key, board in boards.items() if flash <= board.flash_bytes and ram <= board.ram_bytes]


def io_bytes(dataset) -> int:
    """RAM an application holds besides the arena: one int8 input image and one int8 output."""
    return IMAGE_SIDE * IMAGE_SIDE + len(dataset.class_names)


def target_verdict(target: str, report: dict, model_bytes: int, arena_bytes: int, needed_io: int) -> dict:
    """The board's verdict: on the C runtime's measured figures when the report has them, else on TFLM's estimate."""
    c = report.get("c")
    if c and c.get("checked"):
        verdict = board_fit(target, c["flash_bytes"], c["ram_bytes"], needed_io, runtime_flash=0).as_dict()
        return {**verdict, "runtime": "c", "flash_is_estimate": False}
    verdict = board_fit(target, model_bytes, arena_bytes, needed_io).as_dict()
    return {**verdict, "runtime": "tflm", "flash_is_estimate": True}
