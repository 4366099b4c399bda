"""denselab from Python: the pipeline's steps as six functions, and the objects they return.

    import denselab
    run = denselab.train(denselab.ModelSpec((20,)))         # a TrainingRun
    denselab.evaluate(run).test_accuracy                     # the test set
    denselab.predict(run, images)                            # (n, 10) probabilities
    denselab.export(run, denselab.ExportOptions(target="nano33ble"), "export")
    denselab.explore()                                       # the built-in multi-seed study
    denselab.search("nano33ble")                             # the best model that fits

Every object returned can be passed on: a TrainingRun is evaluated, predicted with and
exported as it is, without saving and loading it first; so are a run folder's path, a
`.keras` path and what `load_trained_model` returns. Each function's options have their
defaults in one dataclass (TrainConfig, ExportOptions, Runner, SearchSettings), which the CLI
reads too. Every mistake is a BadInput with the CLI's one-line message.
"""

import os
import platform
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from denselab.data.dataset import CLASS_NAMES, DATASETS, DEFAULT_DATASET, IMAGE_SIDE, Dataset
from denselab.data.images import load_image_file
from denselab.data.sources import find_dataset, load_dataset, load_test_split
from denselab.deploy.export import ExportOptions, export_for_microcontroller, export_tflite_file
from denselab.deploy.tflm_runtime import trees_status
from denselab.errors import BadInput
from denselab.extras import require_extra
from denselab.model.evaluate import Evaluation, evaluate_model
from denselab.model.run_dir import MODEL_FILE, TrainedModel, TrainedWeights, load_trained_model, load_trained_weights
from denselab.model.spec import ModelSpec, check_model_file
from denselab.outputs import check_output_folders
from denselab.runs.executors import choose_executor
from denselab.runs.store import DEFAULT_DB, RunStore, open_existing_store
from denselab.study.file import Study, load_study
from denselab.study.run import run_study
from denselab.training.config import TrainConfig
from denselab.training.fit import ProgressFn, TrainingRun
from denselab.training.fit import train as train_spec

# A model as the functions below take it: a run just trained, a loaded model, or a path to a
# .keras file or to the run folder holding model.keras.
Model = TrainingRun | TrainedModel | TrainedWeights | Path | str

DEFAULT_MODELS_DIR = Path("runs/models")
DEFAULT_STUDY_OUT = Path("reports/explore")
DEFAULT_SEARCH_OUT = Path("reports/search")  # a folder per target below it
SERVE_HOST, SERVE_PORT = "127.0.0.1", 8000  # this machine only: the service has no authentication


def train(model: ModelSpec | tuple[int, ...] = ModelSpec((20,)), data: Dataset | None = None,
          config: TrainConfig = TrainConfig(), *, data_dir: Path | None = None,
          on_progress: ProgressFn | None = None) -> TrainingRun:
    """Train a dense network on the training split and evaluate it on the test split.

    Args:
        model: a ModelSpec, or the hidden layer sizes, e.g. (512, 512).
        data: a loaded Dataset; by default Fashion-MNIST (`load_dataset`, from `data_dir`).
        config: how to train; its defaults are the exercise's (5 epochs, Adam, /255.0).
            With `config.teacher` set, the teacher trains here first, on the same training
            images, unless `data.teacher_logits` already holds its logits; it is not stored
            (`denselab search` and studies keep theirs in the run store).
        on_progress: called as (epoch, batches done, batches per epoch, logs).

    Returns:
        The TrainingRun: model, config (with the seed used), history, test evaluation.
        `run.save(folder)` writes it as a run folder.
    """
    spec = model if isinstance(model, ModelSpec) else ModelSpec(tuple(model))
    data = data if data is not None else load_dataset(data_dir=data_dir)
    if config.teacher != "none" and data.teacher_logits is None:
        from denselab.training.teacher import teacher_of, train_teacher

        teacher = train_teacher(teacher_of(config, data.name), data, config.teacher_seed)
        data = replace(data, teacher_logits=teacher.logits)
    return train_spec(spec, data, config, on_progress)


def _model_path(model: Path | str) -> Path:
    """A model file, or the run folder holding model.keras; any other folder is refused as a model file."""
    path = Path(model)
    return path / MODEL_FILE if path.is_dir() and (path / MODEL_FILE).is_file() else path


def _weights(model: Model, normalization: str | None = None, dataset: str | None = None):
    """What predicts for `model`: its own weights, or a file read without Keras (milliseconds)."""
    if isinstance(model, (TrainingRun, TrainedModel, TrainedWeights)):
        return model
    return load_trained_weights(check_model_file(_model_path(model)), normalization, dataset)


