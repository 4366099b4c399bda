"""TFLM's static library (denselab.deploy.tflm_build): built from the real trees for the Cortex-M4,
cached, and linked by a real program over a trained int8 model; the cache's rules on a tiny tree;
and the one-line errors for missing or damaged trees and for ops denselab does not build.

The references: the kernels a library must hold are listed here by hand, and the linker says
whether a program that registers the ops finds every symbol it needs.
"""

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from string import Template

import pytest

from denselab.deploy.c_array import c_array_sources, c_identifier
from denselab.deploy.tflite import calibration_images, convert
from denselab.deploy.tflm_build import (
    CACHE_VARIABLE,
    CORTEX_M4,
    KERNELS,
    SUPPORTED_OPS,
    TREES_VARIABLE,
    BuildPlan,
    Core,
    build_cached,
    build_plan,
    cache_folder,
    compile_commands,
    library_key,
    tflm_library,
)
from denselab.deploy.tflm_objects import OBJECTS
from denselab.deploy.toolchain import arm_tool, compile_c, find
from denselab.errors import BadInput
from denselab.model.run_dir import load_trained_model

OPS = ("FULLY_CONNECTED", "RESHAPE", "SOFTMAX")  # the exercise's dense classifier
# The kernels' objects a library of OPS must hold, and no others (tensorflow/lite/micro/kernels/).
OPS_KERNEL_OBJECTS = {"fully_connected", "fully_connected_common", "reshape", "reshape_common", "softmax",
                      "softmax_common", "kernel_util"}
KERNEL_PREFIX = "tensorflow_lite_micro_kernels_"
MODEL_NAME = "dense_20"

PROGRAM = Template("""\
#include <cstdint>

#include "model_data.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/softmax.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
alignas(16) uint8_t tensor_arena[16 * 1024];
}  // namespace

int main() {
  tflite::MicroMutableOpResolver<$op_count> resolver;
$registrations
  tflite::MicroInterpreter interpreter(tflite::GetModel(g_${identifier}_data), resolver, tensor_arena,
                                       sizeof(tensor_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) return 1;
  return interpreter.Invoke() == kTfLiteOk ? 0 : 2;
}
""")


@pytest.fixture(scope="module", autouse=True)
def machine_cache():
    """Libraries in the machine's cache (/var/tmp/denselab-tflm-<uid>), not the test home's.

    conftest's XDG_CACHE_HOME dies with the session, and a cold build takes minutes. A library's
    key hashes everything it is made from, tflm_build.py included, so a library from an earlier
    session is the one a build now would make. A DENSELAB_TFLM_CACHE already set is kept.
    """
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get(CACHE_VARIABLE):
            patch.setenv(CACHE_VARIABLE, str(cache_folder({})))
        yield


@pytest.fixture(scope="module")
def model_sources(trained_dir, fashion, tmp_path_factory) -> Path:
    """model_data.h and model_data.cc: the trained Dense(20) model in int8, as a firmware carries it."""
    model = load_trained_model(trained_dir / "model.keras").model
    model_bytes = convert(model, "int8", calibration_images(fashion, 100))
    folder = tmp_path_factory.mktemp("model-data")
    for name, text in c_array_sources(model_bytes, MODEL_NAME).items():
        (folder / name).write_text(text)
    return folder


def registration(op: str) -> str:
    """MicroMutableOpResolver's call for an op with its default kernel: FULLY_CONNECTED -> AddFullyConnected()."""
    return f"resolver.Add{''.join(part.capitalize() for part in op.split('_'))}();"


