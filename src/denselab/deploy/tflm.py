"""An int8 .tflite model under TensorFlow Lite Micro's interpreter: its outputs and its arena.

The check runs the model under TensorFlow Lite Micro's own interpreter (the `tflite-micro`
package), compares its outputs with LiteRT's reference kernels, and finds the smallest
tensor arena with which TFLM allocates the model.
"""

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.deploy.tflite import LiteRTClassifier
from denselab.errors import BadInput
from denselab.extras import extra_imports
from denselab.quiet import c_output_silenced

TFLM_IMAGES = 1000  # test images run through TFLM: enough to trust its accuracy to ~1 pp
# The smallest arena ever tried: the tflite-micro wrapper crashes the process (SIGSEGV,
# seen at 100 bytes) instead of failing cleanly when the arena is tiny. Every dense
# classifier needs more than this for its 784-byte input alone.
SMALLEST_ARENA_PROBED = 1024


# --- TensorFlow Lite Micro ---------------------------------------------------------------

def tflm_interpreter(model_bytes: bytes, arena_size: int | None = None):
    """A TFLM interpreter for the model; raises RuntimeError when the arena is too small."""
    with extra_imports():
        import tflite_micro

    if arena_size is not None and arena_size < SMALLEST_ARENA_PROBED:
        raise ValueError(f"arena_size {arena_size} is below {SMALLEST_ARENA_PROBED}, where tflite-micro crashes")
    with c_output_silenced():
        return tflite_micro.runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)


# Runs in a child process: exit 0 when TFLM allocates the model in an arena of the given size.
_ALLOCATION_PROBE = """
import sys, tflite_micro
model = open(sys.argv[1], "rb").read()
try:
    tflite_micro.runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
except RuntimeError:
    sys.exit(1)
"""


def arena_allocates(model_path: Path, arena_size: int) -> bool:
    """Whether TFLM allocates the model with `arena_size` bytes, tried in a child process.

    Near the true minimum, the tflite-micro wrapper sometimes crashes (SIGSEGV, seen at
    14416 bytes for a model that needs 14433) instead of failing cleanly, so every probe
    runs apart from denselab's own process; a crash counts as "does not allocate".
    """
    if arena_size < SMALLEST_ARENA_PROBED:
        raise ValueError(f"arena_size {arena_size} is below {SMALLEST_ARENA_PROBED}, where tflite-micro crashes")
    probe = subprocess.run([sys.executable, "-c", _ALLOCATION_PROBE, str(model_path), str(arena_size)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return probe.returncode == 0


def smallest_arena(model_bytes: bytes) -> int:
    """The smallest arena size in bytes with which TFLM allocates the model (by bisection).

    Returns SMALLEST_ARENA_PROBED when even that allocates: smaller arenas are not tried.
    """
    with tempfile.TemporaryDirectory(prefix="denselab-arena-") as folder:
        model_path = Path(folder) / "model.tflite"
        model_path.write_bytes(model_bytes)
        if arena_allocates(model_path, SMALLEST_ARENA_PROBED):
            return SMALLEST_ARENA_PROBED
        low, high = SMALLEST_ARENA_PROBED, 2 * SMALLEST_ARENA_PROBED  # low does not allocate; grow high until it does
        while not arena_allocates(model_path, high):
            low, high = high, high * 2
            if high > 64 * len(model_bytes) + 1_048_576:
                raise RuntimeError("TFLM did not allocate the model with any arena size tried")
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if arena_allocates(model_path, middle) else (middle, high)
        return high


@dataclass(frozen=True)
class TFLMCheck:
    images: int
    accuracy: float
    identical_to_reference: bool
    differing_outputs: int  # images whose int8 outputs differ from LiteRT's reference kernels
    largest_difference: int  # in int8 steps, over all outputs of all images
    top_class_agreement: float  # fraction of images with the same top class as the reference
    arena_bytes: int

    def as_dict(self) -> dict:
        return {"images": self.images, "accuracy": self.accuracy,
                "identical_to_reference": self.identical_to_reference, "differing_outputs": self.differing_outputs,
                "largest_difference": self.largest_difference, "top_class_agreement": self.top_class_agreement,
                "arena_bytes": self.arena_bytes}


def check_under_tflm(model_bytes: bytes, images: np.ndarray, labels: np.ndarray, normalization: str = "scale") -> TFLMCheck:
    """Run `images` through TFLM and through LiteRT's reference kernels; compare and score."""
    reference = LiteRTClassifier(model_bytes, normalization, reference_kernels=True)
    if reference.input["dtype"] != np.int8:
        raise BadInput("the TensorFlow Lite Micro check needs the int8 export (--quantize int8)")
    interpreter = tflm_interpreter(model_bytes)
    outputs, expected = [], []
    for image in images:
        interpreter.set_input(reference.quantize_input(image), 0)
        interpreter.invoke()
        outputs.append(np.asarray(interpreter.get_output(0)).reshape(-1).astype(np.int32))
        expected.append(reference.raw_output(image).astype(np.int32))
    outputs, expected = np.stack(outputs), np.stack(expected)
    differing = int((outputs != expected).any(axis=1).sum())
    return TFLMCheck(
        images=len(images),
        accuracy=float((outputs.argmax(axis=1) == labels).mean()),
        identical_to_reference=differing == 0,
        differing_outputs=differing,
        largest_difference=int(np.abs(outputs - expected).max()),
        top_class_agreement=float((outputs.argmax(axis=1) == expected.argmax(axis=1)).mean()),
        arena_bytes=arena_for_shapes(model_bytes),  # bisected once per architecture
    )


# Smallest arenas found, by the model's length, operators and tensors' shapes and types.
# TFLM plans its arena from those, not from the trained values, so the seeds of one
# variant share it (tests/test_export.py checks this);
# a bisection costs a dozen child processes (~3 s), paid once per architecture here.
_ARENAS: dict[tuple, int] = {}


def arena_for_shapes(model_bytes: bytes) -> int:
    """smallest_arena(model_bytes), reused for models of the same operators and tensor shapes and types."""
    with extra_imports():
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=model_bytes,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    # The file's length is part of the key: the converter stores all-zero biases (an untrained
    # model's) in a shorter file that needs a smaller arena, with the same tensor shapes.
    # LiteRT's private _get_ops_details: tests/test_private_apis.py fails first when it changes.
    signature = (len(model_bytes), tuple(op["op_name"] for op in interpreter._get_ops_details()),  # see export.op_names
                 tuple((tuple(detail["shape"]), str(detail["dtype"])) for detail in interpreter.get_tensor_details()))
    if signature not in _ARENAS:
        _ARENAS[signature] = smallest_arena(model_bytes)
    return _ARENAS[signature]


