"""An int8 .tflite dense classifier read as integer arithmetic: the numbers the C runtime needs.

The weights, biases, zero points and scales are the converter's own, read from the
flatbuffer with the schema that ships in the `tflite-micro` package. The requantization
multipliers and shifts are derived from them exactly as TensorFlow Lite Micro derives its
own at `Prepare` time (TFLite's `QuantizeMultiplier`, `PreprocessSoftmaxScaling` and
`CalculateInputRadius`), so that integer code using them computes what TFLM computes.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.errors import BadInput
from denselab.extras import extra_imports
from denselab.quiet import c_output_silenced

# TFLite's BuiltinOperator codes and TensorType codes (schema.fbs).
RESHAPE, FULLY_CONNECTED, SOFTMAX, QUANTIZE = 22, 9, 25, 114
OP_NAMES = {RESHAPE: "RESHAPE", FULLY_CONNECTED: "FULLY_CONNECTED", SOFTMAX: "SOFTMAX", QUANTIZE: "QUANTIZE"}
FLOAT32, INT32, INT8 = 0, 2, 9
# Fused activations (ActivationFunctionType) and the int8 range each leaves (TFLite's
# CalculateActivationRangeQuantized: relu clamps below at the output's zero point).
ACTIVATION_NONE, ACTIVATION_RELU = 0, 1
SOFTMAX_INTEGER_BITS = 5  # kScaledDiffIntegerBits of TFLite's int8 softmax


@dataclass(frozen=True)
class DenseLayer:
    """One FULLY_CONNECTED op: out = clamp(requantize(W @ (x - input_zero_point) + b) + output_zero_point)."""

    weights: np.ndarray  # int8 [outputs, inputs]
    bias: np.ndarray  # int32 [outputs]
    input_zero_point: int
    output_zero_point: int
    multipliers: np.ndarray  # int32 [outputs], TFLite's quantized multiplier per output channel
    shifts: np.ndarray  # int8 [outputs], its power-of-two exponent
    activation_min: int
    activation_max: int
    output_tensor: int  # its index in the model, to read TFLM's copy when outputs differ

    @property
    def folded_bias(self) -> np.ndarray:
        """b - input_zero_point * sum(W) per output: the same int32 accumulator with one add per MAC fewer."""
        sums = self.weights.astype(np.int64).sum(axis=1)
        folded = self.bias.astype(np.int64) - self.input_zero_point * sums
        return folded.astype(np.int32)


@dataclass(frozen=True)
class Softmax:
    """The int8 SOFTMAX op's fixed-point parameters (TFLite's SoftmaxParams)."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int


