"""Commands on studies: explore, and runs list / show / compare."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from denselab import api
from denselab.cli.app import DataDirOption, JsonOption, app, console, err_console, measure_tflm_first, print_json

# --- explore ---------------------------------------------------------------------------

DbOption = Annotated[Path, typer.Option("--db", help="The run database (SQLite).")]
# The options' defaults are Runner's and explore's: one home for each.
RUNNER = api.Runner()


@app.command()
def explore(
    study_file: Annotated[Optional[Path], typer.Option("--study", help="A study TOML file [the built-in exercise study].")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Seeds per variant [the study's, 3 for the built-in one].")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Train every variant for this many epochs, for a quick look.")] = None,
    db: DbOption = RUNNER.db,
    out: Annotated[Path, typer.Option(help="Directory for report.md, report.html and figures/.")] = api.DEFAULT_STUDY_OUT,
    models_dir: Annotated[Path, typer.Option(help="Where each run's model.keras is kept.")] = RUNNER.models_dir,
    data_dir: DataDirOption = None,
    executor: Annotated[str, typer.Option(help="local (this process) or ray (a Ray task per run).")] = RUNNER.executor,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster HOST:PORT [a local Ray instance].")] =
        RUNNER.ray_address,
    cpus_per_run: Annotated[float, typer.Option(help="CPUs each Ray task asks for.")] = RUNNER.cpus_per_run,
    gpus_per_run: Annotated[float, typer.Option(help="GPUs each Ray task asks for.")] = RUNNER.gpus_per_run,
    workers: Annotated[int, typer.Option(help="Runs trained in parallel on this machine (>1: local Ray processes).")] =
        RUNNER.workers,
    as_json: JsonOption = False,
):
    """Run the exercise's experiments over several seeds and write a report with findings.

    Runs already in the database are reused; an interrupted study continues where it stopped.
    """
    runner = api.Runner(db, models_dir, executor, workers, ray_address, cpus_per_run, gpus_per_run)

    def started(study) -> None:
        if not as_json:
            source = "built in" if study_file is None else f"from {study.source}"
            console.print(f"study {study.name} ({source}): {len(study.variants)} variants × {len(study.seeds)} "
                          f"seeds; runs in {db}")

    measure_tflm_first()  # each run's boards use TFLM's figures
    try:
        with _study_progress() as on_progress:
            result = api.explore(study_file, seeds=seeds, epochs=epochs, out=out, runner=runner, data_dir=data_dir,
                                 on_start=started, on_progress=on_progress)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished runs are stored; run the same command again to continue")
        raise typer.Exit(130)
    if as_json:
        print_json(result.as_dict())
    else:
        _print_report(result.report, result, out)
    if result.failed:
        raise typer.Exit(1)


def _print_report(report, outcome, out: Path) -> None:
    from denselab.study.findings import table_notes

    console.print(f"{outcome.trained} runs trained, {outcome.reused} reused from the database"
                  + (f", [red]{len(outcome.failed)} failed[/]" if outcome.failed else ""))
    console.print(_variants_table(report.summaries))
    for note in table_notes(report.summaries):
        console.print(note, style="dim", highlight=False)
    # One sentence per question; the differences in detail are in the report.
    for finding in report.findings:
        console.print(f"- {escape(finding.answer())}", highlight=False)
    for run in outcome.failed:
        console.print(f"[red]failed[/]: {escape(run['variant'])} seed {run['seed']}: {escape(run['error'].splitlines()[0])}")
    console.print(f"report: {out / 'report.md'} and {out / 'report.html'}")
    _print_next_steps(report.best.name, outcome.best_model)


def _variants_table(summaries) -> Table:
    """The variants in 80 columns: test accuracy first, each mean ± std on one line."""
    from denselab.study.findings import gflops, seconds_cell

    table = Table(title="variants", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    for header in ("variant", "params", "test acc.", "train acc.", "epochs", "GFLOP/ep", "s/epoch"):
        table.add_column(header, no_wrap=True, justify="left" if header == "variant" else "right")
    for s in summaries:
        table.add_row(escape(s.name), f"{s.params:,}", s.metrics["test_accuracy"].format(compact=True),
                      s.metrics["train_accuracy"].format(compact=True), s.metrics["epochs_run"].format(1, compact=True),
                      gflops(s), seconds_cell(s))
    return table


def _print_next_steps(variant: str, model: Path | None) -> None:
    """What to try next, with the study's most accurate model (StudyResult.best_model)."""
    if model is None:
        return
    console.print(f"next, with the most accurate variant ({escape(variant)}):")
    console.print(f"  MODEL={escape(str(model))}", soft_wrap=True, highlight=False)
    for why, command in (
        ("predict your own photo (PNG or JPEG)", "denselab predict $MODEL photo.png"),
        ("a page to draw on, at http://127.0.0.1:8000", "denselab serve $MODEL"),
        ("plain C for a board, checked against TFLM", "denselab export $MODEL --runtime c --target nano33ble"),
        ("the most accurate model that fits a board (~7 min)",
         "denselab search --target nano33ble --trials 6 --epochs-max 36 --finalists 1"),
    ):
        console.print(f"  [dim]# {why}[/]\n  {command}", highlight=False)


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
        fields = {"runs": f"runs {state.runs_done}/{state.runs_total}", "current": state.current}
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
RUN_HEADERS = {"test_accuracy": "test acc.", "test_loss": "test loss", "epochs_run": "epochs", "seconds_per_epoch": "s/epoch"}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else escape(str(value))


