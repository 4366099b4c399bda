"""The TFLM program that `export --c-array` writes, compiled against TFLM and run under QEMU.

The program that ran is the program users get: exactly the exported `main.cc`, `model_data.cc`
and `model_data.h`, linked with a TFLM library (denselab.deploy.tflm_build) and a thin board
layer for QEMU's mps2-an386 (`tflm_board/`: start-up code, linker script, and the hooks that
count instructions and measure the stack around each Invoke()). Its int8 outputs are compared
with the Python `tflite_micro` interpreter's on the same images.

Flash and RAM come from the linker map. TFLM's runtime code is what the TFLM library's
objects take, plus the C library code they pull in beyond what the board layer and printf
need (a firmware without TFLM, built beside it, says which). The program around it (main.cc's
own code, its test images, printf) is reported apart: a board's sketch has its own.
"""

import re
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from denselab.deploy import toolchain
from denselab.deploy.c_runtime.cortex_m import INSTRUCTIONS_PER_TICK, QEMU_MACHINE, QEMU_TIMEOUT_SECONDS
from denselab.deploy.tflm_build import TFLMLibrary

BOARD = "tflm_board"  # beside this module
LINKER_SCRIPT = "mps2_an386.ld"
BOARD_SOURCES = ("startup.c", "invoke_hooks.c")
# A firmware with the board layer and main.cc's printf calls but no TFLM: the C library code
# that any program printing over semihosting has, which is not TFLM's.
BASELINE_MAIN = """#include <stdio.h>
int main(void) {
  printf("image %d: top class %s (%.1f%%)\\n", 1, "x", 1.0f);
  return 0;
}
"""
FLASH_SECTIONS = ("text", "rodata", "init_array", "preinit_array", "fini_array", "ARM")
RAM_SECTIONS = ("data", "bss", "COMMON")
TOOLCHAIN_LIBRARIES = re.compile(r"lib(?:c|c_nano|m|gcc|stdc\+\+|stdc\+\+_nano|supc\+\+|supc\+\+_nano|rdimon|nosys)\.a$")


@dataclass(frozen=True)
class FirmwareRun:
    """What the firmware printed under QEMU."""

    outputs: np.ndarray  # int8, (images, classes)
    instructions: np.ndarray  # per Invoke(), from SysTick: a multiple of INSTRUCTIONS_PER_TICK
    stack_bytes: int  # the deepest stack of one Invoke()
    arena_used_bytes: int  # interpreter.arena_used_bytes(), on the 32-bit core
    interpreter_bytes: int  # sizeof the MicroInterpreter and the op resolver, on main()'s stack


@dataclass(frozen=True)
class TFLMFootprint:
    """TFLM's flash and RAM for one model on the Cortex-M4, from the linker map and the run."""

    runtime_code_bytes: int  # the TFLM library's objects and the C library code only they need
    model_bytes: int  # the model's array (model_data.cc)
    static_ram_bytes: int  # the TFLM library's .data and .bss
    interpreter_bytes: int
    arena_used_bytes: int
    stack_bytes: int
    program_bytes: int  # the rest of the firmware's flash: main.cc's code and images, printf, start-up

    @property
    def flash_bytes(self) -> int:
        return self.runtime_code_bytes + self.model_bytes

    @property
    def ram_bytes(self) -> int:
        return self.static_ram_bytes + self.interpreter_bytes + self.arena_used_bytes + self.stack_bytes


# A line of the map's memory map that places an input section:
# " .text._ZN6tflite...   0x00000200   0x3d40 /tmp/x/libtflm.a(micro_interpreter.o)"
_PLACED = re.compile(r"^ (\.[\w.$+-]+|COMMON)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)$", re.MULTILINE)


def placed_sections(map_text: str) -> list[tuple[str, int, str]]:
    """(section kind, bytes, owner) of every input section a GNU ld map places; owner is "archive(member)" or a file."""
    placed = map_text[map_text.index("Linker script and memory map"):]
    placed = re.sub(r"^ (\.[\w.$+-]+)\n\s+", r" \1 ", placed, flags=re.MULTILINE)  # long names wrap
    found = []
    for name, size, owner in _PLACED.findall(placed):
        kind = "COMMON" if name == "COMMON" else name.lstrip(".").split(".")[0]
        if int(size, 16):
            found.append((kind, int(size, 16), owner))
    return found


def _archive(owner: str) -> str:
    return Path(owner.split("(")[0]).name


def _flash(sections, keep) -> int:
    return sum(size for kind, size, owner in sections if (kind in FLASH_SECTIONS or kind == "data") and keep(owner))


def footprint(map_text: str, baseline_map_text: str, run: FirmwareRun) -> TFLMFootprint:
    """TFLM's share of a firmware's flash and RAM; `baseline_map_text` is the map of the firmware without TFLM."""
    sections = placed_sections(map_text)
    baseline = {owner for _, _, owner in placed_sections(baseline_map_text)}
    tflm = lambda owner: _archive(owner) == "libtflm.a"  # noqa: E731
    pulled_in = lambda owner: bool(TOOLCHAIN_LIBRARIES.search(_archive(owner))) and owner not in baseline  # noqa: E731
    model = lambda owner: Path(owner).name == "model_data.o"  # noqa: E731
    runtime = _flash(sections, lambda owner: tflm(owner) or pulled_in(owner))
    model_bytes = _flash(sections, model)
    total = _flash(sections, lambda owner: True)
    static = sum(size for kind, size, owner in sections if kind in RAM_SECTIONS and (tflm(owner) or pulled_in(owner)))
    # main.cc's arena array has the size measured on the 64-bit host; the run says what TFLM used here.
    return TFLMFootprint(runtime, model_bytes, static, run.interpreter_bytes, run.arena_used_bytes, run.stack_bytes,
                         total - runtime - model_bytes)


