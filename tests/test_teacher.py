"""Knowledge distillation from the CNN teacher (denselab.training.teacher), on the real data.

What this file proves:
- a teacher at weight 0 trains the same weights as no teacher, whatever its logits, and at
  weight 0.7 it changes them (denselab.training.fit.train);
- the loss the loop reports is (1 - a) * CE(labels, smoothed) + a * T^2 * KL(teacher_T || student_T),
  computed again here in NumPy from the model's initial weights (one epoch of one batch: the
  reported loss is that of the weights before the only update);
- `denselab search --teacher cnn-small` trains exactly two teachers, once each: the trials' on the
  trial split (scored on the validation split) and the finalists' on all training images
  (scored on the test set), with their models and logits on disk, and says so in search.json,
  the report and the winner's study file; a rerun trains nothing, and its report says both
  teachers were reused; a search killed with SIGKILL
  while its teacher trains resumes to the same two teachers;
- on a real two-node Ray cluster on loopback the teachers are trained once, not once per worker;
- instrumented in this process: the trials' teacher is given exactly the trial split (no
  validation image), it trains before every trial, the test set is loaded once, after every
  trial, and only then does the finalists' teacher train; each student is given its teacher's logits;
- the hand-over: a finished teacher run whose logits file is gone is a one-line error before
  any student starts; denselab.train, given no logits, trains the teacher first (the same
  weights as a teacher trained by hand), while training itself, and so the engine's task,
  refuses a distilled student given no logits rather than train a teacher no store holds;
- bad teacher settings on the command line and in study files, and bad input to
  bench/distill_settings.py, are one-line errors that write nothing, and a study file with a
  teacher reads back to the same config;
- teacher_macs() is the count of the Keras model that teacher_model builds.
- the probe's cnn trains in denselab's loop, and its logits are Keras's own predict of it.
"""

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_no_third_party_logs, assert_one_line_error, denselab, inside, stored_runs
from test_search import check_finalists, search_args
from denselab.data.dataset import NUM_CLASSES
from denselab.model.spec import ModelSpec
from denselab.model_search.split import validation_indices
from denselab.runs.engine import TEACHERS_GROUP, artifact_path
from denselab.training.config import TrainConfig

# The hand-over does not depend on the teacher's kind, so the searches here use the small CNN
# to keep make test short; the probe's cnn trains on its own, on a slice.
TEACHER = ("--teacher", "cnn-small", "--teacher-epochs", "1")
VALIDATION = 1000  # search_args's --validation


# --- the loss -----------------------------------------------------------------------------------

def final_weights(spec, dataset, config):
    from denselab.training.fit import train

    return train(spec, dataset, config).model.get_weights()