def evaluate(model: Model, data: Dataset | tuple | None = None, *, normalization: str | None = None,
             dataset: str | None = None, data_dir: Path | None = None) -> Evaluation:
    """Test loss and accuracy, per-class accuracy and the confusion matrix of a trained model.

    Args:
        model: a TrainingRun, a loaded model, or a .keras path (or its run folder).
        data: a Dataset, whose test split is scored, or an (images, labels) pair; by default
            the model's own dataset (its metrics.json says which), loaded from `data_dir`.
        normalization, dataset: override what the model's metrics.json says.

    Returns:
        The Evaluation: test_loss, test_accuracy, per_class_accuracy, confusion_matrix.
    """
    trained = _weights(model, normalization, dataset)
    if isinstance(data, Dataset):
        images, labels = data.test_images, data.test_labels
    elif data is not None:
        images, labels = data
    else:
        images, labels, _ = load_test_split(trained.dataset_name, data_dir)
    return evaluate_model(trained.predictor(), images, labels)


def predict(model: Model, images, *, normalization: str | None = None) -> np.ndarray:
    """Class probabilities, one row of 10 per image: the exercise's `model.predict`.

    Args:
        model: a TrainingRun, a loaded model, or a .keras path (or its run folder).
        images: uint8 pixels as the dataset stores them, shape (n, 28, 28) or one (28, 28)
            image; or image files (PNG, JPEG), one path or a list of them.
        normalization: overrides what the model's metrics.json says its inputs were.

    Returns:
        float32 probabilities of shape (n, classes); each row sums to 1.
    """
    if isinstance(images, (str, Path)):
        images = [images]
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (str, Path)):
        images = np.stack([load_image_file(Path(path)) for path in images])
    pixels = np.asarray(images)
    if pixels.shape[-2:] != (IMAGE_SIDE, IMAGE_SIDE) or pixels.ndim not in (2, 3):
        raise BadInput(f"images must have shape (n, 28, 28) or (28, 28), got {pixels.shape}")
    return _weights(model, normalization).predictor().probabilities(pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE))


@dataclass(frozen=True)
class ExportReport:
    """What `export` wrote and measured; `as_dict()` is what `denselab export --json` prints."""

    details: dict

    @property
    def boards_that_fit(self) -> list[str]:
        """The boards the int8 model fits with TFLM, or with the C runtime when it was made."""
        return (self.details["c"] or {}).get("boards_that_fit") or self.details["boards_that_fit"]

    @property
    def files(self) -> list[str]:
        exports = [row["path"] for row in self.details["exports"]]
        return exports + self.details["c_sources"] + ((self.details["c"] or {}).get("files") or [])

    def as_dict(self) -> dict:
        return self.details


def export(model: Model, options: ExportOptions = ExportOptions(), out: Path | None = None, *,
           data: Dataset | None = None, data_dir: Path | None = None) -> ExportReport:
    """TensorFlow Lite files, checked under TensorFlow Lite Micro, and sized for the boards.

    Args:
        model: a TrainingRun, a loaded model, a .keras path (or its run folder), or an int8
            .tflite file made elsewhere (then only `options.runtime == "c"` applies).
        options: quantizations, C sources, runtime, target board and checks (ExportOptions).
        out: the folder for the files; by default `export/` beside the model, or `c/` beside
            a .tflite file. A run not yet saved needs `out`.
        data: the dataset that calibrates and checks; by default the model's, from `data_dir`.

    Returns:
        The ExportReport: the files written, the TFLM check, the boards the model fits, the
        target's verdict and the C runtime's measured figures.
    """
    require_extra("deploy")  # at once, not after the model and the dataset have loaded
    path = None if isinstance(model, (TrainingRun, TrainedModel)) else _model_path(model)
    if path is not None and path.suffix == ".tflite":
        return ExportReport(export_tflite_file(path, options, out or path.parent / "c", data_dir))
    if out is None and path is None:
        raise BadInput("give `out`, the folder for the exported files, for a model not yet saved")
    out = Path(out or path.parent / "export")
    if out.exists() and not out.is_dir():
        raise BadInput(f"output directory {out} is a file; choose another --out")
    trained = model if path is None else load_trained_model(check_model_file(path))
    dataset = data if data is not None else load_dataset(trained.dataset_name, data_dir)
    return ExportReport(export_for_microcontroller(trained, dataset, options, out))


