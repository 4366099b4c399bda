"""`denselab search`: the most accurate dense model that fits a board."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from denselab import api
from denselab.cli.app import DataDirOption, JsonOption, app, console, err_console, measure_tflm_first, print_json
from denselab.cli.study_commands import DbOption
from denselab.model_search import MAX_FINALISTS
from denselab.model_search.run import SearchSettings

# The options' defaults are SearchSettings' and Runner's: one home for each.
SETTINGS = SearchSettings()
RUNNER = api.Runner()


@app.command()
def search(
    target: Annotated[Optional[str], typer.Option(help="A board of boards.toml (e.g. nano33ble, samd21).")] = None,
    flash: Annotated[Optional[float], typer.Option(help="A custom budget instead of --target: flash in KB.")] = None,
    ram: Annotated[Optional[float], typer.Option(help="A custom budget instead of --target: RAM in KB.")] = None,
    runtime: Annotated[str, typer.Option(help="tflm (TensorFlow Lite Micro) or c (denselab's C runtime: "
                                                  "smaller, and its flash and RAM measured).")] = "tflm",
    trials: Annotated[int, typer.Option(help="Proposals trained in the first rung.")] = SETTINGS.trials,
    time_budget: Annotated[Optional[float], typer.Option(help="Minutes after which no new trial starts.")] =
        SETTINGS.time_budget_minutes,
    epochs_max: Annotated[int, typer.Option(help="Epochs of the last rung and of the finalists.")] = SETTINGS.epochs_max,
    seed: Annotated[int, typer.Option(help="The sampler's seed and every trial's training seed.")] = SETTINGS.seed,
    validation: Annotated[int, typer.Option(help="Training images held out to compare trials.")] = SETTINGS.validation,
    teacher: Annotated[str, typer.Option(help="none, or cnn: a CNN teacher used only while training (knowledge "
                                         "distillation); it never ships.")] = SETTINGS.teacher,
    teacher_epochs: Annotated[int, typer.Option(help="Epochs the teacher trains.")] = SETTINGS.teacher_epochs,
    finalists: Annotated[int, typer.Option(help="Pareto points retrained with 3 seeds and checked, the most "
                                           "accurate first (1: the winner alone).")] = MAX_FINALISTS,
    executor: Annotated[str, typer.Option(help="local (this process) or ray (a Ray task per run).")] = RUNNER.executor,
    workers: Annotated[int, typer.Option(help="Trials trained at once: local Ray processes, or proposals per batch "
                                         "with --executor ray.")] = RUNNER.workers,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster HOST:PORT [a local Ray instance].")] =
        RUNNER.ray_address,
    db: DbOption = RUNNER.db,
    models_dir: Annotated[Path, typer.Option(help="Where each run's model.keras is kept.")] = RUNNER.models_dir,
    out: Annotated[Optional[Path], typer.Option(help="Report, finalists' .tflite and study files [reports/search/TARGET].")] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
):
    """Search for the most accurate dense model that fits a board, chosen on a validation split.

    Trials are compared by their int8 model's accuracy on training images held out for
    validation; the finalists are retrained on all training images with 3 seeds, exported,
    checked under TensorFlow Lite Micro and scored once on the test set. Run the same
    command again after a stop and it continues; finished trials never run again.
    """
    def started(chosen_target, settings) -> None:
        if not as_json:
            teaching = "" if settings.teacher == "none" else f", a {settings.teacher} teacher first"
            console.print(f"search for {escape(chosen_target.name)}: {trials} trials, rungs of "
                          f"{', '.join(map(str, settings.rungs()))} epochs{teaching}; runs in {db}")

    if runtime == "tflm":
        measure_tflm_first()
    try:
        with _SearchProgress() as on_progress:
            result = api.search(target, SearchSettings(trials, epochs_max, seed, time_budget, validation, teacher,
                                                           teacher_epochs),
                                flash_kb=flash, ram_kb=ram, runtime=runtime, finalists=finalists, out=out,
                                runner=api.Runner(db, models_dir, executor, workers, ray_address), data_dir=data_dir,
                                on_start=started, on_progress=on_progress)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished trials are stored; run the same command again to continue")
        raise typer.Exit(130)
    if as_json:
        print_json(result.as_dict())
    else:
        _print_result(result.as_dict())


def _print_result(result: dict) -> None:
    best = result["best"]
    console.print(f"{result['trials']} trials trained, {result['rejected']} refused before training (too large), "
                  f"{result['failed']} failed")
    # 80 columns: short headers, no cell wraps; the winner is starred and named below.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in ("finalist", "val. int8", "test int8, 3 seeds", "bytes", "arena", "fits"):
        table.add_column(header, no_wrap=True, justify="left" if header == "finalist" else "right")
    for finalist in result["pareto"]:
        table.add_row(escape(finalist["name"]) + (" *" if finalist["winner"] else ""), f"{finalist['val_accuracy_int8']:.4f}",
                      f"{finalist['test_accuracy_int8_mean']:.4f} ± {finalist['test_accuracy_int8_std']:.4f}",
                      f"{finalist['int8_bytes']:,}", f"{finalist['arena_bytes']:,}", "yes" if finalist["fits"] else "no")
    console.print(table)
    console.print("* the winner: the most accurate on the validation split that fits; val.: validation "
                  "accuracy of the int8 model", style="dim")
    if best:
        console.print(f"winner: {escape(best['tflite_path'])}; reproduce it with "
                      f"denselab explore --study {escape(best['study_path'])}")
    console.print(f"report: {escape(result['report'])}")


class _SearchProgress:
    """Trial k of N, the best int8 validation accuracy so far, and the time left, on stderr."""

    def __init__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.fields[phase]}"), BarColumn(), TextColumn("{task.fields[state]}"),
                                 TimeElapsedColumn(), console=err_console, transient=True)
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self.update

    def update(self, state) -> None:
        best = f"best {state.best:.4f}" if state.best is not None else "best -"
        left = f", ~{state.seconds_left / 60:.0f} min left" if state.seconds_left else ""
        fields = {"phase": f"{state.phase} {state.done}/{state.total}", "state": best + left}
        if self.task is None:
            self.task = self.progress.add_task("search", total=state.total, **fields)
        self.progress.update(self.task, total=state.total, completed=state.done, **fields)

    def __exit__(self, *exc_info):
        self.progress.stop()