def test_a_teacher_at_weight_0_trains_what_no_teacher_trains(fashion):
    small = fashion.subset(train=3000, test=500)
    rng = np.random.default_rng(0)
    logits_a, logits_b = (rng.normal(0, 3, (3000, NUM_CLASSES)).astype(np.float32) for _ in range(2))
    spec, plain = ModelSpec((32,)), TrainConfig(epochs=2, seed=4)
    reference = final_weights(spec, small, plain)
    weight_0 = replace(plain, teacher="cnn", distill_weight=0.0)
    for logits in (logits_a, logits_b):  # whatever the teacher says
        weights = final_weights(spec, replace(small, teacher_logits=logits), weight_0)
        for ours, theirs in zip(weights, reference, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    taught = final_weights(spec, replace(small, teacher_logits=logits_a), replace(weight_0, distill_weight=0.7))
    assert max(np.abs(ours - theirs).max() for ours, theirs in zip(taught, reference)) > 1e-2


def test_the_api_trains_the_teacher_first_and_fit_alone_refuses(fashion):
    # denselab.api.train with a teacher and no logits trains that teacher itself, unstored;
    # training alone (the run engine's path) never does, so a broken hand-over cannot hide.
    import denselab
    from denselab.training.fit import train
    from denselab.training.teacher import Teacher, train_teacher

    small = fashion.subset(train=640, test=100)
    spec, config = ModelSpec((16,)), TrainConfig(epochs=1, seed=3, teacher="cnn-small", teacher_epochs=1, teacher_seed=2)
    logits = train_teacher(Teacher("cnn-small", 1, small.name), small, 2).logits
    given = final_weights(spec, replace(small, teacher_logits=logits), config)
    for ours, reference in zip(denselab.train(spec, small, config).model.get_weights(), given, strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    other = denselab.train(spec, small, replace(config, teacher_seed=5)).model.get_weights()  # another teacher
    assert max(np.abs(ours - theirs).max() for ours, theirs in zip(other, given)) > 1e-4
    with pytest.raises(ValueError, match="asks for a cnn-small teacher, but the data carries no teacher logits"):
        train(spec, small, config)


def test_logits_that_do_not_cover_the_training_images_are_refused(fashion):
    from denselab.training.fit import train

    small = fashion.subset(train=320, test=50)
    short = replace(small, teacher_logits=np.zeros((319, NUM_CLASSES), np.float32))
    with pytest.raises(ValueError, match="cover 319 images, not the 320 training images"):
        train(ModelSpec((16,)), short, TrainConfig(epochs=1, seed=0, teacher="cnn"))


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def reference_loss(logits, labels, teacher_logits, smoothing, temperature, weight):
    """The per-example distillation loss, in float64 NumPy, and the plain cross-entropy."""
    targets = np.eye(NUM_CLASSES)[labels] * (1 - smoothing) + smoothing / NUM_CLASSES
    cross_entropy = -(targets * log_softmax(logits)).sum(axis=1)
    teacher_log_p = log_softmax(teacher_logits / temperature)
    divergence = (np.exp(teacher_log_p) * (teacher_log_p - log_softmax(logits / temperature))).sum(axis=1)
    return (1 - weight) * cross_entropy + weight * temperature ** 2 * divergence, cross_entropy


@pytest.mark.parametrize("smoothing, temperature, weight", [(0.0, 4.0, 0.7), (0.1, 2.5, 0.3)],
                         ids=["defaults", "smoothed"])
def test_the_reported_loss_is_the_distillation_formula(fashion, smoothing, temperature, weight):
    """One epoch of a single batch: the epoch's loss is the batch's, computed before its one update."""
    from denselab.model.spec import build_model
    from denselab.training.fit import seed_everything, train

    examples, seed, spec = 256, 9, ModelSpec((24,))
    small = fashion.subset(train=examples, test=100)
    teacher = np.random.default_rng(1).normal(0, 4, (examples, NUM_CLASSES)).astype(np.float32)
    config = TrainConfig(epochs=1, batch_size=examples, seed=seed, label_smoothing=smoothing)
    seed_everything(seed)
    kernel_1, bias_1, kernel_2, bias_2 = (w.astype(np.float64) for w in build_model(spec).get_weights())
    inputs = small.train_images.reshape(examples, -1).astype(np.float64) / 255.0
    logits = np.maximum(inputs @ kernel_1 + bias_1, 0) @ kernel_2 + bias_2
    labels = small.train_labels.astype(int)
    expected, cross_entropy = reference_loss(logits, labels, teacher, smoothing, temperature, weight)

    distilled = train(spec, replace(small, teacher_logits=teacher),
                      replace(config, teacher="cnn", distill_temperature=temperature, distill_weight=weight))
    [record] = distilled.history
    assert record["loss"] == pytest.approx(expected.mean(), rel=1e-5)
    assert record["accuracy"] == (logits.argmax(axis=1) == labels).mean()  # the same initial weights
    [plain] = train(spec, small, config).history
    assert plain["loss"] == pytest.approx(cross_entropy.mean(), rel=1e-5)
    assert abs(expected.mean() - cross_entropy.mean()) > 1e-2  # the teacher's term is there to be seen


# --- the teacher's cost ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind, convolutions, dense, expected", [
    ("cnn", [(28, 28, 9, 32), (28, 28, 9 * 32, 64), (14, 14, 9 * 64, 128)], [(7 * 7 * 128, 256), (256, 10)],
     30_735_360),  # the probe's teacher
    ("cnn-small", [(28, 28, 9, 32), (14, 14, 9 * 32, 64)], [(7 * 7 * 64, 256), (256, 10)], 4_643_840),
])
def test_teacher_macs_count_the_model_that_teacher_model_builds(kind, convolutions, dense, expected):
    import keras

    from denselab.training.teacher import Teacher, teacher_macs, teacher_model

    model = teacher_model(0, kind)
    macs, seen_convolutions, seen_dense = 0, [], []
    for layer in model.layers:
        kernels = [weight for weight in layer.weights if len(weight.shape) == 2]
        if not kernels:
            continue
        [kernel] = kernels
        if isinstance(layer, keras.layers.Dense):
            seen_dense.append(kernel.shape)
            macs += int(np.prod(kernel.shape))  # one multiply-add per weight
        else:  # a 3x3 convolution as patches times a (9 x channels, filters) matrix, at every output pixel
            _, height, width, _ = layer.output.shape
            seen_convolutions.append((height, width, *kernel.shape))
            macs += height * width * int(np.prod(kernel.shape))
    assert seen_convolutions == convolutions and seen_dense == dense
    assert model.output.shape == (None, NUM_CLASSES)
    assert teacher_macs(kind) == macs == expected
    assert Teacher(kind, 1, "fashion-mnist").spec.macs() == macs


