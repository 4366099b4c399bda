"""The TFLM program that `denselab export --c-array` writes, compiled against TFLM and run under QEMU.

The reference is the Python `tflite_micro` interpreter on the same int8 inputs: the firmware's
int8 outputs must equal its outputs on every image.
"""

import json
import re

import numpy as np
import pytest

from conftest import denselab
from denselab.deploy.tflite import op_names
from denselab.deploy.tflm_build import CACHE_VARIABLE, build_plan, cache_folder, tflm_library
from denselab.deploy.tflm_firmware import check_tflm_firmware, interpreter_outputs
from denselab.deploy.tflm_runtime import DENSE_OPS, measure, needs_measuring, op_set, tflm_runtime
from denselab.deploy.toolchain import ARM_CORES
from denselab.model.run_dir import load_trained_model
from denselab.model.spec import spec_of

IMAGES = 100


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
    expected = interpreter_outputs(model_bytes, fashion.test_images[:IMAGES])
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
    # What every TFLM verdict adds to a model (measured once on a probe model of the same ops) is
    # exactly what TFLM took in this model's own firmware.
    probe = measure(op_set(model_bytes), kernels)
    assert (probe["code_bytes"], probe["static_ram_bytes"], probe["interpreter_bytes"], probe["stack_bytes"]) == \
        (footprint.runtime_code_bytes, footprint.static_ram_bytes, footprint.interpreter_bytes, footprint.stack_bytes)
    if kernels == "cmsis-nn":  # verdicts take the larger of both kernel sets
        runtime = tflm_runtime(op_set(model_bytes))
        assert runtime.measured and runtime.code_bytes == footprint.runtime_code_bytes
        reference = measure(op_set(model_bytes), "reference")
        assert runtime.ram_bytes == max(footprint.static_ram_bytes + footprint.interpreter_bytes + footprint.stack_bytes,
                                        sum(reference[key] for key in ("static_ram_bytes", "interpreter_bytes",
                                                                       "stack_bytes")))


@pytest.mark.parametrize("kernels", ["reference", "cmsis-nn"])
@pytest.mark.parametrize("core, machine", [("cortex-m0plus", "microbit"), ("cortex-m7", "mps2-an500")])
def test_the_exported_program_runs_on_each_boards_own_core(core, machine, kernels, trained_dir, fashion, tmp_path):
    """The SAMD21's and Pico's Cortex-M0+ and the STM32F746's Cortex-M7: TFLM built with that core's
    flags and run on QEMU's emulation of it, outputs equal to the interpreter's, figures as verdicts use."""
    out = tmp_path / "export"
    assert denselab("export", trained_dir / "model.keras", "--c-array", "--c-array-images", str(IMAGES),
                    "--tflm-images", "10", "--out", out).returncode == 0
    model_bytes = next(out.glob("*_int8.tflite")).read_bytes()
    library = tflm_library(tuple(op_names(model_bytes)), kernels, ARM_CORES[core])
    assert f"-mcpu={core}" in library.compile_flags
    footprint, run = check_tflm_firmware(out, library, IMAGES)
    assert run.machine.name == machine
    np.testing.assert_array_equal(run.outputs, interpreter_outputs(model_bytes, fashion.test_images[:IMAGES]))
    probe = measure(op_set(model_bytes), kernels, core=core)
    assert (probe["code_bytes"], probe["stack_bytes"]) == (footprint.runtime_code_bytes, footprint.stack_bytes)
    assert probe["core"] == core and tflm_runtime(op_set(model_bytes), core=core).code_bytes >= probe["code_bytes"]


def test_tflms_figures_are_measured_once_and_kept(tmp_path, monkeypatch):
    """A cache without the figures measures them on a probe firmware and keeps them, never half-written."""
    ops = DENSE_OPS
    shared = cache_folder()
    tflm_runtime(ops)
    assert not needs_measuring(ops)  # kept in the shared cache, where the CLI says nothing before a command
    entry = build_plan(ops, "reference").entry_name
    (tmp_path / entry).symlink_to(shared / entry)  # the library itself is not rebuilt
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))
    assert needs_measuring(ops)
    figures = measure(ops, "reference")
    kept = tmp_path / f"runtime-{entry}.json"
    assert json.loads(kept.read_text()) == figures
    assert figures == json.loads((shared / kept.name).read_text())  # the same as the first measurement's
    assert not list(tmp_path.glob(".runtime-*"))
    kept.write_text(json.dumps({**figures, "code_bytes": 1}))
    assert measure(ops, "reference")["code_bytes"] == 1  # read back, not measured again
    for damaged in ('{"code_bytes": ', json.dumps({**figures, "stack_bytes": -4}), "\udcff"):
        kept.write_text(damaged, errors="surrogateescape")
        assert measure(ops, "reference") == figures  # measured again, and kept
        assert json.loads(kept.read_text()) == figures


def test_a_damaged_tflm_tree_is_one_line_naming_it(trained_dir, tmp_path):
    from conftest import assert_one_line_error

    (tmp_path / "trees" / "tflite-micro").mkdir(parents=True)
    result = denselab("export", trained_dir / "model.keras", "--target", "samd21", "--out", tmp_path / "export",
                      env={"DENSELAB_TFLM_TREES": str(tmp_path / "trees")})
    assert_one_line_error(result, f"TFLM firmware: {tmp_path / 'trees' / 'tflite-micro'} is not a complete "
                                  "tflite-micro tree")
    assert not (tmp_path / "export").exists() or not any((tmp_path / "export").iterdir())  # nothing written


def test_an_op_the_firmware_cannot_build_is_one_line_naming_it(tmp_path):
    from conftest import assert_one_line_error
    from denselab.model.run_dir import save_model
    from denselab.model.spec import ModelSpec, build_model

    # selu becomes SELECT in int8, which TFLM has no kernel for (only SELECT_V2).
    save_model(build_model(ModelSpec((16,), "selu")), tmp_path / "model.keras")
    result = denselab("export", tmp_path / "model.keras", "--c-array", "--out", tmp_path / "export")
    assert_one_line_error(result, "TFLM firmware: denselab does not build the kernel of op SELECT")
    assert not (tmp_path / "export").exists()  # refused before any file was written


def test_the_exported_arena_is_enough_and_a_smaller_one_is_caught(trained_dir, tmp_path):
    """main.cc's arena is the host's measured one, which the 32-bit core never exceeds (the test
    above); one too small stops the firmware with a message, never a silent wrong answer."""
    out = tmp_path / "export"
    assert denselab("export", trained_dir / "model.keras", "--c-array", "--tflm-images", "10", "--out", out,
                    "--quantize", "int8").returncode == 0
    main_cc = out / "main.cc"
    main_cc.write_text(re.sub(r"kArenaSize = \d+;", "kArenaSize = 1024;", main_cc.read_text()))
    library = tflm_library(op_set(next(out.glob("*_int8.tflite")).read_bytes()))
    with pytest.raises(RuntimeError, match="AllocateTensors failed: the arena is too small"):
        check_tflm_firmware(out, library, 1)
