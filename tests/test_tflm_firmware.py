"""The TFLM program that `denselab export --c-array` writes, compiled against TFLM and run under QEMU.

The reference is the Python `tflite_micro` interpreter on the same int8 inputs: the firmware's
int8 outputs must equal its outputs on every image.
"""

import numpy as np
import pytest

from conftest import denselab
from denselab.deploy.tflite import LiteRTClassifier, op_names
from denselab.deploy.tflm import tflm_interpreter
from denselab.deploy.tflm_build import tflm_library
from denselab.deploy.tflm_firmware import check_tflm_firmware
from denselab.model.run_dir import load_trained_model
from denselab.model.spec import spec_of

IMAGES = 100


def python_tflm_outputs(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """The Python TFLM interpreter's int8 outputs, with main.cc's input quantization (float32, round to even)."""
    details = LiteRTClassifier(model_bytes).input
    scale, zero_point = (np.float32(value) for value in details["quantization"])
    interpreter = tflm_interpreter(model_bytes)
    outputs = []
    for image in images:
        value = image.astype(np.float32) / np.float32(255.0)
        quantized = np.clip(np.rint(value / scale).astype(np.int32) + int(zero_point), -128, 127).astype(np.int8)
        interpreter.set_input(quantized[None], 0)
        interpreter.invoke()
        outputs.append(np.asarray(interpreter.get_output(0)).reshape(-1))
    return np.stack(outputs).astype(np.int8)


@pytest.mark.parametrize("kernels", ["reference", "cmsis-nn"])
@pytest.mark.parametrize("model", ["trained_dir", "deeper_dir"], ids=["dense-20", "512-512"])
def test_the_exported_program_runs_on_the_cortex_m4_with_tflms_outputs(model, kernels, request, fashion, tmp_path):
    model_dir = request.getfixturevalue(model)
    out = tmp_path / "export"
    result = denselab("export", model_dir / "model.keras", "--c-array", "--c-array-images", str(IMAGES),
                      "--tflm-images", "100", "--out", out)
    assert result.returncode == 0, result.stderr
    model_bytes = next(out.glob("*_int8.tflite")).read_bytes()
    library = tflm_library(tuple(op_names(model_bytes)), kernels)
    footprint, run = check_tflm_firmware(out, library, IMAGES)
    expected = python_tflm_outputs(model_bytes, fashion.test_images[:IMAGES])
    np.testing.assert_array_equal(run.outputs, expected)
    # The measured figures, each against what bounds it.
    host_arena = int(next(line for line in (out / "main.cc").read_text().splitlines()
                          if "kArenaSize =" in line).split("=")[1].strip(" ;"))
    assert 0 < footprint.arena_used_bytes <= host_arena  # TFLM's bookkeeping is smaller on a 32-bit core
    assert footprint.model_bytes >= len(model_bytes)
    assert footprint.stack_bytes > 0 and footprint.runtime_code_bytes > 0 and footprint.static_ram_bytes >= 0
    # A multiply-accumulate takes at least one instruction with the reference kernels, and at
    # least half of one with CMSIS-NN's SMLAD, which does two.
    macs = spec_of(load_trained_model(model_dir / "model.keras").model).macs()
    assert (run.instructions >= (macs if kernels == "reference" else macs / 2)).all()


def test_an_op_the_firmware_cannot_build_is_one_line_naming_it(tmp_path):
    from conftest import assert_one_line_error
    from denselab.model.run_dir import save_model
    from denselab.model.spec import ModelSpec, build_model

    # selu becomes SELECT in int8, which TFLM has no kernel for (only SELECT_V2).
    save_model(build_model(ModelSpec((16,), "selu")), tmp_path / "model.keras")
    result = denselab("export", tmp_path / "model.keras", "--c-array", "--out", tmp_path / "export")
    assert_one_line_error(result, "TFLM firmware: denselab does not build the kernel of op SELECT")
    assert not (tmp_path / "export" / "main.cc").exists()