def link_program(library, registrations: list[str], model_sources: Path, folder: Path):
    """Compile a program that registers `registrations` and runs the model, link it against
    `library`, and return the link's CompletedProcess."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.cc").write_text(PROGRAM.substitute(
        op_count=len(registrations), identifier=c_identifier(MODEL_NAME),
        registrations="\n".join(f"  {line}" for line in registrations)))
    compiler = arm_tool("g++")
    includes = [f"-I{model_sources}", *(f"-I{directory}" for directory in library.include_dirs)]
    objects = []
    for source in (folder / "main.cc", model_sources / "model_data.cc"):
        objects.append(folder / f"{source.stem}.o")
        compile_c([compiler, *library.compile_flags, *includes, "-c", str(source), "-o", str(objects[-1])],
                  source.name)
    return subprocess.run([compiler, *library.compile_flags, *map(str, objects), str(library.archive),
                           *library.link_flags, "-o", str(folder / "program.elf")], capture_output=True, text=True)


def archive_members(archive: Path) -> set[str]:
    listing = subprocess.run([arm_tool("ar"), "t", str(archive)], capture_output=True, text=True, check=True)
    return set(listing.stdout.split())


def assert_links(result) -> None:
    assert result.returncode == 0 and "undefined reference" not in result.stderr, result.stderr[-3000:]


# --- the real trees -------------------------------------------------------------------------

def test_the_reference_library_holds_only_its_kernels_is_cached_and_links(model_sources, tmp_path):
    library = tflm_library(OPS)  # minutes the first time on a machine, then from the cache
    members = archive_members(library.archive)
    assert {member.removeprefix(KERNEL_PREFIX).removesuffix(".o") for member in members
            if member.startswith(KERNEL_PREFIX)} == OPS_KERNEL_OBJECTS
    assert {"tensorflow_lite_micro_micro_interpreter.o", "tensorflow_lite_micro_micro_allocator.o"} <= members
    assert "tensorflow_lite_micro_test_helpers.o" not in members

    start = time.perf_counter()
    again = tflm_library(tuple(reversed(OPS)))  # the same set of ops, so the same library
    assert time.perf_counter() - start < 0.5
    assert again == library

    assert_links(link_program(library, [registration(op) for op in OPS], model_sources, tmp_path / "program"))
    # The link check can fail: a kernel the library was not built with is an undefined symbol.
    missing = link_program(library, [registration(op) for op in (*OPS, "TANH")], model_sources, tmp_path / "tanh")
    assert missing.returncode != 0 and "Register_TANH" in missing.stderr, missing.stderr[-3000:]


def test_every_supported_op_links_with_the_reference_kernels(model_sources, tmp_path):
    """SUPPORTED_OPS names every source each op needs: a program registering all of them links."""
    library = tflm_library(tuple(SUPPORTED_OPS))
    assert_links(link_program(library, [registration(op) for op in SUPPORTED_OPS], model_sources, tmp_path))


def test_the_cmsis_nn_library_links_every_op_and_its_int8_registrations(model_sources, tmp_path):
    # One library of every op, not a second one of OPS: a cold CMSIS-NN build takes one to two minutes here.
    library = tflm_library(tuple(SUPPORTED_OPS), "cmsis-nn")
    members = archive_members(library.archive)
    # Arm's kernels where TFLM has them, with the CMSIS-NN functions they call; TFLM's elsewhere.
    assert {f"{KERNEL_PREFIX}cmsis_nn_{kernel}.o" for kernel in ("fully_connected", "softmax", "add", "mul")} <= members
    assert {f"{KERNEL_PREFIX}reshape.o", f"{KERNEL_PREFIX}tanh.o"} <= members
    assert {"third_party_cmsis_nn_Source_FullyConnectedFunctions_arm_fully_connected_s8.o",
            "third_party_cmsis_nn_Source_SoftmaxFunctions_arm_softmax_s8.o",
            "third_party_cmsis_nn_Source_BasicMathFunctions_arm_elementwise_add_s8.o"} <= members
    assert not any("PoolingFunctions" in member for member in members)  # no op here pools
    int8 = ["resolver.AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT8());",
            "resolver.AddSoftmax(tflite::Register_SOFTMAX_INT8());", registration("RESHAPE")]
    assert_links(link_program(library, int8, model_sources, tmp_path / "int8"))
    assert_links(link_program(library, [registration(op) for op in SUPPORTED_OPS], model_sources, tmp_path / "all"))


def test_the_key_follows_the_trees_files_the_flags_and_the_ops(tmp_path, monkeypatch):
    trees = tmp_path / "trees"
    shutil.copytree(Path(os.environ[TREES_VARIABLE]) / KERNELS["reference"], trees / KERNELS["reference"])
    monkeypatch.setenv(TREES_VARIABLE, str(trees))
    key = library_key(OPS)
    assert library_key(("SOFTMAX", "RESHAPE", "FULLY_CONNECTED", "RESHAPE")) == key
    assert library_key((*OPS, "TANH")) != key
    assert library_key(OPS, core=Core("cortex-m4", (*CORTEX_M4.flags, "-mno-unaligned-access"))) != key
    # Even a file that no source is compiled with changes the key: the key does not guess at includes.
    header = trees / KERNELS["reference"] / "third_party/kissfft/kiss_fft.h"
    header.chmod(0o644)
    header.write_text(header.read_text() + "\n// changed\n")
    assert library_key(OPS) != key


def optimizations(plan: BuildPlan) -> dict[str, str]:
    """Each source of the plan -> the last -O flag of its compiler command, the one GCC obeys."""
    return {what.removeprefix("TFLM's "): [flag for flag in command if flag.startswith("-O")][-1]
            for command, what in compile_commands(plan, Path("/objects"))}


@pytest.mark.parametrize("kernels", list(KERNELS))
def test_kernel_optimization_o2_compiles_the_kernels_only_at_o2(kernels):
    default, fast = build_plan(OPS, kernels), build_plan(OPS, kernels, kernel_optimization="-O2")
    assert fast.sources == default.sources
    at_o2 = {source for source, flag in optimizations(fast).items() if flag == "-O2"}
    if kernels == "reference":  # the reference: OPS_KERNEL_OBJECTS, listed by hand
        assert at_o2 == {f"tensorflow/lite/micro/kernels/{name}.cc" for name in OPS_KERNEL_OBJECTS}
    else:  # Arm's kernels and every CMSIS-NN function they call, TFLM's reshape
        assert {"tensorflow/lite/micro/kernels/cmsis_nn/fully_connected.cc",
                "tensorflow/lite/micro/kernels/cmsis_nn/softmax.cc", "tensorflow/lite/micro/kernels/reshape.cc",
                "third_party/cmsis_nn/Source/FullyConnectedFunctions/arm_fully_connected_s8.c"} <= at_o2
        assert {source for source in fast.sources if source.startswith("third_party/cmsis_nn/")} <= at_o2
    # The runtime stays at TFLM's release -Os, and the default plan compiles nothing at -O2.
    runtime = {"tensorflow/lite/micro/micro_interpreter.cc", "tensorflow/lite/micro/micro_allocator.cc",
               "tensorflow/lite/kernels/internal/tensor_ctypes.cc", "tensorflow/lite/kernels/kernel_util.cc"}
    assert runtime <= set(fast.sources) and runtime.isdisjoint(at_o2)
    assert set(optimizations(fast).values()) == {"-Os", "-O2"}
    assert set(optimizations(default).values()) == {"-Os"}
    assert fast.name == f"{kernels}-O2-cortex-m4" and fast.entry_name.startswith(f"{kernels}-O2-cortex-m4-")


def test_the_default_kernel_optimization_keeps_the_key_and_commands_and_o2_has_its_own():
    default = build_plan(OPS, "cmsis-nn")
    explicit = build_plan(OPS, "cmsis-nn", kernel_optimization="-Os")
    # The same commands byte for byte, so the libraries already in a cache are the ones asked for.
    assert explicit == default and default.kernel_flags == ()
    assert compile_commands(explicit, Path("/o")) == compile_commands(default, Path("/o"))
    assert default.name == "cmsis-nn-cortex-m4"
    assert library_key(OPS, "cmsis-nn", kernel_optimization="-Os") == default.key
    fast = library_key(OPS, "cmsis-nn", kernel_optimization="-O2")
    assert fast != default.key and fast != library_key(OPS, "reference", kernel_optimization="-O2")


# --- the cache, on a tree of two files ------------------------------------------------------

@pytest.fixture
def tiny_plan(tmp_path) -> BuildPlan:
    """A plan of two one-function sources, each compiled in well under a second."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "one.cc").write_text("int one() { return 1; }\n")
    (tree / "two.c").write_text("int two(void) { return 2; }\n")
    return BuildPlan(name="tiny", tree=tree, sources=("one.cc", "two.c"), include_dirs=(),
                     cxx=(arm_tool("g++"), *CORTEX_M4.flags), cc=(find("arm-none-eabi-gcc"), *CORTEX_M4.flags),
                     key="0" * 64)