def test_the_probes_cnn_trains_in_our_loop_and_its_logits_are_kerass_own(fashion):
    # This file's searches use cnn-small; this is the probe's cnn, one epoch on a slice. Keras's
    # own predict of the trained model is the reference for the compiled logits.
    from denselab.training.teacher import Teacher, train_teacher

    small = fashion.subset(train=512, test=256)
    trained = train_teacher(Teacher("cnn", 1, small.name), small, 0)
    # conv 1 -> 32, 32 -> 64, 64 -> 128 (3x3, with biases), dense 6272 -> 256 -> 10
    params = (9 * 1 + 1) * 32 + (9 * 32 + 1) * 64 + (9 * 64 + 1) * 128 + (7 * 7 * 128 + 1) * 256 + (256 + 1) * 10
    assert trained.model.count_params() == params and len(trained.history) == 1
    np.testing.assert_allclose(trained.logits, trained.model.predict(small.train_images / 255.0, verbose=0),
                               rtol=1e-4, atol=1e-4)
    scored = trained.model.predict(small.test_images / 255.0, verbose=0).argmax(axis=1)
    # Within one image of Keras's own: a near-tie may fall either way at float tolerance.
    assert trained.accuracy == pytest.approx((scored == small.test_labels).mean(), abs=1 / 256)
    assert trained.accuracy > 0.3  # one epoch of 4 batches already beats chance (0.1)


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, expected", [
    (("--teacher", "nosuch"), "--teacher 'nosuch' is not a teacher; choose one of none, cnn, cnn-small"),
    (("--teacher", "cnn", "--teacher-epochs", "0"), "--teacher-epochs must be an integer from 1 to 1000, got 0"),
], ids=["teacher", "teacher-epochs"])
def test_bad_teacher_options_are_one_line_and_leave_nothing(options, expected, fashion_slice_dir, tmp_path):
    result = denselab(*search_args(fashion_slice_dir, tmp_path, *options))
    assert_one_line_error(result, expected)
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no store, journal, model or report


# --- the hand-over in the run engine ---------------------------------------------------------------

def a_student(fashion, tmp_path):
    from denselab.runs.engine import plan_runs
    from denselab.study.file import Variant

    small = fashion.subset(train=320, test=50)
    variant = Variant("s", "a student", "fashion-mnist", ModelSpec((16,)), TrainConfig(epochs=1, teacher="cnn"))
    [request] = plan_runs("study", [(variant, 0)], {"fashion-mnist": small}, tmp_path / "models")
    return small, request


