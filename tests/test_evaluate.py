import numpy as np
import pytest

from denselab.data.dataset import normalize
from denselab.model.evaluate import evaluate_model, evaluate_probabilities
from denselab.model.predict import DensePredictor


def test_small_example_by_hand():
    probabilities = np.full((4, 10), 0.01)
    for row, predicted in enumerate([0, 1, 1, 3]):
        probabilities[row, predicted] = 0.91
    evaluation = evaluate_probabilities(probabilities, np.array([0, 1, 2, 3]))
    assert evaluation.test_accuracy == 0.75
    assert evaluation.confusion_matrix[2][1] == 1 and evaluation.confusion_matrix[1][1] == 1
    assert sum(map(sum, evaluation.confusion_matrix)) == 4
    assert evaluation.per_class_accuracy[:4] == [1.0, 1.0, 0.0, 1.0]
    assert evaluation.per_class_accuracy[4] is None  # no class-4 example: JSON null, not NaN
    assert evaluation.test_loss == pytest.approx(-(3 * np.log(0.91) + np.log(0.01)) / 4)


def test_equals_keras_evaluate_on_the_real_test_set(fashion, trained_dir):
    import keras

    model = keras.saving.load_model(trained_dir / "model.keras")
    evaluation = evaluate_model(DensePredictor.from_keras(model), fashion.test_images, fashion.test_labels)
    keras_loss, keras_accuracy = model.evaluate(normalize(fashion.test_images), fashion.test_labels, verbose=0)
    assert evaluation.test_accuracy == pytest.approx(keras_accuracy, abs=1e-6)
    assert evaluation.test_loss == pytest.approx(keras_loss, abs=1e-4)
    per_class = np.array(evaluation.confusion_matrix).diagonal() / 1000
    np.testing.assert_allclose(evaluation.per_class_accuracy, per_class)
