"""A run's deployment figures, measured once when it finishes and stored with it (denselab.runs)."""

from denselab.deploy.boards import boards_that_fit, io_bytes
from denselab.deploy.tflite import LiteRTClassifier, calibration_images, convert
from denselab.deploy.tflm import arena_for_shapes
from denselab.deploy.tflm_runtime import op_set, tflm_runtimes


def deployment_figures(model, dataset, normalization: str) -> dict:
    """A trained model's int8 .tflite size, its accuracy on the dataset's scored split, its ops,
    the smallest TFLM arena and the boards it fits with TFLM (tflm_runtimes' figures of its ops).

    Measured once per run, when it finishes, and stored with it (see denselab.runs). The
    accuracy is LiteRT's, with its default kernels; TFLM's own check is `check_under_tflm`.
    """
    model_bytes = convert(model, "int8", calibration_images(dataset), normalization)
    arena, ops = arena_for_shapes(model_bytes), op_set(model_bytes)
    predicted = LiteRTClassifier(model_bytes, normalization).probabilities(dataset.test_images).argmax(axis=1)
    return {"int8_bytes": len(model_bytes), "int8_accuracy": float((predicted == dataset.test_labels).mean()),
            "arena_bytes": arena, "int8_ops": list(ops),
            "boards": boards_that_fit(len(model_bytes), arena, io_bytes(dataset), tflm_runtimes(ops, model_bytes))}
