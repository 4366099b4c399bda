"""`denselab explore` on a real two-node Ray cluster, started by the README's steps from empty
homes (see conftest.ray_cluster), a Ray worker killed in the middle of a run, and cluster
addresses that cannot work.

The engine's own assertions under every executor are in test_runs_engine.py.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_no_third_party_logs, assert_one_line_error, denselab, inside, stored_runs, unused_port
from denselab.errors import BadInput
from denselab.runs.executors import choose_executor, split_address
from conftest import SMALL_STUDY


def explore(data_dir, root: Path, *extra):
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text(SMALL_STUDY)
    return ["explore", "--study", root / "study.toml", "--data-dir", data_dir, "--db", root / "runs.sqlite",
            "--out", root / "report", "--models-dir", root / "models", "--json", *extra]


def on_cluster(cluster, args):
    """The command line of `denselab ARGS` as a driver inside the cluster's namespace."""
    return [*inside(cluster.namespace), sys.executable, "-m", "denselab", *map(str, args)]


def test_explore_on_the_cluster_as_the_readme_says(ray_cluster, fashion_slice_dir, tmp_path):
    local = denselab(*explore(fashion_slice_dir, tmp_path / "local"))
    args = explore(fashion_slice_dir, tmp_path / "ray", "--executor", "ray", "--ray-address", ray_cluster.address)
    on_ray = subprocess.run(on_cluster(ray_cluster, args), capture_output=True, text=True, env=ray_cluster.driver_env,
                            timeout=900)
    assert local.returncode == 0, local.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    assert_no_third_party_logs(local)
    assert_no_third_party_logs(on_ray)
    for here, there in zip(stored_runs(tmp_path / "local" / "runs.sqlite"), stored_runs(tmp_path / "ray" / "runs.sqlite"),
                           strict=True):
        assert (here["variant"], here["seed"], here["test_accuracy"]) == (there["variant"], there["seed"], there["test_accuracy"])
        assert Path(there["model_path"]).is_file() and there["status"] == "finished"
    assert json.loads(on_ray.stdout.strip().splitlines()[-1])["runs_trained"] == 4
    assert "int8 bytes" in (tmp_path / "ray" / "report" / "report.md").read_text()


def test_a_driver_without_the_token_is_refused_in_one_line(ray_cluster, fashion_slice_dir, tmp_path):
    """The README's token step matters: a driver whose home lacks the token cannot join."""
    args = explore(fashion_slice_dir, tmp_path, "--executor", "ray", "--ray-address", ray_cluster.address)
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    result = subprocess.run(on_cluster(ray_cluster, args), capture_output=True, text=True, timeout=300,
                            env={**ray_cluster.driver_env, "HOME": str(empty_home)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "token" in result.stderr.strip().splitlines()[-1]


def test_a_killed_worker_is_retried_and_the_study_finishes(ray_cluster, fashion_slice_dir, tmp_path):
    assert shutil.which("pgrep"), "the test finds Ray's worker process with pgrep (Debian's procps)"
    args = explore(fashion_slice_dir, tmp_path, "--executor", "ray", "--ray-address", ray_cluster.address,
                   "--epochs", "3")
    study = subprocess.Popen(on_cluster(ray_cluster, args), env=ray_cluster.driver_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and study.poll() is None:
        found = subprocess.run(["pgrep", "-f", "ray::_remote_run"], capture_output=True, text=True).stdout.split()
        if found:
            time.sleep(1.0)  # let it get into training
            killed = int(found[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    stdout, stderr = study.communicate(timeout=600)
    assert killed is not None, "no Ray worker was seen running a run"
    assert study.returncode == 0, stderr
    runs = stored_runs(tmp_path / "runs.sqlite")
    assert len(runs) == 4 and {run["status"] for run in runs} == {"finished"}
    # Ray's raylet reports the killed worker on the driver's stdout before our JSON line.
    assert json.loads(stdout.strip().splitlines()[-1])["runs_failed"] == 0


def test_an_address_where_nothing_listens_is_refused_in_seconds(fashion_slice_dir, tmp_path):
    """Ray itself retries such an address for minutes; the study must say so at once, and write nothing."""
    address = f"127.0.0.1:{unused_port()}"
    started = time.monotonic()
    result = denselab(*explore(fashion_slice_dir, tmp_path, "--executor", "ray", "--ray-address", address))
    assert time.monotonic() - started < 30
    assert_one_line_error(result, f"cannot reach the Ray cluster at {address}: nothing listens there",
                          "ray start --head")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["study.toml"]  # no database, model or report


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5:", ":6379", "10.0.0.5:0", "10.0.0.5:65536",
                                     "10.0.0.5:http", "10.0.0.5:+6379", "head node:6379", "10.0.0.5:" + "9" * 5000])
def test_an_address_that_is_not_host_and_port_is_refused(address):
    with pytest.raises(BadInput, match="is not HOST:PORT"):
        choose_executor("ray", address=address)


def test_addresses_ray_takes():
    assert split_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert split_address("[::1]:6379") == ("::1", 6379)
    assert split_address("ray://head.example:10001") == ("head.example", 10001)  # Ray Client
    with pytest.raises(BadInput, match="needs --executor ray"):
        choose_executor("local", address="10.0.0.5:6379")
