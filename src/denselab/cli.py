"""The `denselab` command: options, help and presentation; the work happens in the modules.

Heavy modules (Keras, JAX, TensorFlow) are imported inside the commands that need them,
so `denselab --help` and `denselab info` answer at once.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from denselab.errors import BadInput

app = typer.Typer(
    help="The 'Exploring DNN learning' exercise on Fashion-MNIST: train, evaluate and predict with dense networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DatasetOption = Annotated[str, typer.Option("--dataset", help="fashion-mnist or mnist.")]
DataDirOption = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Directory with the four IDX files (else $DENSELAB_DATA, Debian's package, Keras's cache)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def main() -> None:
    """Entry point: run the app, turning every user error into one line and exit code 2."""
    try:
        exit_code = app(standalone_mode=False)
    except BadInput as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except typer.TyperException as error:
        # Typer's usage errors (its vendored click's); "no arguments" carries the help text.
        if type(error).__name__ == "NoArgsIsHelpError":
            print(error.format_message())
            sys.exit(0)
        err_console.print(f"[bold red]error:[/] {error.format_message()}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    sys.exit(exit_code or 0)


def _print_json(value) -> None:
    print(json.dumps(value))


# --- train -----------------------------------------------------------------------------

@app.command()
def train(
    hidden: Annotated[str, typer.Option(help="Hidden layer sizes, e.g. 20 or 512,512.")] = "20",
    activation: Annotated[str, typer.Option(help="Hidden activation: relu, sigmoid, tanh, elu, selu, silu.")] = "relu",
    epochs: Annotated[int, typer.Option(help="Epochs (the exercise: 5).")] = 5,
    batch_size: Annotated[int, typer.Option(help="Batch size (the exercise: 32).")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Adam's learning rate.")] = 1e-3,
    normalization: Annotated[str, typer.Option(help="scale (/255.0, the exercise) or none (raw 0-255 pixels).")] = "scale",
    seed: Annotated[Optional[int], typer.Option(help="Seed for a repeatable run (default: random, and reported).")] = None,
    stop_at_accuracy: Annotated[
        Optional[float], typer.Option(help="Stop once training accuracy exceeds this (the exercise: 0.86).")
    ] = None,
    min_epochs: Annotated[int, typer.Option(help="...but never before this many epochs (the exercise: 2).")] = 2,
    dataset: DatasetOption = "fashion-mnist",
    data_dir: DataDirOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Directory for model.keras, history.json, metrics.json [runs/<model>].")] = None,
    as_json: JsonOption = False,
):
    """Train a dense network and evaluate it on the test set."""
    from denselab.data import check_dataset_name, load_dataset
    from denselab.model import ModelSpec, parse_hidden_units
    from denselab.train import TrainConfig, save_run, train as train_model

    spec = ModelSpec(parse_hidden_units(hidden), activation)
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, normalization=normalization,
        seed=seed, stop_at_accuracy=stop_at_accuracy, min_epochs=min_epochs,
    )
    check_dataset_name(dataset)
    out = out or Path("runs") / spec.name
    if out.exists() and not out.is_dir():
        raise BadInput(f"output directory {out} is a file; choose another --out")
    data = load_dataset(dataset, data_dir)
    if not as_json:
        console.print(f"dataset: {dataset} from {data.source}")
        console.print(f"model: {spec.name}, {spec.parameter_count():,} parameters")
    with _epoch_progress(config.epochs) as on_progress:
        run = train_model(spec, data, config, on_progress=on_progress)
    save_run(run, out)
    summary = run.summary()
    if as_json:
        _print_json({key: summary[key] for key in (
            "test_accuracy", "test_loss", "epochs_run", "seconds_per_epoch", "params", "history", "seed", "model",
        )} | {"out": str(out)})
        return
    table = Table("epoch", "loss", "accuracy", "seconds", title=f"{spec.name} (seed {run.config.seed})")
    for record in run.history:
        table.add_row(str(record["epoch"]), f"{record['loss']:.4f}", f"{record['accuracy']:.4f}", f"{record['seconds']:.2f}")
    console.print(table)
    console.print(
        f"test accuracy {run.evaluation.test_accuracy:.4f}, test loss {run.evaluation.test_loss:.4f}, "
        f"{run.epochs_run} epochs, {run.seconds_per_epoch:.2f} s/epoch"
    )
    console.print(f"saved {out / 'model.keras'}, history.json, metrics.json")


class _epoch_progress:
    """A Rich progress bar on stderr fed by train's progress callback (stdout stays clean for --json)."""

    def __init__(self, epochs: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.epochs = epochs
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), console=err_console, transient=True,
        )
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self.update

    def update(self, epoch: int, done: int, total: int, record: dict) -> None:
        if self.task is None:
            self.task = self.progress.add_task("train", total=total, epoch=epoch, epochs=self.epochs, metrics="")
        metrics = f"loss {record['loss']:.4f} accuracy {record['accuracy']:.4f}" if record else ""
        self.progress.update(self.task, completed=done, total=total, epoch=epoch, **({"metrics": metrics} if metrics else {}))

    def __exit__(self, *exc_info):
        self.progress.stop()


