"""Commands on single models: train, evaluate, predict, info."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from denselab import api
from denselab.cli.app import DataDirOption, DatasetOption, JsonOption, app, console, err_console, print_json
from denselab.data.dataset import DEFAULT_DATASET
from denselab.errors import BadInput
from denselab.model.spec import ACTIVATIONS, ModelSpec
from denselab.training.config import TrainConfig

# The options' defaults are TrainConfig's and ModelSpec's: one home for each.
TRAIN = TrainConfig()
SPEC = ModelSpec((20,))

# --- train -----------------------------------------------------------------------------

@app.command()
def train(
    hidden: Annotated[str, typer.Option(help="Hidden layer sizes, e.g. 20 or 512,512.")] =
        ",".join(map(str, SPEC.hidden_units)),
    activation: Annotated[str, typer.Option(help=f"Hidden activation: {', '.join(ACTIVATIONS)}.")] = SPEC.activation,
    epochs: Annotated[int, typer.Option(help="Epochs (the exercise: 5).")] = TRAIN.epochs,
    batch_size: Annotated[int, typer.Option(help="Batch size (the exercise: 32).")] = TRAIN.batch_size,
    learning_rate: Annotated[float, typer.Option(help="Adam's learning rate.")] = TRAIN.learning_rate,
    normalization: Annotated[str, typer.Option(
        help="scale (/255.0, the exercise) or none (raw 0-255 pixels).")] = TRAIN.normalization,
    seed: Annotated[Optional[int], typer.Option(help="Seed for a repeatable run (default: random, and reported).")] = None,
    stop_at_accuracy: Annotated[
        Optional[float], typer.Option(help="Stop once training accuracy exceeds this (the exercise: 0.86).")
    ] = TRAIN.stop_at_accuracy,
    min_epochs: Annotated[int, typer.Option(help="...but never before this many epochs (the exercise: 2).")] =
        TRAIN.min_epochs,
    dataset: DatasetOption = DEFAULT_DATASET,
    data_dir: DataDirOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Directory for model.keras, history.json, metrics.json [runs/<model>].")] = None,
    as_json: JsonOption = False,
):
    """Train a dense network and evaluate it on the test set."""
    from denselab.data.dataset import check_dataset_name
    from denselab.data.sources import load_dataset
    from denselab.model.spec import parse_hidden_units

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
        run = api.train(spec, data, config, on_progress=on_progress)
    run.save(out)
    summary = run.summary()
    if as_json:
        print_json({key: summary[key] for key in (
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
    from denselab.data.dataset import CLASS_NAMES
    from denselab.data.sources import load_test_split
    from denselab.model.run_dir import load_trained_weights

    trained = load_trained_weights(model, normalization, dataset)
    test_images, test_labels, source = load_test_split(trained.dataset_name, data_dir)
    evaluation = api.evaluate(trained, (test_images, test_labels))
    if as_json:
        print_json(evaluation.as_dict())
        return
    names = CLASS_NAMES[trained.dataset_name]
    console.print(f"{model}: test accuracy {evaluation.test_accuracy:.4f}, test loss {evaluation.test_loss:.4f} "
                  f"on {len(test_labels):,} images from {source}")
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

    from denselab.data.dataset import CLASS_NAMES
    from denselab.data.images import load_image_file
    from denselab.data.sources import load_test_split
    from denselab.model.predict import named_predictions
    from denselab.model.run_dir import load_trained_weights

    pixels, sources, true_labels = [], [], []
    for path in images or []:
        pixels.append(load_image_file(path))
        sources.append(str(path))
        true_labels.append(None)
    trained = load_trained_weights(model, normalization)
    if index or not images:
        test_images, test_labels, _ = load_test_split(trained.dataset_name, data_dir)
        for number in index or [0]:
            if not 0 <= number < len(test_labels):
                raise BadInput(f"--index {number} is outside the test set (0-{len(test_labels) - 1})")
            pixels.append(test_images[number])
            sources.append(f"test image {number}")
            true_labels.append(int(test_labels[number]))
    names = CLASS_NAMES[trained.dataset_name]
    predictions = named_predictions(api.predict(trained, np.stack(pixels)), sources, names, true_labels)
    if as_json:
        print_json([prediction.as_dict() for prediction in predictions])
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
    """Datasets found and where, the Keras backend, versions, and TFLM's trees."""
    report = api.info()
    datasets, versions = report["datasets"], report["versions"]
    if as_json:
        print_json(report)
        return
    console.print(f"Keras backend: {report['keras_backend']}")
    table = Table("dataset", "where", title="datasets")
    for name, found in datasets.items():
        table.add_row(name, found["source"] if found["found"] else f"[red]not found[/]: {found['problem']}")
    console.print(table)
    console.print("versions: " + ", ".join(f"{name} {version or '-'}" for name, version in versions.items()))
    tflm = report["tflm"]
    if tflm["problem"]:
        console.print(f"TFLM trees: [red]{escape(tflm['problem'])}[/]")
    elif tflm["trees"]:
        console.print(f"TFLM trees: {escape(tflm['trees'])} (TFLM verdicts measured)", soft_wrap=True)
    else:
        console.print("TFLM trees: none (DENSELAB_TFLM_TREES unset): TFLM verdicts are estimated")
