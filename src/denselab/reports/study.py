"""A study's report: report.md with its figures, and a self-contained report.html.

The report never trains and never converts: it reads finished runs from the store (with
the deployment figures measured when each run finished), the best variant's saved model
(for the example prediction and the misclassified images) and the test set.
"""

import html
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.data.dataset import Dataset
from denselab.deploy.boards import boards_that_fit, boards_that_fit_c, io_bytes, load_boards
from denselab.deploy.cores import CORES
from denselab.deploy.tflm_runtime import TFLMRuntime, tflm_runtimes
from denselab.model.predict import DensePredictor
from denselab.model.spec import load_model
from denselab.reports import plots, prediction_figures
from denselab.reports.render import Figure, html_figure, html_table, markdown_figure, markdown_table, write_page
from denselab.study.file import Study
from denselab.study.findings import (
    Finding,
    VariantSummary,
    answer_questions,
    execution_mark,
    gflops,
    seconds_cell,
    summarize_variants,
    table_notes,
)

MISCLASSIFIED_SHOWN = 18


@dataclass(frozen=True)
class Report:
    study: Study
    summaries: list[VariantSummary]
    findings: list[Finding]
    answers_figure: Figure | None  # the forest plot of the answers; None without findings
    figures: list[Figure]
    failed: list[dict]
    environment: str
    # Variant name -> (int8 .tflite bytes, boards it fits with TFLM) of its first seed's run,
    # or None for runs stored before deployment figures were measured (schema 1).
    deployment: dict[str, tuple[int, list[str]] | None]
    # Variant name -> boards it fits with denselab's C runtime, from its layer sizes.
    c_boards: dict[str, list[str]]
    tflm: dict[str, TFLMRuntime]  # TFLM's own figures by core (the exercise's ops), which the note under the boards states

    @property
    def best(self) -> VariantSummary:
        return max(self.summaries, key=lambda summary: summary.metrics["test_accuracy"].mean)


def build_report(study: Study, runs: list[dict], dataset: Dataset, failed: list[dict] | None = None) -> Report:
    """Compute the summaries, findings and figures of a study from its finished runs."""
    if not runs:
        raise ValueError("a report needs at least one finished run")
    summaries = summarize_variants(study, runs)
    findings = answer_questions(study, runs)
    best = max(summaries, key=lambda summary: summary.metrics["test_accuracy"].mean)
    best_runs = sorted((run for run in runs if run["variant"] == best.name), key=lambda run: run["seed"])
    answers_figure = Figure(
        "answers", "Each question's difference in test accuracy (variant − baseline) with its 95% interval: "
        "real where the interval excludes zero, noise where it does not.",
        plots.accuracy_forest([(f.question.question, f.accuracy.estimate * 100,
                                None if f.accuracy.low is None else f.accuracy.low * 100,
                                None if f.accuracy.high is None else f.accuracy.high * 100) for f in findings]),
    ) if findings else None
    figures = [
        Figure("learning-curves", "Training loss and accuracy per epoch: mean over seeds, band ± 1 std.",
               plots.learning_curves({
                   summary.name: [run["history"] for run in runs if run["variant"] == summary.name]
                   for summary in summaries
               })),
        Figure("accuracy-vs-parameters", "Test accuracy (mean ± std over seeds) against parameter count.",
               plots.accuracy_vs_parameters([
                   (s.name, s.params, s.metrics["test_accuracy"].mean, s.metrics["test_accuracy"].std) for s in summaries
               ])),
        Figure("seconds-per-epoch", "Seconds per epoch of one seed (median of epochs after the first; mean ± std "
               "over seeds); a name marked * trained its seeds side by side, and its time is the group's ÷ its seeds.",
               plots.seconds_per_epoch([
                   (s.name + execution_mark(s), s.metrics["seconds_per_epoch"].mean, s.metrics["seconds_per_epoch"].std)
                   for s in summaries
               ])),
        Figure("confusion-matrix", f"Confusion matrix of the best variant, {best.name}, summed over its {len(best_runs)} seeds.",
               prediction_figures.confusion_matrix(
                   np.sum([run["confusion_matrix"] for run in best_runs], axis=0).tolist(),
                   list(dataset.class_names), f"{best.name}: rows true class, columns predicted",
               )),
    ]
    figures += _prediction_figures(best_runs[0], dataset)
    environment = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, " \
                  f"Keras backend {runs[0]['keras_backend']}"
    deployment, tflm = {}, tflm_runtimes()
    for summary in summaries:
        first = min((run for run in runs if run["variant"] == summary.name), key=lambda run: run["seed"])
        deployment[summary.name] = None if first.get("int8_bytes") is None else \
            (first["int8_bytes"], _tflm_boards(first, dataset))
    c_boards = {variant.name: boards_that_fit_c(variant.spec.hidden_units, dataset.class_names, io_bytes(dataset))
                for variant in study.variants if variant.name in deployment}
    return Report(study, summaries, findings, answers_figure, figures, failed or [], environment, deployment, c_boards,
                  tflm)


