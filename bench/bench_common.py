"""Helpers shared by the benchmark processes (bench/ is not part of the package)."""

import resource
import statistics
import time


def load_arrays():
    """Fashion-MNIST as the exercise's load_data() returns it: uint8 images, uint8 labels."""
    from denselab.data.sources import load_dataset

    dataset = load_dataset("fashion-mnist", allow_download=False)
    return (dataset.train_images, dataset.train_labels), (dataset.test_images, dataset.test_labels)


def epoch_seconds_summary(seconds: list[float]) -> dict:
    """The first epoch (with compilation) apart, and the median of the others."""
    return {
        "first_epoch_seconds": seconds[0],
        "seconds_per_epoch": statistics.median(seconds[1:] or seconds),
        "epoch_seconds": seconds,
    }


def predict_latency(call, calls: int) -> float:
    """Median seconds of `calls` calls, after a few warm-up calls."""
    for _ in range(min(10, calls)):
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
