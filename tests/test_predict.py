import keras
import numpy as np
import pytest

from denselab.data.dataset import CLASS_NAMES, normalize
from denselab.model.spec import ACTIVATIONS, ModelSpec, build_model
from denselab.model.predict import DensePredictor, named_predictions


@pytest.mark.parametrize("activation, normalization", [(name, "scale") for name in ACTIVATIONS] + [("relu", "none")])
def test_equals_model_predict(fashion, activation, normalization):
    # Random (untrained) weights exercise every layer; two hidden layers cover the loop.
    keras.utils.set_random_seed(0)
    model = build_model(ModelSpec((64, 32), activation))
    images = fashion.test_images[:200]
    expected = model.predict(normalize(images, normalization), verbose=0)
    got = DensePredictor.from_keras(model, normalization).probabilities(images)
    # Raw 0-255 inputs make pre-activations ~255x larger, and float32 sums in another
    # order then differ by ~2e-5 (seen); scaled inputs agree to 1e-5.
    np.testing.assert_allclose(got, expected, atol=1e-5 if normalization == "scale" else 1e-4, rtol=0)


def test_trained_model_single_image_equals_model_predict(fashion, trained_dir):
    import keras

    model = keras.saving.load_model(trained_dir / "model.keras")
    predictor = DensePredictor.from_keras(model, "scale")
    single = predictor.probabilities(fashion.test_images[0])
    assert single.shape == (10,)
    np.testing.assert_allclose(single, model.predict(normalize(fashion.test_images[:1]), verbose=0)[0], atol=1e-5)
    assert single.sum() == pytest.approx(1.0, abs=1e-6)


def test_named_predictions_name_the_answer(fashion, trained_dir):
    import keras

    predictor = DensePredictor.from_keras(keras.saving.load_model(trained_dir / "model.keras"))
    names = CLASS_NAMES["fashion-mnist"]
    predictions = named_predictions(predictor.probabilities(fashion.test_images[:3]), ["a", "b", "c"], names,
                                    [9, 2, None])
    for prediction in predictions:
        assert len(prediction.probabilities) == 10
        assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-5)
        assert prediction.top_class == names[int(np.argmax(prediction.probabilities))]
        assert prediction.confidence == max(prediction.probabilities)
    assert [p.true_label for p in predictions] == ["Ankle boot", "Pullover", None]
