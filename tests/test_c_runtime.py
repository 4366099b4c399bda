"""denselab's C runtime against TensorFlow Lite Micro: host build, Cortex-M4 build, QEMU run, all real.

The reference is TFLM's own interpreter (the `tflite-micro` package) on the same int8
inputs; the toolchain is Debian's gcc, gcc-arm-none-eabi with newlib, and qemu-system-arm,
which `make test` installs.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from denselab.deploy import toolchain
from denselab.deploy.c_runtime.export import check_c_options
from denselab.deploy.c_runtime.footprint import c_flash_bytes, c_ram_bytes
from denselab.deploy.c_runtime.source import BLOCK_ROWS, HEADER, SOURCE, c_sources, pixel_table, weight_table
from denselab.deploy.c_runtime.cortex_m import FIRMWARE_FLASH_BYTES, build_firmware, check_on_core, emulated_memory, most_embedded_images, section_sizes
from denselab.deploy.toolchain import ARM_CORES
from denselab.deploy.c_runtime.host_check import build_host, check_on_host, run_host, tflm_outputs
from denselab.deploy.c_runtime.quantized import DenseLayer, QuantizedClassifier, quantize_multiplier, read_quantized_classifier, softmax_parameters
from denselab.errors import BadInput
from denselab.deploy.tflite import LiteRTClassifier, calibration_images, convert
from denselab.model.spec import ModelSpec, build_model
from conftest import assert_no_third_party_logs, assert_one_line_error, denselab


def export_c(model_dir: Path, out: Path, *args) -> dict:
    result = denselab("export", model_dir / "model.keras", "--runtime", "c", "--out", out, "--json", *args)
    assert result.returncode == 0, result.stderr
    assert_no_third_party_logs(result)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def dense20_export(trained_dir, tmp_path_factory):
    """The exercise's Dense(20) through `denselab export --runtime c --target samd21`: every check, all 10 000 images."""
    out = tmp_path_factory.mktemp("dense20-c")
    return export_c(trained_dir, out, "--target", "samd21"), out


