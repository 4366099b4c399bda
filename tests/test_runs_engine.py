"""The run engine under each executor, with the same assertions: in this process, local worker
processes (`--workers 2`) and a real two-node Ray cluster on loopback.

Each case runs a small driver program that hands the engine a task which fails on purpose
for one variant, the way a test injects a fault: production code reads no test switch.
"""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import inside, stored_runs
from denselab.data.sources import load_dataset
from denselab.deploy.figures import deployment_figures
from denselab.model.spec import load_model
from denselab.runs.engine import plan_runs
from denselab.study.file import parse_study
from conftest import SMALL_STUDY

# The tests' small study (narrow and wide, 2 seeds, 1 epoch), renamed, with a variant whose task raises.
STUDY = SMALL_STUDY.replace('name = "small"', 'name = "engine"', 1) + """
[[variants]]
name = "always-fails"
hidden = [8]
reason = "Its task raises, to show that a failure is recorded and the others finish."
"""

DRIVER = """
import json, sys
from pathlib import Path

from denselab.data.sources import load_dataset
from denselab.study.run import run_study
from denselab.runs.engine import train_runs
from denselab.runs.executors import InProcess, RayExecutor, local_workers
from denselab.runs.store import RunStore
from denselab.study.file import parse_study

def task(variant, dataset, seeds, on_progress):
    if variant.name == "always-fails":
        raise RuntimeError(f"failure injected into {variant.name}")
    return train_runs(variant, dataset, seeds, on_progress)

study_text, data_dir, root, kind, address = sys.argv[1:]
root = Path(root)
executor = {"in-process": InProcess(), "workers": local_workers(2), "ray-cluster": RayExecutor(address)}[kind]
datasets = {"fashion-mnist": load_dataset("fashion-mnist", Path(data_dir), allow_download=False)}
progress = []
with RunStore(root / "runs.sqlite") as store:
    outcome = run_study(parse_study(study_text, "engine.toml"), store, root / "models", datasets, executor,
                        on_progress=progress.append, task=task)
print(json.dumps({"trained": outcome.trained, "reused": outcome.reused, "failed": len(outcome.failed),
                  "last_progress": vars(progress[-1]) if progress else None}))
"""


@dataclass(frozen=True)
class Driver:
    """How to start a driver program for one executor: where (namespace) and with what environment."""

    kind: str
    prefix: tuple = ()  # `ip netns exec NAME`, for the executors that use Ray
    env: dict | None = None
    address: str = ""

    def run(self, data_dir: Path, root: Path) -> dict:
        root.mkdir(parents=True, exist_ok=True)
        command = [*self.prefix, sys.executable, "-c", DRIVER, STUDY, str(data_dir), str(root), self.kind, self.address]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=self.env)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference(fashion_slice_dir, tmp_path_factory):
    """The in-process executor's stored runs, which every executor must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    Driver("in-process").run(fashion_slice_dir, root)
    return stored_runs(root / "runs.sqlite")


@pytest.fixture(params=["in-process", "workers", "ray-cluster"])
def driver(request) -> Driver:
    if request.param == "in-process":
        return Driver("in-process")
    if request.param == "workers":
        # Ray processes talk over loopback only, inside a network namespace of their own.
        return Driver("workers", tuple(inside(request.getfixturevalue("namespace"))))
    cluster = request.getfixturevalue("ray_cluster")
    return Driver("ray-cluster", tuple(inside(cluster.namespace)), cluster.driver_env, cluster.address)


def test_every_run_is_recorded_once_under_each_executor(driver, reference, fashion_slice_dir, tmp_path):
    first = driver.run(fashion_slice_dir, tmp_path)
    assert (first["trained"], first["reused"], first["failed"]) == (4, 0, 2)
    assert first["last_progress"]["runs_done"] == 6 and first["last_progress"]["runs_total"] == 6
    assert first["last_progress"]["work_done"] == pytest.approx(first["last_progress"]["work_total"])
    runs = stored_runs(tmp_path / "runs.sqlite")
    assert [(r["variant"], r["seed"], r["status"]) for r in runs] == [
        ("always-fails", 0, "failed"), ("always-fails", 1, "failed"),
        ("narrow", 0, "finished"), ("narrow", 1, "finished"), ("wide", 0, "finished"), ("wide", 1, "finished"),
    ]
    failed = [run for run in runs if run["status"] == "failed"]
    assert all(run["error"].startswith("RuntimeError: failure injected into always-fails") for run in failed)
    assert not (tmp_path / "models" / "engine" / "always-fails").exists()  # nothing partial
    finished = [run for run in runs if run["status"] == "finished"]
    expected = [run for run in reference if run["status"] == "finished"]
    for here, there in zip(finished, expected, strict=True):
        assert Path(here["model_path"]).is_file()
        # Ray workers run BLAS on one thread: sums in another order, ~1e-8 apart.
        assert here["test_accuracy"] == there["test_accuracy"]
        assert here["test_loss"] == pytest.approx(there["test_loss"], rel=1e-6)
        # Deployment figures are measured in the worker and stored with the run.
        deployment = ("int8_bytes", "int8_accuracy", "arena_bytes", "int8_ops", "boards")
        assert [here[key] for key in deployment] == [there[key] for key in deployment]

    # Run again: finished runs are reused and never touched; failed ones are tried again.
    again = driver.run(fashion_slice_dir, tmp_path)
    assert (again["trained"], again["reused"], again["failed"]) == (0, 4, 2)
    assert [run for run in stored_runs(tmp_path / "runs.sqlite") if run["status"] == "finished"] == finished


def test_stored_deployment_figures_match_a_fresh_measurement(reference, fashion_slice_dir):
    """The figures a worker stored equal those measured here from the saved model file."""
    run = next(run for run in reference if run["variant"] == "wide" and run["status"] == "finished")
    dataset = load_dataset("fashion-mnist", fashion_slice_dir, allow_download=False)
    fresh = deployment_figures(load_model(Path(run["model_path"])), dataset, "scale")
    assert fresh == {"int8_bytes": run["int8_bytes"], "int8_accuracy": run["int8_accuracy"],
                     "arena_bytes": run["arena_bytes"], "int8_ops": json.loads(run["int8_ops"]),
                     "boards": json.loads(run["boards"])}
    assert fresh["int8_ops"] == ["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]
    assert 30_000 < run["int8_bytes"] < 40_000 and "nano33ble" in fresh["boards"]
    # int8 costs little accuracy against the float model scored on the same images.
    assert abs(run["int8_accuracy"] - run["test_accuracy"]) < 0.02


def test_plan_names_one_model_file_per_run(fashion):
    study = parse_study(STUDY, "engine.toml")
    pairs = [(variant, seed) for variant in study.variants for seed in study.seeds]
    requests = plan_runs(study.name, pairs, {"fashion-mnist": fashion}, Path("models"))
    assert len({request.model_path for request in requests}) == len({request.key for request in requests}) == 6
    assert requests[0].model_path.parts[:3] == ("models", "engine", "narrow")
    other_data = plan_runs(study.name, pairs, {"fashion-mnist": fashion.subset(train=100)}, Path("models"))
    assert not {r.key for r in requests} & {r.key for r in other_data}  # other data, other runs
