"""denselab's default path on one model: `denselab.train` and the NumPy predictor.

Run in its own process by bench/run.py; prints one JSON object.
"""

import json
import sys
import time

import denselab  # noqa: F401  (selects the JAX backend)
from bench_common import epoch_seconds_summary, peak_memory_mb, predict_latency
from denselab.data.sources import load_dataset
from denselab.model.spec import ModelSpec
from denselab.model.predict import DensePredictor
from denselab.training.config import TrainConfig
from denselab.training.fit import train


def main(hidden: list[int], epochs: int, latency_calls: int) -> dict:
    dataset = load_dataset("fashion-mnist", allow_download=False)
    run = train(ModelSpec(tuple(hidden)), dataset, TrainConfig(epochs=epochs, seed=0))
    predictor = DensePredictor.from_keras(run.model)
    started = time.perf_counter()
    predictor.probabilities(dataset.test_images)
    predict_all = time.perf_counter() - started
    one = dataset.test_images[0]
    return {
        "hidden": hidden, "test_accuracy": run.evaluation.test_accuracy,
        **epoch_seconds_summary([record["seconds"] for record in run.history]),
        "predict_10000_seconds": predict_all,
        "single_predict_seconds": predict_latency(lambda: predictor.probabilities(one), latency_calls),
    }


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    result = main(arguments["hidden"], arguments["epochs"], arguments["latency_calls"])
    result["peak_memory_mb"] = peak_memory_mb()
    print(json.dumps(result))