@pytest.fixture(scope="module")
def deeper_export(deeper_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("deeper-c")
    return export_c(deeper_dir, out), out


@pytest.mark.parametrize("which", ["dense20_export", "deeper_export"])
def test_identical_to_tflm_on_every_test_image_on_the_host_and_under_qemu(which, request):
    report, out = request.getfixturevalue(which)
    c = report["c"]
    assert c["checked"] and c["host_images"] == 10_000
    assert c["host_identical_to_tflm"] and c["host_differing_images"] == 0
    assert c["differing_images"] == [] and c["first_differences"] == []
    assert c["top1_agreement"] == 1.0
    assert c["qemu_images"] == 100 and c["qemu_identical"] and c["qemu_classify_agrees"]
    # The C runtime's accuracy is the int8 model's, which LiteRT scores the same way.
    assert abs(c["host_accuracy"] - report["exports"][0]["test_accuracy"]) < 0.005
    assert sorted(Path(path).name for path in c["files"]) == sorted([HEADER, SOURCE, "main.c"])
    assert all(Path(path).parent == out for path in c["files"])


@pytest.mark.parametrize("which", ["dense20_export", "deeper_export"])
def test_flash_and_ram_meet_the_issue_targets(which, request):
    report, _ = request.getfixturevalue(which)
    c = report["c"]
    classifier = read_quantized_classifier(Path(report["exports"][0]["path"]).read_bytes())
    weights = sum(layer.weights.size for layer in classifier.layers)
    # The tables hold the int8 weights; code and requantization numbers come on top.
    assert weights < c["flash_bytes"] <= len(Path(report["exports"][0]["path"]).read_bytes()) + 4096
    assert c["ram_bytes"] <= 3072
    assert c["ram_bytes"] == c["ram"]["data"] + c["ram"]["bss"] + c["ram"]["stack"]
    assert 0 < c["ram"]["stack"] < 512
    # Instructions scale with the multiply-accumulates, a few per MAC.
    assert 1 <= c["instructions_per_inference"] / report["macs"] <= 20
    # Every board with an Arm core has its latency from its own core's count; the ESP32 (no Xtensa
    # toolchain) and the Uno (built only with --arduino) have none.
    assert set(c["latency_estimate_ms"]) == {"nano33ble", "pico", "stm32f746disco", "samd21"}
    assert {core: figures["machine"] for core, figures in c["cores"].items()} == {
        "cortex-m0plus": "microbit" if c["cores"]["cortex-m0plus"]["flash_bytes"] < 200_000 else "mps2-an386",
        "cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}
    for figures in c["cores"].values():
        assert figures["identical"] and figures["classify_agrees"]
        assert abs(figures["flash_bytes"] - c["flash_bytes"]) < 256  # the same tables; only the code differs
        assert 1 <= figures["instructions_per_inference"] / report["macs"] <= 20
    # ARMv6-M has no 32x32->64 multiply and no DSP instructions: the Cortex-M0+ needs more of them.
    assert c["cores"]["cortex-m0plus"]["instructions_per_inference"] > c["instructions_per_inference"]


def test_dense20_reaches_the_samd21_with_the_c_runtime(dense20_export):
    report, _ = dense20_export
    assert "samd21" in report["c"]["boards_that_fit"]
    verdict = report["target"]
    assert verdict["runtime"] == "c" and not verdict["flash_is_estimate"] and verdict["fits"]
    assert verdict["ram_margin_bytes"] > 30_000 and verdict["flash_margin_bytes"] > 200_000


def test_weights_are_the_converters_own_numbers(dense20_export):
    report, out = dense20_export
    model_bytes = Path(report["exports"][0]["path"]).read_bytes()
    classifier = read_quantized_classifier(model_bytes)
    interpreter = LiteRTClassifier(model_bytes).interpreter
    by_name = {detail["name"]: detail for detail in interpreter.get_tensor_details()}
    source = (out / SOURCE).read_text()
    for index, layer in enumerate(classifier.layers):
        weights = np.array([int(value) for value in re.search(
            rf"dl_weights_{index}\[[^]]*\] DL_ALIGNED = {{(.*?)}};", source, re.DOTALL).group(1).replace("\n", "").split(",")])
        assert np.array_equal(weights, weight_table(layer.weights))  # the kernels' order of the same numbers
        matching = [detail for detail in by_name.values() if tuple(detail["shape"]) == layer.weights.shape]
        assert any(np.array_equal(interpreter.get_tensor(detail["index"]), layer.weights) for detail in matching)
        scales = matching[0]["quantization_parameters"]["scales"]
        assert len(scales) == layer.weights.shape[0]  # per-channel, as the converter quantized them


def test_sources_need_nothing_beyond_stdint_and_the_example_builds(dense20_export, tmp_path):
    _, out = dense20_export
    assert re.findall(r"#include\s+(\S+)", (out / HEADER).read_text()) == ["<stdint.h>"]
    source = (out / SOURCE).read_text()
    # <arm_acle.h> is the compiler's own (ACLE), and only ARMv7E-M's DSP kernels include it.
    assert re.findall(r"#include\s+(\S+)", source) == [f'"{HEADER}"', "<arm_acle.h>"]
    assert re.search(r"#if defined\(__ARM_FEATURE_DSP\) && defined\(__GNUC__\)\n(/\*.*?\*/\n)?#include <arm_acle.h>",
                     source, re.DOTALL)
    code = re.sub(r"/\*.*?\*/", "", (out / SOURCE).read_text(), flags=re.DOTALL)
    assert not re.search(r"\bmalloc|\bfloat\b|\bdouble\b", code)  # integer arithmetic only, all static
    binary = tmp_path / "example"
    result = os.system(f"cc -std=c99 -Wall -Wextra -Werror -o {binary} {out / 'main.c'} {out / SOURCE} 2>/dev/null")
    assert result == 0
    assert os.popen(str(binary)).read().startswith("top class: ")


def test_pixel_table_equals_litert_quantization(dense20_export):
    report, _ = dense20_export
    model_bytes = Path(report["exports"][0]["path"]).read_bytes()
    reference = LiteRTClassifier(model_bytes)
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 256)
    table = pixel_table(read_quantized_classifier(model_bytes), "scale")
    expected = reference.quantize_input(np.resize(pixels, (28, 28)))[0].reshape(-1)[:256]
    assert np.array_equal(table, expected)


def test_a_wrong_number_is_caught_and_located(dense20_export, fashion, tmp_path):
    """The host check can fail: one bias of the output layer changed, and it names that layer."""
    report, out = dense20_export
    model_bytes = Path(report["exports"][0]["path"]).read_bytes()
    classifier = read_quantized_classifier(model_bytes)
    for name in (HEADER, SOURCE):
        shutil.copy(out / name, tmp_path / name)
    source = (tmp_path / SOURCE).read_text()
    start = source.index("dl_bias_1[10] = {\n  ") + len("dl_bias_1[10] = {\n  ")
    first = source[start:source.index(",", start)]
    (tmp_path / SOURCE).write_text(source[:start] + str(int(first) + 5000) + source[source.index(",", start):])
    pixels = fashion.test_images[:300].reshape(300, -1)
    check = check_on_host(tmp_path, model_bytes, classifier, pixels, fashion.test_labels[:300], "scale")
    assert not check.identical and check.differing_images > 0
    assert check.first_differences and all(d["layer"] == 1 for d in check.first_differences)
    assert [d["image"] for d in check.first_differences] == check.differing[:len(check.first_differences)]
    assert len(check.differing) == check.differing_images


def synthetic(hidden_units: tuple[int, ...], seed: int = 0) -> QuantizedClassifier:
    """A classifier of any shape with random int8 numbers, for sizing (not for accuracy)."""
    rng = np.random.default_rng(seed)
    sizes, layers = [784, *hidden_units, 10], []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers.append(DenseLayer(
            rng.integers(-127, 128, (fan_out, fan_in)).astype(np.int8), rng.integers(-9000, 9000, fan_out).astype(np.int32),
            -128, -128, rng.integers(1 << 30, (1 << 31) - 1, fan_out).astype(np.int32),
            rng.integers(-14, -8, fan_out).astype(np.int8), -128, 127, 0))
    return QuantizedClassifier(tuple(layers), softmax_parameters(1.0, 0.12), 1 / 255, -128, 1 / 256, -128, 784)


@pytest.mark.parametrize("core", ARM_CORES)
@pytest.mark.parametrize("hidden_units", [(16,), (300,), (7, 13, 5), (64, 64, 64, 64)])
def test_footprint_bounds_hold_against_the_linker_map(hidden_units, core, fashion, tmp_path):
    for name, text in c_sources(synthetic(hidden_units), fashion.class_names, "scale", "synthetic").items():
        (tmp_path / name).write_text(text)
    footprint, run = check_on_core(tmp_path, fashion.test_images[:2].reshape(2, -1), ARM_CORES[core])
    flash_bound = c_flash_bytes(hidden_units, fashion.class_names, core=core)
    ram_bound = c_ram_bytes(hidden_units, core=core)
    assert 0 <= flash_bound - footprint.flash_bytes <= 64
    assert 0 <= ram_bound - footprint.ram_bytes <= 32
    assert run.outputs.shape == (2, 10)


def test_section_sizes_read_long_and_short_map_lines():
    text = ("Discarded input sections\n .rodata.gone\n                0x0 0x40 /x/denselab_model.o\n"
            "Linker script and memory map\n"
            " .text          0x00000040       0x44 /tmp/a/denselab_model.o\n"
            " .rodata.dl_weights_0\n                0x00007f38     0x3d40 /tmp/a/denselab_model.o\n"
            " .rodata.main.str1.1\n                0x0000bc78       0x3e /tmp/a/firmware.o\n"
            " .bss.dl_activations\n                0x200009b8       0x28 /tmp/a/denselab_model.o\n")
    assert section_sizes(text, "denselab_model.o") == {"text": 0x44, "rodata": 0x3d40, "data": 0, "bss": 0x28}


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False))
def test_quantize_multiplier_represents_the_real_multiplier(real):
    multiplier, shift = quantize_multiplier(real)
    if multiplier == 0:  # below 2**-31 TFLite flushes to zero
        assert real < 2.0 ** -31
        return
    assert (1 << 30) <= multiplier <= (1 << 31) - 1
    assert abs(multiplier * 2.0 ** (shift - 31) - real) <= real * 2.0 ** -30