@dataclass(frozen=True)
class Runner:
    """Where a study's or a search's runs train and are kept; the defaults of `explore` and `search`."""

    db: Path = DEFAULT_DB  # the run store (SQLite): finished runs are reused, never trained twice
    models_dir: Path = DEFAULT_MODELS_DIR  # each run's model.keras
    executor: str = "local"  # or "ray": a Ray task per run
    workers: int = 1  # > 1: runs trained in parallel by local Ray processes
    ray_address: str | None = None  # a Ray cluster's HOST:PORT; a local Ray instance when None
    cpus_per_run: float = 1
    gpus_per_run: float = 0

    def __post_init__(self):  # paths may be given as strings
        object.__setattr__(self, "db", Path(self.db))
        object.__setattr__(self, "models_dir", Path(self.models_dir))

    def executor_for_study(self):
        return choose_executor(self.executor, self.workers, self.ray_address, self.cpus_per_run, self.gpus_per_run)


@dataclass(frozen=True)
class StudyResult:
    """A study's runs and report: `answers` are one sentence per question of the study."""

    study: Study
    report: object  # denselab.reports.study.Report: summaries, findings, best variant
    runs: list[dict]
    trained: int
    reused: int
    failed: list[dict]
    out: Path

    @property
    def answers(self) -> list[str]:
        return [finding.answer() for finding in self.report.findings]

    @property
    def best_model(self) -> Path | None:
        """The saved model of the most accurate variant's first seed: ready for `export`."""
        runs = sorted((run for run in self.runs if run["variant"] == self.report.best.name), key=lambda run: run["seed"])
        return Path(runs[0]["model_path"]) if runs else None

    def as_dict(self) -> dict:
        """What `denselab explore --json` prints."""
        return {
            "study": self.study.name, "runs_trained": self.trained, "runs_reused": self.reused,
            "runs_failed": len(self.failed), "report": str(self.out / "report.html"),
            "variants": [{"name": s.name, "params": s.params, "seeds": s.seeds,
                          "train_flops_per_epoch": s.train_flops_per_epoch,
                          "execution": s.execution and asdict(s.execution),
                          **{metric: {"mean": v.mean, "std": v.std} for metric, v in s.metrics.items()}}
                         for s in self.report.summaries],
            "findings": [{"question": f.question.question, "baseline": f.question.baseline, "variant": f.question.variant,
                          "accuracy_difference": vars(f.accuracy),
                          "train_seconds_difference": f.train_seconds and vars(f.train_seconds),
                          "execution": f.execution and asdict(f.execution),
                          "times_not_compared_because": f.timing_mismatch, "compute_ratio": f.compute_ratio,
                          "accuracy_distinguishable": f.accuracy.distinguishable, "answer": f.answer(),
                          "sentences": f.sentences()}
                         for f in self.report.findings],
        }


def explore(study: Study | Path | str | None = None, *, seeds: int | None = None, epochs: int | None = None,
            out: Path = DEFAULT_STUDY_OUT, runner: Runner = Runner(), data_dir: Path | None = None,
            on_start: Callable[[Study], None] | None = None, on_progress: Callable | None = None) -> StudyResult:
    """Run a study's variants over several seeds, and write its report with the answers.

    Args:
        study: a study file (TOML), a loaded Study, or None for the built-in exercise study.
        seeds, epochs: override the study's seeds per variant and every variant's epochs.
        out: the folder for report.md, report.html and figures/.
        runner: where the runs train and are stored; runs already stored are reused.
        on_start: called with the study once every input is checked, before the first run.
        on_progress: called with each denselab.runs.engine.Progress.

    Returns:
        The StudyResult; `result.answers` are the report's answers, `result.best_model` the
        most accurate variant's model.
    """
    # The report's figures and statistics (matplotlib, SciPy) take a second to import; only
    # a study needs them, so `denselab predict` and friends do not pay for them.
    from denselab.reports.study import build_report, write_report

    # Every run measures its int8 figures when it finishes: without [deploy] each would train, then fail.
    require_extra("deploy")
    out = Path(out)
    executor = runner.executor_for_study()
    if not isinstance(study, Study):
        study = load_study(None if study is None else Path(study))
    study = study.with_overrides(seeds=seeds, epochs=epochs)
    check_output_folders(("report", "--out", out), ("models", "--models-dir", runner.models_dir))
    datasets = {name: load_dataset(name, data_dir) for name in {variant.dataset for variant in study.variants}}
    with RunStore(runner.db) as store:
        if on_start:
            on_start(study)
        outcome = run_study(study, store, runner.models_dir, datasets, executor, on_progress)
    report = build_report(study, outcome.runs, datasets[study.variants[0].dataset], outcome.failed)
    write_report(report, out)
    return StudyResult(study, report, outcome.runs, outcome.trained, outcome.reused, outcome.failed, out)


@dataclass(frozen=True)
class SearchResult:
    """A search's finalists and winner; `as_dict()` is what `denselab search --json` prints."""

    details: dict

    @property
    def best(self) -> dict | None:
        """The winner: its name, accuracies, .tflite file and the study file that reproduces it."""
        return self.details["best"]

    @property
    def report(self) -> Path:
        return Path(self.details["report"])

    def as_dict(self) -> dict:
        return self.details


