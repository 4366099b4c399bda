"""Check one: the C runtime built with the host's C compiler, against TFLM's interpreter, image by image.

Both get the same int8 inputs. Where an output vector differs, the C runtime is rebuilt
with a trace hook and TFLM rerun keeping every tensor, to name the first layer where the
two part.
"""

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from denselab.data.dataset import normalize
from denselab.deploy import toolchain
from denselab.deploy.c_runtime.quantized import QuantizedClassifier
from denselab.deploy.c_runtime.source import SOURCE, pixel_table
from denselab.deploy.tflm import tflm_interpreter
from denselab.extras import extra_imports
from denselab.quiet import c_output_silenced

HARNESS = """/* denselab's host check: int8 inputs on stdin, int8 outputs on stdout. */
#include <stdio.h>
#include "denselab_model.h"
#ifdef DENSELAB_TRACE
void DENSELAB_TRACE(int layer, const int8_t *values, int32_t count) {
  (void)layer;
  fwrite(values, 1, (size_t)count, stdout);
}
#endif
int main(void) {
  int8_t input[DENSELAB_INPUT_SIZE], output[DENSELAB_CLASSES];
  while (fread(input, 1, DENSELAB_INPUT_SIZE, stdin) == DENSELAB_INPUT_SIZE) {
    denselab_predict(input, output);
    fwrite(output, 1, DENSELAB_CLASSES, stdout);
  }
  return 0;
}
"""
DIFFERENCES_LISTED = 10  # differing images described in full; the count covers them all


@dataclass(frozen=True)
class HostCheck:
    images: int
    differing_images: int
    top1_agreement: float  # images whose top class equals TFLM's
    accuracy: float
    outputs: np.ndarray = field(repr=False)  # the C runtime's int8 outputs, (images, classes)
    differing: list[int] = field(default_factory=list)  # the index of every image whose outputs differ
    first_differences: list[dict] = field(default_factory=list)  # {"image", "layer", "largest_difference"}

    @property
    def identical(self) -> bool:
        return self.differing_images == 0


def build_host(sources: Path, binary: Path, trace: bool = False, defines: tuple[str, ...] = ()) -> Path:
    """Compile the harness and denselab_model.c in `sources` with the host's cc (-Wall -Wextra -Werror).

    `defines` are -D flags: -DDL_NARROW_MULTIPLY builds the Cortex-M0+'s arithmetic on the host.
    """
    harness = binary.with_suffix(".harness.c")
    harness.write_text(HARNESS)
    command = [toolchain.find("cc"), *toolchain.HOST_FLAGS, *defines, f"-I{sources}", "-o", str(binary), str(harness),
               str(sources / SOURCE)]
    if trace:
        command.insert(1, "-DDENSELAB_TRACE=denselab_host_trace")
    toolchain.compile_c(command, f"{sources / SOURCE} for the host")
    return binary


def run_host(binary: Path, inputs: np.ndarray) -> np.ndarray:
    """What the harness writes for each int8 input of shape (n, 784): one row per input."""
    result = subprocess.run([str(binary)], input=np.ascontiguousarray(inputs, np.int8).tobytes(),
                            capture_output=True, check=True)
    return np.frombuffer(result.stdout, np.int8).reshape(len(inputs), -1)


def tflm_outputs(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """TFLM's int8 output for each input (int8, or float for a model that quantizes its input), (n, classes)."""
    interpreter = tflm_interpreter(model_bytes)
    shape = tuple(interpreter.get_input_details(0)["shape"])
    outputs = []
    for row in inputs:
        interpreter.set_input(row.reshape(shape), 0)
        interpreter.invoke()
        outputs.append(np.asarray(interpreter.get_output(0)).reshape(-1))
    return np.stack(outputs)


def check_on_host(sources: Path, model_bytes: bytes, classifier: QuantizedClassifier, pixels: np.ndarray,
                  labels: np.ndarray, normalization: str) -> HostCheck:
    """Build `sources` for the host, run every image through it and through TFLM, and compare.

    Args:
        pixels: uint8 images, (n, 784). The C runtime gets them quantized by its own pixel
            table; TFLM gets the same int8 numbers, or, for a model that quantizes its input
            itself, the normalized floats.
    """
    inputs = pixel_table(classifier, normalization)[pixels]
    tflm_inputs = normalize(pixels, normalization) if classifier.float_input else inputs
    with tempfile.TemporaryDirectory(prefix="denselab-host-") as folder:
        binary = build_host(sources, Path(folder) / "denselab_host")
        ours = run_host(binary, inputs)
        theirs = tflm_outputs(model_bytes, tflm_inputs)
        differing = np.flatnonzero((ours != theirs).any(axis=1))
        described = []
        if len(differing):
            traced = build_host(sources, Path(folder) / "denselab_trace", trace=True)
            described = [first_difference(traced, model_bytes, classifier, inputs[index], tflm_inputs[index],
                                          int(index)) for index in differing[:DIFFERENCES_LISTED]]
    return HostCheck(
        images=len(inputs), differing_images=len(differing),
        top1_agreement=float((ours.argmax(axis=1) == theirs.argmax(axis=1)).mean()),
        accuracy=float((ours.argmax(axis=1) == labels).mean()), outputs=ours,
        differing=[int(index) for index in differing], first_differences=described,
    )


def first_difference(traced: Path, model_bytes: bytes, classifier: QuantizedClassifier, row: np.ndarray,
                     tflm_row: np.ndarray, index: int) -> dict:
    """The first layer (0-based; len(layers) means SOFTMAX) where the C runtime and TFLM differ for one input."""
    with extra_imports():
        import tflite_micro

    widths = [layer.weights.shape[0] for layer in classifier.layers]
    trace = run_host(traced, row[None])[0]
    # kPreserveAllTensors and GetTensor are tflite-micro internals: tests/test_private_apis.py guards them.
    with c_output_silenced():
        interpreter = tflite_micro.runtime.Interpreter.from_bytes(
            model_bytes, intrepreter_config=tflite_micro.runtime.InterpreterConfig.kPreserveAllTensors)
    interpreter.set_input(tflm_row.reshape(tuple(interpreter.get_input_details(0)["shape"])), 0)
    interpreter.invoke()
    start = 0
    for layer_index, (layer, width) in enumerate(zip(classifier.layers, widths)):
        ours = trace[start:start + width].astype(np.int32)
        theirs = np.asarray(interpreter.GetTensor(layer.output_tensor, 0)["tensor_data"]).reshape(-1).astype(np.int32)
        start += width
        if (ours != theirs).any():
            return {"image": index, "layer": layer_index, "largest_difference": int(np.abs(ours - theirs).max())}
    ours = trace[start:].astype(np.int32)
    theirs = np.asarray(interpreter.get_output(0)).reshape(-1).astype(np.int32)
    return {"image": index, "layer": len(widths), "largest_difference": int(np.abs(ours - theirs).max())}
