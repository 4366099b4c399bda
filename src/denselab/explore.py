"""Run a study: every variant with every seed, through the run engine, resumable.

Runs already finished in the store (same study, variant, configuration, data and seed)
are reused, never trained again; a run that was interrupted is redone from its start.
"""

from pathlib import Path
from typing import Callable

from denselab.data import Dataset
from denselab.runs.engine import Outcome, Progress, Task, execute, plan_runs, train_runs
from denselab.runs.executors import InProcess
from denselab.runs.store import RunStore
from denselab.study import Study


def study_runs(study: Study, datasets: dict[str, Dataset], models_dir: Path):
    """The study's runs, variant by variant, each with every seed."""
    pairs = [(variant, seed) for variant in study.variants for seed in study.seeds]
    return plan_runs(study.name, pairs, datasets, models_dir)


def run_study(
    study: Study,
    store: RunStore,
    models_dir: Path,
    datasets: dict[str, Dataset],
    executor=None,
    on_progress: Callable[[Progress], None] | None = None,
    task: Task = train_runs,
) -> Outcome:
    """Do every (variant, seed) run of `study` that the store does not hold finished yet.

    Args:
        datasets: the loaded datasets, by name, of every variant.
        executor: where runs train (denselab.runs.executors); this process when None.
        task: what a run does; tests pass one that fails on purpose.

    Returns:
        The study's finished runs in plan order, and counts of trained, reused and failed runs.
    """
    requests = study_runs(study, datasets, models_dir)
    return execute(requests, store, datasets, executor or InProcess(), on_progress, task)
