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
from typing import Callable, Protocol

import numpy as np

from denselab.data.dataset import Dataset
from denselab.deploy.figures import deployment_figures
from denselab.errors import BadInput
from denselab.model.run_dir import save_model
from denselab.outputs import prepare_output_dir, write_bytes_atomically
from denselab.runs.store import RunKey, RunStore
from denselab.study.file import Variant
from denselab.training.config import DISTILLATION_FIELDS, TEACHER_BLOCKS, TrainConfig
from denselab.training.fit import train_seeds
from denselab.training.teacher import teacher_of, train_teacher_runs

TEACHERS_GROUP = "teachers"  # the store's study of every teacher run, shared by the studies and searches using it

# A run's cost per epoch, for the time-left estimate: proportional to the model's
# multiply-accumulates plus a fixed per-batch overhead worth this many MACs.
OVERHEAD_MACS = 60_000


class Trainable(Protocol):
    """What a run trains: a study's Variant, or a Teacher (denselab.training.teacher), which has no ModelSpec."""

    name: str
    reason: str
    dataset: str  # the key of the dataset it trains on
    config: TrainConfig  # its epochs weigh its progress; the store records its fields
    grouping_macs: int | None

    @property
    def spec(self):  # anything with macs(), the progress's weight per epoch
        ...

    def config_hash(self) -> str:
        ...


@dataclass(frozen=True)
class RunRequest:
    """One run to do: a variant trained with a seed, its store key and its model file."""

    key: RunKey
    variant: Trainable
    seed: int
    config: dict  # what the store records as the run's configuration
    model_path: Path
    teacher: "RunRequest | None" = None  # the teacher run it distills from (denselab.training.teacher)

    @property
    def data_key(self) -> str:
        """Which of the session's datasets the run trains on: its dataset, with its teacher's logits if it has one."""
        if self.teacher is None:
            return self.variant.dataset
        return f"{self.variant.dataset}+{self.teacher.key.variant}-{self.teacher.key.config_hash}-{self.teacher.seed}"

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
        teacher_request = plan_teacher(variant.config, dataset, models_dir)
        request = _planned(group, variant, seed, dataset, models_dir, {
            "hidden_units": list(variant.spec.hidden_units), "activation": variant.spec.activation,
            **asdict(variant.config)})
        requests.append(replace(request, teacher=teacher_request))
    return requests


def _planned(group: str, variant: Trainable, seed: int, dataset: Dataset, models_dir: Path,
             settings: dict) -> RunRequest:
    combined = hashlib.sha256(f"{variant.config_hash()}:{dataset_fingerprint(dataset)}".encode()).hexdigest()[:16]
    config = {
        "variant": variant.name, "reason": variant.reason, "dataset": dataset.name,
        "dataset_source": dataset.source, "train_examples": len(dataset.train_labels),
        "test_examples": len(dataset.test_labels), "scored_on": dataset.scored_on, **settings, "seed": seed,
    }
    model_path = Path(models_dir) / group / variant.name / f"seed{seed}-{combined}.keras"
    return RunRequest(RunKey(group, variant.name, combined, seed), variant, seed, config, model_path)


def plan_teacher(config, dataset: Dataset, models_dir: Path) -> RunRequest | None:
    """The teacher run a student's TrainConfig asks for, on `dataset`'s training images; None without one.

    There is one per (teacher, its epochs, its seed, data), whichever study or search asks for it.
    """
    teacher = teacher_of(config, dataset.name)
    if teacher is None:
        return None
    return _planned(TEACHERS_GROUP, teacher, config.teacher_seed, dataset, models_dir,
                    {**{name: value for name, value in asdict(teacher.config).items()
                        if name not in DISTILLATION_FIELDS}, "teacher": teacher.kind,
                     "blocks": [list(block) for block in TEACHER_BLOCKS[teacher.kind]]})


def teacher_summary(store: RunStore, teacher: RunRequest | None) -> dict | None:
    """What a report says of a teacher run: its kind, data, accuracy on the split it was scored on, time."""
    run = teacher and store.finished(teacher.key)
    if not run:
        return None
    config = run["config"]
    return {"teacher": config["teacher"], "epochs": config["epochs"], "seed": run["seed"], "run_id": run["id"],
            "train_examples": config["train_examples"], "scored_on": config["scored_on"],
            "accuracy": run["test_accuracy"], "train_seconds": run["train_seconds"],
            "seconds_per_epoch": run["seconds_per_epoch"], "model_path": run["model_path"],
            "finished_at": run["finished_at"]}


def artifact_path(model_path: Path, name: str) -> Path:
    """Where a run's file `name` (a teacher's "logits.npy") lies, beside its model."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.{name}")


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
    datasets, pending, failed = _with_teachers(pending, store, datasets, executor, on_progress)
    tracker = _Tracker(requests, {request.key for request in pending}, on_progress)
    trained, in_flight = 0, {}
    with executor.session(datasets) as session:
        groups = deque(_groups(pending) if session.groups_seeds else [[request] for request in pending])
        while groups or in_flight:
            while groups and len(in_flight) < session.capacity:
                group = groups.popleft()
                run_ids = [store.start_run(request.key, request.config) for request in group]
                token = session.submit(task, group[0].variant, group[0].data_key, [request.seed for request in group],
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
                    for name, data in result.pop("artifacts", {}).items():  # before the model: it marks them done
                        write_bytes_atomically(artifact_path(request.model_path, name), data)
                    write_bytes_atomically(request.model_path, result.pop("model_bytes"))
                    store.finish_run(run_id, {**result, "model_path": str(request.model_path)})
                    trained += 1
                tracker.finished(request, failed=error is not None)
    runs = [store.finished(request.key) for request in requests]
    return Outcome([run for run in runs if run is not None], trained, tracker.reused, failed)


def _with_teachers(pending: list[RunRequest], store: RunStore, datasets: dict[str, Dataset], executor,
                   on_progress) -> tuple[dict[str, Dataset], list[RunRequest], list[dict]]:
    """Train the teachers the pending runs need, once each, and attach their logits to the data.

    Returns the datasets with one entry per (dataset, teacher) besides the plain ones, the runs
    that can go ahead, and those stored as failed because their teacher failed.
    """
    teachers = list({request.teacher.key: request.teacher for request in pending if request.teacher}.values())
    if not teachers:
        return datasets, pending, []
    execute(teachers, store, datasets, executor, on_progress, task=train_teacher_runs)
    datasets, ready, failed = dict(datasets), [], []
    for request in pending:
        teacher = request.teacher and store.finished(request.teacher.key)
        if request.teacher is None:
            ready.append(request)
        elif teacher is None:
            run_id = store.start_run(request.key, request.config)
            store.fail_run(run_id, f"RuntimeError: its teacher {request.teacher.key.variant} (seed "
                                   f"{request.teacher.seed}) failed to train; see `denselab runs list`")
            failed.append(store.run(run_id))
        else:
            if request.data_key not in datasets:
                logits = _stored_logits(teacher)
                datasets[request.data_key] = replace(datasets[request.variant.dataset], teacher_logits=logits)
            ready.append(request)
    return datasets, ready, failed


def _stored_logits(teacher: dict) -> np.ndarray:
    path = artifact_path(Path(teacher["model_path"]), "logits.npy")
    try:
        return np.load(path)
    except (OSError, ValueError) as error:  # the store never rewrites a finished run: say what to do
        raise BadInput(f"teacher run {teacher['id']}'s logits {path} cannot be read ({type(error).__name__}); "
                       "restore the file, or use another --db and --models-dir") from None


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
