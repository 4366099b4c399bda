"""The prediction path: a trained dense model as a few NumPy matrix products.

`model.predict` goes through Keras's data adapters and a compiled step for every call,
which costs milliseconds even for one image. A dense classifier is only
`softmax(act(act(x W1 + b1) W2 + b2) ... )`, so denselab copies the weights out once and
computes exactly that; tests check it against `model.predict` to 1e-5.
"""

from dataclasses import dataclass

import numpy as np

from denselab.data.dataset import IMAGE_SIDE, check_normalization
from denselab.model.spec import ACTIVATIONS, spec_of


def _sigmoid(x):
    # The same function as 1 / (1 + exp(-x)), without overflow for large negative x.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# NumPy versions of the hidden activations in model.ACTIVATIONS, with Keras's constants.
NUMPY_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "elu": _elu,
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "silu": lambda x: x * _sigmoid(x),
}
assert set(NUMPY_ACTIVATIONS) == set(ACTIVATIONS), "every buildable activation needs a NumPy twin"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class DensePredictor:
    """Class probabilities for raw 0-255 pixels, computed from a dense model's weights.

    Build it with `from_keras(model, normalization)`; the normalization the model was
    trained with is folded into the first layer's weights, so callers always pass
    pixels as stored in the dataset (uint8, shape (n, 28, 28) or (28, 28)).
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activation: str

    @classmethod
    def from_keras(cls, model, normalization: str = "scale") -> "DensePredictor":
        spec = spec_of(model)
        kernels_and_biases = [layer.get_weights() for layer in model.layers if layer.weights]
        return cls._build([kernel for kernel, _ in kernels_and_biases], [bias for _, bias in kernels_and_biases],
                          spec.activation, normalization)

    @classmethod
    def from_weights(cls, weights, normalization: str = "scale") -> "DensePredictor":
        """From keras_file.DenseWeights: a .keras file read without Keras."""
        return cls._build(list(weights.kernels), list(weights.biases), weights.spec.activation, normalization)

    @classmethod
    def _build(cls, kernels, biases, activation: str, normalization: str) -> "DensePredictor":
        check_normalization(normalization)
        weights = [np.asarray(kernel, dtype=np.float32) for kernel in kernels]
        biases = tuple(np.asarray(bias, dtype=np.float32) for bias in biases)
        if normalization == "scale":
            # x/255 @ W == x @ (W/255): one multiplication of the weights at load time
            # instead of one pass over every input.
            weights[0] = weights[0] / np.float32(255.0)
        return cls(tuple(weights), biases, activation)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Softmax probabilities, shape (n, 10), for pixels of shape (n, 28, 28) or (28, 28)."""
        pixels = np.asarray(pixels)
        single = pixels.ndim == 2
        hidden = pixels.reshape(-1, IMAGE_SIDE * IMAGE_SIDE).astype(np.float32)
        activation = NUMPY_ACTIVATIONS[self.activation]
        for weights, bias in zip(self.weights[:-1], self.biases[:-1]):
            hidden = activation(hidden @ weights + bias)
        result = softmax(hidden @ self.weights[-1] + self.biases[-1])
        return result[0] if single else result


@dataclass(frozen=True)
class Prediction:
    """One image's answer, in the shape `denselab predict --json` prints."""

    source: str
    probabilities: list[float]
    top_class: str
    confidence: float
    true_label: str | None

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "probabilities": self.probabilities,
            "top_class": self.top_class,
            "confidence": self.confidence,
            "true_label": self.true_label,
        }


def named_predictions(probabilities: np.ndarray, sources: list[str], class_names: tuple[str, ...],
                      true_labels: list[int | None] | None = None) -> list[Prediction]:
    """One Prediction per row of `probabilities`: its source, top class, confidence and true label."""
    true_labels = true_labels or [None] * len(sources)
    predictions = []
    for source, row, true_label in zip(sources, probabilities, true_labels):
        top = int(row.argmax())
        predictions.append(Prediction(
            source=source,
            probabilities=[float(p) for p in row],
            top_class=class_names[top],
            confidence=float(row[top]),
            true_label=None if true_label is None else class_names[true_label],
        ))
    return predictions
