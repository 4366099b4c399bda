"""Numbers a study's report states: per-variant summaries and answers to its questions.

Every sentence of a finding is computed from stored runs. A difference between two
variants comes with a 95% confidence interval from Welch's t-test over seeds (the
variants' spreads need not be equal); it is called distinguishable from noise only when
the interval excludes zero.

Times are compared only between runs executed the same way (loop.Execution): seeds that
share a program side by side take another time per seed than seeds trained alone, so
such a ratio would measure the grouping, not the models. Beside every time stands the
work itself, training FLOPs (ModelSpec.training_flops), which no CPU overhead can fake.
"""

import math
import statistics
from dataclasses import dataclass

from scipy import stats

from denselab.study.file import Question, Study
from denselab.training.loop import Execution

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Mean and standard deviation over seeds (std is 0.0 with one seed)."""

    mean: float
    std: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> "Summary":
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))

    def format(self, digits: int = 3, compact: bool = False) -> str:
        return f"{self.mean:.{digits}f}{'±' if compact else ' ± '}{self.std:.{digits}f}"


# The per-run columns the report summarizes, in table order.
METRICS = ("train_accuracy", "test_accuracy", "test_loss", "epochs_run", "seconds_per_epoch", "train_seconds")


@dataclass(frozen=True)
class VariantSummary:
    name: str
    reason: str
    params: int
    seeds: int
    metrics: dict[str, Summary]
    train_flops_per_epoch: int  # the work of one epoch, 6 × MACs × training images
    executions: frozenset  # how its runs were trained (Execution, or None where not recorded)

    @property
    def execution(self) -> Execution | None:
        """The one way all its runs were trained, or None (mixed, or not recorded)."""
        return next(iter(self.executions)) if len(self.executions) == 1 else None


def summarize_variants(study: Study, runs: list[dict]) -> list[VariantSummary]:
    """One summary per study variant that has finished runs, in the study's order."""
    summaries = []
    for variant in study.variants:
        own = [run for run in runs if run["variant"] == variant.name]
        if not own:
            continue
        summaries.append(VariantSummary(
            variant.name, variant.reason, variant.spec.parameter_count(), len(own),
            {metric: Summary.of([float(run[metric]) for run in own]) for metric in METRICS},
            variant.spec.training_flops(int(own[0]["config"]["train_examples"])), executions_of(own),
        ))
    return summaries


def executions_of(runs: list[dict]) -> frozenset:
    return frozenset(Execution.from_dict(run.get("execution")) for run in runs)


def timing_mismatch(baseline: tuple[str, frozenset], variant: tuple[str, frozenset]) -> str | None:
    """Why the times of two variants' runs cannot be compared, or None when they can.

    Args:
        baseline, variant: each side's name and the executions of its runs (executions_of).
    """
    for name, executions in (baseline, variant):
        if None in executions:
            return f"{name}'s runs do not record how they were trained (stored by an older denselab)"
        if len(executions) > 1:
            return f"{name}'s runs were trained in different ways ({'; '.join(sorted(e.label for e in executions))})"
    (name_b, [execution_b]), (name_v, [execution_v]) = baseline, variant
    if execution_b == execution_v:
        return None
    return (f"{name_b} trained {execution_b.label} and {name_v} {execution_v.label}, and seeds that share "
            "a program take another time per seed than seeds alone")


@dataclass(frozen=True)
class Difference:
    """variant − baseline: the difference of means with its confidence interval."""

    estimate: float
    low: float | None  # None when an interval cannot be computed (fewer than 2 seeds a side)
    high: float | None

    @property
    def distinguishable(self) -> bool | None:
        if self.low is None:
            return None
        return self.low > 0 or self.high < 0