def test_a_teacher_run_whose_logits_are_gone_is_a_one_line_error(fashion, tmp_path):
    from denselab.errors import BadInput
    from denselab.runs.engine import execute
    from denselab.runs.executors import InProcess
    from denselab.runs.store import RunStore

    small, student = a_student(fashion, tmp_path)
    with RunStore(tmp_path / "runs.sqlite") as store:
        # The teacher's run is finished in the store, but its logits file was deleted since.
        run_id = store.start_run(student.teacher.key, student.teacher.config)
        history = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "seconds": 1.0}]
        store.finish_run(run_id, {"params": 1, "epochs_run": 1, "seconds_per_epoch": 1.0, "train_seconds": 1.0,
                                  "train_accuracy": 0.5, "test_accuracy": 0.5, "history": history,
                                  "model_path": str(student.teacher.model_path), "keras_backend": "jax"})
        logits = artifact_path(student.teacher.model_path, "logits.npy")
        with pytest.raises(BadInput) as raised:
            execute([student], store, {"fashion-mnist": small}, InProcess())
        assert str(raised.value) == (f"teacher run {run_id}'s logits {logits} cannot be read (FileNotFoundError); "
                                     "restore the file, or use another --db and --models-dir")
        assert store.finished(student.key) is None and store.runs(study="study") == []  # no student was started


def test_the_engine_task_refuses_a_student_handed_no_teacher_logits(fashion, tmp_path):
    from denselab.runs.engine import train_runs

    # Else the student would learn from a teacher no store holds: the hand-over broke.
    small, student = a_student(fashion, tmp_path)
    with pytest.raises(ValueError, match="asks for a cnn teacher, but the data carries no teacher logits"):
        train_runs(student.variant, small, [0])


@pytest.mark.parametrize("settings, fragment", [
    ("{bad", "are not JSON"),
    ('{"logits": "TMP/gone.npy"}', "gone.npy cannot be read as logits (FileNotFoundError)"),
    ('{"logits": "TMP/short.npy"}', "short.npy holds logits of shape (5, 10), not (50000, 10)"),
], ids=["json", "missing", "shape"])
def test_the_settings_benchmark_refuses_bad_input_in_one_line(tmp_path, settings, fragment):
    np.save(tmp_path / "short.npy", np.zeros((5, NUM_CLASSES), np.float32))
    script = Path(__file__).parents[1] / "bench" / "distill_settings.py"
    result = subprocess.run([sys.executable, str(script), settings.replace("TMP", str(tmp_path))],
                            capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, fragment)


STUDY_WITH_TEACHER = """\
name = "taught"
seeds = 1

[defaults]
hidden = [20]
epochs = 1
teacher = "{teacher}"

[[variants]]
name = "plain"
reason = "No teacher."
teacher = "none"

[[variants]]
name = "taught"
reason = "A CNN teacher."
teacher_epochs = 2
teacher_seed = 5
distill_temperature = 3
distill_weight = {weight}
"""


