"""Test-set metrics of a trained model: loss, accuracy, per-class accuracy, confusion matrix."""

from dataclasses import dataclass

import numpy as np

from denselab.data.dataset import NUM_CLASSES
from denselab.model.predict import DensePredictor

# Keras clips probabilities to [EPSILON, 1 - EPSILON] before the logarithm of the
# cross-entropy; doing the same makes test_loss equal to model.evaluate's.
EPSILON = 1e-7


@dataclass(frozen=True)
class Evaluation:
    test_loss: float
    test_accuracy: float
    per_class_accuracy: list[float | None]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class

    def as_dict(self) -> dict:
        return {
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "per_class_accuracy": self.per_class_accuracy,
            "confusion_matrix": self.confusion_matrix,
        }


def evaluate_probabilities(probabilities: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Metrics from predicted probabilities (n, 10) and true labels (n,)."""
    labels = np.asarray(labels, dtype=np.int64)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class_total = confusion.sum(axis=1)
    return Evaluation(
        test_loss=float(-np.log(picked.astype(np.float64)).mean()),
        test_accuracy=float((predicted == labels).mean()),
        # None for a class absent from `labels`: JSON has no NaN.
        per_class_accuracy=[
            float(correct / total) if total else None
            for correct, total in zip(np.diag(confusion), per_class_total)
        ],
        confusion_matrix=confusion.tolist(),
    )


def evaluate_model(predictor: DensePredictor, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Run `predictor` over uint8 test images and score it against `labels`."""
    return evaluate_probabilities(predictor.probabilities(images), labels)
