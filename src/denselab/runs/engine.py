"""The run engine: a list of (variant, seed) runs in, every run recorded in the store.

A caller (a study, a search) plans its runs with `plan_runs` and hands them to `execute`
with an executor (`denselab.runs.executors`). The engine asks the store which runs are
finished already, marks each run 'running' when it is handed to the executor, writes its
model file and stores its result (or its failure) as it comes back, and reports progress
in MAC-weighted epochs whatever the executor. A run's task trains the model and measures
its deployment figures (int8 size, TFLM arena, boards) in the same worker, once.

The engine hands a variant's seeds to one task together where the executor says that pays
(`groups_seeds`): in this process they then share one compiled training program, and on an
accelerator (or, on a CPU, for the smallest models) they train side by side in it
(denselab.training.loop). Runs on parallel CPU workers go
one seed per task, which spreads them over the workers. Every run records how it was
executed (loop.Execution), since that changes its times: findings compare times only
between runs executed the same way.
"""

import hashlib
import tempfile
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from denselab.data.dataset import Dataset
from denselab.deploy.figures import deployment_figures
from denselab.model.run_dir import save_model
from denselab.outputs import prepare_output_dir, write_bytes_atomically
from denselab.runs.store import RunKey, RunStore
from denselab.study.file import Variant
from denselab.training.fit import train_seeds

# A run's cost per epoch, for the time-left estimate: proportional to the model's
# multiply-accumulates plus a fixed per-batch overhead worth this many MACs.
OVERHEAD_MACS = 60_000


@dataclass(frozen=True)
class RunRequest:
    """One run to do: a variant trained with a seed, its store key and its model file."""

    key: RunKey
    variant: Variant
    seed: int
    config: dict  # what the store records as the run's configuration
    model_path: Path

    @property
    def weight(self) -> float:
        """The run's expected cost, in millions of MAC-weighted epochs."""
        return self.variant.config.epochs * (self.variant.spec.macs() + OVERHEAD_MACS) / 1e6


@dataclass(frozen=True)
class Progress:
    """Where a list of runs stands; passed to the progress callback as work gets done."""

    runs_done: int
    runs_total: int
    runs_reused: int
    current: str  # the run in progress, or the one that just finished
    work_done: float  # in RunRequest.weight units
    work_total: float


@dataclass(frozen=True)
class Outcome:
    runs: list[dict]  # the finished runs, as stored, in plan order
    trained: int
    reused: int
    failed: list[dict]


# (variant, dataset, seeds, [on_progress per seed] or None) -> [result with "model_bytes" per seed]; see train_runs.
Task = Callable[..., list[dict]]


def dataset_fingerprint(dataset: Dataset) -> str:
    """A short hash of the labels and shapes: different data, different runs."""
    digest = hashlib.sha256()
    for array in (dataset.train_labels, dataset.test_labels):
        digest.update(array.tobytes())
    digest.update(repr((dataset.train_images.shape, dataset.test_images.shape)).encode())
    return digest.hexdigest()[:12]


def plan_runs(group: str, pairs: list[tuple[Variant, int]], datasets: dict[str, Dataset],
              models_dir: Path) -> list[RunRequest]:
    """The runs of `pairs` (variant, seed), keyed in the store under `group` (a study's name).

    A run's key joins the variant's configuration hash with the data's fingerprint, so a
    changed setting or other data makes new runs and never reuses old ones.
    """
    requests = []
    for variant, seed in pairs:
        dataset = datasets[variant.dataset]
        combined = hashlib.sha256(f"{variant.config_hash()}:{dataset_fingerprint(dataset)}".encode()).hexdigest()[:16]
        key = RunKey(group, variant.name, combined, seed)
        config = {
            "variant": variant.name, "reason": variant.reason, "dataset": dataset.name,
            "dataset_source": dataset.source, "train_examples": len(dataset.train_labels),
            "test_examples": len(dataset.test_labels), "scored_on": dataset.scored_on,
            "hidden_units": list(variant.spec.hidden_units),
            "activation": variant.spec.activation, **asdict(variant.config), "seed": seed,
        }
        model_path = Path(models_dir) / group / variant.name / f"seed{seed}-{combined}.keras"
        requests.append(RunRequest(key, variant, seed, config, model_path))
    return requests


def train_runs(variant: Variant, dataset: Dataset, seeds: list[int], on_progress=None) -> list[dict]:
    """The default task: train a variant's seeds, measure each run's deployment figures, return the models as bytes."""
    runs = train_seeds(variant.spec, dataset, [replace(variant.config, seed=seed) for seed in seeds], on_progress,
                       grouping_macs=variant.grouping_macs)
    return [_result(variant, dataset, run) for run in runs]


