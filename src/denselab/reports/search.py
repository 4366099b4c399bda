"""A search's report: report.md with its figures, and a self-contained report.html.

It reads what the search found (trials, finalists, importances) and never trains. It says
how the winner was chosen, on the validation split, and that the test set was scored only
for the finalists, once, after they were chosen.
"""

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.deploy.boards import load_boards
from denselab.deploy.cores import CORES
from denselab.model_search.finalists import Finalist
from denselab.model_search.run import SearchSettings, Trial
from denselab.model_search.target import Target
from denselab.reports import prediction_figures, search_figures
from denselab.reports.render import Figure, html_figure, html_table, markdown_figure, markdown_table, write_page

TRIAL_HEADER = ("trial", "hidden", "status", "epochs", "int8 val. acc.", "int8 bytes", "arena", "lr", "batch",
                "dropout in/hid", "wd", "smooth", "sched.", "aug.", "std.")


@dataclass(frozen=True)
class SearchReport:
    target: Target
    settings: SearchSettings
    split: dict
    trials: list[Trial]
    pareto: list[Trial]
    finalists: list[Finalist]
    importances: dict[str, float]
    class_names: tuple[str, ...]
    seconds: float
    teacher: dict | None = None  # the trials' teacher (engine.teacher_summary); None without one
    started_at: float = 0.0  # when this run of the search began (time.time()): a teacher finished before was reused

    @property
    def winner(self) -> Finalist | None:
        return next((finalist for finalist in self.finalists if finalist.winner), None)


def trial_rows(report: SearchReport) -> list[tuple[str, ...]]:
    rows = []
    for trial in report.trials:
        p = trial.params
        accuracy = " → ".join(f"{run['int8_accuracy']:.4f}" for _, run in sorted(trial.runs.items())) or "-"
        training = ("-",) * 8
        if "learning_rate" in p:
            training = (f"{p['learning_rate']:.2g}", str(p["batch_size"]),
                        f"{p['dropout_input']:.2f}/{p['dropout_hidden']:.2f}", f"{p['weight_decay']:.1g}",
                        f"{p['label_smoothing']:.2f}", p["schedule"], p["augment"], "yes" if p["standardize"] else "no")
        rows.append((f"t{trial.number:04d}", "-".join(map(str, trial.hidden_units)), trial.status,
                     " → ".join(map(str, sorted(trial.runs))) or "-", accuracy, f"{trial.int8_bytes:,}",
                     f"{trial.arena_bytes:,}", *training))
    return rows


def _figures(report: SearchReport) -> list[Figure]:
    pareto = {trial.number for trial in report.pareto}
    winner = report.winner.trial.number if report.winner else None
    top = max((t.top_epochs for t in report.trials if t.runs), default=None)
    points = [{"name": f"t{t.number:04d}", "int8_bytes": t.int8_bytes, "val_accuracy_int8": t.accuracy,
               "pareto": t.number in pareto, "winner": t.number == winner}
              for t in report.trials if t.runs and t.top_epochs == top]
    shown = []
    if points:
        shown.append(Figure(
            "pareto-front", f"int8 validation accuracy against int8 model size of the trials that reached {top} "
            f"epochs; the dashed line is the largest model {report.target.name}'s flash holds beside the runtime.",
            search_figures.pareto_front(points, report.target.model_flash_limit, report.target.name)))
    if report.importances:
        shown.append(Figure(
            "importances", "How much each choice mattered to the int8 validation accuracy of the first rung "
            "(Optuna's PED-ANOVA over the trained trials).",
            search_figures.importances(report.importances, "Importance of each choice")))
    if report.winner:
        matrix = np.sum([run["confusion_matrix"] for run in report.winner.runs], axis=0).tolist()
        shown.append(Figure(
            "confusion-matrix", f"Confusion matrix of the winner, {report.winner.name}, on the test set "
            f"(float model, summed over its {len(report.winner.runs)} seeds).",
            prediction_figures.confusion_matrix(matrix, list(report.class_names),
                                                f"{report.winner.name}: rows true class, columns predicted")))
    return shown


