"""TensorFlow Lite Micro as a static library for a Cortex-M core, built once and cached.

The library holds TFLM's runtime and only the kernels of the operators asked for, compiled
from one of the two source trees that ../shared/third_party/PROVENANCE.md describes
(scripts/tflm-sources.sh makes them; $DENSELAB_TFLM_TREES says where they are). The trees
are third-party code that CI lays out read-only, so every object is built in the cache.

A library lives in the cache under a key that hashes everything its bytes come from: the
compilers' versions, every flag, the sources compiled, every file of the tree and this
module's own code. A finished library under the same key is returned at once; a new one
is built in a temporary folder and renamed into place, so an interrupted build is never
taken for a finished one. Its objects are also kept one by one (denselab.deploy.tflm_objects),
so that the libraries of one core share the runtime's objects that both kernel sets compile alike.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from denselab.deploy.tflm_objects import compile_shared
from denselab.deploy.toolchain import CORTEX_M4, Core, arm_tool, compile_c, find
from denselab.errors import BadInput

TREES_VARIABLE = "DENSELAB_TFLM_TREES"  # a folder holding tflite-micro/ and tflite-micro-cmsis-nn/
CACHE_VARIABLE = "DENSELAB_TFLM_CACHE"
KERNELS = {"reference": "tflite-micro", "cmsis-nn": "tflite-micro-cmsis-nn"}
GET_TREES = f"make them with scripts/tflm-sources.sh DIR, then export {TREES_VARIABLE}=DIR"
ARCHIVE = "libtflm.a"

# TFLM's release build (its Makefile's BUILD_TYPE=release): static memory only, no logging
# and no error strings, which is what keeps the runtime near 24 KB of flash on a Cortex-M4.
RELEASE_FLAGS = ("-Os", "-ffunction-sections", "-fdata-sections", "-funsigned-char",
                 "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DTF_LITE_MCU_DEBUG_LOG",
                 "-DNDEBUG", "-DTF_LITE_STRIP_ERROR_STRINGS")
# The headers pick CMSIS-NN's registrations (Register_FULLY_CONNECTED_INT8 and the like) by this define.
KERNEL_DEFINES = {"reference": (), "cmsis-nn": ("-DCMSIS_NN",)}
CXX_FLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
C_FLAGS = ("-std=c11",)
# newlib-nano with semihosting (printf and exit reach QEMU's host); unused kernel paths are dropped.
LINK_FLAGS = ("--specs=nano.specs", "--specs=rdimon.specs", "-Wl,--gc-sections", "-lm")
INCLUDE_DIRS = (".", "third_party/flatbuffers/include", "third_party/gemmlowp", "third_party/ruy")
# Kernels include "Include/arm_nnfunctions.h"; CMSIS-NN's own sources include "arm_nn_types.h".
CMSIS_NN_INCLUDE_DIRS = ("third_party/cmsis_nn", "third_party/cmsis_nn/Include")

# Files whose absence means a tree is not what scripts/tflm-sources.sh makes.
TREE_MARKS = {
    "reference": ("tensorflow/lite/micro/micro_interpreter.cc", "tensorflow/lite/micro/kernels/kernel_util.cc",
                  "third_party/flatbuffers/include/flatbuffers/flatbuffers.h",
                  "third_party/gemmlowp/fixedpoint/fixedpoint.h", "third_party/ruy/ruy/profiler/instrumentation.h"),
}
TREE_MARKS["cmsis-nn"] = (*TREE_MARKS["reference"], "tensorflow/lite/micro/kernels/cmsis_nn/fully_connected.cc",
                          "third_party/cmsis_nn/Include/arm_nnfunctions.h")

# The runtime: every source in these folders (not their subfolders), whatever the model.
RUNTIME_FOLDERS = ("tensorflow/lite/micro", "tensorflow/lite/micro/arena_allocator",
                   "tensorflow/lite/micro/memory_planner", "tensorflow/lite/micro/tflite_bridge",
                   "tensorflow/lite/micro/cortex_m_generic")
# ... and every source below these, at any depth.
RUNTIME_TREES = ("tensorflow/lite/core", "tensorflow/compiler/mlir/lite")
# ... and one file of the kernels' folder that the runtime itself calls (memory_helpers.cc's GetTensorShape).
RUNTIME_FILES = ("tensorflow/lite/kernels/internal/tensor_ctypes.cc",)
# Test doubles and the recording allocator (for measuring allocations), which no firmware needs.
NOT_RUNTIME = frozenset({"test_helpers.cc", "test_helper_custom_ops.cc", "mock_micro_graph.cc",
                         "fake_micro_context.cc", "recording_micro_allocator.cc",
                         "recording_single_arena_buffer_allocator.cc"})

KERNELS_FOLDER = "tensorflow/lite/micro/kernels"
# What every kernel links against: TFLM's kernel utilities and TensorFlow Lite's quantization
# and tensor helpers. (micro_tensor_utils.cc and decompress*.cc are referenced by none of
# the kernels below in a build without compression.)
KERNEL_HELPERS = ("tensorflow/lite/micro/kernels/kernel_util.cc", "tensorflow/lite/kernels/kernel_util.cc",
                  "tensorflow/lite/kernels/internal/common.cc",
                  "tensorflow/lite/kernels/internal/portable_tensor_utils.cc",
                  "tensorflow/lite/kernels/internal/quantization_util.cc")

# TFLite op name -> its kernel's sources in tensorflow/lite/micro/kernels/. Where the tree has
# kernels/cmsis_nn/NAME (the CMSIS-NN tree), that file is compiled instead of kernels/NAME.
# Found by linking a program that registers each op against a library of every kernel and
# reading which archive members the linker's map file says it pulled in.
SUPPORTED_OPS = {
    "FULLY_CONNECTED": ("fully_connected.cc", "fully_connected_common.cc"),
    "RESHAPE": ("reshape.cc", "reshape_common.cc"),
    "SOFTMAX": ("softmax.cc", "softmax_common.cc"),
    "LOGISTIC": ("logistic.cc", "logistic_common.cc"),  # sigmoid, and silu's x * sigmoid(x)
    "TANH": ("tanh.cc",),
    "ELU": ("elu.cc",),
    "QUANTIZE": ("quantize.cc", "quantize_common.cc"),  # elu's int8 model runs ELU in float between these two
    "DEQUANTIZE": ("dequantize.cc", "dequantize_common.cc"),
    "MUL": ("mul.cc", "mul_common.cc"),
    "ADD": ("add.cc", "add_common.cc"),
    "SUB": ("sub.cc", "sub_common.cc"),
    "EXP": ("exp.cc",),
    "GREATER": ("comparisons.cc",),
    "RELU": ("activations.cc", "activations_common.cc"),
    "RELU6": ("activations.cc", "activations_common.cc"),
}
# Ops a converted denselab model can hold that TFLM itself has no kernel for.
NOT_IN_TFLM = {"SELECT": "TensorFlow Lite Micro has no SELECT kernel (only SELECT_V2), so a selu model cannot run "
                         "under TFLM: choose another activation"}
# CMSIS-NN kernel -> the folders of third_party/cmsis_nn/Source whose functions it calls (every
# kernels/cmsis_nn/ file of an op above needs an entry), found
# the same way (FULLY_CONNECTED runs a batch as a 1x1 convolution, hence ConvolutionFunctions).
CMSIS_NN_FUNCTIONS = {
    "fully_connected.cc": ("ConvolutionFunctions", "FullyConnectedFunctions", "NNSupportFunctions"),
    "softmax.cc": ("SoftmaxFunctions",),
    "mul.cc": ("BasicMathFunctions",),
    "add.cc": ("BasicMathFunctions",),
}
CMSIS_NN_SOURCE = "third_party/cmsis_nn/Source"
# The sources whose optimization `kernel_optimization` sets: the kernels, where inference spends
# its time, and CMSIS-NN's functions; the runtime around them stays at RELEASE_FLAGS' -Os.
KERNEL_SOURCE_PREFIXES = (f"{KERNELS_FOLDER}/", "third_party/cmsis_nn/")
KERNEL_OPTIMIZATIONS = ("-Os", "-O2")


# --- the source tree ----------------------------------------------------------------------

def find_tree(kernels: str = "reference") -> Path:
    """The TFLM source tree of `kernels` ("reference" or "cmsis-nn"), found in $DENSELAB_TFLM_TREES.

    Raises BadInput, one line, when the variable is unset, names a missing folder, or the tree
    in it lacks a file that every tree made by scripts/tflm-sources.sh has.
    """
    if kernels not in KERNELS:
        raise BadInput(f"unknown TFLM kernels {kernels!r}; choose one of {', '.join(KERNELS)}")
    setting = os.environ.get(TREES_VARIABLE)
    if not setting:
        raise BadInput(f"TFLM firmware: {TREES_VARIABLE} is not set, so TFLM's sources cannot be found; {GET_TREES}")
    root = Path(setting).expanduser().absolute()
    if not root.is_dir():
        raise BadInput(f"TFLM firmware: {root} ({TREES_VARIABLE}) is not a folder; {GET_TREES}")
    tree = root / KERNELS[kernels]
    missing = next((mark for mark in TREE_MARKS[kernels] if not (tree / mark).is_file()), None)
    if missing is not None:
        raise BadInput(f"TFLM firmware: {tree} is not a complete {KERNELS[kernels]} tree (no {missing}); "
                       f"remake it with scripts/tflm-sources.sh {root}, or point {TREES_VARIABLE} at another folder")
    return tree


def checked_ops(ops: Iterable[str]) -> tuple[str, ...]:
    """The op names sorted and without repeats; BadInput naming the first one denselab cannot build."""
    if isinstance(ops, str):
        raise ValueError(f"ops is a collection of op names, not the string {ops!r}")
    for op in ops:
        if op in NOT_IN_TFLM:
            raise BadInput(f"TFLM firmware: denselab does not build the kernel of op {op}; {NOT_IN_TFLM[op]}")
        if op not in SUPPORTED_OPS:
            raise BadInput(f"TFLM firmware: denselab does not build the kernel of op {op}; it builds only "
                           f"{', '.join(sorted(SUPPORTED_OPS))}: use a model made of those")
    return tuple(sorted(set(ops)))


def library_sources(tree: Path, ops: tuple[str, ...]) -> tuple[str, ...]:
    """The sources compiled for `ops`, relative to the tree, sorted: the runtime, the kernel
    helpers, each op's kernel and the CMSIS-NN functions that kernel calls."""
    sources = {source.relative_to(tree).as_posix() for folder in RUNTIME_FOLDERS
               for source in (tree / folder).glob("*.cc") if source.name not in NOT_RUNTIME}
    sources |= {source.relative_to(tree).as_posix() for folder in RUNTIME_TREES
                for source in (tree / folder).rglob("*.cc")}
    sources |= set(RUNTIME_FILES)
    if ops:
        sources |= set(KERNEL_HELPERS)
    for op in checked_ops(ops):
        for name in SUPPORTED_OPS[op]:
            if (tree / KERNELS_FOLDER / "cmsis_nn" / name).is_file():
                sources.add(f"{KERNELS_FOLDER}/cmsis_nn/{name}")
                sources |= {source.relative_to(tree).as_posix() for folder in CMSIS_NN_FUNCTIONS[name]
                            for source in (tree / CMSIS_NN_SOURCE / folder).glob("*.c")}
            elif (tree / KERNELS_FOLDER / name).is_file():
                sources.add(f"{KERNELS_FOLDER}/{name}")
            else:
                raise BadInput(f"TFLM firmware: {tree} has no {KERNELS_FOLDER}/{name} (op {op}); "
                               f"remake the trees with scripts/tflm-sources.sh")
    return tuple(sorted(sources))


