"""A variant's seeds one after another vs side by side in one vmapped program (denselab.training.loop).

Run in its own process by bench/run.py; prints one JSON object with each way's seconds per
epoch per seed (the median of the epochs after the first, over the seeds) and the test
accuracies, which must agree between the two ways.
"""

import json
import statistics
import sys

import denselab  # noqa: F401  (selects the JAX backend)
from denselab.data.sources import load_dataset
from denselab.model.spec import ModelSpec
from denselab.training.config import TrainConfig
from denselab.training.fit import train_seeds


def per_seed_epoch_seconds(runs) -> float:
    # A record's seconds are the run's own share: side by side, the program's time ÷ its seeds.
    return statistics.median(record["seconds"] for run in runs for record in run.history[1:])


def main(hidden: list[int], epochs: int, seeds: int) -> dict:
    dataset = load_dataset("fashion-mnist", allow_download=False)
    configs = [TrainConfig(epochs=epochs, seed=seed) for seed in range(seeds)]
    result = {"hidden": hidden, "seeds": seeds}
    for together in (False, True):
        runs = train_seeds(ModelSpec(tuple(hidden)), dataset, configs, together=together)
        result["together" if together else "one_after_another"] = {
            "seconds_per_epoch_per_seed": per_seed_epoch_seconds(runs),
            "test_accuracy": [run.evaluation.test_accuracy for run in runs],
        }
    return result


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    result = main(arguments["hidden"], arguments["epochs"], arguments["seeds"])
    import jax

    result["device"] = str(jax.devices()[0])
    print(json.dumps(result))
