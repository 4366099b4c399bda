"""TensorFlow Lite export: convert a trained dense model, quantize it, and score it with LiteRT.

The conversion builds a TensorFlow module from the model's weights (a dense classifier
is Reshape -> MatMul + bias + activation ... -> Softmax), saves it as a SavedModel with a
fixed batch-1 input signature, since TensorFlow Lite Micro needs static shapes, and
converts that with `TFLiteConverter.from_saved_model`. Going through the weights rather
than `model.export` makes the result the same whichever Keras backend trained the model.
"""

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.data.dataset import IMAGE_SIDE, Dataset, normalize
from denselab.errors import BadInput
from denselab.extras import extra_imports
from denselab.model.predict import DensePredictor
from denselab.model.spec import ModelSpec, build_model, spec_of
from denselab.outputs import prepare_output_dir, write_bytes_atomically
from denselab.quiet import c_output_silenced, verbose

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
CALIBRATION_IMAGES = 500  # training images used to calibrate int8 ranges
BIAS_FOR_MEASURING = 0.01


@dataclass(frozen=True)
class ExportResult:
    quantize: str
    path: Path
    size_bytes: int
    test_accuracy: float
    accuracy_drop: float  # Keras test accuracy minus this one, in fractions
    top1_agreement: float  # fraction of test images where the top class equals Keras's

    def as_dict(self) -> dict:
        return {
            "quantize": self.quantize, "path": str(self.path), "size_bytes": self.size_bytes,
            "test_accuracy": self.test_accuracy, "accuracy_drop": self.accuracy_drop,
            "top1_agreement": self.top1_agreement,
        }


def int8_of_shape(hidden_units: tuple[int, ...], calibration_images: np.ndarray) -> bytes:
    """The int8 .tflite of an untrained model of this shape, on which a shape's TFLM figures are measured.

    The int8 size and the arena depend on the layer shapes, not on the trained values, but
    Keras starts biases at zero and the converter stores identical all-zero biases
    differently (a smaller file, a smaller arena: 683 080 and 12 208 bytes against a trained
    512-512 model's 699 928 and 14 424, seen). Trained biases are never all zero, so these are not.
    """
    model = build_model(ModelSpec(hidden_units))
    for layer in model.layers[1:]:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, np.full_like(bias, BIAS_FOR_MEASURING)])
    return convert(model, "int8", calibration_images)


def check_quantize(quantize: str) -> None:
    if quantize not in QUANTIZATIONS:
        raise BadInput(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")


def _quiet_tensorflow():
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    with c_output_silenced(), extra_imports():  # absl's and oneDNN's start-up lines ignore the variable above
        import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def convert(model, quantize: str, calibration_images: np.ndarray | None = None, normalization: str = "scale") -> bytes:
    """Convert a dense Keras model to a .tflite flatbuffer.

    Args:
        quantize: "none" (float32), "float16" (float16 weights), "dynamic" (int8 weights,
            float activations) or "int8" (full-integer, int8 input and output).
        calibration_images: uint8 images (n, 28, 28) for int8's representative dataset.
        normalization: how the model's inputs were normalized; the .tflite model takes
            the same float inputs as the Keras model.

    Returns:
        The model's bytes. Only TFLite built-in ops are allowed, never select-TF ops.
    """
    check_quantize(quantize)
    spec = spec_of(model)
    tf = _quiet_tensorflow()
    layers = [(tf.constant(kernel), tf.constant(bias)) for kernel, bias in
              (layer.get_weights() for layer in model.layers if layer.weights)]
    activation = getattr(tf.nn, spec.activation)

    class DenseClassifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, IMAGE_SIDE, IMAGE_SIDE], tf.float32)])
        def serve(self, images):
            hidden = tf.reshape(images, [1, IMAGE_SIDE * IMAGE_SIDE])
            for kernel, bias in layers[:-1]:
                hidden = activation(tf.matmul(hidden, kernel) + bias)
            kernel, bias = layers[-1]
            return tf.nn.softmax(tf.matmul(hidden, kernel) + bias)

    with tempfile.TemporaryDirectory(prefix="denselab-savedmodel-") as saved_model_dir:
        module = DenseClassifier()
        tf.saved_model.save(module, saved_model_dir, signatures=module.serve)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            if calibration_images is None or len(calibration_images) < 1:
                raise BadInput("int8 quantization needs at least 1 calibration image (--calibration)")
            calibration = normalize(calibration_images, normalization)
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        with c_output_silenced():
            return bytes(converter.convert())


