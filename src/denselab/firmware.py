"""Taking an int8 .tflite model onto a microcontroller: C sources and a TFLM check (board
budgets: denselab.deploy.boards; denselab's own C runtime: denselab.deploy).

The check runs the model under TensorFlow Lite Micro's own interpreter (the `tflite-micro`
package), compares its outputs with LiteRT's reference kernels, and finds the smallest
tensor arena with which TFLM allocates the model.
"""

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.deploy.boards import boards_that_fit, io_bytes, target_verdict
from denselab.errors import BadInput
from denselab.export import LiteRTClassifier, op_names
from denselab.quiet import c_output_silenced
from denselab.outputs import prepare_output_dir, write_bytes_atomically

TFLM_IMAGES = 1000  # test images run through TFLM: enough to trust its accuracy to ~1 pp
# The smallest arena ever tried: the tflite-micro wrapper crashes the process (SIGSEGV,
# seen at 100 bytes) instead of failing cleanly when the arena is tiny. Every dense
# classifier needs more than this for its 784-byte input alone.
SMALLEST_ARENA_PROBED = 1024


# --- TensorFlow Lite Micro ---------------------------------------------------------------

def tflm_interpreter(model_bytes: bytes, arena_size: int | None = None):
    """A TFLM interpreter for the model; raises RuntimeError when the arena is too small."""
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


# --- C sources -----------------------------------------------------------------------------

def c_identifier(name: str) -> str:
    """A valid C identifier from a model name: "dense_512_512" -> "dense_512_512_model"."""
    identifier = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "model"
    if identifier[0].isdigit():
        identifier = "model_" + identifier
    return f"{identifier}_model"


def c_array_sources(model_bytes: bytes, name: str) -> dict[str, str]:
    """model_data.h and model_data.cc: the model as a 16-byte aligned const array and its length."""
    identifier = c_identifier(name)
    rows = [", ".join(f"0x{byte:02x}" for byte in model_bytes[start:start + 12])
            for start in range(0, len(model_bytes), 12)]
    header = (
        f"// Generated by denselab from {name}: the .tflite model as a C array.\n"
        "#ifndef DENSELAB_MODEL_DATA_H_\n#define DENSELAB_MODEL_DATA_H_\n\n"
        f"extern const unsigned char g_{identifier}_data[];\n"
        f"extern const unsigned int g_{identifier}_data_len;\n\n"
        "#endif  // DENSELAB_MODEL_DATA_H_\n"
    )
    source = (
        f"// Generated by denselab from {name}: the .tflite model as a C array.\n"
        '#include "model_data.h"\n\n'
        "// TensorFlow Lite Micro reads the flatbuffer in place; 16-byte alignment keeps its\n"
        "// tensors' buffers aligned for every kernel.\n"
        f"alignas(16) const unsigned char g_{identifier}_data[] = {{\n"
        + "".join(f"  {row},\n" for row in rows)
        + "};\n"
        f"const unsigned int g_{identifier}_data_len = {len(model_bytes)};\n"
    )
    return {"model_data.h": header, "model_data.cc": source}


def main_program(name: str, op_names: list[str], arena_bytes: int, image: np.ndarray, label: str,
                 class_names: tuple[str, ...], normalization: str) -> str:
    """main.cc: a minimal TFLM program that classifies one built-in 28x28 image."""
    identifier = c_identifier(name)
    registrations = "\n".join(
        f"  resolver.Add{''.join(part.capitalize() for part in op.split('_'))}();" for op in op_names
    )
    pixels = ",\n".join("    " + ", ".join(str(int(p)) for p in row) for row in image)
    names = ", ".join(f'"{class_name}"' for class_name in class_names)
    scale = "/ 255.0f" if normalization == "scale" else ""
    return f"""// Generated by denselab: classifies one 28x28 image with {name} under TensorFlow Lite Micro.
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {{
// The smallest arena with which TFLM allocated this model, measured by denselab on a
// 64-bit host, where TFLM's bookkeeping is larger than on a 32-bit microcontroller.
constexpr size_t kArenaSize = {arena_bytes};
alignas(16) uint8_t tensor_arena[kArenaSize];

// A test image of the dataset (true label: {label}), as uint8 pixels, light on dark.
const uint8_t kImage[28 * 28] = {{
{pixels}}};
const char* const kClassNames[{len(class_names)}] = {{{names}}};
}}  // namespace

int main() {{
  const tflite::Model* model = tflite::GetModel(g_{identifier}_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {{
    printf("model schema %lu, expected %d\\n", static_cast<unsigned long>(model->version()), TFLITE_SCHEMA_VERSION);
    return 1;
  }}
  // Exactly the operators the model uses.
  tflite::MicroMutableOpResolver<{len(op_names)}> resolver;
{registrations}
  tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {{
    printf("AllocateTensors failed: the arena is too small\\n");
    return 1;
  }}
  // Normalize as in training, then quantize with the input tensor's scale and zero point.
  TfLiteTensor* input = interpreter.input(0);
  for (int i = 0; i < 28 * 28; ++i) {{
    const float value = kImage[i] {scale};
    const int quantized = static_cast<int>(std::nearbyint(value / input->params.scale)) + input->params.zero_point;
    input->data.int8[i] = static_cast<int8_t>(quantized < -128 ? -128 : (quantized > 127 ? 127 : quantized));
  }}
  if (interpreter.Invoke() != kTfLiteOk) {{
    printf("Invoke failed\\n");
    return 1;
  }}
  const TfLiteTensor* output = interpreter.output(0);
  int top = 0;
  for (int i = 1; i < {len(class_names)}; ++i) {{
    if (output->data.int8[i] > output->data.int8[top]) top = i;
  }}
  const float confidence = (output->data.int8[top] - output->params.zero_point) * output->params.scale;
  printf("top class: %s (%.1f%%)\\n", kClassNames[top], 100.0f * confidence);
  return 0;
}}
"""


