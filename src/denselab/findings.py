"""Numbers a study's report states: per-variant summaries and answers to its questions.

Every sentence of a finding is computed from stored runs. A difference between two
variants comes with a 95% confidence interval from Welch's t-test over seeds (the
variants' spreads need not be equal); it is called distinguishable from noise only when
the interval excludes zero.
"""

import math
import statistics
from dataclasses import dataclass

from scipy import stats

from denselab.study import Question, Study

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
        ))
    return summaries


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
    train_seconds: Difference  # training time of a run, compilation excluded (see training_seconds)
    baseline_train_seconds: float
    epochs: Difference

    def sentences(self) -> list[str]:
        """The finding in plain words, every number taken from the runs."""
        q = self.question
        return [
            f"Test accuracy: {q.variant} − {q.baseline} = {_points(self.accuracy)} "
            f"({_verdict(self.accuracy, self.seeds)}).",
            f"Training time per run (compilation excluded): {_seconds(self.train_seconds)} "
            f"({_relative(self.train_seconds, self.baseline_train_seconds)}; {_verdict(self.train_seconds, self.seeds)}).",
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
        ratio = _relative(self.train_seconds, self.baseline_train_seconds) + " time"
        if self.train_seconds.distinguishable:
            time = f"training took {ratio}"
        else:
            time = f"no measurable change in training time ({ratio})"
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

        findings.append(Finding(
            question, (len(baseline), len(variant)),
            diff(lambda run: float(run["test_accuracy"])), diff(training_seconds),
            statistics.fmean(map(training_seconds, baseline)), diff(lambda run: float(run["epochs_run"])),
        ))
    return findings


def training_seconds(run: dict) -> float:
    """A run's training time without compilation: epochs run × its steady seconds per epoch.

    The first epoch of a run includes compiling the model, and the first run in a process
    also pays the backend's start-up; counting those would make the order of the runs,
    not the models, decide which is faster.
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
