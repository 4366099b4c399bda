"""The largest model of the exercise each board holds: Flatten -> Dense(N, relu) -> Dense(10), per runtime.

Each answer is the fit rule of denselab.deploy.boards on the board's own core. For the C
runtime the figures are footprint's bounds (an integer search over N). For TFLM they are
the int8 size and arena of an untrained Dense(N) as the search measures them
(int8_of_shape, arena_for_shapes): both grow by a fixed amount per unit, so two
measurements predict N, and real ones around the prediction settle it.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from denselab.deploy.boards import Board, c_figures, fit, load_boards, tflm_fit_on
from denselab.deploy.cores import CORES
from denselab.outputs import write_bytes_atomically

MOST_UNITS = 16_384  # past any board's flash: 784 weights a unit


@dataclass(frozen=True)
class Largest:
    board: str
    c_units: int  # 0: not even Dense(1)
    tflm_units: int | None  # None: TFLM does not run on the board's core

    def as_dict(self) -> dict:
        return {"board": self.board, "c_units": self.c_units, "tflm_units": self.tflm_units}


def _largest(fits, low: int = 0, high: int = MOST_UNITS) -> int:
    """The largest N in (low, high] with fits(N), given fits is monotonic and fits(low) holds (0: always)."""
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def largest_c(chosen: Board, class_names: tuple[str, ...], io: int) -> int:
    return _largest(lambda units: fit(chosen, *c_figures(chosen, (units,), class_names)[:2], io, 0).fits)


class TFLMSizes:
    """int8 size and arena of an untrained Dense(N), measured once per N and kept in the TFLM cache
    folder under the versions they depend on (the converter's and LiteRT's, and denselab's code
    that makes and measures the model), so that `denselab boards` converts each model once."""

    def __init__(self, calibration_images):
        self.calibration_images = calibration_images
        self.entry = _sizes_entry()
        self.measured = _read_sizes(self.entry)

    def __call__(self, units: int) -> tuple[int, int]:
        from denselab.deploy.tflite import int8_of_shape
        from denselab.deploy.tflm import arena_for_shapes

        if units not in self.measured:
            model_bytes = int8_of_shape((units,), self.calibration_images)
            self.measured[units] = len(model_bytes), arena_for_shapes(model_bytes)
            self.entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_bytes_atomically(self.entry, json.dumps({str(key): value for key, value
                                                           in sorted(self.measured.items())}).encode())
        return self.measured[units]


def _sizes_entry() -> Path:
    from importlib import metadata, resources

    from denselab.deploy.tflm_build import cache_folder

    key = hashlib.sha256()
    # The converter is whichever TensorFlow distribution is installed (tensorflow-cpu here).
    for packages in (("tensorflow-cpu", "tensorflow"), ("ai-edge-litert",)):
        versions = []
        for package in packages:
            try:
                versions.append(f"{package} {metadata.version(package)}")
            except metadata.PackageNotFoundError:
                pass
        key.update(f"{versions}\n".encode())
    for module in ("tflite.py", "tflm.py"):
        key.update((resources.files("denselab.deploy") / module).read_bytes())
    return cache_folder() / f"dense-sizes-{key.hexdigest()[:24]}.json"


def _read_sizes(entry: Path) -> dict[int, tuple[int, int]]:
    """The kept sizes, or none where the entry is missing or not {units: [bytes, arena]}."""
    try:
        kept = json.loads(entry.read_text())
        sizes = {int(units): (size, arena) for units, (size, arena) in kept.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}
    if not all(units > 0 and type(size) is int and type(arena) is int and size > 0 and arena > 0
               for units, (size, arena) in sizes.items()):
        return {}  # damaged: measured again, and kept anew
    return sizes


def largest_tflm(chosen: Board, sizes: TFLMSizes, io: int, runtimes) -> int | None:
    if not CORES[chosen.core].tflm:
        return None

    def fits_with(size_and_arena) -> bool:
        return tflm_fit_on(chosen, *size_and_arena, io, runtimes).fits

    (small, small_arena), (large, large_arena) = sizes(16), sizes(1024)
    per_unit, arena_per_unit = (large - small) / 1008, (large_arena - small_arena) / 1008
    guess = _largest(lambda units: fits_with((small + per_unit * (units - 16), small_arena + arena_per_unit
                                              * (units - 16))))
    # The prediction is within a few units; real conversions confirm it, or settle it nearby.
    if guess >= 1 and fits_with(sizes(guess)) and not fits_with(sizes(guess + 1)):
        return guess
    low, high = max(0, guess - 8), guess + 8
    while low > 0 and not fits_with(sizes(low)):
        low = max(0, low - 64)
    while high < MOST_UNITS and fits_with(sizes(high)):
        low, high = high, min(MOST_UNITS, high + 64)
    return _largest(lambda units: fits_with(sizes(units)), low, high)

def largest_models(class_names: tuple[str, ...], io: int, calibration_images, runtimes) -> list[Largest]:
    """Largest for every board of boards.toml."""
    sizes = TFLMSizes(calibration_images)
    return [Largest(key, largest_c(chosen, class_names, io), largest_tflm(chosen, sizes, io, runtimes))
            for key, chosen in load_boards().items()]


def boards_report(data_dir=None) -> list[dict]:
    """Every board: its core, usable memory and where the figures come from, what checks it here, and
    the largest Dense(N) it holds with each runtime (`denselab boards`)."""
    from denselab.data.dataset import DEFAULT_DATASET
    from denselab.data.sources import load_dataset
    from denselab.deploy.boards import io_bytes
    from denselab.deploy.tflite import calibration_images
    from denselab.deploy.tflm_runtime import tflm_runtimes

    dataset = load_dataset(DEFAULT_DATASET, data_dir)
    # The int8 size and arena depend on the shapes only, not on the calibration: a few images do.
    largest = largest_models(dataset.class_names, io_bytes(dataset), calibration_images(dataset, 32),
                             tflm_runtimes())
    boards = load_boards()
    return [{"key": entry.board, "name": boards[entry.board].name, "chip": boards[entry.board].chip,
             "core": boards[entry.board].core, "flash_bytes": boards[entry.board].flash_bytes,
             "flash_source": boards[entry.board].flash_source, "ram_bytes": boards[entry.board].ram_bytes,
             "ram_source": boards[entry.board].ram_source, "checked_here": CORES[boards[entry.board].core].checked,
             "check_note": boards[entry.board].check_note, **entry.as_dict()} for entry in largest]
