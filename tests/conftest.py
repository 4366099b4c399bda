"""Shared fixtures: an empty home, IDX files written by the tests, the real dataset, one
trained model and the HTTP API serving it, and a real two-node Ray cluster on loopback."""

import gzip
import io
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# No test may read or write the home directory of whoever runs the suite: a Ray token, a
# compile cache or a dataset left there once hid a failure that a fresh machine showed.
# This runs before anything imports Keras (which writes ~/.keras when imported), and every
# command a test starts inherits it.
TEST_HOME = Path(tempfile.mkdtemp(prefix="denselab-test-home-"))
os.environ.update({
    "HOME": str(TEST_HOME),
    "XDG_CACHE_HOME": str(TEST_HOME / ".cache"),
    "DENSELAB_CACHE": str(TEST_HOME / ".cache" / "denselab"),
    "KERAS_HOME": str(TEST_HOME / ".keras"),
    "MPLCONFIGDIR": str(TEST_HOME / ".config" / "matplotlib"),
    "RAY_USAGE_STATS_ENABLED": "0",
})

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import denselab  # noqa: F401, E402  (sets the Keras backend before anything imports Keras)
from denselab.deploy.tflm_build import CACHE_VARIABLE, cache_folder  # noqa: E402

# TFLM's libraries are cached by content hash where they outlive this session's home (and a
# clone): the first session builds them (about a minute each), later ones find them.
os.environ.setdefault(CACHE_VARIABLE, str(cache_folder({})))
from denselab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, SPLIT_FILES
from denselab.data.sources import load_dataset

# Debian's Chromium, driven by Playwright in the browser tests.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# Two variants and one question, the smallest study with an answer; several test files run it.
SMALL_STUDY = """
name = "small"
description = "Two variants for the tests."
seeds = 2

[defaults]
hidden = [20]
epochs = 1

[[variants]]
name = "narrow"
reason = "The starting model."

[[variants]]
name = "wide"
hidden = [40]
reason = "Doubling the neurons."

[[questions]]
question = "Doubling the neurons"
baseline = "narrow"
variant = "wide"
"""

def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Encode a uint8 array as an IDX file: magic, one big-endian size per dimension, data."""
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dataset(directory: Path, train_images, train_labels, test_images, test_labels, gz: bool = True) -> Path:
    """Write the four IDX files of a dataset into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
    for split, (images_stem, labels_stem) in SPLIT_FILES.items():
        images, labels = arrays[split]
        for stem, array, magic in ((images_stem, images, IMAGES_MAGIC), (labels_stem, labels, LABELS_MAGIC)):
            data = idx_bytes(array, magic)
            path = directory / (stem + (".gz" if gz else ""))
            path.write_bytes(gzip.compress(data) if gz else data)
    return directory


def random_dataset_arrays(seed: int = 0, train: int = 64, test: int = 16):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (train, 28, 28), dtype=np.uint8), rng.integers(0, 10, train, dtype=np.uint8),
        rng.integers(0, 256, (test, 28, 28), dtype=np.uint8), rng.integers(0, 10, test, dtype=np.uint8),
    )


# --- the real command, and what its output must look like ---------------------------------

def denselab(*args, env=None, cwd=None):
    """`denselab ARGS` in a subprocess, as a user runs it; its CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "denselab", *map(str, args)],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600,
    )


# What TensorFlow, absl, LiteRT, TFLM, JAX, Ray and Python's warnings print when they get to the terminal.
THIRD_PARTY_LOG_MARKS = ("absl::", "I0000 ", "W0000 ", "E0000 ", "oneDNN", "XNNPACK", "Warning:", "INFO:",
                         "\tINFO ", "\tWARNING ", "(raylet)", "Token authentication")


# A C++ log line: Ray's core ("[2026-11-30 15:49:39,983 W 15718 15718] network_util.cc:330: ...")
# or glog's and absl's ("W1130 15:49:39.983 15718 port.cc:153] ...").
CPP_LOG_LINE = re.compile(r"^(?:\[[^\]\n]*\] \w+\.(?:cc|h):\d+|[IWEF]\d{4} [\d:.]+ +\d+ \w+\.(?:cc|h):\d+\])", re.MULTILINE)


def third_party_log_marks(text: str) -> list[str]:
    """The marks of other libraries' log lines found in `text`."""
    return [mark for mark in THIRD_PARTY_LOG_MARKS if mark in text] + CPP_LOG_LINE.findall(text)


def assert_no_third_party_logs(result) -> None:
    """Neither stream of a command carries another library's log lines."""
    for stream in (result.stdout, result.stderr):
        marks = third_party_log_marks(stream)
        assert not marks, f"{marks} in:\n{stream[-3000:]}"


def assert_fits_80_columns(text: str) -> None:
    """Printed at COLUMNS=80: no line is wider, and no table cell was cut short with an ellipsis."""
    assert text.strip()
    for line in text.splitlines():
        assert len(line.rstrip()) <= 80, f"wider than 80 columns:\n{line}"
        assert "…" not in line, f"a cell cut short:\n{line}"


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def wait_until_serving(port: int, what: str, seconds: float = 60, process=None) -> None:
    """Return once http://127.0.0.1:PORT/ answers; fail after `seconds`, or when `process` (a Popen) ends."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{what} did not answer on port {port} within {seconds} s")


def unused_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens: the system's choice, closed again at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def open_png(data: bytes) -> Image.Image:
    """The decoded image, after checking that `data` is a complete PNG file.

    A figure's PNG carries no "Software" metadata, so that its bytes do not change with
    the matplotlib version.
    """
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert "Software" not in image.info
    image.load()  # Decodes every pixel, so a truncated file fails here.
    return image


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST, as `make test` installs it (Debian's dataset-fashion-mnist)."""
    return load_dataset("fashion-mnist", allow_download=False)