def welch_difference(baseline: list[float], variant: list[float], confidence: float = CONFIDENCE) -> Difference:
    """The difference of means (variant − baseline) with Welch's t confidence interval."""
    estimate = statistics.fmean(variant) - statistics.fmean(baseline)
    if len(baseline) < 2 or len(variant) < 2:
        return Difference(estimate, None, None)
    var_b, var_v = statistics.variance(baseline) / len(baseline), statistics.variance(variant) / len(variant)
    standard_error = math.sqrt(var_b + var_v)
    if standard_error == 0:
        return Difference(estimate, estimate, estimate)
    degrees = (var_b + var_v) ** 2 / (
        (var_b ** 2 / (len(baseline) - 1) if var_b else 0) + (var_v ** 2 / (len(variant) - 1) if var_v else 0)
    )
    margin = float(stats.t.ppf(0.5 + confidence / 2, degrees)) * standard_error
    return Difference(estimate, estimate - margin, estimate + margin)


@dataclass(frozen=True)
class Finding:
    question: Question
    seeds: tuple[int, int]  # runs of baseline and of variant
    accuracy: Difference  # test accuracy, as a fraction
    # Training time of a run, compilation excluded (see training_seconds); None when the two
    # sides were executed differently (timing_mismatch says why).
    train_seconds: Difference | None
    baseline_train_seconds: float
    epochs: Difference
    compute_ratio: float  # variant's training FLOPs per run ÷ the baseline's
    execution: Execution | None  # how both sides trained, when they trained the same way
    timing_mismatch: str | None

    def sentences(self) -> list[str]:
        """The finding in plain words, every number taken from the runs."""
        q = self.question
        if self.train_seconds is None:
            time = f"Training time per run: not compared, because {self.timing_mismatch}."
        else:
            time = (f"Training time per run (compilation excluded; both {self.execution.label}): "
                    f"{_seconds(self.train_seconds)} ({_relative(self.train_seconds, self.baseline_train_seconds)}; "
                    f"{_verdict(self.train_seconds, self.seeds)}).")
        return [
            f"Test accuracy: {q.variant} − {q.baseline} = {_points(self.accuracy)} "
            f"({_verdict(self.accuracy, self.seeds)}).",
            f"Computation per run (training FLOPs, 6 × MACs × images × epochs): "
            f"{self.compute_ratio:.2f}× the baseline's.",
            time,
        ] + ([f"Epochs run: {self.epochs.estimate:+.1f} on average."] if self.epochs.estimate else [])

    def answer(self) -> str:
        """The question answered in one sentence, worded from the difference and its interval."""
        accuracy, seeds = self.accuracy, f"{self.seeds[0]} and {self.seeds[1]} seeds"
        interval = "" if accuracy.low is None else f", 95% CI [{accuracy.low * 100:+.2f}, {accuracy.high * 100:+.2f}] pp"
        if accuracy.distinguishable is None:
            said = f"test accuracy moved {accuracy.estimate * 100:+.2f} pp (one seed per side: no interval)"
        elif accuracy.distinguishable:
            said = (f"test accuracy {'rose' if accuracy.estimate > 0 else 'fell'} by "
                    f"{abs(accuracy.estimate) * 100:.2f} pp{interval}, more than noise over {seeds}")
        else:
            said = (f"no change in test accuracy that {seeds} can tell from noise "
                    f"({accuracy.estimate * 100:+.2f} pp{interval})")
        work = f"{self.compute_ratio:.2f}× the computation"
        if self.train_seconds is None:
            time = f"{work}; training times not compared ({self.timing_mismatch})"
        else:
            ratio = _relative(self.train_seconds, self.baseline_train_seconds) + " time"
            if self.train_seconds.distinguishable:
                time = f"training took {ratio} for {work}"
            else:
                time = f"no measurable change in training time ({ratio}) for {work}"
        if self.epochs.estimate:
            time = f"{abs(self.epochs.estimate):.1f} {'fewer' if self.epochs.estimate < 0 else 'more'} epochs; {time}"
        return f"{self.question.question}: {said}; {time}."


