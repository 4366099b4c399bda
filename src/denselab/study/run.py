"""Run a study: every variant with every seed, through the run engine, resumable.

Runs already finished in the store (same study, variant, configuration, data and seed)
are reused, never trained again; a run that was interrupted is redone from its start.
"""

from dataclasses import replace
from pathlib import Path
from typing import Callable

from denselab.data.dataset import Dataset
from denselab.runs.engine import Outcome, Progress, Task, execute, plan_runs, train_runs
from denselab.runs.executors import InProcess
from denselab.runs.store import RunStore
from denselab.study.file import Study, Variant


def study_runs(study: Study, datasets: dict[str, Dataset], models_dir: Path):
    """The study's runs, variant by variant, each with every seed.

    The two variants of a question are planned to train the same way, alone or side by
    side, since their times are compared (see same_execution_plan).
    """
    variants = same_execution_plan(study)
    pairs = [(variant, seed) for variant in variants for seed in study.seeds]
    return plan_runs(study.name, pairs, datasets, models_dir)


def same_execution_plan(study: Study) -> list[Variant]:
    """The study's variants, each set to decide side by side as its largest linked variant would.

    Variants linked by questions (directly or through others) form one set. Side by side
    pays on a CPU only for the smallest models (loop.grouping_pays), so deciding each set
    by its largest model's MACs trains the whole set in one mode: a question never sets
    seeds that shared a program against seeds trained alone. Where the runs train, the
    decision is still made there, so a GPU worker groups the whole set.
    """
    linked = {variant.name: {variant.name} for variant in study.variants}
    for question in study.questions:
        merged = linked[question.baseline] | linked[question.variant]
        for name in merged:
            linked[name] = merged
    macs = {variant.name: variant.spec.macs() for variant in study.variants}
    return [replace(variant, grouping_macs=max(macs[name] for name in linked[variant.name]))
            for variant in study.variants]


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