def test_an_interrupted_build_leaves_nothing_that_counts_as_built(tiny_plan, tmp_path):
    cache = tmp_path / "cache"

    def interrupted(command, what):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cached(tiny_plan, cache, interrupted)
    assert list(cache.iterdir()) == [cache / f"{tiny_plan.entry_name}.lock"]
    # What a killed build leaves (its hidden folder, half an archive) is cleared by the next build.
    leftover = cache / f".{tiny_plan.entry_name}.killed"
    leftover.mkdir()
    (leftover / "libtflm.a").write_bytes(b"half")
    entry = build_cached(tiny_plan, cache)
    assert not leftover.exists()
    assert archive_members(entry / "libtflm.a") == {"one.o", "two.o"}


def test_two_builders_of_one_key_compile_once_and_a_built_key_compiles_nothing(tiny_plan, tmp_path):
    cache = tmp_path / "cache"
    compiled = []

    def slow_compile(command, what):
        compiled.append(what)
        time.sleep(0.3)  # long enough that the second builder arrives while the first holds the lock
        compile_c(command, what)

    entries = []
    builders = [threading.Thread(target=lambda: entries.append(build_cached(tiny_plan, cache, slow_compile)))
                for _ in range(2)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join()
    assert len(compiled) == len(tiny_plan.sources)
    assert entries == [cache / tiny_plan.entry_name] * 2

    def must_not_compile(command, what):
        raise AssertionError(f"{what} compiled again")

    assert build_cached(tiny_plan, cache, must_not_compile) == entries[0]


def test_libraries_share_the_objects_that_compile_alike_and_only_those(tmp_path):
    cache, compiled = tmp_path / "cache", []

    def counting(command, what):
        compiled.append(what)
        compile_c(command, what)

    def build(name: str, value: int, *flags: str) -> bytes:
        """A library of one source in a tree of its own, whose header sets VALUE; its object's bytes."""
        tree = tmp_path / name
        tree.mkdir()
        (tree / "value.h").write_text(f"#define VALUE {value}\n")
        (tree / "one.cc").write_text('#include "value.h"\nint one() { return VALUE; }\n')
        plan = BuildPlan(name=name, tree=tree, sources=("one.cc",), include_dirs=(tree,),
                         cxx=(arm_tool("g++"), *CORTEX_M4.flags, *flags), cc=(find("arm-none-eabi-gcc"),),
                         key=name.ljust(64, "0"))
        entry = build_cached(plan, cache, counting)
        subprocess.run([arm_tool("ar"), "x", str(entry / "libtflm.a")], cwd=tmp_path, check=True)
        return (tmp_path / "one.o").read_bytes()

    first = build("a", 1)
    assert build("b", 1) == first and len(compiled) == 1  # another tree, the same source: shared
    assert build("c", 2) != first and len(compiled) == 2  # another header: compiled
    build("d", 1, "-DUNUSED")  # the same text, another flag: compiled
    assert len(compiled) == 3
    assert len(list((cache / OBJECTS).glob("*.o"))) == 3


def test_the_cache_folder_outlives_a_clone_and_an_empty_home():
    assert cache_folder({CACHE_VARIABLE: "/srv/tflm", "XDG_CACHE_HOME": "/home/me/.cache"}) == Path("/srv/tflm")
    assert cache_folder({"XDG_CACHE_HOME": "/home/me/.cache"}) == Path("/home/me/.cache/denselab/tflm")
    assert cache_folder({}) == Path(f"/var/tmp/denselab-tflm-{os.getuid()}")


# --- bad input ------------------------------------------------------------------------------

def one_line_error(call) -> str:
    with pytest.raises(BadInput) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unset_trees_say_how_to_get_them(monkeypatch):
    monkeypatch.delenv(TREES_VARIABLE, raising=False)
    message = one_line_error(lambda: tflm_library(OPS))
    assert TREES_VARIABLE in message and "scripts/tflm-sources.sh" in message


def test_a_missing_trees_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(TREES_VARIABLE, str(tmp_path / "nowhere"))
    message = one_line_error(lambda: tflm_library(OPS))
    assert str(tmp_path / "nowhere") in message and "scripts/tflm-sources.sh" in message


@pytest.mark.parametrize("kernels", list(KERNELS))
def test_a_damaged_tree_is_named(kernels, tmp_path, monkeypatch):
    (tmp_path / KERNELS[kernels]).mkdir()  # the folder is there, its files are not
    monkeypatch.setenv(TREES_VARIABLE, str(tmp_path))
    message = one_line_error(lambda: tflm_library(OPS, kernels))
    assert str(tmp_path / KERNELS[kernels]) in message and "scripts/tflm-sources.sh" in message


@pytest.mark.parametrize("optimization", ["-O3", "O2", ""])
def test_an_unknown_kernel_optimization_is_named(optimization):
    message = one_line_error(lambda: tflm_library(OPS, "cmsis-nn", kernel_optimization=optimization))
    assert message.startswith(f"TFLM firmware: unknown kernel optimization {optimization!r};") and "-O2" in message


@pytest.mark.parametrize("op", ["CONV_2D", "SELECT"])
def test_an_op_without_a_kernel_is_named(op):
    message = one_line_error(lambda: tflm_library((*OPS, op)))
    assert message.startswith(f"TFLM firmware: denselab does not build the kernel of op {op};")


# --- make test's check of the trees (scripts/tflm-trees.sh) ---------------------------------

def test_make_test_finds_the_trees_beside_the_repository_or_stops_with_one_line(tmp_path):
    """The script from a copy of the repository at tmp_path/repo, with tmp_path/shared/ beside it."""
    scripts = tmp_path / "repo" / "scripts"
    scripts.mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "scripts" / "tflm-trees.sh", scripts)
    unset = {name: value for name, value in os.environ.items() if name != TREES_VARIABLE}

    def trees(*command, **variables):
        return subprocess.run(["bash", str(scripts / "tflm-trees.sh"), *command], env={**unset, **variables},
                              capture_output=True, text=True, timeout=60)

    missing = trees()
    assert missing.returncode == 2 and missing.stdout == ""
    assert len(missing.stderr.splitlines()) == 1 and "scripts/tflm-sources.sh DIR" in missing.stderr
    # A clone made elsewhere finds the trees beside the repository it was cloned from.
    upstream = tmp_path / "upstream"
    (upstream / "repo").mkdir(parents=True)
    for name in KERNELS.values():
        (upstream / "shared" / "third_party" / name).mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "remote", "add", "origin", str(upstream / "repo")], check=True)
    assert trees().stdout == f"{upstream / 'shared' / 'third_party'}\n"
    shutil.rmtree(tmp_path / "repo" / ".git")
    beside = tmp_path / "shared" / "third_party"
    for name in KERNELS.values():
        (beside / name).mkdir(parents=True)
    assert trees().stdout == f"{beside}\n"
    assert trees("sh", "-c", f"echo ${TREES_VARIABLE}").stdout == f"{beside}\n"  # what pytest is given
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / KERNELS["reference"]).mkdir(parents=True)  # no CMSIS-NN tree: not enough
    half = trees(**{TREES_VARIABLE: str(elsewhere)})
    assert half.returncode == 2 and str(elsewhere) in half.stderr and KERNELS["cmsis-nn"] in half.stderr