@dataclass(frozen=True)
class QuantizedClassifier:
    """Flatten -> Dense ... -> Softmax as the int8 .tflite file holds it."""

    layers: tuple[DenseLayer, ...]
    softmax: Softmax
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    input_size: int
    float_input: bool = False  # the model takes floats and quantizes them first (a leading QUANTIZE op)

    @property
    def hidden_units(self) -> tuple[int, ...]:
        return tuple(layer.weights.shape[0] for layer in self.layers[:-1])

    @property
    def classes(self) -> int:
        return self.layers[-1].weights.shape[0]


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = multiplier * 2**(shift - 31), multiplier in [2**30, 2**31)."""
    if real_multiplier == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real_multiplier)
    fixed = _round_half_away(fraction * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def _round_half_away(value: float) -> int:
    """std::round (TfLiteRound): halves away from zero, unlike Python's round."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def softmax_parameters(beta: float, input_scale: float) -> Softmax:
    """PreprocessSoftmaxScaling and CalculateInputRadius, as TFLM's SoftmaxPrepare calls them for int8."""
    real = min(beta * input_scale * (1 << (31 - SOFTMAX_INTEGER_BITS)), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        raise BadInput(f"SOFTMAX input scale {input_scale} is too small for TFLite's int8 softmax")
    radius = math.floor(((1 << SOFTMAX_INTEGER_BITS) - 1) * (1 << (31 - SOFTMAX_INTEGER_BITS)) / (1 << left_shift))
    return Softmax(multiplier, left_shift, -radius)


def read_quantized_classifier(model_bytes: bytes, source: str | Path = "model") -> QuantizedClassifier:
    """The dense int8 classifier in `model_bytes`; BadInput naming `source` when it is not one."""
    # tflite-micro's own flatbuffer reader, not a public module: tests/test_private_apis.py guards it.
    with extra_imports():
        from tflite_micro.python.tflite_micro.runtime import convert_bytearray_to_object

    _verify(model_bytes, source)
    try:
        return _read(convert_bytearray_to_object(bytearray(model_bytes)), source)
    except BadInput:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file passing the verifier is still the user's to fix
        raise BadInput(f"{source} is not a well-formed dense int8 model ({type(error).__name__})") from None


def _read(model, source) -> QuantizedClassifier:
    graph = model.subgraphs[0]
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    operators = [(codes[op.opcodeIndex], op) for op in graph.operators]
    for code, _ in operators:
        if code not in OP_NAMES:
            raise BadInput(f"{source} uses the {_op_name(code)} op; the C runtime runs only FULLY_CONNECTED, "
                           "RESHAPE and SOFTMAX (plus a leading QUANTIZE)")
    tensors = graph.tensors
    if any(code == FULLY_CONNECTED and tensors[op.inputs[1]].type == FLOAT32 for code, op in operators):
        raise BadInput(f"{source} is a float export; the C runtime needs the full-integer int8 export "
                       "(denselab export MODEL --quantize int8)")
    leading_quantize = operators[0][0] == QUANTIZE
    if leading_quantize and tensors[graph.inputs[0]].type != FLOAT32:
        raise BadInput(f"{source} starts with a QUANTIZE op that does not take floats")
    if tensors[graph.inputs[0]].type != INT8 and not leading_quantize or tensors[graph.outputs[0]].type != INT8:
        raise BadInput(f"{source} does not take and give int8 tensors; the C runtime needs the full-integer int8 "
                       "export (denselab export MODEL --quantize int8)")
    layers, softmax = [], None
    for code, op in operators:
        if code == FULLY_CONNECTED:
            layers.append(_dense_layer(model, tensors, op, source))
        elif code == SOFTMAX:
            softmax = softmax_parameters(op.builtinOptions.beta, _scale(tensors[op.inputs[0]]))
        elif code == QUANTIZE and op is not operators[0][1]:
            raise BadInput(f"{source} requantizes between layers (QUANTIZE); the C runtime accepts it only first")
    if not layers or softmax is None or operators[-1][0] != SOFTMAX:
        raise BadInput(f"{source} is not a dense classifier ending in SOFTMAX")
    _check_chain(operators, graph, source)
    first_input = tensors[_first_dense_input(operators)]
    output = tensors[graph.outputs[0]]
    classifier = QuantizedClassifier(
        tuple(layers), softmax, _scale(first_input), _zero_point(first_input), _scale(output), _zero_point(output),
        int(layers[0].weights.shape[1]), leading_quantize,
    )
    _check_numbers(classifier, source)
    return classifier


def _check_chain(operators, graph, source) -> None:
    """Each op reads what the one before it wrote, from the model's input to its output: a plain chain."""
    expected = graph.inputs[0]
    for _, op in operators:
        if len(op.outputs) != 1 or op.inputs[0] != expected:
            raise BadInput(f"{source} is not a single chain of layers from its input to its output")
        expected = op.outputs[0]
    if expected != graph.outputs[0] or len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise BadInput(f"{source} is not a single chain of layers from its input to its output")


def _check_numbers(classifier: QuantizedClassifier, source) -> None:
    """Shapes that chain and quantization numbers in range, so the generated C stays in bounds."""
    widths = [classifier.input_size]
    for layer in classifier.layers:
        outputs, inputs = layer.weights.shape
        per_output = (layer.bias, layer.multipliers, layer.shifts)
        if inputs != widths[-1] or outputs < 1 or any(array.shape != (outputs,) for array in per_output):
            raise BadInput(f"{source} has layers whose shapes do not chain")
        widths.append(outputs)
    zero_points = [classifier.input_zero_point, classifier.output_zero_point,
                   *(point for layer in classifier.layers for point in (layer.input_zero_point, layer.output_zero_point))]
    scales = (classifier.input_scale, classifier.output_scale)
    if not all(-128 <= point <= 127 for point in zero_points) or not all(0 < scale < math.inf for scale in scales):
        raise BadInput(f"{source} has int8 zero points or scales out of range")


def _verify(model_bytes: bytes, source) -> None:
    """Let LiteRT's flatbuffer verifier see the file first: the Python schema reader trusts every
    offset and length, so a damaged file could send it far out of bounds or into a huge loop."""
    with extra_imports():
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        with c_output_silenced():
            Interpreter(model_content=bytes(model_bytes),
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (ValueError, RuntimeError) as error:
        first_line = (str(error).strip().splitlines() or ["invalid"])[0]
        raise BadInput(f"{source} is not a valid TensorFlow Lite model ({first_line})") from None


def _dense_layer(model, tensors, op, source) -> DenseLayer:
    input_tensor, filter_tensor, output_tensor = tensors[op.inputs[0]], tensors[op.inputs[1]], tensors[op.outputs[0]]
    if filter_tensor.type != INT8 or input_tensor.type != INT8:
        raise BadInput(f"{source} has a FULLY_CONNECTED layer that is not int8")
    weights = _constant(model, filter_tensor, np.int8)
    outputs = weights.shape[0]
    bias = (_constant(model, tensors[op.inputs[2]], np.int32) if len(op.inputs) > 2 and op.inputs[2] >= 0
            else np.zeros(outputs, np.int32))
    if np.any(np.asarray(filter_tensor.quantization.zeroPoint) != 0):
        raise BadInput(f"{source} has int8 weights with a nonzero zero point, which TFLite's int8 spec forbids")
    filter_scales = np.asarray(filter_tensor.quantization.scale, np.float32)
    if filter_scales.size == 1:
        filter_scales = np.repeat(filter_scales, outputs)
    input_scale, output_scale = _scale(input_tensor), _scale(output_tensor)
    # As TFLM's PopulateConvolutionQuantizationParams: float32 scales, multiplied in double.
    pairs = [quantize_multiplier(float(np.float64(input_scale) * np.float64(scale) / np.float64(output_scale)))
             for scale in filter_scales]
    output_zero_point = _zero_point(output_tensor)
    activation = op.builtinOptions.fusedActivationFunction
    if activation not in (ACTIVATION_NONE, ACTIVATION_RELU):
        raise BadInput(f"{source} fuses an activation other than relu into FULLY_CONNECTED")
    low = max(-128, output_zero_point) if activation == ACTIVATION_RELU else -128
    return DenseLayer(
        weights=weights, bias=bias, input_zero_point=_zero_point(input_tensor), output_zero_point=output_zero_point,
        multipliers=np.array([m for m, _ in pairs], np.int32), shifts=np.array([s for _, s in pairs], np.int8),
        activation_min=low, activation_max=127, output_tensor=int(op.outputs[0]),
    )


def _first_dense_input(operators) -> int:
    """The tensor the first FULLY_CONNECTED reads: the model's input after RESHAPE or QUANTIZE, same numbers."""
    return next(op.inputs[0] for code, op in operators if code == FULLY_CONNECTED)


def _constant(model, tensor, dtype) -> np.ndarray:
    data = model.buffers[tensor.buffer].data
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(tuple(tensor.shape))


def _scale(tensor) -> float:
    return float(np.float32(tensor.quantization.scale[0]))


def _zero_point(tensor) -> int:
    return int(tensor.quantization.zeroPoint[0])


def _op_name(code: int) -> str:
    with extra_imports():
        from tflite_micro.python.tflite_micro.runtime import schema_fb

    names = {value: name for name, value in vars(schema_fb.BuiltinOperator).items() if not name.startswith("_")}
    return names.get(code, f"builtin op {code}")