# --- evaluate --------------------------------------------------------------------------

@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="A .keras model file.")],
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset [the one in metrics.json, else fashion-mnist].")] = None,
    data_dir: DataDirOption = None,
    normalization: Annotated[Optional[str], typer.Option(help="Override metrics.json's normalization.")] = None,
    as_json: JsonOption = False,
):
    """Test loss and accuracy, per-class accuracy and the confusion matrix of a trained model."""
    from denselab.data import CLASS_NAMES, load_dataset
    from denselab.evaluate import evaluate_model
    from denselab.train import load_trained_model

    trained = load_trained_model(model, normalization, dataset)
    data = load_dataset(trained.dataset_name, data_dir)
    evaluation = evaluate_model(trained.predictor(), data.test_images, data.test_labels)
    if as_json:
        _print_json(evaluation.as_dict())
        return
    names = CLASS_NAMES[trained.dataset_name]
    console.print(f"{model}: test accuracy {evaluation.test_accuracy:.4f}, test loss {evaluation.test_loss:.4f} "
                  f"on {len(data.test_labels):,} images from {data.source}")
    # Columns are numbered so that ten classes fit in 80 columns; rows carry the names.
    confusion = Table(title="confusion matrix (rows: true class, columns: predicted)", box=box.SIMPLE_HEAD, padding=(0, 0))
    confusion.add_column("true class", no_wrap=True)
    for number in range(len(names)):
        confusion.add_column(str(number), justify="right", min_width=4)
    confusion.add_column("accuracy", justify="right")
    for number, (name, row, accuracy) in enumerate(zip(names, evaluation.confusion_matrix, evaluation.per_class_accuracy)):
        confusion.add_row(f"{number} {name}", *[str(count) for count in row], "-" if accuracy is None else f"{accuracy:.3f}")
    console.print(confusion)


# --- predict ---------------------------------------------------------------------------

@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="A .keras model file.")],
    images: Annotated[Optional[list[Path]], typer.Argument(help="PNG/JPEG files; without them, test images by --index.")] = None,
    index: Annotated[Optional[list[int]], typer.Option("--index", help="Test image number (repeatable) [0].")] = None,
    data_dir: DataDirOption = None,
    normalization: Annotated[Optional[str], typer.Option(help="Override metrics.json's normalization.")] = None,
    as_json: JsonOption = False,
):
    """Class probabilities for test images (--index N) or for image files."""
    import numpy as np

    from denselab.data import CLASS_NAMES, load_dataset, load_image_file
    from denselab.predict import predict_images
    from denselab.train import load_trained_model

    pixels, sources, true_labels = [], [], []
    for path in images or []:
        pixels.append(load_image_file(path))
        sources.append(str(path))
        true_labels.append(None)
    trained = load_trained_model(model, normalization)
    if index or not images:
        data = load_dataset(trained.dataset_name, data_dir)
        for number in index or [0]:
            if not 0 <= number < len(data.test_labels):
                raise BadInput(f"--index {number} is outside the test set (0-{len(data.test_labels) - 1})")
            pixels.append(data.test_images[number])
            sources.append(f"test image {number}")
            true_labels.append(int(data.test_labels[number]))
    names = CLASS_NAMES[trained.dataset_name]
    predictions = predict_images(trained.predictor(), np.stack(pixels), sources, names, true_labels)
    if as_json:
        _print_json([prediction.as_dict() for prediction in predictions])
        return
    for prediction in predictions:
        console.print(f"[bold]{prediction.source}[/]")
        # The exercise's print(classifications[0]): the raw vector, as NumPy shows it.
        console.print(str(np.array(prediction.probabilities, dtype=np.float32)), highlight=False)
        table = Table("class", "probability", "")
        for name, probability in zip(names, prediction.probabilities):
            style = "bold green" if name == prediction.top_class else ""
            table.add_row(name, f"{probability:.4f}", "█" * round(probability * 30), style=style)
        console.print(table)
        verdict = ""
        if prediction.true_label is not None:
            verdict = " — correct" if prediction.true_label == prediction.top_class else " — wrong"
            verdict = f", true label {prediction.true_label}{verdict}"
        console.print(f"top class {prediction.top_class} ({prediction.confidence:.1%}){verdict}\n")


# --- info ------------------------------------------------------------------------------