def calibration_images(dataset: Dataset, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """`count` training images spread over the whole training set, not its first rows."""
    picks = np.linspace(0, len(dataset.train_images) - 1, min(count, len(dataset.train_images))).astype(int)
    return dataset.train_images[picks]


class LiteRTClassifier:
    """Runs a .tflite classifier one image at a time with LiteRT, (de)quantizing as needed.

    `reference_kernels=True` uses LiteRT's reference kernels (OpResolverType.BUILTIN_REF),
    the same arithmetic as TensorFlow Lite Micro.
    """

    def __init__(self, model_bytes: bytes, normalization: str = "scale", reference_kernels: bool = False):
        with extra_imports():
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        with c_output_silenced():
            self.interpreter = Interpreter(model_content=model_bytes, experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.normalization = normalization

    def quantize_input(self, pixels: np.ndarray) -> np.ndarray:
        """One image (28, 28) of uint8 pixels as the model's input tensor (1, 28, 28)."""
        values = normalize(pixels, self.normalization)[None]
        if self.input["dtype"] != np.int8:
            return values.astype(self.input["dtype"])
        scale, zero_point = self.input["quantization"]
        return np.clip(np.round(values / scale + zero_point), -128, 127).astype(np.int8)

    def raw_output(self, pixels: np.ndarray) -> np.ndarray:
        """The model's output tensor for one image, as the model produces it (int8 or float)."""
        self.interpreter.set_tensor(self.input["index"], self.quantize_input(pixels))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])[0].copy()

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, 10), for uint8 images (n, 28, 28)."""
        outputs = np.stack([self.raw_output(image) for image in images]).astype(np.float32)
        if self.output["dtype"] == np.int8:
            scale, zero_point = self.output["quantization"]
            outputs = (outputs - zero_point) * scale
        return outputs


def op_names(model_bytes: bytes) -> list[str]:
    """The model's operators, e.g. ["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"].

    Read with delegates off (XNNPACK would show as one DELEGATE op). LiteRT offers them
    only through this underscored method; the alternative is parsing the flatbuffer
    with TensorFlow Lite's schema ourselves.
    """
    with extra_imports():
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=model_bytes,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    # LiteRT's private _get_ops_details: tests/test_private_apis.py fails first when it changes.
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def export_model(
    model,
    quantizations: list[str],
    dataset: Dataset,
    out_dir: Path,
    normalization: str = "scale",
    calibration: int = CALIBRATION_IMAGES,
    accept: Callable[[str, bytes], None] | None = None,
) -> list[ExportResult]:
    """Convert `model` once per quantization, write each .tflite and score it on the test set.

    `accept(quantize, model_bytes)`, when given, sees every conversion before any file is
    written, and refuses one by raising (BadInput): then nothing is written.
    """
    if calibration < 1:
        raise BadInput(f"--calibration must be >= 1, got {calibration}")
    for quantize in quantizations:
        check_quantize(quantize)
    converted = [(quantize, convert(model, quantize, calibration_images(dataset, calibration), normalization))
                 for quantize in quantizations]
    for quantize, model_bytes in converted:
        if accept:
            accept(quantize, model_bytes)
    out_dir = prepare_output_dir(out_dir)
    keras_probabilities = DensePredictor.from_keras(model, normalization).probabilities(dataset.test_images)
    keras_top = keras_probabilities.argmax(axis=1)
    keras_accuracy = float((keras_top == dataset.test_labels).mean())
    results = []
    for quantize, model_bytes in converted:
        path = write_bytes_atomically(out_dir / f"{model.name}_{quantize}.tflite", model_bytes)
        top = LiteRTClassifier(model_bytes, normalization).probabilities(dataset.test_images).argmax(axis=1)
        accuracy = float((top == dataset.test_labels).mean())
        results.append(ExportResult(quantize, path, len(model_bytes), accuracy, keras_accuracy - accuracy,
                                    float((top == keras_top).mean())))
    return results
