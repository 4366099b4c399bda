import numpy as np
import pytest
from scipy import stats

from denselab.study.findings import Summary, answer_questions, summarize_variants, training_seconds, welch_difference
from denselab.study.file import parse_study
from conftest import SMALL_STUDY


@pytest.mark.parametrize("baseline, variant", [
    ([0.85, 0.86, 0.84], [0.87, 0.88, 0.875]),
    ([0.85, 0.851, 0.849], [0.848, 0.853, 0.85]),
    ([1.0, 2.0], [1.5, 4.0, 2.5, 3.0]),
])
def test_welch_interval_equals_scipy(baseline, variant):
    difference = welch_difference(baseline, variant)
    reference = stats.ttest_ind(variant, baseline, equal_var=False).confidence_interval(0.95)
    assert difference.estimate == pytest.approx(np.mean(variant) - np.mean(baseline))
    assert (difference.low, difference.high) == pytest.approx((reference.low, reference.high))


def test_distinguishable_only_when_interval_excludes_zero():
    assert welch_difference([0.85, 0.86, 0.84], [0.90, 0.91, 0.905]).distinguishable is True
    assert welch_difference([0.85, 0.86, 0.84], [0.851, 0.849, 0.852]).distinguishable is False
    assert welch_difference([0.85], [0.9]).distinguishable is None  # one seed: no interval


def test_summary_mean_and_std():
    summary = Summary.of([1.0, 2.0, 3.0])
    assert (summary.mean, summary.std, summary.count) == (2.0, 1.0, 3)
    assert Summary.of([5.0]).std == 0.0


ALONE = {"mode": "alone", "seeds": 1, "device": "cpu"}
GROUPED = {"mode": "side by side", "seeds": 2, "device": "cpu"}


def fake_run(variant, seed, accuracy, seconds_per_epoch, epochs=1, execution=ALONE):
    return {"variant": variant, "seed": seed, "test_accuracy": accuracy, "train_accuracy": accuracy,
            "test_loss": 1 - accuracy, "epochs_run": epochs, "seconds_per_epoch": seconds_per_epoch,
            "train_seconds": seconds_per_epoch * epochs + 1.0, "config": {"train_examples": 1000},
            "execution": execution}


def test_findings_come_from_the_numbers():
    study = parse_study(SMALL_STUDY, "small.toml")
    runs = [fake_run("narrow", 0, 0.80, 1.0), fake_run("narrow", 1, 0.81, 1.1),
            fake_run("wide", 0, 0.90, 2.0), fake_run("wide", 1, 0.91, 2.1)]
    [finding] = answer_questions(study, runs)
    assert finding.accuracy.estimate == pytest.approx(0.10)
    assert finding.train_seconds.estimate == pytest.approx(1.0)
    text = " ".join(finding.sentences())
    assert "+10.00 pp" in text and "distinguishable from noise over 2 and 2 seeds" in text
    assert "not distinguishable" not in text.split("Training")[0]
    summaries = summarize_variants(study, runs)
    assert [s.name for s in summaries] == ["narrow", "wide"]
    assert summaries[1].metrics["test_accuracy"].mean == pytest.approx(0.905)


def test_each_question_is_answered_in_one_sentence_from_its_interval():
    study = parse_study(SMALL_STUDY, "small.toml")
    clear = [fake_run("narrow", 0, 0.80, 1.0), fake_run("narrow", 1, 0.81, 1.1),
             fake_run("wide", 0, 0.90, 2.0), fake_run("wide", 1, 0.91, 2.1)]
    [finding] = answer_questions(study, clear)
    answer = finding.answer()
    assert answer.startswith(f"{study.questions[0].question}: test accuracy rose by 10.00 pp, 95% CI [")
    assert "more than noise over 2 and 2 seeds" in answer
    assert answer.endswith(".") and ". " not in answer  # one sentence
    # The time ratio is the variants' means: (2.0 + 2.1) / (1.0 + 1.1) = 1.95.
    assert answer.endswith("training took 1.95× the baseline's time for 2.00× the computation.")
    noisy = [fake_run("narrow", 0, 0.80, 1.0), fake_run("narrow", 1, 0.90, 2.0),
             fake_run("wide", 0, 0.81, 1.0, epochs=2), fake_run("wide", 1, 0.91, 2.0, epochs=2)]
    [finding] = answer_questions(study, noisy)
    assert "no change in test accuracy that 2 and 2 seeds can tell from noise (+1.00 pp, 95% CI [" in finding.answer()
    assert "1.0 more epochs; no measurable change in training time" in finding.answer()
    [finding] = answer_questions(study, clear[::2])
    assert "test accuracy moved +10.00 pp (one seed per side: no interval)" in finding.answer()


def test_training_time_leaves_out_compilation():
    assert training_seconds(fake_run("x", 0, 0.8, 0.5, epochs=4)) == 2.0


def test_the_computation_is_6_macs_per_image_per_epoch():
    study = parse_study(SMALL_STUDY, "small.toml")
    runs = [fake_run("narrow", 0, 0.80, 1.0), fake_run("narrow", 1, 0.81, 1.1),
            fake_run("wide", 0, 0.90, 2.0, epochs=3), fake_run("wide", 1, 0.91, 2.1)]
    narrow, wide = summarize_variants(study, runs)
    # Dense(20): 784·20 + 20·10 = 15,880 MACs; Dense(40): 31,760; 1,000 training images.
    assert (narrow.train_flops_per_epoch, wide.train_flops_per_epoch) == (6 * 15_880 * 1000, 6 * 31_760 * 1000)
    [finding] = answer_questions(study, runs)
    assert finding.compute_ratio == pytest.approx(2.0 * (3 + 1) / 2)  # twice the MACs, 2 epochs on average
    assert "Computation per run (training FLOPs, 6 × MACs × images × epochs): 4.00× the baseline's." \
        in finding.sentences()


@pytest.mark.parametrize("narrow_executions, wide_executions, why", [
    ([GROUPED, GROUPED], [ALONE, ALONE], "narrow trained side by side with 2 seeds on cpu and wide alone on cpu"),
    ([None, None], [ALONE, ALONE], "narrow's runs do not record how they were trained"),
    ([ALONE, ALONE], [ALONE, {**ALONE, "device": "gpu"}], "wide's runs were trained in different ways"),
])
def test_times_of_runs_executed_differently_are_not_compared(narrow_executions, wide_executions, why):
    study = parse_study(SMALL_STUDY, "small.toml")
    runs = [fake_run("narrow", seed, 0.80, 3.0, execution=execution) for seed, execution in enumerate(narrow_executions)]
    runs += [fake_run("wide", seed, 0.90, 1.0, execution=execution) for seed, execution in enumerate(wide_executions)]
    [finding] = answer_questions(study, runs)
    assert finding.train_seconds is None and why in finding.timing_mismatch
    assert f"training times not compared ({why}" in finding.answer()
    assert "× the baseline's time" not in finding.answer() and "2.00× the computation" in finding.answer()
    assert f"Training time per run: not compared, because {why}" in " ".join(finding.sentences())


def test_times_of_runs_executed_the_same_way_are_compared():
    study = parse_study(SMALL_STUDY, "small.toml")
    runs = [fake_run(name, seed, 0.8, 1.0 + seed, execution=GROUPED) for name in ("narrow", "wide") for seed in (0, 1)]
    [finding] = answer_questions(study, runs)
    assert finding.timing_mismatch is None and finding.execution.label == "side by side with 2 seeds on cpu"
    assert "both side by side with 2 seeds on cpu" in " ".join(finding.sentences())