def _summary_lines(report: SearchReport) -> list[str]:
    s, t = report.settings, report.target
    boards = load_boards()
    unchecked = [f"{t.name}: {boards[t.key].check_note}; judged on the Cortex-M4's figures."] \
        if t.key in boards and not CORES[boards[t.key].core].checked else []
    lines = [*unchecked,
        f"Target: {t.name}: {t.flash_bytes:,} bytes of flash, {t.ram_bytes:,} bytes of RAM, runtime {t.runtime} "
        + (f"(TFLM itself: {t.runtime_flash_bytes:,} bytes of code and {t.runtime_ram_bytes:,} bytes of RAM "
           f"besides the arena, {t.runtime_basis})." if t.runtime == "tflm" else
           f"(denselab's C runtime: its code at most {t.runtime_flash_bytes:,} bytes of flash, measured; a trial's "
           "model bytes and RAM are its tables and its activations and stack, from the layer sizes)."),
        f"Settings: {s.trials} trials, up to {s.epochs_max} epochs (rungs of {', '.join(map(str, s.rungs()))}), "
        f"seed {s.seed}" + (f", time budget {s.time_budget_minutes:g} min" if s.time_budget_minutes else "")
        + f"; wall time {report.seconds / 60:.1f} min.",
        f"Selection: every trial was scored by its int8 model's accuracy on a fixed, stratified validation split "
        f"of {report.split['count']:,} training images (seed {report.split['seed']}, indices sha256 "
        f"{report.split['indices_sha256'][:16]}…), never on the test set. The test set was scored only for the "
        f"{len(report.finalists)} finalists, once, after they were chosen.",
    ]
    lines += teacher_lines(report)
    if report.winner:
        w = report.winner.as_dict()
        lines.append(
            f"Winner: {w['name']} (hidden {'-'.join(map(str, report.winner.trial.hidden_units))}), int8 validation "
            f"accuracy {w['val_accuracy_int8']:.4f}; retrained on all training images with {w['seeds']} seeds: int8 "
            f"test accuracy {w['test_accuracy_int8_mean']:.4f} ± {w['test_accuracy_int8_std']:.4f} (the file "
            f"{Path(w['tflite_path']).name}: {w['test_accuracy_int8']:.4f}); {w['int8_bytes']:,} bytes, arena "
            f"{w['arena_bytes']:,} bytes under TFLM, which agreed with LiteRT's reference kernels on the top class of "
            f"{w['tflm']['top_class_agreement']:.1%} of {w['tflm']['images']} test images; "
            f"{'fits' if w['fits'] else 'does NOT fit'} {t.name}.")
        if w["c"]:
            lines.append(c_runtime_line(w["c"], t.core))
    return lines


def teacher_lines(report: SearchReport) -> list[str]:
    """Which teacher the trials and the finalists learned from, on what data, and how good it was."""
    if report.settings.teacher == "none":
        return []
    lines = [f"Teacher: a {report.settings.teacher} (denselab.training.teacher), used only while training: each "
             f"student learned from the labels and its softened outputs; only the student is exported."]
    finalist = next((f.teacher for f in report.finalists if f.teacher), None)
    for role, teacher in (("trials", report.teacher), ("finalists", finalist)):
        if teacher:
            lines.append(
                f"The {role}' teacher (run {teacher['run_id']}, seed {teacher['seed']}, {teacher['epochs']} "
                f"epoch{'s' if teacher['epochs'] != 1 else ''}) "
                f"trained on {teacher['train_examples']:,} training images in {teacher['train_seconds'] / 60:.1f} min"
                + (" before this search began, and was reused (its time is not in the wall time)"
                   if teacher["finished_at"] < report.started_at else "")
                + f"; its {teacher['scored_on']} accuracy: {teacher['accuracy']:.4f}"
                + (" (no validation image reached it)." if role == "trials" else
                   " (scored after the finalists were chosen)."))
    return lines


