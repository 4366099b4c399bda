"""The finalists: the winner and the other Pareto points, retrained and checked as they would ship.

Only now is the test set read, once: each finalist is trained again on all training images
with several seeds (through the run engine, so it resumes like everything else), its first
seed's model is exported to int8, scored with LiteRT on the test set, run under TensorFlow
Lite Micro, and written out as a study file that `denselab explore --study` reproduces. For
the C runtime, each finalist also becomes C sources checked three ways
(denselab.deploy.c_runtime.export), and fits the board on the measured flash and RAM.
"""

import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from denselab.data.dataset import Dataset
from denselab.deploy.arduino.export import export_arduino_library
from denselab.deploy.c_runtime.export import add_uno, export_c_runtime
from denselab.deploy.c_runtime.footprint import c_flash_bytes, c_ram_bytes
from denselab.deploy.tflite import LiteRTClassifier, calibration_images, convert
from denselab.deploy.tflm import TFLM_IMAGES, check_under_tflm
from denselab.errors import BadInput
from denselab.model.spec import load_model
from denselab.model_search import space
from denselab.model_search.run import Trial
from denselab.model_search.target import Target
from denselab.outputs import prepare_output_dir, write_bytes_atomically
from denselab.runs.engine import execute, plan_runs, teacher_summary, train_runs
from denselab.runs.store import RunStore
from denselab.study.file import study_toml


@dataclass(frozen=True)
class Finalist:
    trial: Trial
    name: str
    winner: bool
    runs: list[dict]  # one per seed: trained on all training images, scored on the test set
    tflite_path: Path
    test_accuracy_int8: float  # of the file at tflite_path, scored with LiteRT's default kernels
    tflm: dict  # check_under_tflm on the first TFLM_IMAGES test images
    fits: bool  # with the arena TFLM really needed, or the C runtime's measured flash and RAM
    study_path: Path
    c: dict | None = None  # the C runtime's export and checks, for --runtime c
    teacher: dict | None = None  # the teacher it learned from (engine.teacher_summary), trained on all images

    def as_dict(self) -> dict:
        accuracies = [run["int8_accuracy"] for run in self.runs]
        return {
            "trial": self.trial.number, "name": self.name, "winner": self.winner, "config": self.trial.params,
            "val_accuracy_int8": self.trial.accuracy, "val_epochs": self.trial.top_epochs,
            "test_accuracy_int8": self.test_accuracy_int8,
            "test_accuracy_int8_mean": statistics.fmean(accuracies),
            "test_accuracy_int8_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "test_accuracy_float_mean": statistics.fmean(run["test_accuracy"] for run in self.runs),
            "seeds": len(self.runs), "int8_bytes": self.runs[0]["int8_bytes"], "arena_bytes": self.tflm["arena_bytes"],
            "macs": space.variant_of(self.trial.params, 1, self.name).spec.macs(), "fits": self.fits,
            "tflm": self.tflm, "model_path": self.runs[0]["model_path"], "tflite_path": str(self.tflite_path),
            "study_path": str(self.study_path), "c": self.c, "teacher": self.teacher,
        }


def retrain_finalists(
    chosen: list[Trial], winner: Trial, target: Target, training: Dataset, load_test: Callable[[], tuple],
    store: RunStore, group: str, epochs: int, seeds: int, models_dir: Path, out_dir: Path, executor, task=train_runs,
    distillation: dict | None = None,
) -> list[Finalist]:
    """Retrain `chosen` on all training images with `seeds` seeds, export, score on the test set and check.

    Args:
        load_test: gives (test images, test labels); the search calls it here and nowhere else.
        distillation: the search's teacher settings (SearchSettings.distillation). Their teacher
            trains on all training images too, and is scored on the test set, which it never saw.
    """
    test_images, test_labels = load_test()
    full = Dataset(training.name, training.source, training.train_images, training.train_labels,
                   test_images, test_labels)
    names = {trial.number: f"t{trial.number:04d}" for trial in chosen}
    variants = {trial.number: space.variant_of(trial.params, epochs, names[trial.number], distillation)
                for trial in chosen}
    pairs = [(variants[trial.number], seed) for trial in chosen for seed in range(seeds)]
    requests = plan_runs(group, pairs, {full.name: full}, models_dir)
    execute(requests, store, {full.name: full}, executor, task=task)
    folder = prepare_output_dir(Path(out_dir) / "finalists")
    finalists = []
    for trial in chosen:
        runs = [store.finished(request.key) for request in requests if request.variant is variants[trial.number]]
        if any(run is None for run in runs):
            continue  # a failed retraining; the search reports what it has
        finalists.append(_check(trial, trial is winner, names[trial.number], runs, full, target, folder, seeds,
                                variants[trial.number]))
    teacher = requests and teacher_summary(store, requests[0].teacher)
    return [replace(finalist, teacher=teacher or None) for finalist in finalists]


def _check(trial, winner, name, runs, full, target, folder, seeds, variant) -> Finalist:
    normalization = runs[0]["config"]["normalization"]
    model_bytes = convert(load_model(Path(runs[0]["model_path"])), "int8", calibration_images(full), normalization)
    tflite_path = write_bytes_atomically(folder / f"{name}_int8.tflite", model_bytes)
    predicted = LiteRTClassifier(model_bytes, normalization).probabilities(full.test_images).argmax(axis=1)
    count = min(TFLM_IMAGES, len(full.test_labels))
    tflm = check_under_tflm(model_bytes, full.test_images[:count], full.test_labels[:count], normalization).as_dict()
    fits, c = target.fits(len(model_bytes), tflm["arena_bytes"]), None
    if target.runtime == "c":
        c = export_c_runtime(model_bytes, str(tflite_path), full, normalization, folder / f"{name}_c", name)
        fits = _c_fits(c, model_bytes, str(tflite_path), full, normalization, folder / f"{name}_c", name, target)
    study_text = study_toml(f"search-{name}", f"Reproduces search trial {name}, trained on all training images "
                            f"({'the winner' if winner else 'a Pareto point'} for {target.name}).", seeds, variant)
    study_path = write_bytes_atomically(folder / f"{name}.study.toml", study_text.encode())
    return Finalist(trial, name, winner, runs, tflite_path, float((predicted == full.test_labels).mean()), tflm,
                    fits, study_path, c)


def _c_fits(c: dict, model_bytes: bytes, source: str, full: Dataset, normalization: str, folder: Path, name: str,
            target: Target) -> bool:
    """Whether the finalist's C runtime fits, on its build for the target's core. For the Uno that is the
    Arduino sketch, built and run under simavr; where not even one test image fits beside the model
    there, its flash and RAM bounds (denselab.deploy.c_runtime.footprint) decide."""
    if target.core == "avr":
        try:
            arduino = export_arduino_library(model_bytes, source, full, normalization, folder, name, True, c)
        except BadInput:  # no room for a test image in the example sketch
            arduino = None
        add_uno(c, arduino and arduino["uno"], full)
        c["arduino"] = arduino
    figures = c["cores"].get(target.core)
    if figures is None:
        hidden = tuple(c["hidden_units"])
        return target.holds(c_flash_bytes(hidden, full.class_names, core=target.core),
                            c_ram_bytes(hidden, core=target.core)).fits
    return target.holds(figures["flash_bytes"], figures["ram_bytes"]).fits