def test_quantize_multiplier_rounds_halves_away_from_zero():
    # 0.5 + 2**-32: q_fixed = 2**30 + 0.5 exactly, which std::round takes up and Python's round would not.
    multiplier, shift = quantize_multiplier(0.5 + 2.0 ** -32)
    assert (multiplier, shift) == ((1 << 30) + 1, 0)


def float_input_int8_model(model, images) -> bytes:
    """`model` as the converter makes it with float input and int8 output: a leading QUANTIZE op."""
    from denselab.data.dataset import normalize
    from denselab.deploy.tflite import _quiet_tensorflow

    tf = _quiet_tensorflow()
    layers = [(tf.constant(kernel), tf.constant(bias)) for kernel, bias in
              (layer.get_weights() for layer in model.layers if layer.weights)]

    class Classifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 28, 28], tf.float32)])
        def serve(self, x):
            hidden = tf.reshape(x, [1, 784])
            for kernel, bias in layers[:-1]:
                hidden = tf.nn.relu(tf.matmul(hidden, kernel) + bias)
            return tf.nn.softmax(tf.matmul(hidden, layers[-1][0]) + layers[-1][1])

    with tempfile.TemporaryDirectory() as folder:
        module = Classifier()
        tf.saved_model.save(module, folder, signatures=module.serve)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in normalize(images))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_output_type = tf.int8  # the input stays float32
        return bytes(converter.convert())