def c_runtime_line(c: dict, core: str) -> str:
    """The winner's C runtime on the target's own core: its build there, or footprint's bounds where it
    could not be run (the Uno, when no test image fits beside the model in its sketch)."""
    same = "identical to" if c["host_identical_to_tflm"] else "DIFFERENT from"
    text = f"C runtime of the winner: outputs {same} TFLM's on {c['host_images']:,} test images on the host"
    figures = c["cores"].get(core)
    if figures is None:
        return text + (f"; not run on its {CORES[core].title} (no room for a test image beside the model in the "
                       "example sketch).")
    where = "under simavr (ATmega328P at 16 MHz)" if core == "avr" else f"under QEMU {figures['machine']}"
    count = f"{figures['cycles_per_inference']:,} cycles" if "cycles_per_inference" in figures else \
        f"{figures['instructions_per_inference']:,} instructions"
    return (text + f"; on its {CORES[core].title}: {figures['flash_bytes']:,} bytes of flash and {figures['ram_bytes']:,} bytes "
            f"of RAM (measured), {where} {'identical to' if figures['identical'] else 'DIFFERENT from'} the "
            f"interpreter's, {count} per inference.")


def _finalist_rows(report: SearchReport) -> list[tuple[str, ...]]:
    rows = []
    for finalist in report.finalists:
        d = finalist.as_dict()
        rows.append((d["name"] + (" (winner)" if finalist.winner else ""), f"{d['val_accuracy_int8']:.4f}",
                     f"{d['test_accuracy_int8_mean']:.4f} ± {d['test_accuracy_int8_std']:.4f}",
                     f"{d['test_accuracy_int8']:.4f}", f"{d['int8_bytes']:,}", f"{d['arena_bytes']:,}",
                     "yes" if d["fits"] else "no", Path(d["study_path"]).name))
    return rows


FINALIST_HEADER = ("finalist", "int8 val. acc.", "int8 test acc. (seeds)", "int8 test acc. (file)", "int8 bytes",
                   "TFLM arena", "fits", "study file")


def _markdown(report: SearchReport, shown: list[Figure]) -> list[str]:
    lines = [f"{line}\n" for line in _summary_lines(report)]
    lines += ["## Finalists", "", *markdown_table(FINALIST_HEADER, _finalist_rows(report)), ""]
    if report.importances:
        lines += ["## How much each choice mattered", "", *markdown_table(
            ("choice", "importance"), [(name, f"{value:.1%}") for name, value in report.importances.items()]), ""]
    lines += ["## Trials", "", *markdown_table(TRIAL_HEADER, trial_rows(report)), ""]
    lines += ["## Figures", ""]
    for figure in shown:
        lines += markdown_figure(figure)
    return lines


# The trials table is 15 columns wide: smaller type and closer cells keep it on the page.
STYLE = "table{font-size:.85rem}td,th{padding:.2rem .5rem}"


def _html(report: SearchReport, shown: list[Figure]) -> list[str]:
    e = html.escape
    parts = [f"<p>{e(line)}</p>" for line in _summary_lines(report)]
    parts += ["<h2>Finalists</h2>", html_table(FINALIST_HEADER, _finalist_rows(report))]
    if report.importances:
        parts += ["<h2>How much each choice mattered</h2>",
                  html_table(("choice", "importance"), [(n, f"{v:.1%}") for n, v in report.importances.items()])]
    parts += ["<h2>Trials</h2>", html_table(TRIAL_HEADER, trial_rows(report)), "<h2>Figures</h2>"]
    return parts + [html_figure(figure) for figure in shown]


def write_search_report(report: SearchReport, out_dir: Path) -> Path:
    """Write report.md, figures/*.png and report.html into `out_dir`, each file atomically."""
    shown = _figures(report)
    return write_page(out_dir, f"denselab search: {report.target.name}", _markdown(report, shown),
                      _html(report, shown), shown, STYLE)