# --- what a library is made from, and its key ---------------------------------------------

@dataclass(frozen=True)
class BuildPlan:
    """Everything one library is made from; `key` hashes all of it."""

    name: str  # the cache entry's readable prefix, e.g. "reference-cortex-m4"
    tree: Path
    sources: tuple[str, ...]  # relative to the tree
    include_dirs: tuple[Path, ...]
    cxx: tuple[str, ...]  # the C++ compiler and its flags, without the include folders
    cc: tuple[str, ...]  # the C compiler and its flags
    key: str
    # After the compiler's flags for the kernels' sources only (is_kernel_source): GCC obeys the last -O.
    kernel_flags: tuple[str, ...] = ()

    @property
    def entry_name(self) -> str:
        return f"{self.name}-{self.key[:24]}"


def is_kernel_source(source: str) -> bool:
    """Whether `source` (relative to the tree) is a kernel's or CMSIS-NN's, which kernel_flags apply to."""
    return source.startswith(KERNEL_SOURCE_PREFIXES)


def build_plan(ops: Iterable[str], kernels: str = "reference", core: Core = CORTEX_M4,
               kernel_optimization: str = "-Os") -> BuildPlan:
    """What the library of `ops` for `core` is made from, and its cache key; the kernels' sources
    compiled with `kernel_optimization` ("-Os", as the runtime, or "-O2")."""
    if kernel_optimization not in KERNEL_OPTIMIZATIONS:
        raise BadInput(f"TFLM firmware: unknown kernel optimization {kernel_optimization!r}; "
                       f"choose one of {', '.join(KERNEL_OPTIMIZATIONS)}")
    ops = checked_ops(ops)
    tree = find_tree(kernels)
    sources = library_sources(tree, ops)
    include_dirs = tuple(tree / folder for folder in
                         INCLUDE_DIRS + (CMSIS_NN_INCLUDE_DIRS if kernels == "cmsis-nn" else ()))
    common = (*core.flags, *RELEASE_FLAGS, *KERNEL_DEFINES[kernels])
    cxx = (arm_tool("g++"), *common, *CXX_FLAGS)
    cc = (find("arm-none-eabi-gcc"), *common, *C_FLAGS)
    # -Os is RELEASE_FLAGS' own: nothing is added, so the default plan's commands and key are as they were.
    kernel_flags = () if kernel_optimization == "-Os" else (kernel_optimization,)
    key = _key(tree, sources, include_dirs, cxx, cc, kernel_flags)
    variant = "" if not kernel_flags else kernel_optimization  # "cmsis-nn-O2-cortex-m4"
    return BuildPlan(f"{kernels}{variant}-{core.name}", tree, sources, include_dirs, cxx, cc, key, kernel_flags)


