"""`denselab search` end to end on a slice of the real data: finalists that fit, scores that a
fresh LiteRT run confirms, a test set read only after the finalists are chosen, resume after
SIGKILL, in-process and on worker processes (on a Ray cluster: test_teacher.py's distilled
search), and bad input.
"""

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    assert_fits_80_columns, assert_no_third_party_logs, assert_one_line_error, denselab, inside, stored_runs,
    unused_port,
)
from denselab.data.sources import load_dataset
from denselab.deploy.tflite import LiteRTClassifier
from denselab.runs.executors import InProcess
from denselab.model_search.pipeline import journal_path, load_training_only, search
from denselab.model_search.run import SearchSettings
from denselab.model_search.split import validation_indices
from denselab.model_search.target import resolve_target
from denselab.study.file import load_study

TINY = ("--trials", "3", "--epochs-max", "1", "--validation", "1000")


def search_args(data_dir, root: Path, *extra, target=("--target", "nano33ble")):
    # The target's options come after TINY's: an option given twice takes its last value.
    return ["search", *TINY, *target, "--data-dir", data_dir, "--db", root / "runs.sqlite",
            "--models-dir", root / "models", "--out", root / "report", "--json", *extra]


def check_finalists(result: dict, data_dir) -> None:
    """Every finalist fits, and its reported int8 test accuracy is what LiteRT gives its file now."""
    dataset = load_dataset("fashion-mnist", data_dir, allow_download=False)
    assert result["best"] is not None and result["pareto"] and result["trials"] == 3
    for finalist in result["pareto"]:
        assert finalist["fits"] and finalist["int8_bytes"] <= 1_048_576 - result["target"]["runtime_flash_bytes"]
        model_bytes = Path(finalist["tflite_path"]).read_bytes()
        predicted = LiteRTClassifier(model_bytes).probabilities(dataset.test_images).argmax(axis=1)
        assert finalist["test_accuracy_int8"] == float((predicted == dataset.test_labels).mean())
        assert finalist["seeds"] == 3 and finalist["tflm"]["top_class_agreement"] > 0.95
    assert result["best"] in result["pareto"] and result["best"]["winner"]
    assert result["best"]["val_accuracy_int8"] == max(f["val_accuracy_int8"] for f in result["pareto"])