def write_c_sources(out_dir: Path, sources: dict[str, str]) -> list[Path]:
    out_dir = prepare_output_dir(out_dir)
    return [write_bytes_atomically(out_dir / file_name, text.encode()) for file_name, text in sources.items()]


def deployment_figures(model, dataset, normalization: str) -> dict:
    """A trained model's int8 .tflite size, its accuracy on the dataset's scored split, the
    smallest TFLM arena and the boards it fits.

    Measured once per run, when it finishes, and stored with it (see denselab.runs). The
    accuracy is LiteRT's, with its default kernels; TFLM's own check is `check_under_tflm`.
    """
    from denselab.export import calibration_images, convert

    model_bytes = convert(model, "int8", calibration_images(dataset), normalization)
    arena = arena_for_shapes(model_bytes)
    predicted = LiteRTClassifier(model_bytes, normalization).probabilities(dataset.test_images).argmax(axis=1)
    return {"int8_bytes": len(model_bytes), "int8_accuracy": float((predicted == dataset.test_labels).mean()),
            "arena_bytes": arena, "boards": boards_that_fit(len(model_bytes), arena, io_bytes(dataset))}


# Smallest arenas found, by the model's length, operators and tensors' shapes and types.
# TFLM plans its arena from those, not from the trained values, so the seeds of one
# variant share it (tests/test_export.py checks this);
# a bisection costs a dozen child processes (~3 s), paid once per architecture here.
_ARENAS: dict[tuple, int] = {}


def arena_for_shapes(model_bytes: bytes) -> int:
    """smallest_arena(model_bytes), reused for models of the same operators and tensor shapes and types."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=model_bytes,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    # The file's length is part of the key: the converter stores all-zero biases (an untrained
    # model's) in a shorter file that needs a smaller arena, with the same tensor shapes.
    signature = (len(model_bytes), tuple(op["op_name"] for op in interpreter._get_ops_details()),  # see export.op_names
                 tuple((tuple(detail["shape"]), str(detail["dtype"])) for detail in interpreter.get_tensor_details()))
    if signature not in _ARENAS:
        _ARENAS[signature] = smallest_arena(model_bytes)
    return _ARENAS[signature]


# --- the whole export ------------------------------------------------------------------------

def export_for_microcontroller(
    trained, dataset, quantizations: list[str], out_dir: Path, calibration: int = 500,
    c_array: bool = False, target: str | None = None, tflm_images: int = TFLM_IMAGES,
    runtime: str = "tflm", c_options: dict | None = None,
) -> dict:
    """Export `trained` (train.TrainedModel) in each quantization and, for int8, check it under TFLM.

    With `runtime="c"` the int8 model also becomes the C runtime (denselab.deploy.c_export,
    called with `c_options`), and the target's verdict uses the C runtime's measured flash
    and RAM instead of TFLM's estimate.

    Returns:
        What `denselab export --json` prints: the exports, the TFLM check, MACs, the C
        runtime, and the target board's verdict (the last three only where an int8 export exists).
    """
    from denselab.export import export_model
    from denselab.model import spec_of

    model, normalization = trained.model, trained.normalization
    if runtime == "c":  # refused before any file is written
        from denselab.deploy.c_export import check_c_options

        check_c_options(spec_of(model).hidden_units, dataset.class_names, **(c_options or {}))
    exports = export_model(model, quantizations, dataset, out_dir, normalization, calibration)
    report = {
        "model": model.name, "keras_test_accuracy": exports[0].test_accuracy + exports[0].accuracy_drop,
        "exports": [result.as_dict() for result in exports], "tflm": None, "macs": spec_of(model).macs(),
        "target": None, "boards_that_fit": [], "c_sources": [], "c": None,
    }
    int8 = next((result for result in exports if result.quantize == "int8"), None)
    if int8 is None:
        if target or c_array or runtime == "c":
            raise BadInput("--target, --c-array and --runtime c need the int8 export (--quantize int8 or --all)")
        return report
    model_bytes = int8.path.read_bytes()
    count = min(tflm_images, len(dataset.test_labels))
    check = check_under_tflm(model_bytes, dataset.test_images[:count], dataset.test_labels[:count], normalization)
    report["tflm"] = check.as_dict()
    needed_io = io_bytes(dataset)
    report["boards_that_fit"] = boards_that_fit(len(model_bytes), check.arena_bytes, needed_io)
    if runtime == "c":
        from denselab.deploy.c_export import export_c_runtime

        report["c"] = export_c_runtime(model_bytes, str(int8.path), dataset, normalization, out_dir, model.name,
                                       **(c_options or {}))
    if target:
        report["target"] = target_verdict(target, report, len(model_bytes), check.arena_bytes, needed_io)
    if c_array:
        sources = c_array_sources(model_bytes, model.name)
        sources["main.cc"] = main_program(
            model.name, op_names(model_bytes), check.arena_bytes,
            dataset.test_images[0], dataset.class_names[int(dataset.test_labels[0])], dataset.class_names, normalization,
        )
        report["c_sources"] = [str(path) for path in write_c_sources(out_dir, sources)]
    return report
