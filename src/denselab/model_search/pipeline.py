"""The whole search, as `denselab search` runs it: trials, the Pareto front, finalists, report.

The order is what keeps the numbers honest: trials are compared on the validation split
only, the finalists are chosen from those numbers, and only then is the test set loaded,
once, to score them.
"""

import json
import time
from pathlib import Path
from typing import Callable

from denselab.data.dataset import Dataset
from denselab.data.idx import load_split
from denselab.data.sources import find_dataset
from denselab.deploy import toolchain
from denselab.deploy.c_runtime.export import CHECK_PROGRAMS
from denselab.deploy.tflite import calibration_images
from denselab.errors import BadInput
from denselab.model_search import MAX_FINALISTS
from denselab.model_search.finalists import retrain_finalists
from denselab.model_search.run import (
    Progress,
    SearchSettings,
    pareto_front,
    require_room,
    run_search,
    search_name,
    trial_teacher,
)
from denselab.model_search.split import split_for_search
from denselab.model_search.target import Target, footprints_for
from denselab.outputs import write_bytes_atomically
from denselab.reports.search import SearchReport, write_search_report
from denselab.runs.engine import train_runs
from denselab.runs.store import RunStore

SEARCH_JSON = "search.json"

FINAL_SEEDS = 3


def load_training_only(name: str, data_dir: Path | None) -> tuple[Dataset, Callable[[], tuple]]:
    """The dataset's training split, and a function that loads its test split when called."""
    import numpy as np

    directory, source = find_dataset(name, data_dir)
    images, labels = load_split(directory, "train")
    empty = np.zeros((0, *images.shape[1:]), dtype=np.uint8)
    return (Dataset(name, source, images, labels, empty, np.zeros(0, dtype=np.uint8)),
            lambda: load_split(directory, "test"))


def check_finalists(count: int) -> None:
    if not isinstance(count, int) or count < 1:
        raise BadInput(f"--finalists must be at least 1, got {count}")


def journal_path(db: Path) -> Path:
    """Optuna's journal of every search, beside the run store it goes with."""
    return Path(db).with_name(Path(db).stem + ".search-journal")


def search(target: Target, settings: SearchSettings, training: Dataset, load_test: Callable[[], tuple],
           db: Path, models_dir: Path, out_dir: Path, executor, batch: int = 1, on_progress=None,
           task=train_runs, max_finalists: int = MAX_FINALISTS) -> dict:
    """Run (or resume) a search, retrain and check its finalists, write its report; what --json prints.

    Args:
        max_finalists: the winner and at most this many minus one more Pareto points, the most
            accurate first, are retrained with FINAL_SEEDS seeds; 1 retrains the winner alone.
    """
    check_finalists(max_finalists)
    started = time.monotonic()
    started_at = time.time()  # what the store's times are in: a teacher finished before it was reused
    name = search_name(target, settings)
    trial_data, split = split_for_search(training, settings.validation)
    footprints = footprints_for(target, calibration_images(trial_data), training.class_names)
    require_room(target, footprints)  # before anything is written
    if target.runtime == "c":  # the finalists' checks need the compilers and QEMU: say so now, not after hours
        for program in CHECK_PROGRAMS:
            toolchain.find(program)
    with RunStore(db) as store:
        trials, importances = run_search(target, settings, trial_data, split, footprints, store, journal_path(db),
                                         models_dir, executor, batch, on_progress, task)
        front = pareto_front(trials)
        if not front:
            raise RuntimeError("no trial finished training; see `denselab runs list` for the failures")
        winner = front[-1]  # the most accurate at the highest rung reached
        chosen = sorted(front, key=lambda trial: -trial.accuracy)[:max_finalists]
        if on_progress:
            on_progress(Progress("finalists", 0, len(chosen), winner.accuracy, None))
        finalists = retrain_finalists(chosen, winner, target, training, load_test, store, f"{name}-final",
                                      settings.epochs_max, FINAL_SEEDS, models_dir, out_dir, executor, task,
                                      settings.distillation())
        teacher = trial_teacher(settings, trial_data, store, models_dir)
    report = SearchReport(target, settings, split, trials, front, finalists, importances, training.class_names,
                          time.monotonic() - started, teacher, started_at)
    write_search_report(report, out_dir)
    best = report.winner.as_dict() if report.winner else None
    result = {
        "target": target.as_dict(), "search": name, "trials": sum(t.status == "trained" for t in trials),
        "rejected": sum(t.status == "rejected" for t in trials), "failed": sum(t.status == "failed" for t in trials),
        "validation": split, "best": best, "teacher": teacher,
        "pareto": [finalist.as_dict() for finalist in finalists],  # the winner among them
        "report": str(Path(out_dir) / "report.html"),
    }
    # Beside the report, for programs (make bench finds the winner there): what --json prints.
    write_bytes_atomically(Path(out_dir) / SEARCH_JSON, (json.dumps(result, indent=1) + "\n").encode())
    return result