def _key(tree: Path, sources: tuple[str, ...], include_dirs: tuple[Path, ...], cxx: tuple[str, ...],
         cc: tuple[str, ...], kernel_flags: tuple[str, ...] = ()) -> str:
    """A hash of the compilers' versions, every flag, the sources, every file of the tree and this module.

    Every file of the tree, not only those compiled: any header may be included. Hashing both
    trees' ~1,100 files took 0.3 s here. This module's code is in the key so that a change in
    how a library is built is never hidden by a library built the old way.
    """
    digest = hashlib.sha256()

    def add(text: str) -> None:
        digest.update(text.encode() + b"\0")

    for compiler in (cxx[0], cc[0]):
        add(subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout)
    for part in (*cxx[1:], "|", *cc[1:], "|", *(str(folder.relative_to(tree)) for folder in include_dirs),
                 "|", *sources, "|"):
        add(part)
    if kernel_flags:  # hashed only when given, so that a default plan's key stays what it was
        for part in ("kernels", *kernel_flags, "|"):
            add(part)
    for path in sorted(path for path in tree.rglob("*") if path.is_file()):
        add(path.relative_to(tree).as_posix())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def library_key(ops: Iterable[str], kernels: str = "reference", core: Core = CORTEX_M4,
                kernel_optimization: str = "-Os") -> str:
    """The cache key of the library tflm_library(ops, kernels, core, kernel_optimization) returns."""
    return build_plan(ops, kernels, core, kernel_optimization).key