@pytest.fixture(scope="session")
def fashion_slice_dir(fashion, tmp_path_factory):
    """A directory with the first 6000 training and 1000 test images of the real dataset, for quick CLI runs."""
    small = fashion.subset(train=6000, test=1000)
    return write_idx_dataset(
        tmp_path_factory.mktemp("fashion-slice"),
        small.train_images, small.train_labels, small.test_images, small.test_labels,
    )


@pytest.fixture(scope="session")
def trained_dir(fashion, tmp_path_factory):
    """The exercise's Dense(20) model trained for one epoch on the real data, saved as a run directory."""
    from denselab.model.spec import ModelSpec
    from denselab.training.config import TrainConfig
    from denselab.training.fit import save_run, train

    run = train(ModelSpec((20,)), fashion, TrainConfig(epochs=1, seed=7))
    return save_run(run, tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def deeper_dir(fashion, tmp_path_factory):
    """The exercise's Dense(512) -> Dense(512) model, trained for 2 epochs on the real data."""
    from denselab.model.spec import ModelSpec
    from denselab.training.config import TrainConfig
    from denselab.training.fit import save_run, train

    run = train(ModelSpec((512, 512)), fashion, TrainConfig(epochs=2, seed=1))
    return save_run(run, tmp_path_factory.mktemp("deeper"))


@pytest.fixture(scope="session")
def client(trained_dir):
    """The HTTP API serving `trained_dir`'s model, through FastAPI's TestClient: no server, no socket."""
    from fastapi.testclient import TestClient

    from denselab.serve.app import create_app

    return TestClient(create_app(trained_dir / "model.keras"))


@pytest.fixture(scope="session")
def tanh_int8_model(fashion, tmp_path_factory) -> Path:
    """An untrained Dense(16, tanh) model converted to int8: a .tflite with a TANH op, which the C runtime refuses."""
    from denselab.deploy.tflite import calibration_images, convert
    from denselab.model.spec import ModelSpec, build_model

    path = tmp_path_factory.mktemp("tanh") / "tanh_int8.tflite"
    path.write_bytes(convert(build_model(ModelSpec((16,), "tanh")), "int8", calibration_images(fashion, 50)))
    return path


def stored_runs(db: Path) -> list[dict]:
    """Every row of a run database, as SQLite holds it (JSON columns as text), by variant and seed."""
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("SELECT * FROM runs ORDER BY variant, seed")]


def pytest_unconfigure(config):
    shutil.rmtree(TEST_HOME, ignore_errors=True)


# --- a Ray cluster on loopback ----------------------------------------------------------------

RAY = Path(sys.executable).parent / "ray"


@pytest.fixture(scope="session")
def namespace():
    """A fresh network namespace with only its loopback interface up; its name.

    Left on the machine's network, Ray advertises the machine's address even when told
    127.0.0.1, and tests here must talk over loopback only.
    """
    name = f"denselab-ray-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace (needs root and iproute2): {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def inside(namespace: str) -> list[str]:
    return ["ip", "netns", "exec", namespace]


@dataclass(frozen=True)
class RayCluster:
    namespace: str
    address: str  # for --ray-address
    driver_env: dict  # the environment of a driver: its own home holding a copy of the token


def _home_with_token(home: Path, token: Path) -> Path:
    """A home directory holding a copy of the cluster's token, as the README says to make one."""
    (home / ".ray").mkdir(parents=True)
    shutil.copy(token, home / ".ray" / "auth_token")
    return home


@pytest.fixture(scope="session")
def ray_cluster(namespace, tmp_path_factory):
    """A head node and a worker node, one CPU each, started by the README's steps from empty homes.

    Each node and the driver have a home of their own; the head generates the token
    (`ray get-auth-token --generate`) and the others get a copy of it, as on real machines.
    """
    port = 6380
    head_home = tmp_path_factory.mktemp("ray-head-home")
    head_env = {**os.environ, "HOME": str(head_home), "RAY_AUTH_MODE": "token"}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]

    def ray(*args, env):
        result = subprocess.run([*inside(namespace), RAY, *args], env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, f"ray {' '.join(args)} failed:\n{result.stderr[-3000:]}"

    ray("get-auth-token", "--generate", env=head_env)
    token = head_home / ".ray" / "auth_token"
    ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common, env=head_env)
    worker_env = {**head_env, "HOME": str(_home_with_token(tmp_path_factory.mktemp("ray-worker-home"), token))}
    try:
        ray("start", f"--address=127.0.0.1:{port}", *common, env=worker_env)
        driver_home = _home_with_token(tmp_path_factory.mktemp("ray-driver-home"), token)
        yield RayCluster(namespace, f"127.0.0.1:{port}", {**os.environ, "HOME": str(driver_home), "RAY_AUTH_MODE": "token"})
    finally:
        subprocess.run([*inside(namespace), RAY, "stop", "--force"], capture_output=True, timeout=120, env=head_env)
