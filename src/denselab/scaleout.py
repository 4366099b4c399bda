"""Running a study's runs as Ray tasks, on a local Ray instance or on a cluster.

The driver (this process) owns the run store: it marks a run 'running' when its task is
submitted and writes the result, or the failure, when the task ends, so resume, `denselab
runs` and the report work exactly as for local studies. Each task returns its model as
bytes and the driver writes the file, so the nodes need no shared file system. Each
dataset is put in Ray's object store once and reaches each node once.
"""

import os
import tempfile
import traceback
from pathlib import Path
from typing import Callable

from denselab.data import Dataset
from denselab.explore import StudyOutcome, StudyProgress, execute_run, run_config, run_key
from denselab.outputs import prepare_output_dir, write_bytes_atomically
from denselab.store import RunStore
from denselab.study import Study

# Set to a comma-separated list of variant names to make their tasks fail on purpose:
# the only way to exercise the failure path end to end, used by tests/test_scaleout.py.
INJECT_FAILURE_VARIABLE = "DENSELAB_INJECT_FAILURE"
MAX_RETRIES = 2  # a task whose worker process dies is run again up to this many times


def train_task(variant, dataset: Dataset, seed: int) -> dict:
    """What a Ray worker runs: train one run and hand back its result and model bytes."""
    if variant.name in os.environ.get(INJECT_FAILURE_VARIABLE, "").split(","):
        raise RuntimeError(f"failure injected into variant {variant.name} (${INJECT_FAILURE_VARIABLE})")
    with tempfile.TemporaryDirectory(prefix="denselab-run-") as folder:
        path = Path(folder) / "model.keras"
        result = execute_run(variant, dataset, seed, path)
        result["model_bytes"] = path.read_bytes()
    return result


def run_study_on_ray(
    study: Study,
    store: RunStore,
    models_dir: Path,
    datasets: dict[str, Dataset],
    address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    on_progress: Callable[[StudyProgress], None] | None = None,
    local_cpus: int | None = None,
) -> StudyOutcome:
    """Like explore.run_study, with every unfinished run a Ray task.

    Args:
        address: a Ray cluster's address ("HOST:PORT"); None starts a local instance.
        cpus_per_run, gpus_per_run: what each task asks Ray for.
        local_cpus: CPUs of the local instance (how many runs go in parallel at 1 CPU each).
    """
    import ray

    if not ray.is_initialized():
        # "local" always starts a new instance, even where another cluster already runs.
        options = dict(address=address or "local", include_dashboard=False, log_to_driver=False,
                       configure_logging=False)
        if address is None and local_cpus is not None:
            options["num_cpus"] = local_cpus
        if address is None or address.split(":")[0] in ("127.0.0.1", "localhost"):
            # Left alone, Ray advertises the machine's network address even for a cluster
            # on loopback; a local study should not talk over the network at all.
            options["_node_ip_address"] = "127.0.0.1"
        ray.init(**options)
    task = ray.remote(train_task).options(
        num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=MAX_RETRIES, retry_exceptions=False,
    )
    dataset_refs = {name: ray.put(dataset) for name, dataset in datasets.items()}
    plan = [(variant, seed) for variant in study.variants for seed in study.seeds]
    keys = [run_key(study, variant, datasets[variant.dataset], seed) for variant, seed in plan]
    reused = sum(store.finished(key) is not None for key in keys)
    models_dir = prepare_output_dir(Path(models_dir) / study.name)
    running = {}
    for (variant, seed), key in zip(plan, keys):
        if store.finished(key) is None:
            run_id = store.start_run(key, run_config(variant, datasets[variant.dataset], seed))
            model_path = prepare_output_dir(models_dir / variant.name) / f"seed{seed}-{key.config_hash}.keras"
            running[task.remote(variant, dataset_refs[variant.dataset], seed)] = (run_id, variant, seed, model_path)
    trained, failed = 0, []
    while running:
        [done], _ = ray.wait(list(running), num_returns=1)
        run_id, variant, seed, model_path = running.pop(done)
        try:
            result = ray.get(done)
        except Exception as error:  # noqa: BLE001 - a failed task is recorded, the study goes on
            store.fail_run(run_id, f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}")
            failed.append(store.run(run_id))
        else:
            write_bytes_atomically(model_path, result.pop("model_bytes"))
            result["model_path"] = str(model_path)
            store.finish_run(run_id, result)
            trained += 1
        if on_progress:
            done_count = reused + trained + len(failed)
            on_progress(StudyProgress(done_count, len(plan), reused, variant.name, seed, variant.config.epochs,
                                      variant.config.epochs, done_count, len(plan)))
    runs = [store.finished(key) for key in keys]
    return StudyOutcome([run for run in runs if run is not None], trained, reused, failed)
