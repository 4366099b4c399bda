"""The real `denselab` command in a subprocess: exit codes, one-line errors, JSON output."""

import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from conftest import assert_no_third_party_logs, assert_one_line_error, denselab


@pytest.fixture(scope="module")
def cli_run(fashion_slice_dir, tmp_path_factory):
    """`denselab train --json` on a slice of the real data, once for the module."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = denselab("train", "--epochs", "1", "--seed", "3", "--data-dir", fashion_slice_dir, "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    assert_no_third_party_logs(result)
    return out, json.loads(result.stdout)


def test_train_json_and_files(cli_run):
    out, summary = cli_run
    assert {"test_accuracy", "test_loss", "epochs_run", "seconds_per_epoch", "params", "history"} <= set(summary)
    assert summary["epochs_run"] == 1 and summary["params"] == 15910 and summary["seed"] == 3
    assert 0.5 < summary["test_accuracy"] <= 1
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "metrics.json", "model.keras"]


def test_evaluate_json(cli_run, fashion_slice_dir):
    out, summary = cli_run
    result = denselab("evaluate", out / "model.keras", "--data-dir", fashion_slice_dir, "--json")
    assert result.returncode == 0, result.stderr
    assert_no_third_party_logs(result)
    evaluation = json.loads(result.stdout)
    assert evaluation["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert len(evaluation["per_class_accuracy"]) == 10
    assert sum(map(sum, evaluation["confusion_matrix"])) == 1000


def test_predict_index_and_image_file_agree(cli_run, fashion_slice_dir, fashion, tmp_path):
    out, _ = cli_run
    image_path = tmp_path / "first.png"
    Image.fromarray(fashion.test_images[0]).save(image_path)
    result = denselab("predict", out / "model.keras", image_path, "--index", "0", "--data-dir", fashion_slice_dir, "--json")
    assert result.returncode == 0, result.stderr
    from_file, from_index = json.loads(result.stdout)
    assert from_file["source"] == str(image_path) and from_file["true_label"] is None
    assert from_index["source"] == "test image 0" and from_index["true_label"] == "Ankle boot"
    np.testing.assert_allclose(from_file["probabilities"], from_index["probabilities"])
    assert sum(from_index["probabilities"]) == pytest.approx(1, abs=1e-5)
    assert from_index["confidence"] == max(from_index["probabilities"])


def test_predict_table_shows_the_raw_vector(cli_run, fashion_slice_dir):
    out, _ = cli_run
    result = denselab("predict", out / "model.keras", "--data-dir", fashion_slice_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("test image 0\n[")  # the exercise's print(classifications[0])
    assert "Ankle boot" in result.stdout and "true label Ankle boot" in result.stdout


def test_info_finds_the_system_dataset():
    result = denselab("info", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["datasets"]["fashion-mnist"]["found"] and report["keras_backend"] == "jax"
    # make test hands pytest TFLM's trees, so TFLM's verdicts are measured; without them, estimated.
    assert report["tflm"] == {"trees": os.environ["DENSELAB_TFLM_TREES"], "verdicts": "measured", "problem": None}
    without = denselab("info", env={"DENSELAB_TFLM_TREES": ""})
    assert "TFLM trees: none (DENSELAB_TFLM_TREES unset): TFLM verdicts are estimated" in without.stdout
    damaged = denselab("info", "--json", env={"DENSELAB_TFLM_TREES": "/nonexistent"})
    assert "/nonexistent" in json.loads(damaged.stdout)["tflm"]["problem"]


def test_help_lists_every_command_once():
    """The help's command box against the commands the app registers."""
    import typer

    from denselab.cli import app

    result = denselab("--help", env={"COLUMNS": "80"})
    assert result.returncode == 0
    box = result.stdout.split("Commands", 1)[1]
    listed = re.findall(r"^│ ([a-z]+) {2,}\S", box, re.M)
    assert sorted(listed) == sorted(typer.main.get_command(app).commands)
    assert {"train", "evaluate", "predict", "explore", "search", "export", "serve", "runs"} <= set(listed)