def _tflm_boards(run: dict, dataset: Dataset) -> list[str]:
    """The boards a run fits with TFLM, on TFLM's figures now; a run stored without its ops keeps the boards
    found when it finished (on the estimate of then)."""
    if not run.get("int8_ops") or run.get("arena_bytes") is None:
        return run["boards"]
    return boards_that_fit(run["int8_bytes"], run["arena_bytes"], io_bytes(dataset), tflm_runtimes(run["int8_ops"]))


def _prediction_figures(run: dict, dataset: Dataset) -> list[Figure]:
    """The exercise's print(classifications[0]) as a chart, and misclassified test images."""
    predictor = DensePredictor.from_keras(load_model(Path(run["model_path"])), run["config"]["normalization"])
    probabilities = predictor.probabilities(dataset.test_images)
    names = dataset.class_names
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != dataset.test_labels)[:MISCLASSIFIED_SHOWN]
    label = f"{run['variant']}, seed {run['seed']}"
    return [
        Figure("test-image-0", f"Test image 0 and the probability vector that {label} gives it.",
               prediction_figures.probability_vector(
                   dataset.test_images[0], probabilities[0].tolist(), list(names),
                   names[int(dataset.test_labels[0])], f"model.predict(test image 0), {label}",
               )),
        Figure("misclassified", f"The first {len(wrong)} misclassified test images of {label}.",
               prediction_figures.misclassified_grid(
                   dataset.test_images[wrong], [names[i] for i in dataset.test_labels[wrong]],
                   [names[i] for i in predicted[wrong]], probabilities[wrong, predicted[wrong]].tolist(),
               )),
    ]


# --- rendering -------------------------------------------------------------------------

WORK_HEADER = "GFLOP/epoch"
TABLE_HEADER = ("variant", "params", "test acc.", "train acc.", "test loss", "epochs", "s/epoch", WORK_HEADER, "seeds")
FITS, DOES_NOT_FIT = "✓", "–"
def boards_note(tflm: dict[str, TFLMRuntime]) -> str:
    own = "; ".join(f"{core}: {runtime.code_bytes:,} and {runtime.ram_bytes:,} bytes" for core, runtime in tflm.items())
    basis = {runtime.basis.split(", ", 1)[-1] for runtime in tflm.values()}
    unchecked = ", ".join(key for key, board in load_boards().items() if not CORES[board.core].checked)
    no_tflm = ", ".join(key for key, board in load_boards().items() if not CORES[board.core].tflm)
    return (
        "int8 bytes: the full-integer TensorFlow Lite model of each variant's first seed. Under each board, the "
        f"first mark is TensorFlow Lite Micro, the second denselab's C runtime (denselab export --runtime c): {FITS} "
        f"fits, {DOES_NOT_FIT} does not, ? not measured (a run stored by an older denselab). Each board is judged "
        "on its own core. TFLM fits where the board's flash holds the model and TFLM's code, and its RAM the "
        f"measured arena and TFLM's own RAM ({own}; {'; '.join(sorted(basis))}); it does not run on {no_tflm} "
        "(it needs a 32-bit core). The C runtime's flash and RAM follow from the layer sizes (bounds checked "
        f"against each core's builds). {unchecked}: not checked here (no Xtensa toolchain), judged on the "
        "Cortex-M4's figures."
    )


def teacher_note(report: Report, name: str) -> str:
    """What a variant's list entry adds when it learned from a teacher (denselab.training.teacher)."""
    config = report.study.variant(name).config
    if config.teacher == "none":
        return ""
    epochs = f"{config.teacher_epochs} epoch{'s' if config.teacher_epochs != 1 else ''}"
    return (f" (learned from a {config.teacher} teacher of {epochs}, seed {config.teacher_seed}, weight "
            f"{config.distill_weight:g} at T = {config.distill_temperature:g}; the teacher is not exported, and its "
            "own training, once for all seeds, is not in this variant's times: see `denselab runs list`)")


def summary_rows(summaries: list[VariantSummary]) -> list[tuple[str, ...]]:
    """The per-variant table, as text cells (mean ± std over seeds)."""
    return [(
        s.name, f"{s.params:,}", s.metrics["test_accuracy"].format(), s.metrics["train_accuracy"].format(),
        s.metrics["test_loss"].format(), s.metrics["epochs_run"].format(1), seconds_cell(s, compact=False),
        gflops(s), str(s.seeds),
    ) for s in summaries]


def board_header() -> tuple[str, ...]:
    boards = load_boards()
    return ("variant", "int8 bytes", *boards)


