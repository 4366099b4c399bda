"""Whether distillation's settings are worth searching: T and the teacher's weight, on the validation split.

Trains the student the search's trials train (768 -> 256 with space.PROBE_RECIPE) on a
search's trial split (the training images without the 10,000-image validation split of
model_search.split) with a teacher's logits on it, for several (T, weight) pairs and seeds,
and scores each student's int8 model (LiteRT) on the validation split, as a trial is scored.
Weight 0 is the student without a teacher (the same weights: tests/test_teacher.py).
The test set is never loaded: this is a choice between settings. If the pairs' means differ
by less than their seeds' spread, searching them does not pay at the search's budget.

The teacher's logits are those a search stored (its trials' teacher, the run engine's
"<model>.logits.npy"), or, without "logits", a teacher trained here on the trial split.
Prints one JSON line: {"settings": {...}, "teacher": {...}, "students": [...]}.
Usage: python bench/distill_settings.py '{"logits": "PATH", "epochs": 20, "seeds": 2,
                                          "pairs": [[4, 0.0], [4, 0.7], [2, 0.5], [8, 0.9], [4, 0.3]]}'
"""

import json
import sys
import time
from dataclasses import replace

import numpy as np

import denselab  # noqa: F401  (selects the JAX backend)
from distillation import HIDDEN, int8_accuracy, student_config
from denselab.model.spec import ModelSpec
from denselab.model_search.pipeline import load_training_only
from denselab.model_search.split import split_for_search
from denselab.training.fit import train
from denselab.training.teacher import Teacher, train_teacher


def fail(message: str) -> None:
    """Bad input, as denselab's CLI says it: one line, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    try:
        given = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
    except json.JSONDecodeError as error:
        fail(f"the settings {sys.argv[1]!r} are not JSON ({error})")
    settings = {"logits": None, "teacher": "cnn", "teacher_epochs": 10, "epochs": 20, "seeds": 2,
                "pairs": [[4.0, 0.0], [4.0, 0.7], [2.0, 0.5], [8.0, 0.9], [4.0, 0.3]], **given}
    training, _ = load_training_only("fashion-mnist", None)  # the test split's loader is never called
    trials, split = split_for_search(training)
    if settings["logits"]:
        try:
            logits, teacher = np.load(settings["logits"]), {"logits": settings["logits"]}
        except (OSError, ValueError) as error:
            fail(f"{settings['logits']} cannot be read as logits ({type(error).__name__})")
        if logits.shape != (len(trials.train_labels), 10):
            fail(f"{settings['logits']} holds logits of shape {logits.shape}, "
                 f"not ({len(trials.train_labels)}, 10): not this split's teacher")
    else:
        started = time.perf_counter()
        trained = train_teacher(Teacher(settings["teacher"], settings["teacher_epochs"], trials.name), trials, seed=0)
        logits = trained.logits
        teacher = {"validation_accuracy": trained.accuracy, "wall_seconds": time.perf_counter() - started}
    taught = replace(trials, teacher_logits=logits)
    result = {"settings": settings, "split": split, "teacher": teacher, "students": []}
    for temperature, weight in settings["pairs"]:
        for seed in range(settings["seeds"]):
            config = replace(student_config(settings["epochs"], seed, settings["teacher"]),
                             distill_temperature=temperature, distill_weight=weight)
            begun = time.perf_counter()
            run = train(ModelSpec(HIDDEN), taught, config)
            result["students"].append({
                "temperature": temperature, "weight": weight, "seed": seed, "float": run.test_accuracy,
                "int8": int8_accuracy(run, taught), "seconds": time.perf_counter() - begun})
            print(result["students"][-1], file=sys.stderr, flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