@pytest.mark.parametrize("args, fragments", [
    (["--hidden", "0"], ["hidden layer size 0"]),
    (["--hidden", "20,x"], ["'x' is not an integer"]),
    (["--stop-at-accuracy", "1.5"], ["stop-at-accuracy must be in (0, 1]"]),
    (["--stop-at-accuracy", "0"], ["stop-at-accuracy must be in (0, 1]"]),
    (["--epochs", "0"], ["epochs must be an integer >= 1"]),
    (["--batch-size", "0"], ["batch-size must be an integer >= 1"]),
    (["--activation", "softsign"], ["unknown activation 'softsign'"]),
    (["--dataset", "cifar10"], ["unknown dataset 'cifar10'"]),
    (["--normalization", "zscore"], ["unknown normalization 'zscore'"]),
    (["--epochs", "many"], ["--epochs"]),
    (["--seed", "-1"], ["seed must be an integer from 0 to 4294967295, got -1"]),
    (["--seed", str(2**32)], ["seed must be an integer from 0 to 4294967295, got 4294967296"]),
])
def test_train_bad_options(args, fragments, tmp_path):
    result = denselab("train", *args, "--out", tmp_path / "out")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_train_dataset_not_found(tmp_path):
    (tmp_path / "empty").mkdir()
    result = denselab("train", "--data-dir", tmp_path / "empty", "--out", tmp_path / "out")
    assert_one_line_error(result, str(tmp_path / "empty"), "lacks the fashion-mnist IDX files")
    assert not (tmp_path / "out").exists()


def test_train_bad_idx_file_names_it(tmp_path, fashion_slice_dir):
    data = tmp_path / "data"
    data.mkdir()
    for path in fashion_slice_dir.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    (data / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b" + b"\0" * 20)
    result = denselab("train", "--data-dir", data, "--out", tmp_path / "out")
    assert_one_line_error(result, "train-labels-idx1-ubyte.gz is a damaged or truncated gzip file")


def test_mnist_without_files_says_how_to_get_them(tmp_path):
    result = denselab("train", "--dataset", "mnist", "--out", tmp_path / "out", env={"KERAS_HOME": str(tmp_path)})
    assert_one_line_error(result, "mnist not found", "--data-dir")


def test_train_out_is_a_file(tmp_path):
    (tmp_path / "file").write_text("keep me")
    result = denselab("train", "--out", tmp_path / "file")
    assert_one_line_error(result, "is a file")
    assert (tmp_path / "file").read_text() == "keep me"


def test_evaluate_and_predict_reject_non_models(tmp_path):
    (tmp_path / "model.keras").write_text("not a model")
    assert_one_line_error(denselab("evaluate", tmp_path / "model.keras"), "is not a Keras model file")
    assert_one_line_error(denselab("predict", tmp_path / "absent.keras"), "does not exist")


def test_predict_rejects_non_images_and_bad_index(cli_run, tmp_path):
    out, _ = cli_run
    (tmp_path / "notes.png").write_text("not an image")
    assert_one_line_error(denselab("predict", out / "model.keras", tmp_path / "notes.png"), "notes.png is not an image")
    assert_one_line_error(denselab("predict", out / "model.keras", "--index", "10000"), "--index 10000 is outside")


def test_predict_accepts_a_jpeg(cli_run, fashion, tmp_path):
    out, _ = cli_run
    buffer = io.BytesIO()
    Image.fromarray(255 - fashion.test_images[1]).resize((84, 84)).convert("RGB").save(buffer, format="JPEG")
    (tmp_path / "photo.jpg").write_bytes(buffer.getvalue())
    result = denselab("predict", out / "model.keras", tmp_path / "photo.jpg", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["source"].endswith("photo.jpg")


def test_same_code_trains_on_the_tensorflow_backend(fashion_slice_dir, tmp_path):
    result = denselab(
        "train", "--epochs", "1", "--seed", "1", "--data-dir", fashion_slice_dir, "--out", tmp_path / "tf", "--json",
        env={"KERAS_BACKEND": "tensorflow"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["test_accuracy"] > 0.5
    assert json.loads((tmp_path / "tf" / "metrics.json").read_text())["keras_backend"] == "tensorflow"


def test_runs_refuses_a_database_that_is_not_one_and_writes_nothing(tmp_path):
    from denselab.runs.store import RunStore

    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.sqlite").write_bytes(b"")
    (tmp_path / "notes.sqlite").write_text("not a database")
    for name, problem in [("folder", "is a directory"), ("empty.sqlite", "is empty"),
                          ("notes.sqlite", "cannot be used: file is not a database")]:
        assert_one_line_error(denselab("runs", "list", "--db", tmp_path / name), f"run database {tmp_path / name}",
                              problem)
    assert (tmp_path / "empty.sqlite").read_bytes() == b""  # SQLite would have written a schema into it
    with RunStore(tmp_path / "runs.sqlite"):
        pass
    huge = "9" * 30  # beyond SQLite's integers
    assert_one_line_error(denselab("runs", "show", huge, "--db", tmp_path / "runs.sqlite"), f"no run with id {huge}")