@pytest.mark.parametrize("teacher, weight, line, expected", [
    ("nosuch", "0.5", 7, "'teacher': unknown teacher 'nosuch'; choose one of none, cnn, cnn-small"),
    ("cnn", "2", 20, "'distill_weight': distill-weight must be in [0, 1], got 2"),
], ids=["teacher", "distill_weight"])
def test_bad_teacher_settings_in_a_study_file_name_their_line(teacher, weight, line, expected, fashion_slice_dir,
                                                               tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(STUDY_WITH_TEACHER.format(teacher=teacher, weight=weight))
    root = tmp_path / "root"
    result = denselab("explore", "--study", study, "--data-dir", fashion_slice_dir, "--db", root / "runs.sqlite",
                      "--out", root / "report", "--models-dir", root / "models")
    assert_one_line_error(result, f"{study}:{line}: {expected}")
    assert not root.exists()


def test_a_study_file_with_a_teacher_reads_back_to_the_same_configs():
    from denselab.study.file import parse_study, study_toml

    study = parse_study(STUDY_WITH_TEACHER.format(teacher="cnn", weight="0.6"), "taught.toml")
    plain, taught = study.variants
    assert plain.config.teacher == "none"
    assert (taught.config.teacher, taught.config.teacher_epochs, taught.config.teacher_seed,
            taught.config.distill_temperature, taught.config.distill_weight) == ("cnn", 2, 5, 3.0, 0.6)
    for variant in study.variants:
        [again] = parse_study(study_toml("again", "", 1, variant), "again.toml").variants
        assert again.config == variant.config and again.spec == variant.spec


# --- a distilled search on the command line, killed while its teacher trains -----------------------

def teacher_rows(db: Path) -> list[dict]:
    return [run for run in stored_runs(db) if run["study"] == TEACHERS_GROUP]


@pytest.fixture(scope="module")
def distilled(fashion_slice_dir, tmp_path_factory):
    """`denselab search --teacher cnn-small` killed with SIGKILL while its first teacher trains, then run to the end.

    Returns the folder, the store's rows at the kill and the resumed command's result.
    """
    root = tmp_path_factory.mktemp("distilled")
    args = search_args(fashion_slice_dir, root, *TEACHER)
    db = root / "runs.sqlite"
    process = subprocess.Popen([sys.executable, "-m", "denselab", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                teachers = teacher_rows(db) if db.exists() else []
            except sqlite3.OperationalError:  # the store is being made
                teachers = []
            if [run["status"] for run in teachers] == ["running"]:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"no teacher was seen training (the search ended with {process.poll()})")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    at_kill = stored_runs(db)
    resumed = denselab(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return root, at_kill, resumed


def test_a_search_killed_while_its_teacher_trains_resumes_with_two_teachers(distilled):
    root, at_kill, resumed = distilled
    [killed] = at_kill  # the trials' teacher comes first: nothing else had started
    assert killed["study"] == TEACHERS_GROUP and killed["status"] == "running"
    assert json.loads(killed["config"])["train_examples"] == 5000
    after = stored_runs(root / "runs.sqlite")
    assert {run["status"] for run in after} == {"finished"}  # the killed attempt was dropped, none left running
    [again] = [run for run in after if (run["study"], run["variant"], run["config_hash"], run["seed"]) == (
        killed["study"], killed["variant"], killed["config_hash"], killed["seed"])]
    assert again["started_at"] > killed["started_at"]  # trained again from the start, by the resumed search
    assert sorted(json.loads(run["config"])["train_examples"] for run in teacher_rows(root / "runs.sqlite")) == [
        5000, 6000]


def test_a_distilled_search_trains_each_teacher_once_and_reports_both(distilled, fashion, fashion_slice_dir):
    root, _, resumed = distilled
    assert_no_third_party_logs(resumed)
    result = json.loads(resumed.stdout)
    check_finalists(result, fashion_slice_dir)
    teachers = {json.loads(run["config"])["scored_on"]: run for run in teacher_rows(root / "runs.sqlite")}
    assert sorted(teachers) == ["test", "validation"] and len(teacher_rows(root / "runs.sqlite")) == 2
    trials, final = teachers["validation"], teachers["test"]
    for run, examples, scored in ((trials, 5000, VALIDATION), (final, 6000, 1000)):
        config = json.loads(run["config"])
        assert run["status"] == "finished" and run["variant"] == "cnn-small-e1" and run["seed"] == 0
        assert config["train_examples"] == examples and config["test_examples"] == scored and config["epochs"] == 1
        assert Path(run["model_path"]).is_file() and Path(run["model_path"]).suffix == ".keras"
        logits = np.load(artifact_path(Path(run["model_path"]), "logits.npy"))
        assert logits.shape == (examples, NUM_CLASSES) and logits.dtype == np.float32
        assert 0.5 < run["test_accuracy"] < 1
    # The logits are in the order of the data each teacher trained on: most of them name the right class.
    labels = fashion.train_labels[:6000]
    kept = np.setdiff1d(np.arange(6000), validation_indices(labels, VALIDATION))
    for run, its_labels in ((trials, labels[kept]), (final, labels)):
        logits = np.load(artifact_path(Path(run["model_path"]), "logits.npy"))
        assert (logits.argmax(axis=1) == its_labels).mean() > 0.6
    # search.json's teachers are those runs.
    summary_keys = {"run_id": "id", "seed": "seed", "accuracy": "test_accuracy", "model_path": "model_path",
                    "train_seconds": "train_seconds"}
    for summary, run in [(result["teacher"], trials)] + [(finalist["teacher"], final) for finalist in result["pareto"]]:
        assert {key: summary[key] for key in summary_keys} == {key: run[column] for key, column in summary_keys.items()}
        config = json.loads(run["config"])
        assert (summary["train_examples"], summary["scored_on"], summary["epochs"]) == (
            config["train_examples"], config["scored_on"], 1)
    assert json.loads((root / "report" / "search.json").read_text()) == result
    # Every student learned from a teacher, the trials on the split and the finalists on all images.
    students = [run for run in stored_runs(root / "runs.sqlite") if run["study"] != TEACHERS_GROUP]
    assert students and all(json.loads(run["config"])["teacher"] == "cnn-small" for run in students)
    report = (root / "report" / "report.md").read_text()
    assert "Teacher: a cnn-small (denselab.training.teacher), used only while training" in report
    assert (f"The trials' teacher (run {trials['id']}, seed 0, 1 epoch) trained on 5,000 training images" in report
            and f"its validation accuracy: {trials['test_accuracy']:.4f} (no validation image reached it)" in report)
    assert (f"The finalists' teacher (run {final['id']}, seed 0, 1 epoch) trained on 6,000 training images" in report
            and f"its test accuracy: {final['test_accuracy']:.4f}" in report)
    assert "reused" not in report  # the resumed search trained both
    from denselab.study.file import load_study

    [variant] = load_study(Path(result["best"]["study_path"])).variants
    assert (variant.config.teacher, variant.config.teacher_epochs, variant.config.teacher_seed) == ("cnn-small", 1, 0)


def test_the_teacher_runs_record_their_kind(distilled):
    root, _, resumed = distilled
    result = json.loads(resumed.stdout)
    kinds = [json.loads(run["config"])["teacher"] for run in teacher_rows(root / "runs.sqlite")]
    assert kinds == ["cnn-small", "cnn-small"]
    assert result["teacher"]["teacher"] == "cnn-small"
    assert all(finalist["teacher"]["teacher"] == "cnn-small" for finalist in result["pareto"])


def test_a_rerun_of_a_distilled_search_trains_nothing(distilled, fashion_slice_dir):
    root, _, first = distilled
    before = stored_runs(root / "runs.sqlite")
    again = denselab(*search_args(fashion_slice_dir, root, *TEACHER))
    assert again.returncode == 0, again.stderr[-3000:]
    assert stored_runs(root / "runs.sqlite") == before
    result, previous = json.loads(again.stdout), json.loads(first.stdout)
    assert result["teacher"] == previous["teacher"] and result["best"] == previous["best"]
    # Its report says the teachers' times are not in its own wall time.
    report = (root / "report" / "report.md").read_text()
    for role, examples in (("trials", "5,000"), ("finalists", "6,000")):
        assert re.search(rf"The {role}' teacher \(run \d+, seed 0, 1 epoch\) trained on {examples} training images "
                         r"in \d+\.\d min before this search began, and was reused \(its time is not in the wall "
                         r"time\); its", report), report


# --- on a Ray cluster ----------------------------------------------------------------------------------

def test_a_distilled_search_on_a_ray_cluster_trains_each_teacher_once(ray_cluster, fashion_slice_dir, tmp_path):
    extra = (*TEACHER, "--finalists", "1", "--executor", "ray", "--ray-address", ray_cluster.address)
    command = [*inside(ray_cluster.namespace), sys.executable, "-m", "denselab",
               *map(str, search_args(fashion_slice_dir, tmp_path, *extra))]
    result = subprocess.run(command, capture_output=True, text=True, env=ray_cluster.driver_env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_third_party_logs(result)  # Ray's warning about token authentication came once
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    check_finalists(summary, fashion_slice_dir)
    runs = stored_runs(tmp_path / "runs.sqlite")
    assert {run["status"] for run in runs} == {"finished"}
    teachers = teacher_rows(tmp_path / "runs.sqlite")
    assert sorted(json.loads(run["config"])["train_examples"] for run in teachers) == [5000, 6000]  # not one per node
    assert summary["teacher"]["run_id"] in {run["id"] for run in teachers}
    assert summary["best"]["teacher"]["run_id"] in {run["id"] for run in teachers}
    for run in teachers:
        assert np.load(artifact_path(Path(run["model_path"]), "logits.npy")).shape == (
            json.loads(run["config"])["train_examples"], NUM_CLASSES)


# --- instrumented, in this process --------------------------------------------------------------------

def test_the_trials_teacher_sees_no_validation_image_and_trains_before_the_test_set_is_read(
        fashion_slice_dir, tmp_path, monkeypatch):
    from denselab.model_search.pipeline import load_training_only, search
    from denselab.model_search.run import SearchSettings
    from denselab.model_search.target import resolve_target
    from denselab.runs import engine
    from denselab.runs.executors import InProcess
    from denselab.training import teacher as teacher_module

    training, load_test = load_training_only("fashion-mnist", fashion_slice_dir)
    events, taught, students = [], [], []
    real_train_teacher = teacher_module.train_teacher

    def recording_train_teacher(teacher, dataset, seed, on_progress=None):
        events.append(("teacher", len(dataset.train_labels)))
        trained = real_train_teacher(teacher, dataset, seed, on_progress)
        taught.append((teacher, dataset, seed, trained.logits))
        return trained

    def recording_task(variant, dataset, seeds, on_progress=None):
        events.append(("student", len(dataset.train_labels)))
        students.append((variant, dataset))
        return engine.train_runs(variant, dataset, seeds, on_progress)

    def recording_load_test():
        events.append(("load_test", None))
        return load_test()

    monkeypatch.setattr(teacher_module, "train_teacher", recording_train_teacher)
    settings = SearchSettings(trials=2, epochs_max=1, validation=VALIDATION, teacher="cnn-small", teacher_epochs=1)
    result = search(resolve_target("samd21", None, None), settings, training, recording_load_test,
                    tmp_path / "runs.sqlite", tmp_path / "models", tmp_path / "report", InProcess(),
                    task=recording_task, max_finalists=1)

    # Once each, in this order: the trials' teacher, the trials, the test set, the finalists' teacher, the finalists.
    kinds = [kind for kind, _ in events]
    assert kinds.count("load_test") == 1 and kinds.count("teacher") == 2
    first_teacher, test_read, second_teacher = (kinds.index("teacher"), kinds.index("load_test"),
                                                len(kinds) - 1 - kinds[::-1].index("teacher"))
    assert first_teacher == 0 and first_teacher < test_read < second_teacher
    trial_students = [size for kind, size in events[first_teacher + 1:test_read]]
    final_students = [size for kind, size in events[second_teacher + 1:]]
    assert trial_students and set(trial_students) == {5000} and set(kinds[first_teacher + 1:test_read]) == {"student"}
    assert final_students and set(final_students) == {6000} and set(kinds[second_teacher + 1:]) == {"student"}
    assert [size for kind, size in events if kind == "teacher"] == [5000, 6000]

    [(trials_teacher, trial_data, trial_seed, trial_logits),
     (final_teacher, final_data, final_seed, final_logits)] = taught
    held_out = validation_indices(training.train_labels, VALIDATION)
    kept = np.setdiff1d(np.arange(len(training.train_labels)), held_out)
    np.testing.assert_array_equal(trial_data.train_images, training.train_images[kept])
    validation_rows = {image.tobytes() for image in training.train_images[held_out]}
    assert not validation_rows & {image.tobytes() for image in trial_data.train_images}
    np.testing.assert_array_equal(trial_data.test_images, training.train_images[held_out])  # scored there
    assert trial_data.scored_on == "validation" and trial_data.teacher_logits is None
    test_images, test_labels = load_test()
    np.testing.assert_array_equal(final_data.train_images, training.train_images)
    np.testing.assert_array_equal(final_data.test_images, test_images)
    assert final_data.scored_on == "test"
    assert trials_teacher.epochs == final_teacher.epochs == 1 and trial_seed == final_seed == settings.seed

    # Every student was given its own teacher's logits, as that teacher computed them.
    for variant, dataset in students:
        assert variant.config.teacher == "cnn-small"
        expected = trial_logits if len(dataset.train_labels) == 5000 else final_logits
        np.testing.assert_array_equal(dataset.teacher_logits, expected)
    assert result["teacher"]["train_examples"] == 5000 and result["teacher"]["scored_on"] == "validation"
    assert [finalist["teacher"]["train_examples"] for finalist in result["pareto"]] == [6000]
    assert len(test_labels) == 1000