def test_a_model_that_quantizes_its_own_input_runs_the_same(trained_dir, fashion, tmp_path):
    """The converter's float-input variant (QUANTIZE first): the C runtime quantizes as that op does."""
    from denselab.model.run_dir import load_trained_model

    model_bytes = float_input_int8_model(load_trained_model(trained_dir / "model.keras").model,
                                         calibration_images(fashion, 100))
    path = tmp_path / "float_input.tflite"
    path.write_bytes(model_bytes)
    classifier = read_quantized_classifier(model_bytes, path)
    assert classifier.float_input
    for name, text in c_sources(classifier, fashion.class_names, "scale", "float_input").items():
        (tmp_path / name).write_text(text)
    pixels = fashion.test_images.reshape(len(fashion.test_images), -1)
    check = check_on_host(tmp_path, model_bytes, classifier, pixels, fashion.test_labels, "scale")
    assert check.identical and check.images == 10_000, check.first_differences


# --- refused input: one line, exit 2, no files --------------------------------------------------

@pytest.fixture(scope="module")
def odd_models(tanh_int8_model, tmp_path_factory):
    """A tanh model converted to int8 (a TANH op) and a float32 export, as .tflite files."""
    floating = tmp_path_factory.mktemp("odd-models") / "float32.tflite"
    floating.write_bytes(convert(build_model(ModelSpec((16,))), "none"))
    return tanh_int8_model, floating


def test_refuses_a_model_with_another_op_naming_it(odd_models, tmp_path):
    tanh, _ = odd_models
    result = denselab("export", tanh, "--runtime", "c", "--out", tmp_path / "out")
    assert_one_line_error(result, "TANH", str(tanh))
    assert not (tmp_path / "out").exists()


def test_refuses_a_float_export(odd_models, tmp_path):
    _, floating = odd_models
    result = denselab("export", floating, "--runtime", "c", "--out", tmp_path / "out")
    assert_one_line_error(result, "float", "--quantize int8")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing, package", [("arm-none-eabi-gcc", "gcc-arm-none-eabi"),
                                              ("qemu-system-arm", "qemu-system-arm")])