def board_rows(report: Report) -> list[tuple[str, ...]]:
    """Per variant: its int8 size, and under each board a TFLM mark and a C-runtime mark."""
    boards = load_boards()
    rows = []
    for summary in report.summaries:
        deployment = report.deployment[summary.name]
        size = "-" if deployment is None else f"{deployment[0]:,}"

        def mark(board: str) -> str:
            tflm = "?" if deployment is None else FITS if board in deployment[1] else DOES_NOT_FIT
            return f"{tflm} {FITS if board in report.c_boards[summary.name] else DOES_NOT_FIT}"

        rows.append((summary.name, size, *[mark(board) for board in boards]))
    return rows


def _notes(report: Report) -> list[str]:
    """The variants table's notes, without the terminal's pointer to this report."""
    return [note for note in table_notes(report.summaries, WORK_HEADER) if "report.md" not in note]


def _markdown(report: Report) -> list[str]:
    lines = [report.study.description, "",
             f"Seeds per variant: {len(report.study.seeds)}. Machine: {report.environment}.", ""]
    if report.findings:
        lines += ["## Answers", "", *markdown_figure(report.answers_figure),
                  *[f"- {finding.answer()}" for finding in report.findings], "", "## Findings", ""]
    for finding in report.findings:
        lines.append(f"**{finding.question.question}**")
        lines += [f"- {sentence}" for sentence in finding.sentences()] + [""]
    lines += ["## Variants (mean ± std over seeds)", "", *markdown_table(TABLE_HEADER, summary_rows(report.summaries)),
              "", *[f"{note}." if not note.endswith(".") else note for note in _notes(report)], "",
              *[f"- **{s.name}**: {s.reason}{teacher_note(report, s.name)}" for s in report.summaries], "",
              "## Boards", "", *markdown_table(board_header(), board_rows(report)), "", boards_note(report.tflm), ""]
    if report.failed:
        lines += ["## Failed runs", ""] + [f"- {run['variant']} seed {run['seed']}: {run['error'].splitlines()[0]}"
                                          for run in report.failed] + [""]
    lines += ["## Figures", ""]
    for figure in report.figures:
        lines += markdown_figure(figure)
    return lines


# Numbers never wrap: a table wider than the page scrolls inside its own box instead.
# Beside the forest plot the answers read as a column; below ~1100 px they go under it.
STYLE = (
    ".scroll{overflow-x:auto}td,th{padding:.3rem .6rem;white-space:nowrap}th:first-child{text-align:left}"
    "td.mark{text-align:center}figcaption{color:#555;font-style:italic}"
    ".answers{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}"
    ".answers figure{flex:1 1 34rem;margin:0}.answers ul{flex:1 1 28rem;margin:0;padding-left:1.2rem}"
    ".answers li{margin-bottom:.6rem}.note{color:#555}"
    "@media (max-width:900px){table{font-size:.85rem}td,th{padding:.25rem .35rem}}"
)


def _html(report: Report) -> list[str]:
    e = html.escape
    parts = [f"<p>{e(report.study.description)}</p>",
             f"<p>Seeds per variant: {len(report.study.seeds)}. Machine: {e(report.environment)}.</p>"]
    if report.findings:
        answers = "".join(
            f"<li><b>{e(f.question.question)}</b>{e(f.answer().removeprefix(f.question.question))}</li>"
            for f in report.findings)
        parts.append(f"<h2>Answers</h2><div class='answers'>{html_figure(report.answers_figure)}"
                     f"<ul>{answers}</ul></div><h2>Findings</h2>")
    for finding in report.findings:
        parts.append(f"<h3>{e(finding.question.question)}</h3><ul>")
        parts += [f"<li>{e(sentence)}</li>" for sentence in finding.sentences()] + ["</ul>"]
    parts.append("<h2>Variants (mean ± std over seeds)</h2>" + html_table(TABLE_HEADER, summary_rows(report.summaries)))
    parts += [f"<p class='note'>{e(note)}</p>" for note in _notes(report)]
    parts.append("<ul>" + "".join(f"<li><b>{e(s.name)}</b>: {e(s.reason)}{e(teacher_note(report, s.name))}</li>"
                                    for s in report.summaries) + "</ul>")
    parts.append("<h2>Boards</h2>" + html_table(board_header(), board_rows(report), marks=True)
                 + f"<p class='note'>{e(boards_note(report.tflm))}</p>")
    if report.failed:
        parts.append("<h2>Failed runs</h2><ul>" + "".join(
            f"<li>{e(run['variant'])} seed {run['seed']}: {e(run['error'].splitlines()[0])}</li>" for run in report.failed
        ) + "</ul>")
    parts.append("<h2>Figures</h2>")
    parts += [html_figure(figure) for figure in report.figures]
    return parts


def write_report(report: Report, out_dir: Path) -> Path:
    """Write report.md, figures/*.png and report.html into `out_dir`, each file atomically."""
    figures = [report.answers_figure] * bool(report.findings) + report.figures
    return write_page(out_dir, f"denselab study: {report.study.name}", _markdown(report), _html(report), figures,
                      STYLE)
