"""Part of `make bench` (--parts distillation): what the CNN teacher costs, and what it gives a student.

Trains the teacher (denselab.training.teacher) once on all 60,000 training images, timed,
then the issue's probe student (768 -> 256 with space.PROBE_RECIPE) with and without it, the
same seeds on both sides, and scores each student's int8 model (LiteRT) on the test set. A
fixed recipe compared on several seeds: it selects nothing, so reading the test set here is
a measurement, not a choice. Prints one JSON line:
{"teacher": {...}, "students": {"without": [...], "with": [...]}}.
Usage: python bench/distillation.py '{"teacher_epochs": 15, "student_epochs": 60, "seeds": 3}'
"""

import json
import sys
import time
from dataclasses import replace

import denselab  # noqa: F401  (selects the JAX backend)
from denselab.data.sources import load_dataset
from denselab.deploy.tflite import LiteRTClassifier, calibration_images, convert
from denselab.model.spec import ModelSpec
from denselab.model_search.space import PROBE_RECIPE
from denselab.training.config import TrainConfig
from denselab.training.fit import train
from denselab.training.teacher import Teacher, train_teacher

HIDDEN = (768, 256)


def student_config(epochs: int, seed: int, teacher: str | None) -> TrainConfig:
    recipe = {key: value for key, value in PROBE_RECIPE.items() if key != "activation"}
    return TrainConfig(epochs=epochs, seed=seed, **recipe, **({"teacher": teacher} if teacher else {}))


def int8_accuracy(run, dataset) -> float:
    model_bytes = convert(run.model, "int8", calibration_images(dataset), run.normalization)
    predicted = LiteRTClassifier(model_bytes, run.normalization).probabilities(dataset.test_images).argmax(axis=1)
    return float((predicted == dataset.test_labels).mean())


def main() -> None:
    settings = {"teacher": "cnn", "teacher_epochs": 15, "student_epochs": 60, "seeds": 3,
                "sides": ["without", "with"], **json.loads(sys.argv[1] if len(sys.argv) > 1
                                                                                     else "{}")}
    dataset = load_dataset("fashion-mnist", allow_download=False)
    started = time.perf_counter()
    teacher = train_teacher(Teacher(settings["teacher"], settings["teacher_epochs"], dataset.name), dataset, seed=0)
    teacher_seconds = time.perf_counter() - started
    taught = replace(dataset, teacher_logits=teacher.logits)
    result = {"settings": settings, "teacher": {
        "kind": settings["teacher"], "epochs": settings["teacher_epochs"], "test_accuracy": teacher.accuracy, "wall_seconds": teacher_seconds,
        "epoch_seconds": [record["seconds"] for record in teacher.history],
        "train_accuracy": teacher.history[-1]["accuracy"]}, "students": {"without": [], "with": []}}
    for seed in range(settings["seeds"]):
        for side, data in (("without", dataset), ("with", taught)):
            if side not in settings["sides"]:
                continue
            config = student_config(settings["student_epochs"], seed, settings["teacher"] if side == "with" else None)
            begun = time.perf_counter()
            run = train(ModelSpec(HIDDEN), data, config)
            result["students"][side].append({
                "seed": seed, "float": run.test_accuracy, "int8": int8_accuracy(run, dataset),
                "seconds": time.perf_counter() - begun, "epoch_seconds": run.seconds_per_epoch})
            print(side, result["students"][side][-1], file=sys.stderr, flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