def search(target: str | None = None, settings=None, *, flash_kb: float | None = None, ram_kb: float | None = None,
           runtime: str = "tflm", finalists: int | None = None, out: Path | None = None,
           runner: Runner = Runner(), data_dir: Path | None = None, on_start: Callable | None = None,
           on_progress: Callable | None = None) -> SearchResult:
    """The most accurate dense model that fits a board, chosen on a validation split.

    Args:
        target: a board of boards.toml (e.g. "nano33ble"), or None with `flash_kb` and `ram_kb`.
        settings: trials, epochs of the last rung, seed, time budget and validation size
            (denselab.model_search.run.SearchSettings; its defaults when None).
        runtime: "tflm" or "c", the runtime whose code shares the flash.
        finalists: Pareto points retrained with 3 seeds and checked (default MAX_FINALISTS).
        out: report, finalists' .tflite and study files [reports/search/TARGET].
        on_start: called with the Target and the settings once every input is checked.
        on_progress: called with each denselab.model_search.run.Progress.

    Returns:
        The SearchResult: trials, the Pareto front of finalists, the winner and the report.
    """
    # Optuna and the search report's figures are imported with the search only (see explore).
    from denselab.model_search import MAX_FINALISTS
    from denselab.model_search.pipeline import check_finalists, load_training_only
    from denselab.model_search.pipeline import search as run_whole_search
    from denselab.model_search.run import SearchSettings
    from denselab.model_search.target import resolve_target

    for extra in ("search", "deploy"):  # before the first trial, not 30 s into it
        require_extra(extra)
    finalists = MAX_FINALISTS if finalists is None else finalists
    check_finalists(finalists)
    chosen_target = resolve_target(target, flash_kb, ram_kb, runtime)
    settings = settings or SearchSettings()
    executor = choose_executor(runner.executor, runner.workers, runner.ray_address)
    out = Path(out or DEFAULT_SEARCH_OUT / chosen_target.key)
    check_output_folders(("report", "--out", out), ("models", "--models-dir", runner.models_dir))
    training, load_test = load_training_only(DEFAULT_DATASET, data_dir)
    if on_start:
        on_start(chosen_target, settings)
    return SearchResult(run_whole_search(chosen_target, settings, training, load_test, runner.db, runner.models_dir,
                                         out, executor, batch=max(runner.workers, 1), on_progress=on_progress,
                                         max_finalists=finalists))


def stored_runs(study: str | None = None, *, db: Path = DEFAULT_DB) -> list[dict]:
    """Every run in the run store (`denselab runs list`), or only `study`'s, in the order they started."""
    with open_existing_store(db) as store:
        return store.runs(study)


def stored_run(run_id: int, *, db: Path = DEFAULT_DB) -> dict:
    """Everything stored about one run (`denselab runs show ID`): metrics, history, config, files."""
    with open_existing_store(db) as store:
        return store.run(run_id)


def serve_model(model: Path | str, *, host: str = SERVE_HOST, port: int = SERVE_PORT, normalization: str | None = None,
                data_dir: Path | None = None, on_start: Callable[[str], None] | None = print) -> None:
    """Serve a saved model over HTTP (POST /predict, a page to draw on at /) until interrupted.

    It blocks: from a notebook, stop it with the kernel's interrupt.

    Args:
        model: a .keras or .tflite file.
        on_start: called with the page's URL once the model is loaded and the port is bound.
    """
    require_extra("serve")  # all of it, now: uvicorn is first imported after the model loads, multipart at an upload
    from denselab.serve.app import create_app, listening_socket, serve_forever, server_address

    application = create_app(Path(model), normalization, data_dir)
    listening = listening_socket(host, port)
    if on_start:
        on_start(f"http://{server_address(host, port)}/")
    serve_forever(application, listening)


def info() -> dict:
    """Datasets found and where, the Keras backend, versions, and TFLM's trees: what `denselab info --json` prints."""
    versions = {"python": platform.python_version()}
    for package in ("denselab", "keras", "jax", "jaxlib", "tensorflow-cpu", "numpy", "ai-edge-litert"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    datasets = {}
    for name in DATASETS:
        try:
            directory, source = find_dataset(name, allow_download=False)
            datasets[name] = {"found": True, "directory": str(directory), "source": source}
        except BadInput as error:
            datasets[name] = {"found": False, "problem": str(error)}
    return {"keras_backend": os.environ.get("KERAS_BACKEND"), "datasets": datasets, "versions": versions,
            "tflm": trees_status()}


def class_names(model: Model) -> tuple[str, ...]:
    """The class names of the dataset a model predicts, in the order of its outputs."""
    return CLASS_NAMES[_weights(model).dataset_name]