@app.command()
def info(as_json: JsonOption = False):
    """Datasets found and where, the Keras backend, and versions."""
    import os
    import platform
    from importlib import metadata

    from denselab.data import DATASETS, find_dataset

    datasets = {}
    for name in DATASETS:
        try:
            directory, source = find_dataset(name, allow_download=False)
            datasets[name] = {"found": True, "directory": str(directory), "source": source}
        except BadInput as error:
            datasets[name] = {"found": False, "problem": str(error)}
    versions = {"python": platform.python_version()}
    for package in ("denselab", "keras", "jax", "jaxlib", "tensorflow-cpu", "numpy", "ai-edge-litert"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    report = {"keras_backend": os.environ.get("KERAS_BACKEND"), "datasets": datasets, "versions": versions}
    if as_json:
        _print_json(report)
        return
    console.print(f"Keras backend: {report['keras_backend']}")
    table = Table("dataset", "where", title="datasets")
    for name, found in datasets.items():
        table.add_row(name, found["source"] if found["found"] else f"[red]not found[/]: {found['problem']}")
    console.print(table)
    console.print("versions: " + ", ".join(f"{name} {version or '-'}" for name, version in versions.items()))


# --- explore ---------------------------------------------------------------------------

DbOption = Annotated[Path, typer.Option("--db", help="The run database (SQLite).")]
DEFAULT_DB = Path("runs/denselab.sqlite")


@app.command()
def explore(
    study_file: Annotated[Optional[Path], typer.Option("--study", help="A study TOML file [the built-in exercise study].")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Seeds per variant [the study's, 3 for the built-in one].")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Train every variant for this many epochs, for a quick look.")] = None,
    db: DbOption = DEFAULT_DB,
    out: Annotated[Path, typer.Option(help="Directory for report.md, report.html and figures/.")] = Path("reports/explore"),
    models_dir: Annotated[Path, typer.Option(help="Where each run's model.keras is kept.")] = Path("runs/models"),
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
):
    """Run the exercise's experiments over several seeds and write a report with findings.

    Runs already in the database are reused; an interrupted study continues where it stopped.
    """
    from denselab.data import load_dataset
    from denselab.explore import run_study
    from denselab.report import build_report, write_report
    from denselab.store import RunStore
    from denselab.study import load_study

    study = load_study(study_file).with_overrides(seeds=seeds, epochs=epochs)
    if out.exists() and not out.is_dir():
        raise BadInput(f"report directory {out} is a file; choose another --out")
    datasets = {name: load_dataset(name, data_dir) for name in {variant.dataset for variant in study.variants}}
    with RunStore(db) as store:
        if not as_json:
            console.print(f"study {study.name}: {len(study.variants)} variants × {len(study.seeds)} seeds "
                          f"from {study.source}; runs in {db}")
        try:
            with _study_progress() as on_progress:
                outcome = run_study(study, store, models_dir, data_dir, on_progress, datasets)
        except KeyboardInterrupt:
            err_console.print("interrupted: finished runs are stored; run the same command again to continue")
            raise typer.Exit(130)
    first_dataset = datasets[study.variants[0].dataset]
    report = build_report(study, outcome.runs, first_dataset, outcome.failed)
    write_report(report, out)
    if as_json:
        _print_json({
            "study": study.name, "runs_trained": outcome.trained, "runs_reused": outcome.reused,
            "runs_failed": len(outcome.failed), "report": str(out / "report.html"),
            "variants": [{"name": s.name, "params": s.params, "seeds": s.seeds,
                          **{metric: {"mean": v.mean, "std": v.std} for metric, v in s.metrics.items()}}
                         for s in report.summaries],
            "findings": [{"question": f.question.question, "baseline": f.question.baseline, "variant": f.question.variant,
                          "accuracy_difference": vars(f.accuracy), "train_seconds_difference": vars(f.train_seconds),
                          "accuracy_distinguishable": f.accuracy.distinguishable, "sentences": f.sentences()}
                         for f in report.findings],
        })
    else:
        _print_report(report, outcome, out)
    if outcome.failed:
        raise typer.Exit(1)


def _print_report(report, outcome, out: Path) -> None:
    from denselab.report import TABLE_HEADER, summary_rows

    console.print(f"{outcome.trained} runs trained, {outcome.reused} reused from the database"
                  + (f", [red]{len(outcome.failed)} failed[/]" if outcome.failed else ""))
    table = Table(*TABLE_HEADER, title="variants (mean ± std over seeds)", box=box.SIMPLE_HEAD)
    for row in summary_rows(report.summaries):
        table.add_row(*row)
    console.print(table)
    for finding in report.findings:
        q = finding.question
        console.print(f"[bold]{q.question}[/] ({q.baseline} → {q.variant})")
        for sentence in finding.sentences():
            console.print(f"  {sentence}", highlight=False)
    for run in outcome.failed:
        console.print(f"[red]failed[/]: {run['variant']} seed {run['seed']}: {run['error'].splitlines()[0]}")
    console.print(f"report: {out / 'report.md'} and {out / 'report.html'}")


class _study_progress:
    """One progress bar over the whole study: runs done, the current run's epoch, time left."""

    def __init__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.fields[runs]}"), BarColumn(), TextColumn("{task.fields[current]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=err_console, transient=True,
        )
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self.update

    def update(self, state) -> None:
        fields = {
            "runs": f"runs {state.runs_done}/{state.runs_total}",
            "current": f"{state.variant} seed {state.seed} epoch {state.epoch}/{state.epochs}",
        }
        if self.task is None:
            # Reused runs count as done from the start, so the time left is for the rest only.
            self.task = self.progress.add_task("study", total=state.work_total, **fields)
        self.progress.update(self.task, completed=state.work_done, **fields)

    def __exit__(self, *exc_info):
        self.progress.stop()


# --- runs ------------------------------------------------------------------------------

runs_app = typer.Typer(help="Read the run database: list, show and compare runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
RUN_COLUMNS = ("id", "study", "variant", "seed", "status", "test_accuracy", "test_loss", "epochs_run", "seconds_per_epoch")


def _open_existing_store(db: Path):
    from denselab.store import RunStore

    if not db.is_file():
        raise BadInput(f"run database {db} does not exist; run 'denselab explore' first or pass --db")
    return RunStore(db)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


@runs_app.command("list")
def runs_list(
    db: DbOption = DEFAULT_DB,
    study: Annotated[Optional[str], typer.Option(help="Only this study's runs.")] = None,
    as_json: JsonOption = False,
):
    """One line per run."""
    with _open_existing_store(db) as store:
        runs = store.runs(study)
    if as_json:
        _print_json([{column: run[column] for column in RUN_COLUMNS} for run in runs])
        return
    table = Table(*RUN_COLUMNS, box=box.SIMPLE_HEAD)
    for run in runs:
        table.add_row(*[_cell(run[column]) for column in RUN_COLUMNS])
    console.print(table)


@runs_app.command("show")
def runs_show(run_id: Annotated[int, typer.Argument(help="Run id (see 'denselab runs list').")],
              db: DbOption = DEFAULT_DB, as_json: JsonOption = False):
    """Everything stored about one run."""
    with _open_existing_store(db) as store:
        run = store.run(run_id)
    if as_json:
        _print_json(run)
        return
    table = Table("field", "value", box=box.SIMPLE_HEAD)
    for key, value in run.items():
        if key not in ("history", "confusion_matrix", "per_class_accuracy", "config", "error"):
            table.add_row(key, _cell(value))
    for key, value in (run["config"] or {}).items():
        table.add_row(f"config.{key}", _cell(value))
    console.print(table)
    if run["history"]:
        history = Table("epoch", "loss", "accuracy", "seconds", title="history", box=box.SIMPLE_HEAD)
        for record in run["history"]:
            history.add_row(str(record["epoch"]), *[_cell(record[k]) for k in ("loss", "accuracy", "seconds")])
        console.print(history)
    if run["error"]:
        console.print(f"[red]error[/]: {run['error']}")


@runs_app.command("compare")
def runs_compare(run_ids: Annotated[list[int], typer.Argument(help="Two or more run ids.")],
                 db: DbOption = DEFAULT_DB, as_json: JsonOption = False):
    """Runs side by side: metrics, and the settings in which they differ."""
    with _open_existing_store(db) as store:
        runs = [store.run(run_id) for run_id in run_ids]
    metrics = ("variant", "seed", "status", "params", "train_accuracy", "test_accuracy", "test_loss",
               "epochs_run", "seconds_per_epoch", "train_seconds")
    settings = sorted({key for run in runs for key in (run["config"] or {})})
    differing = [key for key in settings if len({json.dumps((run["config"] or {}).get(key)) for run in runs}) > 1]
    if as_json:
        _print_json({"runs": [{"id": run["id"], **{m: run[m] for m in metrics}} for run in runs],
                     "differing_settings": {key: [(run["config"] or {}).get(key) for run in runs] for key in differing}})
        return
    table = Table("", *[f"run {run['id']}" for run in runs], box=box.SIMPLE_HEAD)
    for metric in metrics:
        table.add_row(metric, *[_cell(run[metric]) for run in runs])
    for key in differing:
        table.add_row(f"[yellow]config.{key}[/]", *[_cell((run["config"] or {}).get(key)) for run in runs])
    console.print(table)