# --- the cache ----------------------------------------------------------------------------

def cache_folder(environment: Mapping[str, str] | None = None) -> Path:
    """Where libraries are kept: $DENSELAB_TFLM_CACHE, else $XDG_CACHE_HOME/denselab/tflm,
    else /var/tmp/denselab-tflm-<uid>, which outlives a reboot, a fresh clone and CI's empty HOME.

    `environment` is os.environ unless given.
    """
    environment = os.environ if environment is None else environment
    if environment.get(CACHE_VARIABLE):
        return Path(environment[CACHE_VARIABLE]).expanduser().absolute()
    if environment.get("XDG_CACHE_HOME"):
        return Path(environment["XDG_CACHE_HOME"]) / "denselab" / "tflm"
    return Path(f"/var/tmp/denselab-tflm-{os.getuid()}")


def build_cached(plan: BuildPlan, cache: Path, compile_source: Callable[[list[str], str], None] = compile_c) -> Path:
    """The folder holding the plan's finished library, building it first when the cache lacks it.

    One process builds a key while the others wait on its lock file, then find it built. The
    library is made in a hidden sibling folder and renamed into place when complete; such a
    folder left by an interrupted build is removed by the next build of that key.
    `compile_source(command, what)` runs one compiler command.
    """
    entry = cache / plan.entry_name
    if (entry / ARCHIVE).is_file():
        return entry
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(cache / f"{plan.entry_name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (entry / ARCHIVE).is_file():
            return entry
        # Nothing else builds this key now: what is there is left from an interrupted build or a
        # damaged entry (one without its archive), and is removed.
        for unfinished in (*cache.glob(f".{plan.entry_name}.*"), entry):
            shutil.rmtree(unfinished, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{plan.entry_name}.", dir=cache))
        try:
            _build_archive(plan, work, compile_source)
            work.rename(entry)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return entry


def _object_name(source: str) -> str:
    """tensorflow/lite/micro/kernels/softmax.cc -> tensorflow_lite_micro_kernels_softmax.o: unique
    within a library, where two sources share a file name (kernel_util.cc)."""
    return Path(source).with_suffix(".o").as_posix().replace("/", "_")


def compile_commands(plan: BuildPlan, objects: Path) -> list[tuple[list[str], str]]:
    """Each source's compiler command, its object in `objects`, and what it compiles (for errors)."""
    includes = [f"-I{folder}" for folder in plan.include_dirs]
    commands = []
    for source in plan.sources:
        compiler = plan.cc if source.endswith(".c") else plan.cxx
        extra = plan.kernel_flags if is_kernel_source(source) else ()
        commands.append(([*compiler, *extra, *includes, "-c", str(plan.tree / source),
                          "-o", str(objects / _object_name(source))], f"TFLM's {source}"))
    return commands


def _build_archive(plan: BuildPlan, work: Path, compile_source: Callable[[list[str], str], None]) -> None:
    """Compile the plan's sources in parallel into work/objects and archive them as work/libtflm.a."""
    objects = work / "objects"
    objects.mkdir()
    commands = compile_commands(plan, objects)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        # work is in the cache folder, whose objects/ the libraries share (denselab.deploy.tflm_objects).
        futures = [pool.submit(compile_shared, command, what, work.parent, compile_source) for command, what in commands]
        try:
            for future in futures:
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    members = sorted(objects.iterdir())
    subprocess.run([arm_tool("ar"), "rcs", str(work / ARCHIVE), *map(str, members)], check=True, capture_output=True)
    shutil.rmtree(objects)
    (work / "sources.txt").write_text("".join(f"{source}\n" for source in plan.sources))


# --- the library --------------------------------------------------------------------------

@dataclass(frozen=True)
class TFLMLibrary:
    """A built TFLM library and how a program that links it must be compiled and linked."""

    archive: Path  # libtflm.a
    core: Core
    include_dirs: tuple[Path, ...]
    compile_flags: tuple[str, ...]  # the C++ flags of a program linked against it (core, -Os, defines)
    link_flags: tuple[str, ...]  # after the program's objects and the archive on the link line


def tflm_library(ops: tuple[str, ...], kernels: str = "reference", core: Core = CORTEX_M4,
                 kernel_optimization: str = "-Os") -> TFLMLibrary:
    """TFLM's runtime and the kernels of `ops` (TFLite op names) for `core`, built once and cached.

    Args:
        ops: the model's operators, e.g. ("FULLY_CONNECTED", "RESHAPE", "SOFTMAX"); see SUPPORTED_OPS.
        kernels: "reference" (TFLM's own kernels) or "cmsis-nn" (Arm's, where TFLM has them).
        core: the CPU core; its flags are part of the cache key.
        kernel_optimization: "-Os" (as TFLM's release build) or "-O2" for the kernels' and CMSIS-NN's
            sources only; the runtime stays -Os. Part of the key and of the entry's name.

    Returns:
        The library; a cold build takes minutes, a cached one a fraction of a second.
    """
    plan = build_plan(ops, kernels, core, kernel_optimization)
    entry = build_cached(plan, cache_folder())
    return TFLMLibrary(archive=entry / ARCHIVE, core=core, include_dirs=plan.include_dirs,
                       compile_flags=plan.cxx[1:],
                       link_flags=(*core.flags, *LINK_FLAGS))
