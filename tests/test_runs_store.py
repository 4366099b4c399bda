import sqlite3

import pytest

from denselab.errors import BadInput
from denselab.runs.store import RunKey, RunStore

RESULT = {
    "params": 10, "epochs_run": 1, "seconds_per_epoch": 0.5, "train_seconds": 0.6, "train_accuracy": 0.7,
    "test_accuracy": 0.75, "test_loss": 0.6, "history": [{"epoch": 1, "loss": 0.6, "accuracy": 0.7, "seconds": 0.6}],
    "per_class_accuracy": [0.7] * 10, "confusion_matrix": [[1] * 10] * 10, "model_path": "m.keras",
    "keras_backend": "jax",
}


def test_start_finish_and_read_back(tmp_path):
    key = RunKey("s", "v", "abc", 0)
    with RunStore(tmp_path / "runs.sqlite") as store:
        run_id = store.start_run(key, {"hidden_units": [20]})
        assert store.finished(key) is None and store.run(run_id)["status"] == "running"
        store.finish_run(run_id, RESULT)
        stored = store.finished(key)
    assert stored["test_accuracy"] == 0.75 and stored["history"] == RESULT["history"]
    assert stored["config"] == {"hidden_units": [20]} and stored["status"] == "finished"
    # A real SQLite file that another program can read.
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM runs WHERE status='finished'").fetchone() == (1,)


def test_a_result_without_scores_stores_null_and_one_without_its_figures_is_refused(tmp_path):
    # A teacher run (denselab.training.teacher) has no loss or per-class figures.
    scores = ("test_loss", "per_class_accuracy", "confusion_matrix")
    teacher = {column: value for column, value in RESULT.items() if column not in scores}
    with RunStore(tmp_path / "runs.sqlite") as store:
        run_id = store.start_run(RunKey("teachers", "cnn-e1", "abc", 0), {})
        store.finish_run(run_id, teacher)
        stored = store.run(run_id)
        with pytest.raises(KeyError, match="train_accuracy"):
            store.finish_run(store.start_run(RunKey("s", "v", "abc", 0), {}),
                             {column: value for column, value in RESULT.items() if column != "train_accuracy"})
    assert stored["status"] == "finished" and stored["test_accuracy"] == 0.75
    assert [stored[column] for column in scores] == [None, None, None]
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:  # NULL, not the JSON text "null"
        assert connection.execute("SELECT test_loss, per_class_accuracy FROM runs WHERE id=?", (run_id,)
                                  ).fetchone() == (None, None)


def test_unfinished_attempt_is_replaced_not_duplicated(tmp_path):
    key = RunKey("s", "v", "abc", 0)
    with RunStore(tmp_path / "runs.sqlite") as store:
        first = store.start_run(key, {})
        second = store.start_run(key, {})  # as after a kill: the first never finished
        assert [run["id"] for run in store.runs()] == [second]  # one row: the new attempt
        assert first is not None
        store.finish_run(second, RESULT)
        with pytest.raises(sqlite3.IntegrityError):
            store.start_run(key, {})  # a finished run is never started again
        assert len(store.runs()) == 1


def test_failed_run_keeps_its_error(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store:
        run_id = store.start_run(RunKey("s", "v", "abc", 1), {})
        store.fail_run(run_id, "RuntimeError: boom")
        assert store.runs(status="failed")[0]["error"] == "RuntimeError: boom"
        assert store.runs(study="other") == []


def test_not_a_database(tmp_path):
    (tmp_path / "notes.sqlite").write_text("plain text, not SQLite" * 100)
    with pytest.raises(BadInput, match="notes.sqlite cannot be used"):
        RunStore(tmp_path / "notes.sqlite")
    (tmp_path / "folder").mkdir()
    with pytest.raises(BadInput, match="is not a file"):
        RunStore(tmp_path / "folder")


def test_unknown_run_id(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store, pytest.raises(BadInput, match="no run with id 42"):
        store.run(42)


SCHEMA_1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY, study TEXT NOT NULL, variant TEXT NOT NULL, seed INTEGER NOT NULL,
    config_hash TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    started_at REAL NOT NULL, finished_at REAL, params INTEGER, epochs_run INTEGER, seconds_per_epoch REAL,
    train_seconds REAL, train_accuracy REAL, test_accuracy REAL, test_loss REAL, history TEXT,
    per_class_accuracy TEXT, confusion_matrix TEXT, model_path TEXT, keras_backend TEXT, error TEXT,
    UNIQUE (study, variant, config_hash, seed)
);
INSERT INTO runs (study, variant, seed, config_hash, config, status, started_at, test_accuracy)
    VALUES ('s', 'v', 0, 'abc', '{}', 'finished', 0, 0.8);
PRAGMA user_version=1;
"""


def test_a_schema_1_file_keeps_its_runs_and_gains_the_newer_columns(tmp_path):
    """A database written before deployment figures and executions were stored (schema 1) opens and keeps its runs."""
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        connection.executescript(SCHEMA_1)
    execution = {"mode": "side by side", "seeds": 3, "device": "cpu"}
    with RunStore(tmp_path / "runs.sqlite") as store:
        old = store.finished(RunKey("s", "v", "abc", 0))
        assert old["test_accuracy"] == 0.8 and old["int8_bytes"] is None and old["boards"] is None
        assert old["execution"] is None
        run_id = store.start_run(RunKey("s", "v", "abc", 1), {})
        ops = ["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]
        store.finish_run(run_id, {**RESULT, "int8_bytes": 18_648, "arena_bytes": 3_376, "boards": ["samd21"],
                                  "int8_ops": ops, "execution": execution})
        new = store.run(run_id)
    assert (new["int8_bytes"], new["arena_bytes"], new["boards"], new["int8_ops"]) == (18_648, 3_376, ["samd21"], ops)
    assert new["execution"] == execution
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (4,)


@pytest.mark.parametrize("version, columns, column, value", [
    (2, "int8_bytes INTEGER, int8_accuracy REAL, arena_bytes INTEGER, boards TEXT,", "execution",
     {"mode": "alone", "seeds": 1, "device": "cpu"}),
    (3, "int8_bytes INTEGER, int8_accuracy REAL, arena_bytes INTEGER, boards TEXT, execution TEXT,", "int8_ops",
     ["SOFTMAX"]),
])
def test_an_older_file_gains_the_newer_column(version, columns, column, value, tmp_path):
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        connection.executescript(SCHEMA_1.replace("error TEXT,", f"error TEXT, {columns}")
                                 .replace("PRAGMA user_version=1", f"PRAGMA user_version={version}"))
    with RunStore(tmp_path / "runs.sqlite") as store:
        assert store.finished(RunKey("s", "v", "abc", 0))[column] is None
        run_id = store.start_run(RunKey("s", "v", "abc", 1), {})
        store.finish_run(run_id, {**RESULT, column: value})
        assert store.run(run_id)[column] == value