def test_a_missing_toolchain_names_the_package(missing, package, trained_dir, tmp_path):
    """PATH holds every tool but one; nothing is exported when a check cannot run."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for program in ("cc", "arm-none-eabi-gcc", "qemu-system-arm"):
        if program != missing:
            os.symlink(shutil.which(program), tools / program)
    result = denselab("export", trained_dir / "model.keras", "--runtime", "c", "--out", tmp_path / "out",
                      env={"PATH": str(tools)})
    assert_one_line_error(result, missing, package)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--quantize", "float16"], "need the int8 export"),
    (["--qemu-images", "0"], "--qemu-images must be at least 1, got 0"),
    (["--qemu-images", "-3"], "--qemu-images must be at least 1, got -3"),
    (["--host-images", "0"], "--host-images must be at least 1, got 0"),
    (["--host-images", "-1", "--no-check"], "--host-images must be at least 1, got -1"),
    (["--qemu-images", "10000"], "--qemu-images 10000 is more than the emulated mps2-an386's 4,096 KB of flash"),
    (["--qemu-images", str(10**30)], "is more than the emulated mps2-an386's"),
    (["--tflm-images", "0"], "--tflm-images must be >= 1"),
    (["--runtime", "rust"], "unknown runtime"),
])
def test_bad_options(args, fragment, trained_dir, tmp_path):
    result = denselab("export", trained_dir / "model.keras", "--runtime", "c", "--out", tmp_path / "out", *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_too_many_embedded_images_are_refused_with_the_limit_before_anything_is_built(dense20_export, fashion,
                                                                                       tmp_path):
    report, _ = dense20_export
    limit = most_embedded_images(c_flash_bytes((20,), fashion.class_names))
    result = denselab("export", report["exports"][0]["path"], "--runtime", "c", "--qemu-images", limit + 1,
                      "--out", tmp_path / "out")
    assert_one_line_error(result, f"--qemu-images {limit + 1} is more than", f"at most {limit:,}")
    assert not (tmp_path / "out").exists()


def test_the_firmware_at_the_image_limit_fits_the_emulated_flash(fashion, tmp_path):
    """The limit comes from the linker script's FLASH and a bound on the firmware's own code, measured here."""
    hidden_units = (300,)
    for name, text in c_sources(synthetic(hidden_units), fashion.class_names, "scale", "synthetic").items():
        (tmp_path / name).write_text(text)
    model_flash = c_flash_bytes(hidden_units, fashion.class_names)
    limit = most_embedded_images(model_flash)
    image_bytes = fashion.test_images[0].size
    assert emulated_memory()["FLASH"] - model_flash - FIRMWARE_FLASH_BYTES - limit * image_bytes < image_bytes
    for images, folder in ((1, tmp_path / "one"), (limit, tmp_path / "limit")):
        folder.mkdir()
        pixels = np.resize(fashion.test_images.reshape(len(fashion.test_images), -1), (images, image_bytes))
        elf, _, machine = build_firmware(tmp_path, pixels, folder)  # links: the images fit
        assert machine.name == "mps2-an386"
        sizes = elf_section_sizes(elf)
        flash = sizes[".text"] + sizes.get(".ARM.exidx", 0) + sizes[".data"]
        if images == 1:  # what the bound stands for: all but the model's tables and the images, a little less
            firmware_alone = flash - model_flash - image_bytes
            assert 0 <= FIRMWARE_FLASH_BYTES - firmware_alone <= 8192, firmware_alone
    assert flash <= emulated_memory()["FLASH"]


def elf_section_sizes(elf: Path) -> dict[str, int]:
    """Bytes of each section of an ELF file, by arm-none-eabi-size -A."""
    listing = subprocess.run([toolchain.arm_tool("size"), "-A", str(elf)], capture_output=True, text=True, check=True)
    rows = (line.split() for line in listing.stdout.splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) >= 2 and row[0].startswith(".") and row[1].isdigit()}


def test_a_model_too_large_for_the_emulated_flash_is_refused_before_it_is_built(fashion):
    with pytest.raises(BadInput, match="leaves no room for a test image .* export it with --no-check"):
        check_c_options((4096, 1024), fashion.class_names)
    check_c_options((4096, 1024), fashion.class_names, check=False)  # the sources can still be written


def test_a_tflite_file_needs_runtime_c_and_must_be_valid(dense20_export, tmp_path):
    report, _ = dense20_export
    int8 = report["exports"][0]["path"]
    assert_one_line_error(denselab("export", int8, "--out", tmp_path / "out"), "--runtime c")
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(Path(int8).read_bytes()[:4000])
    assert_one_line_error(denselab("export", damaged, "--runtime", "c", "--out", tmp_path / "out"),
                          "not a valid TensorFlow Lite model", str(damaged))
    assert not (tmp_path / "out").exists()


def test_a_tflite_file_from_elsewhere_becomes_the_same_c_runtime(dense20_export, tmp_path):
    report, out = dense20_export
    result = denselab("export", report["exports"][0]["path"], "--runtime", "c", "--no-check", "--out", tmp_path,
                      "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["c"]["checked"] is False
    # The same tables; only the model's name in the comments differs.
    strip = lambda text: re.sub(r"from \S+", "", text)  # noqa: E731
    assert strip((tmp_path / SOURCE).read_text()) == strip((out / SOURCE).read_text())


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 11), st.integers(1, 13), st.integers(0, 2**32 - 1))
def test_weight_table_is_the_order_the_kernels_read(outputs, inputs, seed):
    weights = np.random.default_rng(seed).integers(-127, 128, (outputs, inputs)).astype(np.int8)
    # The reference: kernels.c's DL_BLOCK comment, read as loops.
    expected, grouped, full = [], inputs - inputs % 4, outputs - outputs % BLOCK_ROWS
    for block in range(0, full, BLOCK_ROWS):
        for group in range(0, grouped, 4):
            for row in range(block, block + BLOCK_ROWS):
                expected += list(weights[row, group:group + 4])
        for row in range(block, block + BLOCK_ROWS):
            expected += list(weights[row, grouped:])
    for row in range(full, outputs):
        expected += list(weights[row])
    assert weight_table(weights).tolist() == [int(weight) + 128 for weight in expected]  # stored unsigned


def gemmlowp_doubling_high_mul(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul as it is written: a nudge and division toward zero."""
    if a == b == -2**31:
        return 2**31 - 1
    ab = a * b
    nudged = ab + (2**30 if ab >= 0 else 1 - 2**30)
    return abs(nudged) // 2**31 * (1 if nudged >= 0 else -1)  # division toward zero, exactly


