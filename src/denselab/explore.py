"""Run a study: every variant with every seed, recorded in the run store, resumable.

Runs already finished in the store (same study, variant, configuration, data and seed)
are reused, never trained again; a run that was interrupted is redone from its start.
"""

import hashlib
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from denselab.data import Dataset, load_dataset
from denselab.outputs import prepare_output_dir
from denselab.store import RunKey, RunStore
from denselab.study import Study, Variant
from denselab.train import TrainingRun, save_model, train

# A run's cost per epoch, for the study's time-left estimate: proportional to the
# model's multiply-accumulates plus a fixed per-batch overhead worth this many MACs.
OVERHEAD_MACS = 60_000


@dataclass(frozen=True)
class StudyProgress:
    """Where a study stands, passed to the progress callback after every batch group."""

    runs_done: int
    runs_total: int
    runs_reused: int
    variant: str
    seed: int
    epoch: int
    epochs: int
    work_done: float  # in MAC-weighted epochs; see OVERHEAD_MACS
    work_total: float


@dataclass(frozen=True)
class StudyOutcome:
    runs: list[dict]  # the study's finished runs, as stored, in plan order
    trained: int
    reused: int
    failed: list[dict]


def dataset_fingerprint(dataset: Dataset) -> str:
    """A short hash of the labels and shapes: different data, different runs."""
    digest = hashlib.sha256()
    for array in (dataset.train_labels, dataset.test_labels):
        digest.update(array.tobytes())
    digest.update(repr((dataset.train_images.shape, dataset.test_images.shape)).encode())
    return digest.hexdigest()[:12]


def run_key(study: Study, variant: Variant, dataset: Dataset, seed: int) -> RunKey:
    combined = hashlib.sha256(f"{variant.config_hash()}:{dataset_fingerprint(dataset)}".encode()).hexdigest()[:16]
    return RunKey(study.name, variant.name, combined, seed)


def run_config(variant: Variant, dataset: Dataset, seed: int) -> dict:
    """What the store keeps as a run's configuration (JSON)."""
    return {
        "variant": variant.name, "reason": variant.reason, "dataset": dataset.name,
        "dataset_source": dataset.source, "train_examples": len(dataset.train_labels),
        "test_examples": len(dataset.test_labels), "hidden_units": list(variant.spec.hidden_units),
        "activation": variant.spec.activation, **asdict(variant.config), "seed": seed,
    }


def execute_run(variant: Variant, dataset: Dataset, seed: int, model_path: Path, on_progress=None) -> dict:
    """Train one variant with one seed and save its model; returns what the store records."""
    run: TrainingRun = train(variant.spec, dataset, replace(variant.config, seed=seed), on_progress=on_progress)
    save_model(run.model, model_path)
    return {
        "params": variant.spec.parameter_count(),
        "epochs_run": run.epochs_run,
        "seconds_per_epoch": run.seconds_per_epoch,
        "train_seconds": sum(record["seconds"] for record in run.history),
        "train_accuracy": run.history[-1]["accuracy"],
        "test_accuracy": run.evaluation.test_accuracy,
        "test_loss": run.evaluation.test_loss,
        "history": run.history,
        "per_class_accuracy": run.evaluation.per_class_accuracy,
        "confusion_matrix": run.evaluation.confusion_matrix,
        "model_path": str(model_path),
        "keras_backend": run.summary()["keras_backend"],
    }


def run_study(
    study: Study,
    store: RunStore,
    models_dir: Path,
    data_dir: Path | None = None,
    on_progress: Callable[[StudyProgress], None] | None = None,
    datasets: dict[str, Dataset] | None = None,
) -> StudyOutcome:
    """Train every (variant, seed) of `study` that the store does not hold finished yet.

    Args:
        datasets: already loaded datasets by name (tests pass slices); others are loaded.

    Returns:
        The study's finished runs in plan order, and counts of trained, reused and failed runs.
    """
    datasets = dict(datasets or {})
    for variant in study.variants:
        if variant.dataset not in datasets:
            datasets[variant.dataset] = load_dataset(variant.dataset, data_dir)
    plan = [(variant, seed) for variant in study.variants for seed in study.seeds]
    keys = [run_key(study, variant, datasets[variant.dataset], seed) for variant, seed in plan]
    weights = [variant.config.epochs * (variant.spec.macs() + OVERHEAD_MACS) / 1e6 for variant, _ in plan]
    done = [store.finished(key) is not None for key in keys]
    reused = sum(done)
    work_done = sum(weight for weight, finished in zip(weights, done) if finished)
    trained, failed = 0, []
    models_dir = prepare_output_dir(Path(models_dir) / study.name)

    for (variant, seed), key, weight, finished in zip(plan, keys, weights, done):
        if finished:
            continue
        dataset = datasets[variant.dataset]
        runs_done = reused + trained + len(failed)

        def report(epoch, batches_done, batches_total, record, variant=variant, seed=seed, weight=weight):
            if on_progress:
                within = ((epoch - 1) + batches_done / max(batches_total, 1)) / variant.config.epochs
                on_progress(StudyProgress(
                    runs_done, len(plan), reused, variant.name, seed, epoch, variant.config.epochs,
                    work_done + weight * within, sum(weights),
                ))

        run_id = store.start_run(key, run_config(variant, dataset, seed))
        model_path = prepare_output_dir(models_dir / variant.name) / f"seed{seed}-{key.config_hash}.keras"
        try:
            result = execute_run(variant, dataset, seed, model_path, on_progress=report)
        except Exception as error:  # noqa: BLE001 - one broken run must not end the study
            store.fail_run(run_id, f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=5)}")
            failed.append(store.run(run_id))
        else:
            store.finish_run(run_id, result)
            trained += 1
        work_done += weight
    runs = [store.finished(key) for key in keys]
    return StudyOutcome([run for run in runs if run is not None], trained, reused, failed)