def _board_file(name: str) -> str:
    return (resources.files("denselab.deploy") / BOARD / name).read_text()


def _link(objects: list[Path], library: TFLMLibrary | None, folder: Path, name: str) -> tuple[Path, Path]:
    (folder / LINKER_SCRIPT).write_text(_board_file(LINKER_SCRIPT))
    elf, map_file = folder / f"{name}.elf", folder / f"{name}.map"
    archive = [str(library.archive)] if library else []
    core = library.compile_flags if library else ()
    toolchain.compile_c([toolchain.arm_tool("g++"), *_core_flags(core), "-nostartfiles",
                         "--specs=nano.specs", "--specs=rdimon.specs", f"-T{folder / LINKER_SCRIPT}",
                         f"-Wl,-Map={map_file}", "-Wl,--gc-sections", *map(str, objects), *archive, "-lm",
                         "-o", str(elf)], f"the TFLM firmware ({name})")
    return elf, map_file


def _core_flags(compile_flags) -> list[str]:
    """The -mcpu/-mfpu/-mfloat-abi/-mthumb flags among a library's compile flags (the linker needs the same)."""
    return [flag for flag in compile_flags if flag.startswith(("-mcpu", "-mfpu", "-mfloat-abi", "-mthumb"))] or \
        ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


def _board_objects(folder: Path, compile_flags) -> list[Path]:
    objects = []
    for name in BOARD_SOURCES:
        source, target = folder / name, folder / (Path(name).stem + ".o")
        source.write_text(_board_file(name))
        toolchain.compile_c([toolchain.find("arm-none-eabi-gcc"), *_core_flags(compile_flags), "-Os",
                             "-ffunction-sections", "-fdata-sections", "-c", str(source), "-o", str(target)],
                            f"the board layer's {name}")
        objects.append(target)
    return objects


def build_firmware(sources: Path, library: TFLMLibrary, folder: Path) -> tuple[Path, Path, Path]:
    """Compile the exported main.cc and model_data.cc against `library`; the ELF, its map, and the baseline's map."""
    compiler = toolchain.arm_tool("g++")
    includes = [f"-I{sources}", *(f"-I{directory}" for directory in library.include_dirs)]
    objects = []
    for name in ("main.cc", "model_data.cc"):
        target = folder / (Path(name).stem + ".o")
        toolchain.compile_c([compiler, *library.compile_flags, *includes, "-c", str(sources / name), "-o", str(target)],
                            f"{name} against TFLM")
        objects.append(target)
    board = _board_objects(folder, library.compile_flags)
    elf, map_file = _link(objects + board, library, folder, "firmware")
    (folder / "baseline.c").write_text(BASELINE_MAIN)
    toolchain.compile_c([toolchain.find("arm-none-eabi-gcc"), *_core_flags(library.compile_flags), "-Os", "-c",
                         str(folder / "baseline.c"), "-o", str(folder / "baseline.o")], "the baseline firmware")
    _, baseline_map = _link([folder / "baseline.o", *board], None, folder, "baseline")
    return elf, map_file, baseline_map


def run_firmware(elf: Path, images: int) -> FirmwareRun:
    """Run the firmware under qemu-system-arm and read back its int8 outputs, instructions, stack and arena."""
    command = [toolchain.find("qemu-system-arm"), "-M", QEMU_MACHINE, "-nographic", "-monitor", "none",
               "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=QEMU_TIMEOUT_SECONDS,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the TFLM firmware did not finish under QEMU in {QEMU_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        raise RuntimeError(f"the TFLM firmware exited with status {result.returncode} under QEMU "
                           f"(99: a fault):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    outputs = re.findall(r"^image \d+: .*; int8 outputs((?: -?\d+)+)$", result.stdout, re.MULTILINE)
    invokes = re.findall(r"^invoke ticks (\d+) stack (\d+)( overflowed)?$", result.stdout, re.MULTILINE)
    arena = re.search(r"^arena used: (\d+) of \d+ bytes$", result.stdout, re.MULTILINE)
    objects = re.search(r"^interpreter and resolver: (\d+) bytes$", result.stdout, re.MULTILINE)
    if len(outputs) != images or len(invokes) != images or any(flag for *_, flag in invokes) or not (arena and objects):
        raise RuntimeError(f"unexpected TFLM firmware output under QEMU:\n{result.stdout[-2000:]}")
    return FirmwareRun(np.array([[int(value) for value in line.split()] for line in outputs], np.int8),
                       np.array([int(ticks) for ticks, _, _ in invokes], np.int64) * INSTRUCTIONS_PER_TICK,
                       max(int(stack) for _, stack, _ in invokes), int(arena.group(1)), int(objects.group(1)))


def check_tflm_firmware(sources: Path, library: TFLMLibrary, images: int) -> tuple[TFLMFootprint, FirmwareRun]:
    """Build the exported TFLM program in `sources` against `library`, run it under QEMU, measure it."""
    with tempfile.TemporaryDirectory(prefix="denselab-tflm-firmware-") as folder:
        elf, map_file, baseline_map = build_firmware(sources, library, Path(folder))
        run = run_firmware(elf, images)
        return footprint(map_file.read_text(), baseline_map.read_text(), run), run