HIGH_MUL_HARNESS = r"""
#include <stdio.h>
#include "denselab_model.c"
int main(void) {
  long a, b;
  while (scanf("%ld %ld", &a, &b) == 2) printf("%ld\n", (long)dl_doubling_high_mul((int32_t)a, (int32_t)b));
  return 0;
}
"""

EDGES = [-2**31, -2**31 + 1, -2**30 - 1, -2**30, -1, 0, 1, 2**15, -2**15, 2**16 - 1, 2**30, 2**31 - 1]


@pytest.fixture(scope="module")
def high_mul_programs(dense20_export, tmp_path_factory):
    """The kernels' dl_doubling_high_mul built for the host: the 64-bit one and the M0+'s 16-bit pieces."""
    _, out = dense20_export
    folder = tmp_path_factory.mktemp("high-mul")
    (folder / "harness.c").write_text(HIGH_MUL_HARNESS)
    programs = {}
    for name, defines in {"wide": [], "narrow": ["-DDL_NARROW_MULTIPLY"]}.items():
        programs[name] = folder / name
        toolchain.compile_c([toolchain.find("cc"), "-std=c99", "-O2", "-w", *defines, f"-I{out}", "-o",
                             str(programs[name]), str(folder / "harness.c")], f"the {name} high multiply")
    return programs


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**31, 2**31 - 1), st.integers(-2**31, 2**31 - 1)), min_size=1, max_size=400))
def test_doubling_high_mul_equals_gemmlowps_on_every_core(high_mul_programs, pairs):
    pairs = pairs + [(a, b) for a in EDGES for b in EDGES]
    expected = [gemmlowp_doubling_high_mul(a, b) for a, b in pairs]
    # The identity kernels.c rests on: floor((ab + 2^30) / 2^31), saturated at (INT32_MIN, INT32_MIN).
    assert expected == [2**31 - 1 if a == b == -2**31 else (a * b + 2**30) >> 31 for a, b in pairs]
    text = "".join(f"{a} {b}\n" for a, b in pairs)
    for program in high_mul_programs.values():
        printed = subprocess.run([str(program)], input=text, capture_output=True, text=True, check=True).stdout
        assert [int(line) for line in printed.split()] == expected, program.name


def test_the_m0plus_arithmetic_on_the_host_is_identical_on_every_test_image(dense20_export, fashion, tmp_path):
    report, out = dense20_export
    model_bytes = Path(report["exports"][0]["path"]).read_bytes()
    classifier = read_quantized_classifier(model_bytes)
    inputs = pixel_table(classifier, "scale")[fashion.test_images.reshape(len(fashion.test_images), -1)]
    binary = build_host(out, tmp_path / "narrow", defines=("-DDL_NARROW_MULTIPLY",))
    assert np.array_equal(run_host(binary, inputs), tflm_outputs(model_bytes, inputs))