@pytest.fixture(scope="module")
def searched(fashion_slice_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    result = denselab(*search_args(fashion_slice_dir, root))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_third_party_logs(result)  # Optuna warned about too few trials here once
    return root, json.loads(result.stdout)


def test_a_tiny_search_finds_finalists_that_fit(searched, fashion_slice_dir):
    root, result = searched
    check_finalists(result, fashion_slice_dir)
    runs = stored_runs(root / "runs.sqlite")
    trial_runs = [run for run in runs if not run["study"].endswith("-final")]
    assert {json.loads(run["config"])["scored_on"] for run in trial_runs} == {"validation"}
    assert {json.loads(run["config"])["test_examples"] for run in trial_runs} == {1000}  # the validation split
    assert len([run for run in runs if run["study"].endswith("-final")]) == 3 * len(result["pareto"])
    # A new search proposes the known good recipes first (space.STARTING_POINTS), then the sampler's.
    first = json.loads(next(run for run in trial_runs if run["variant"].startswith("t0000"))["config"])
    assert first["hidden_units"] == [768, 256] and first["dropout_hidden"] == 0.3 and first["schedule"] == "cosine"
    report = (root / "report" / "report.md").read_text()
    assert "never on the test set" in report and "## Trials" in report
    assert (root / "report" / "figures" / "pareto-front.png").read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64," in (root / "report" / "report.html").read_text()
    assert json.loads((root / "report" / "search.json").read_text()) == result  # what --json printed
    assert f"TFLM itself: {result['target']['runtime_flash_bytes']:,} bytes of code" in report and "measured" in report


def test_the_winner_is_written_as_a_study_that_explore_reads_back(searched):
    _, result = searched
    study = load_study(Path(result["best"]["study_path"]))
    [variant] = study.variants
    assert study.seeds == (0, 1, 2) and variant.config.epochs == 1
    config = result["best"]["config"]
    assert variant.config.learning_rate == config["learning_rate"] and variant.config.standardize == config["standardize"]
    assert list(variant.spec.hidden_units) == [config[f"width_{i + 1}"] for i in range(config["layers"])]


def test_a_rerun_trains_nothing_and_changes_no_run(searched, fashion_slice_dir):
    root, first = searched
    before = stored_runs(root / "runs.sqlite")
    again = denselab(*search_args(fashion_slice_dir, root))
    assert again.returncode == 0, again.stderr[-3000:]
    assert stored_runs(root / "runs.sqlite") == before
    assert json.loads(again.stdout)["best"]["test_accuracy_int8"] == first["best"]["test_accuracy_int8"]


def test_the_terminal_summary_fits_80_columns(searched, fashion_slice_dir):
    root, _ = searched
    args = [arg for arg in search_args(fashion_slice_dir, root) if arg != "--json"]
    result = denselab(*args, env={"COLUMNS": "80"})  # every trial and finalist reused: quick
    assert result.returncode == 0, result.stderr[-3000:]
    assert_fits_80_columns(result.stdout)
    assert "* the winner" in result.stdout and " * " in result.stdout


def test_the_test_set_is_read_once_and_only_after_every_trial(fashion_slice_dir, tmp_path):
    """Instrumented: the test split comes only from `load_test`, and it records when it is called."""
    training, load_test = load_training_only("fashion-mnist", fashion_slice_dir)
    assert len(training.test_images) == 0  # what trials are given holds no test image
    calls = []

    def recording_load_test():
        with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
            calls.append(connection.execute("SELECT study, status FROM runs").fetchall())
        return load_test()

    search(resolve_target("samd21", None, None), SearchSettings(trials=2, epochs_max=1, validation=1000), training,
           recording_load_test, tmp_path / "runs.sqlite", tmp_path / "models", tmp_path / "report", InProcess())
    [rows_then] = calls  # once
    assert rows_then and all(status == "finished" and not study.endswith("-final") for study, status in rows_then)
    final = [run for run in stored_runs(tmp_path / "runs.sqlite") if run["study"].endswith("-final")]
    assert final and all(json.loads(run["config"])["scored_on"] == "test" for run in final)


def test_the_validation_split_is_stratified_fixed_and_disjoint(fashion):
    labels = fashion.train_labels
    first, again = validation_indices(labels, 10_000), validation_indices(labels, 10_000)
    np.testing.assert_array_equal(first, again)
    assert len(np.unique(first)) == 10_000
    np.testing.assert_array_equal(np.bincount(labels[first], minlength=10), [1000] * 10)


def test_resume_after_sigkill(fashion_slice_dir, tmp_path):
    args = search_args(fashion_slice_dir, tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "denselab", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            finished = [run for run in stored_runs(tmp_path / "runs.sqlite") if run["status"] == "finished"]
        except sqlite3.OperationalError:
            finished = []
        if finished:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the search never finished a trial")
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = [run for run in stored_runs(tmp_path / "runs.sqlite") if run["status"] == "finished"]
    resumed = denselab(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(resumed.stdout)
    assert result["trials"] == 3
    after = {run["id"]: run for run in stored_runs(tmp_path / "runs.sqlite")}
    assert all(after[run["id"]] == run for run in kept)  # finished trials never ran again


def test_the_search_runs_on_worker_processes(namespace, fashion_slice_dir, tmp_path):
    # The same search on a real Ray cluster is test_teacher's distilled one: the same checks,
    # with its teachers on top, so a plain copy of it here would only add a search's time.
    command = [*inside(namespace), sys.executable, "-m", "denselab",
               *map(str, search_args(fashion_slice_dir, tmp_path, "--workers", "2"))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_third_party_logs(result)
    check_finalists(json.loads(result.stdout.strip().splitlines()[-1]), fashion_slice_dir)


@pytest.mark.parametrize("target, expected", [
    (("--target", "nosuchboard"), "unknown target 'nosuchboard'"),
    (("--flash", "100"), "both --flash KB and --ram KB"),
    (("--flash", "0", "--ram", "32"), "--flash must be a positive number of kilobytes, got 0"),
    (("--flash", "256", "--ram", "-1"), "--ram must be a positive number of kilobytes, got -1"),
    # TFLM's code (31,596 bytes measured) leaves 9 KB of 40 KB: Dense(16)'s int8 model is 13 KB.
    (("--flash", "40", "--ram", "32"), "too small for any model of the search: the smallest, Dense(16,), needs"),
    (("--flash", "64", "--ram", "2"), "too small for any model of the search"),  # TFLM's RAM, arena and I/O exceed 2 KB
    (("--target", "samd21", "--runtime", "rust"), "unknown runtime 'rust'"),
    (("--target", "samd21", "--trials", "0"), "--trials must be at least 1, got 0"),
    (("--target", "samd21", "--finalists", "0"), "--finalists must be at least 1, got 0"),
    (("--flash", "inf", "--ram", "32"), "--flash must be a positive number of kilobytes, got inf"),
    (("--target", "samd21", "--seed", "-1"), "--seed must be an integer from 0 to 4294967295, got -1"),
    (("--target", "samd21", "--seed", str(2**32)), "--seed must be an integer from 0 to 4294967295"),
    (("--target", "samd21", "--validation", "0"), "--validation must be at least 1 image, got 0"),
    (("--target", "samd21", "--validation", "-5"), "--validation must be at least 1 image, got -5"),
    (("--target", "samd21", "--validation", "6000"), "--validation 6000 leaves no images to train on: there are "
                                                      "6,000 training images"),  # the slice's
    (("--target", "samd21", "--ray-address", "127.0.0.1:6379"), "--ray-address '127.0.0.1:6379' needs --executor ray"),
])
def test_bad_input_is_one_line_and_leaves_nothing(target, expected, fashion_slice_dir, tmp_path):
    result = denselab(*search_args(fashion_slice_dir, tmp_path, target=target))
    assert_one_line_error(result, expected)
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no store, journal, model or report


def test_a_models_dir_that_is_a_file_is_refused_before_anything_is_written(fashion_slice_dir, tmp_path):
    (tmp_path / "models").write_text("keep")
    result = denselab(*search_args(fashion_slice_dir, tmp_path))  # --models-dir tmp_path/models
    assert_one_line_error(result, f"models directory {tmp_path / 'models'} is a file; choose another --models-dir")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["models"]


def test_a_cluster_address_where_nothing_listens_is_refused_in_seconds(fashion_slice_dir, tmp_path):
    address = f"127.0.0.1:{unused_port()}"
    started = time.monotonic()
    result = denselab(*search_args(fashion_slice_dir, tmp_path, "--executor", "ray", "--ray-address", address))
    assert time.monotonic() - started < 30
    assert_one_line_error(result, f"cannot reach the Ray cluster at {address}: nothing listens there")
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_the_c_runtime_reaches_a_budget_tflm_cannot(fashion_slice_dir, tmp_path):
    """64 KB of flash and 2 KB of RAM: too small for TFLM (refused above), enough for the C runtime."""
    result = denselab(*search_args(fashion_slice_dir, tmp_path, "--runtime", "c", "--finalists", "1",
                                   target=("--flash", "64", "--ram", "2")))
    assert result.returncode == 0, result.stderr[-3000:]
    result = json.loads(result.stdout)
    assert result["target"]["runtime"] == "c" and not result["target"]["runtime_flash_is_estimate"]
    assert result["pareto"] == [result["best"]] and result["best"]["winner"]  # --finalists 1: the winner alone
    for finalist in result["pareto"]:
        c = finalist["c"]
        assert finalist["fits"] and c["flash_bytes"] <= 64 * 1024 and c["ram_bytes"] + 784 + 10 <= 2 * 1024
        assert c["host_identical_to_tflm"] and c["host_images"] == 1000 and c["qemu_identical"]
        assert sorted(Path(path).name for path in c["files"]) == ["denselab_model.c", "denselab_model.h", "main.c"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "C runtime of the winner" in report


def test_a_search_for_the_c_runtime_without_qemu_says_what_to_install(fashion_slice_dir, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    for program in ("cc", "arm-none-eabi-gcc"):
        (tools / program).symlink_to(shutil.which(program))
    root = tmp_path / "search"
    root.mkdir()
    result = denselab(*search_args(fashion_slice_dir, root, "--runtime", "c"), env={"PATH": str(tools)})
    assert_one_line_error(result, "qemu-system-arm not found", "install Debian's qemu-system-arm")
    assert sorted(path.name for path in root.iterdir()) == []


def test_a_journal_of_another_kind_is_refused(fashion_slice_dir, tmp_path):
    journal_path(tmp_path / "runs.sqlite").write_text("not a journal of searches\n")
    result = denselab(*search_args(fashion_slice_dir, tmp_path))
    assert_one_line_error(result, "search journal", "cannot be used")
    assert not (tmp_path / "report").exists()


def test_a_journal_of_another_search_kind_is_refused(fashion_slice_dir, tmp_path):
    """A journal whose study of the same name was made with another space or split is not mixed in."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from denselab.model_search.run import search_name

    name = search_name(resolve_target("nano33ble", None, None), SearchSettings(trials=3, epochs_max=1, validation=1000))
    storage = JournalStorage(JournalFileBackend(str(journal_path(tmp_path / "runs.sqlite"))))
    optuna.create_study(study_name=name, storage=storage).set_user_attr("kind", "someone else's search")
    result = denselab(*search_args(fashion_slice_dir, tmp_path))
    assert_one_line_error(result, "holds a search", "of another kind")
    assert not (tmp_path / "report").exists() and not (tmp_path / "models").exists()