def answer_questions(study: Study, runs: list[dict]) -> list[Finding]:
    """A finding for each question whose two variants both have finished runs."""
    findings = []
    for question in study.questions:
        baseline = [run for run in runs if run["variant"] == question.baseline]
        variant = [run for run in runs if run["variant"] == question.variant]
        if not baseline or not variant:
            continue

        def diff(measure):
            return welch_difference([measure(r) for r in baseline], [measure(r) for r in variant])

        def flops(side, name):
            spec = study.variant(name).spec
            return statistics.fmean(spec.training_flops(int(run["config"]["train_examples"])) * float(run["epochs_run"])
                                    for run in side)

        executions = executions_of(baseline)
        mismatch = timing_mismatch((question.baseline, executions), (question.variant, executions_of(variant)))
        findings.append(Finding(
            question, (len(baseline), len(variant)),
            diff(lambda run: float(run["test_accuracy"])), None if mismatch else diff(training_seconds),
            statistics.fmean(map(training_seconds, baseline)), diff(lambda run: float(run["epochs_run"])),
            flops(variant, question.variant) / flops(baseline, question.baseline),
            None if mismatch else next(iter(executions)), mismatch,
        ))
    return findings


def training_seconds(run: dict) -> float:
    """A run's training time without compilation: epochs run × its steady seconds per epoch.

    Its seconds are its own share: side by side, the program's time ÷ its seeds
    (loop.epoch_seconds). The first epoch of a run includes compiling the model, and the
    first run in a process also pays the backend's start-up; counting those would make the
    order of the runs, not the models, decide which is faster.
    """
    return float(run["epochs_run"]) * float(run["seconds_per_epoch"])


def _points(difference: Difference) -> str:
    text = f"{difference.estimate * 100:+.2f} pp"
    if difference.low is not None:
        text += f", 95% CI [{difference.low * 100:+.2f}, {difference.high * 100:+.2f}] pp"
    return text


def _seconds(difference: Difference) -> str:
    text = f"{difference.estimate:+.1f} s"
    if difference.low is not None:
        text += f", 95% CI [{difference.low:+.1f}, {difference.high:+.1f}] s"
    return text


def _relative(difference: Difference, baseline_mean: float) -> str:
    if baseline_mean <= 0:
        return "baseline time unknown"
    return f"{(baseline_mean + difference.estimate) / baseline_mean:.2f}× the baseline's"


def _verdict(difference: Difference, seeds: tuple[int, int]) -> str:
    if difference.distinguishable is None:
        return "one seed per side: no interval, run more seeds to tell it from noise"
    if difference.distinguishable:
        return f"distinguishable from noise over {seeds[0]} and {seeds[1]} seeds"
    return f"not distinguishable from noise over {seeds[0]} and {seeds[1]} seeds"


# --- table cells, shared by the terminal and the report ----------------------------------

SIDE_BY_SIDE_MARK, MIXED_MARK = "*", "?"


def gflops(summary: VariantSummary) -> str:
    """Training work per epoch, in GFLOP, to three significant digits."""
    return f"{summary.train_flops_per_epoch / 1e9:.3g}"


def execution_mark(summary: VariantSummary) -> str:
    """"" for runs that all trained alone, SIDE_BY_SIDE_MARK or MIXED_MARK otherwise."""
    execution = summary.execution
    if execution is None:
        return MIXED_MARK
    return SIDE_BY_SIDE_MARK if execution.mode != "alone" else ""


def seconds_cell(summary: VariantSummary, compact: bool = True) -> str:
    """Seconds per epoch (per seed), marked where its runs did not train alone."""
    return summary.metrics["seconds_per_epoch"].format(2, compact=compact) + execution_mark(summary)


def table_notes(summaries: list[VariantSummary], work_header: str = "GFLOP/ep") -> list[str]:
    """What the table's marks and work column mean, each note a line of under 80 characters."""
    notes = [f"mean ± std over seeds; {work_header}: training work, 6 × MACs × images",
             "test loss, seeds and the boards each variant fits are in report.md"]
    grouped = sorted({s.execution.seeds for s in summaries if s.execution and s.execution.mode != "alone"})
    if grouped:
        counts = " or ".join(map(str, grouped))
        notes.append(f"{SIDE_BY_SIDE_MARK} seeds trained side by side: s/epoch is the group's time ÷ {counts}")
    if any(s.execution is None for s in summaries):
        notes.append(f"{MIXED_MARK} runs trained in different ways, or not recorded: times not comparable")
    return notes
