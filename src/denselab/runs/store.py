"""The run store: every run of every study in one SQLite file.

A run is identified by (study, variant, config hash, seed). It is inserted as
'running' when it starts and completed as 'finished' (or 'failed') in one transaction
when it ends, so a study killed at any moment leaves only finished runs and at most one
'running' row per worker, which the next start deletes and redoes. Finished runs are
never written again.
"""

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from denselab.errors import BadInput

DEFAULT_DB = Path("runs/denselab.sqlite")  # where `make run`, explore and search keep their runs
# 2 added the deployment columns, 3 the execution column, 4 the int8 model's ops; older files
# are brought up to date.
SCHEMA_VERSION = 4
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    study TEXT NOT NULL,
    variant TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config_hash TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    started_at REAL NOT NULL,
    finished_at REAL,
    params INTEGER,
    epochs_run INTEGER,
    seconds_per_epoch REAL,
    train_seconds REAL,
    train_accuracy REAL,
    test_accuracy REAL,
    test_loss REAL,
    history TEXT,
    per_class_accuracy TEXT,
    confusion_matrix TEXT,
    model_path TEXT,
    keras_backend TEXT,
    error TEXT,
    int8_bytes INTEGER,
    int8_accuracy REAL,
    arena_bytes INTEGER,
    boards TEXT,
    execution TEXT,
    int8_ops TEXT,
    UNIQUE (study, variant, config_hash, seed)
);
"""
JSON_COLUMNS = ("config", "history", "per_class_accuracy", "confusion_matrix", "boards", "int8_ops", "execution")
RESULT_COLUMNS = (
    "params", "epochs_run", "seconds_per_epoch", "train_seconds", "train_accuracy", "test_accuracy",
    "test_loss", "history", "per_class_accuracy", "confusion_matrix", "model_path", "keras_backend",
)
# Result columns a run may leave out, which then stay NULL: a teacher run (denselab.training.teacher)
# has no loss or per-class figures.
NULLABLE_RESULT_COLUMNS = ("test_loss", "per_class_accuracy", "confusion_matrix")
# A run's deployment figures: its int8 .tflite size and accuracy (on the split the run is
# scored on: the test set, or a search's validation split), the smallest TFLM arena, its ops
# and the boards it fits, measured once when the run finishes. Schema 1 had no such columns;
# runs stored before TFLM was measured have no ops, and boards found on TFLM's estimate.
DEPLOYMENT_COLUMNS = {"int8_bytes": "INTEGER", "int8_accuracy": "REAL", "arena_bytes": "INTEGER", "boards": "TEXT",
                      "int8_ops": "TEXT"}
# How a run was trained (loop.Execution: alone or side by side, seeds, device), which decides
# what its times compare with. Runs stored before schema 3 have none.
EXECUTION_COLUMNS = {"execution": "TEXT"}
OPTIONAL_COLUMNS = {**DEPLOYMENT_COLUMNS, **EXECUTION_COLUMNS}


@dataclass(frozen=True)
class RunKey:
    study: str
    variant: str
    config_hash: str
    seed: int


class RunStore:
    """A SQLite file of runs. Use as a context manager or call `close()`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise BadInput(f"run database {self.path} is not a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are opened explicitly with BEGIN IMMEDIATE.
            self.connection = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.connection.row_factory = sqlite3.Row
            version = self.connection.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, 2, 3, SCHEMA_VERSION):
                raise BadInput(f"run database {self.path} has schema version {version}; this denselab reads {SCHEMA_VERSION}")
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.executescript(SCHEMA)
            if version in (1, 2, 3):
                self._add_missing_columns()
            self.connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as error:
            raise BadInput(f"run database {self.path} cannot be used: {error}") from None

    def _add_missing_columns(self) -> None:
        """Bring an older file up to date; its runs keep their results, without the newer figures."""
        present = {row["name"] for row in self.connection.execute("PRAGMA table_info(runs)")}
        with self._transaction():
            for column, kind in OPTIONAL_COLUMNS.items():
                if column not in present:
                    self.connection.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self) -> None:
        self.connection.close()

    def _transaction(self):
        return _Transaction(self.connection)

    # --- writing ---------------------------------------------------------------------

    def start_run(self, key: RunKey, config: dict) -> int:
        """Record that a run starts, dropping an unfinished earlier attempt at it; returns its id."""
        with self._transaction():
            self.connection.execute(
                "DELETE FROM runs WHERE study=? AND variant=? AND config_hash=? AND seed=? AND status != 'finished'",
                (key.study, key.variant, key.config_hash, key.seed),
            )
            cursor = self.connection.execute(
                "INSERT INTO runs (study, variant, seed, config_hash, config, status, started_at) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (key.study, key.variant, key.seed, key.config_hash, json.dumps(config), time.time()),
            )
            return cursor.lastrowid

    def finish_run(self, run_id: int, result: dict) -> None:
        """Store a finished run's results, all at once (deployment figures, execution, scores: where it has them)."""
        columns = tuple(column for column in (*RESULT_COLUMNS, *OPTIONAL_COLUMNS)
                        if column in result or column in RESULT_COLUMNS and column not in NULLABLE_RESULT_COLUMNS)
        values = [json.dumps(result[c]) if c in JSON_COLUMNS else result[c] for c in columns]
        with self._transaction():
            self.connection.execute(
                f"UPDATE runs SET {', '.join(f'{c}=?' for c in columns)}, status='finished', finished_at=? "
                "WHERE id=? AND status='running'",
                (*values, time.time(), run_id),
            )

    def fail_run(self, run_id: int, error: str) -> None:
        with self._transaction():
            self.connection.execute(
                "UPDATE runs SET status='failed', error=?, finished_at=? WHERE id=? AND status='running'",
                (error, time.time(), run_id),
            )

    # --- reading ---------------------------------------------------------------------

    def finished(self, key: RunKey) -> dict | None:
        row = self.connection.execute(
            "SELECT * FROM runs WHERE study=? AND variant=? AND config_hash=? AND seed=? AND status='finished'",
            (key.study, key.variant, key.config_hash, key.seed),
        ).fetchone()
        return _as_dict(row)

    def run(self, run_id: int) -> dict:
        if not 0 <= run_id < 2**63:  # beyond SQLite's integers no run can have it
            raise BadInput(f"no run with id {run_id} in {self.path}")
        row = self.connection.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise BadInput(f"no run with id {run_id} in {self.path}")
        return _as_dict(row)

    def runs(self, study: str | None = None, status: str | None = None) -> list[dict]:
        query, arguments = "SELECT * FROM runs WHERE 1=1", []
        if study is not None:
            query, arguments = query + " AND study=?", arguments + [study]
        if status is not None:
            query, arguments = query + " AND status=?", arguments + [status]
        return [_as_dict(row) for row in self.connection.execute(query + " ORDER BY id", arguments)]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises (a kill needs neither)."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __enter__(self):
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *rest):
        self.connection.execute("ROLLBACK" if exc_type else "COMMIT")


def _as_dict(row: sqlite3.Row | None) -> dict | None:
    if row is None:
        return None
    record = dict(row)
    for column in JSON_COLUMNS:
        if record.get(column) is not None:
            record[column] = json.loads(record[column])
    return record


def open_existing_store(db: Path) -> RunStore:
    """The run store at `db` for reading: BadInput unless a study or a search has written it."""
    db = Path(db)
    if db.is_dir():
        raise BadInput(f"run database {db} is a directory; pass --db with the database file")
    if not db.is_file():
        raise BadInput(f"run database {db} does not exist; run 'denselab explore' first or pass --db")
    if db.stat().st_size == 0:  # SQLite would take it, and write a schema into it, for a read
        raise BadInput(f"run database {db} is empty; run 'denselab explore' first or pass --db")
    return RunStore(db)