def _result(variant: Variant, dataset: Dataset, run) -> dict:
    with tempfile.TemporaryDirectory(prefix="denselab-run-") as folder:
        model_bytes = save_model(run.model, Path(folder) / "model.keras").read_bytes()
    return {
        "params": variant.spec.parameter_count(),
        "epochs_run": run.epochs_run,
        "seconds_per_epoch": run.seconds_per_epoch,
        "train_seconds": sum(record["seconds"] for record in run.history),
        "execution": asdict(run.execution),
        "train_accuracy": run.history[-1]["accuracy"],
        "test_accuracy": run.evaluation.test_accuracy,
        "test_loss": run.evaluation.test_loss,
        "history": run.history,
        "per_class_accuracy": run.evaluation.per_class_accuracy,
        "confusion_matrix": run.evaluation.confusion_matrix,
        "keras_backend": run.summary()["keras_backend"],
        **deployment_figures(run.model, dataset, variant.config.normalization),
        "model_bytes": model_bytes,
    }


def execute(requests: list[RunRequest], store: RunStore, datasets: dict[str, Dataset], executor,
            on_progress: Callable[[Progress], None] | None = None, task: Task = train_runs) -> Outcome:
    """Do every run of `requests` that the store does not hold finished, with `executor`.

    Args:
        executor: one of denselab.runs.executors; it decides where and how many at a time.
        task: what a group of runs does (train_runs); tests pass one that fails on purpose.

    Returns:
        The finished runs in plan order, and counts of trained, reused and failed runs.
    """
    pending = [request for request in requests if store.finished(request.key) is None]
    tracker = _Tracker(requests, {request.key for request in pending}, on_progress)
    trained, failed, in_flight = 0, [], {}
    with executor.session(datasets) as session:
        groups = deque(_groups(pending) if session.groups_seeds else [[request] for request in pending])
        while groups or in_flight:
            while groups and len(in_flight) < session.capacity:
                group = groups.popleft()
                run_ids = [store.start_run(request.key, request.config) for request in group]
                token = session.submit(task, group[0].variant, [request.seed for request in group],
                                       [tracker.within(request) for request in group])
                in_flight[token] = (run_ids, group)
            token, results, error = session.next_done()
            run_ids, group = in_flight.pop(token)
            for position, (run_id, request) in enumerate(zip(run_ids, group)):
                if error is not None:
                    store.fail_run(run_id, error)
                    failed.append(store.run(run_id))
                else:
                    result = results[position]
                    prepare_output_dir(request.model_path.parent)
                    write_bytes_atomically(request.model_path, result.pop("model_bytes"))
                    store.finish_run(run_id, {**result, "model_path": str(request.model_path)})
                    trained += 1
                tracker.finished(request, failed=error is not None)
    runs = [store.finished(request.key) for request in requests]
    return Outcome([run for run in runs if run is not None], trained, tracker.reused, failed)


def _groups(requests: list[RunRequest]) -> list[list[RunRequest]]:
    """The requests grouped by variant, configuration and data (their keys without the seed), in plan order."""
    groups: dict[tuple, list[RunRequest]] = {}
    for request in requests:
        key = request.key
        groups.setdefault((key.study, key.variant, key.config_hash), []).append(request)
    return list(groups.values())


class _Tracker:
    """Progress over all runs, in MAC-weighted epochs: reused runs count as done from the start."""

    def __init__(self, requests: list[RunRequest], pending_keys: set[RunKey], on_progress):
        self.on_progress = on_progress
        self.total = len(requests)
        self.reused = self.total - len(pending_keys)
        self.work_total = sum(request.weight for request in requests)
        self.work_done = sum(request.weight for request in requests if request.key not in pending_keys)
        self.runs_done = self.reused

    def _emit(self, current: str, work_done: float) -> None:
        if self.on_progress:
            self.on_progress(Progress(self.runs_done, self.total, self.reused, current, work_done, self.work_total))

    def within(self, request: RunRequest):
        """A per-batch callback for executors that train in this process."""
        epochs = request.variant.config.epochs

        def report(epoch, batches_done, batches_total, record):
            fraction = ((epoch - 1) + batches_done / max(batches_total, 1)) / epochs
            self._emit(f"{request.variant.name} seed {request.seed} epoch {epoch}/{epochs}",
                       self.work_done + request.weight * fraction)

        return report

    def finished(self, request: RunRequest, failed: bool) -> None:
        self.runs_done += 1
        self.work_done += request.weight
        self._emit(f"{request.variant.name} seed {request.seed} {'failed' if failed else 'done'}", self.work_done)
