"""Studies on a real Ray cluster: a head node and a second worker node, started here.

The cluster and its drivers run inside a network namespace of their own that has only a
loopback interface: left on the machine's network, Ray advertises the machine's address
even when told 127.0.0.1, and tests here must talk over loopback only.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from denselab.scaleout import INJECT_FAILURE_VARIABLE
from test_cli import denselab
from test_study import SMALL_STUDY

RAY = Path(sys.executable).parent / "ray"
# Ray 2.60's head node turns token authentication on; every node and driver must then say so.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def namespace():
    """A fresh network namespace with only its loopback interface up; its name."""
    if not RAY.exists():
        pytest.skip("ray is not installed in this environment")
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


@pytest.fixture(scope="module")
def ray_cluster(namespace):
    """A head node and a worker node, one CPU each, in the namespace; the address for --ray-address."""
    port = 6380
    # Tasks of a variant named "always-fails" raise: the workers inherit this from their node.
    env = {**os.environ, **RAY_ENV, INJECT_FAILURE_VARIABLE: "always-fails"}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([*inside(namespace), RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
                    *common], check=True, env=env, capture_output=True, timeout=180)
    try:
        subprocess.run([*inside(namespace), RAY, "start", f"--address=127.0.0.1:{port}", *common],
                       check=True, env=env, capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([*inside(namespace), RAY, "stop", "--force"], capture_output=True, timeout=120, env=env)


def denselab_in(namespace: str, *args):
    """`denselab ARGS` run as a driver inside the cluster's namespace."""
    return subprocess.run([*inside(namespace), sys.executable, "-m", "denselab", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, **RAY_ENV}, timeout=900)


def explore(study_text, data_dir, root: Path, *extra):
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text(study_text)
    return ["explore", "--study", root / "study.toml", "--data-dir", data_dir, "--db", root / "runs.sqlite",
            "--out", root / "report", "--models-dir", root / "models", "--json", *extra]


def stored(db: Path) -> list[dict]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("SELECT * FROM runs ORDER BY variant, seed")]


def test_same_metrics_as_the_local_executor(namespace, ray_cluster, fashion_slice_dir, tmp_path):
    local = denselab(*explore(SMALL_STUDY, fashion_slice_dir, tmp_path / "local"))
    on_ray = denselab_in(namespace, *explore(SMALL_STUDY, fashion_slice_dir, tmp_path / "ray", "--executor", "ray",
                                             "--ray-address", ray_cluster))
    assert local.returncode == 0, local.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    for here, there in zip(stored(tmp_path / "local" / "runs.sqlite"), stored(tmp_path / "ray" / "runs.sqlite"), strict=True):
        assert (here["variant"], here["seed"]) == (there["variant"], there["seed"])
        assert here["test_accuracy"] == there["test_accuracy"]
        # Ray workers run BLAS on one thread (OMP_NUM_THREADS=1): sums in another order, ~1e-8 apart.
        assert here["test_loss"] == pytest.approx(there["test_loss"], rel=1e-6)
        assert Path(there["model_path"]).is_file() and there["status"] == "finished"
    assert json.loads(on_ray.stdout)["runs_trained"] == 4


def test_a_killed_worker_is_retried_and_the_study_finishes(namespace, ray_cluster, fashion_slice_dir, tmp_path):
    args = explore(SMALL_STUDY, fashion_slice_dir, tmp_path, "--executor", "ray", "--ray-address", ray_cluster,
                   "--epochs", "3")
    study = subprocess.Popen([*inside(namespace), sys.executable, "-m", "denselab", *map(str, args)],
                             env={**os.environ, **RAY_ENV},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and study.poll() is None:
        found = subprocess.run(["pgrep", "-f", "ray::train_task"], capture_output=True, text=True).stdout.split()
        if found:
            time.sleep(1.0)  # let it get into training
            killed = int(found[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    stdout, stderr = study.communicate(timeout=600)
    assert killed is not None, "no Ray worker was seen running a run"
    assert study.returncode == 0, stderr
    runs = stored(tmp_path / "runs.sqlite")
    assert len(runs) == 4 and {run["status"] for run in runs} == {"finished"}
    # Ray's raylet reports the killed worker on the driver's stdout before our JSON line.
    assert json.loads(stdout.strip().splitlines()[-1])["runs_failed"] == 0


def test_a_run_that_always_fails_is_recorded_and_the_others_finish(namespace, ray_cluster, fashion_slice_dir, tmp_path):
    text = SMALL_STUDY.replace('name = "wide"', 'name = "always-fails"').replace('variant = "wide"', 'variant = "always-fails"')
    result = denselab_in(namespace, *explore(text, fashion_slice_dir, tmp_path, "--executor", "ray",
                                             "--ray-address", ray_cluster))
    assert result.returncode == 1, result.stderr  # the study finished, with failures
    runs = stored(tmp_path / "runs.sqlite")
    assert {(run["variant"], run["status"]) for run in runs} == {("narrow", "finished"), ("always-fails", "failed")}
    assert all("failure injected" in run["error"] for run in runs if run["status"] == "failed")
    assert not list((tmp_path / "models" / "small" / "always-fails").glob("*.keras"))  # nothing partial
    assert shutil.which("pgrep")  # the kill test above depends on it


def test_workers_run_in_parallel_local_processes(namespace, fashion_slice_dir, tmp_path):
    local = denselab(*explore(SMALL_STUDY, fashion_slice_dir, tmp_path / "local"))
    parallel = denselab_in(namespace, *explore(SMALL_STUDY, fashion_slice_dir, tmp_path / "workers", "--workers", "2"))
    assert local.returncode == 0 and parallel.returncode == 0, parallel.stderr
    here, there = stored(tmp_path / "local" / "runs.sqlite"), stored(tmp_path / "workers" / "runs.sqlite")
    assert [r["test_accuracy"] for r in here] == [r["test_accuracy"] for r in there]