@runs_app.command("list")
def runs_list(
    db: DbOption = RUNNER.db,
    study: Annotated[Optional[str], typer.Option(help="Only this study's runs.")] = None,
    as_json: JsonOption = False,
):
    """One line per run."""
    runs = api.stored_runs(study, db=db)
    if as_json:
        print_json([{column: run[column] for column in RUN_COLUMNS} for run in runs])
        return
    # 80 columns: one table per study, titled with it, and short headers; no cell wraps.
    for study_name in dict.fromkeys(run["study"] for run in runs):
        table = Table(title=escape(study_name), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for column in RUN_COLUMNS:
            if column != "study":
                table.add_column(RUN_HEADERS.get(column, column), no_wrap=True, overflow="ellipsis",
                                 justify="left" if column in ("variant", "status") else "right")
        for run in runs:
            if run["study"] == study_name:
                table.add_row(*[_cell(run[column]) for column in RUN_COLUMNS if column != "study"])
        console.print(table)


@runs_app.command("show")
def runs_show(run_id: Annotated[int, typer.Argument(help="Run id (see 'denselab runs list').")],
              db: DbOption = RUNNER.db, as_json: JsonOption = False):
    """Everything stored about one run."""
    run = api.stored_run(run_id, db=db)
    if as_json:
        print_json(run)
        return
    # Field and value on a line each, not a table: a long value (a path) wraps as text does.
    from denselab.training.loop import Execution

    fields = [(key, Execution.from_dict(value).label if key == "execution" and value else value)
              for key, value in run.items()
              if key not in ("history", "confusion_matrix", "per_class_accuracy", "config", "error")]
    fields += [(f"config.{key}", value) for key, value in (run["config"] or {}).items()]
    width = max(len(key) for key, _ in fields)
    for key, value in fields:
        console.print(f"{key:<{width}}  {_cell(value)}", highlight=False, soft_wrap=True)
    if run["history"]:
        history = Table("epoch", "loss", "accuracy", "seconds", title="history", box=box.SIMPLE_HEAD)
        for record in run["history"]:
            history.add_row(str(record["epoch"]), *[_cell(record[k]) for k in ("loss", "accuracy", "seconds")])
        console.print(history)
    if run["error"]:
        console.print(f"[red]error[/]: {escape(run['error'])}")


@runs_app.command("compare")
def runs_compare(run_ids: Annotated[list[int], typer.Argument(help="Two or more run ids.")],
                 db: DbOption = RUNNER.db, as_json: JsonOption = False):
    """Runs side by side: metrics, and the settings in which they differ."""
    runs = [api.stored_run(run_id, db=db) for run_id in run_ids]
    metrics = ("variant", "seed", "status", "params", "train_accuracy", "test_accuracy", "test_loss",
               "epochs_run", "seconds_per_epoch", "train_seconds")
    settings = sorted({key for run in runs for key in (run["config"] or {})})
    differing = [key for key in settings if len({json.dumps((run["config"] or {}).get(key)) for run in runs}) > 1]
    if as_json:
        print_json({"runs": [{"id": run["id"], **{m: run[m] for m in metrics}} for run in runs],
                     "differing_settings": {key: [(run["config"] or {}).get(key) for run in runs] for key in differing}})
        return
    table = Table("", *[f"run {run['id']}" for run in runs], box=box.SIMPLE_HEAD)
    for metric in metrics:
        table.add_row(metric, *[_cell(run[metric]) for run in runs])
    for key in differing:
        table.add_row(f"[yellow]config.{key}[/]", *[_cell((run["config"] or {}).get(key)) for run in runs])
    console.print(table)
