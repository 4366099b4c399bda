"""The TFLM program that `export --c-array` writes, compiled against TFLM and run under QEMU.

The program that ran is the program users get: exactly the exported `main.cc`, `model_data.cc`
and `model_data.h`, linked with a TFLM library (denselab.deploy.tflm_build) for a board's core
and a thin board layer for QEMU's emulation of that core (`board/`, shared with the C runtime's
firmware: start-up code, linker script, and the hooks that count instructions and measure the
stack around each Invoke(); denselab.deploy.qemu says which machine runs which core). Its int8
outputs are compared with the Python `tflite_micro` interpreter's on the same images.

Flash and RAM come from the linker map. TFLM's runtime code is what the TFLM library's
objects take, plus the C library code they pull in beyond what the board layer and printf
need (a firmware without TFLM, built beside it, says which). The program around it (main.cc's
own code, its test images, printf) is reported apart: a board's sketch has its own.
"""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.deploy import toolchain
from denselab.deploy.qemu import (
    LINKER_SCRIPT,
    Machine,
    board_file,
    instructions,
    link_for,
    linker_script,
    placed_sections,
    run_under_qemu,
)
from denselab.deploy.tflm_build import TFLMLibrary

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
    instructions: np.ndarray  # per Invoke(), from SysTick (its resolution: machine.instructions_per_tick)
    stack_bytes: int  # the deepest stack of one Invoke()
    arena_used_bytes: int  # interpreter.arena_used_bytes(), on the 32-bit core
    interpreter_bytes: int  # sizeof the MicroInterpreter and the op resolver, on main()'s stack
    machine: Machine  # the QEMU machine that ran it


@dataclass(frozen=True)
class TFLMFootprint:
    """TFLM's flash and RAM for one model on one core, from the linker map and the run."""

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


def _link(objects: list[Path], library: TFLMLibrary, archive: bool, folder: Path, name: str,
          machine: Machine) -> tuple[Path, Path]:
    """Link `objects` (with the library's archive unless not `archive`) as the library's own programs link."""
    (folder / LINKER_SCRIPT).write_text(linker_script(machine))
    elf, map_file = folder / f"{name}.elf", folder / f"{name}.map"
    toolchain.compile_c([toolchain.arm_tool("g++"), "-nostartfiles", f"-T{folder / LINKER_SCRIPT}",
                         f"-Wl,-Map={map_file}", *map(str, objects), *([str(library.archive)] if archive else []),
                         *library.link_flags, "-o", str(elf)], f"the TFLM firmware ({name}) for {machine.name}")
    return elf, map_file


def _compile_c(source: Path, library: TFLMLibrary, what: str, *defines: str) -> Path:
    """A C file of the board layer, for the library's core."""
    target = source.with_suffix(".o")
    toolchain.compile_c([toolchain.find("arm-none-eabi-gcc"), *library.core.flags, "-Os", "-ffunction-sections",
                         "-fdata-sections", *defines, "-c", str(source), "-o", str(target)], what)
    return target


def _board_objects(folder: Path, library: TFLMLibrary, machine: Machine) -> list[Path]:
    objects = []
    for name in BOARD_SOURCES:
        (folder / name).write_text(board_file(name))
        # The hooks paint as much stack as the machine's RAM allows.
        objects.append(_compile_c(folder / name, library, f"the board layer's {name}",
                                  f"-DDL_PAINTED={machine.painted_stack_bytes}u"))
    return objects


def build_firmware(sources: Path, library: TFLMLibrary, folder: Path) -> tuple[Path, Path, Path, Machine]:
    """Compile the exported main.cc and model_data.cc against `library`; the ELF, its map, the baseline's
    map, and the machine they are linked for (the first of the library's core that holds them)."""
    compiler = toolchain.arm_tool("g++")
    includes = [f"-I{sources}", *(f"-I{directory}" for directory in library.include_dirs)]
    objects = []
    for name in ("main.cc", "model_data.cc"):
        target = folder / (Path(name).stem + ".o")
        toolchain.compile_c([compiler, *library.compile_flags, *includes, "-c", str(sources / name), "-o", str(target)],
                            f"{name} against TFLM")
        objects.append(target)
    machine, (elf, map_file) = link_for(
        library.core.name,
        lambda machine: _link(objects + _board_objects(folder, library, machine), library, True, folder, "firmware",
                              machine))
    (folder / "baseline.c").write_text(BASELINE_MAIN)
    baseline = _compile_c(folder / "baseline.c", library, "the baseline firmware")
    _, baseline_map = _link([baseline, *_board_objects(folder, library, machine)], library, False, folder,
                            "baseline", machine)
    return elf, map_file, baseline_map, machine


def run_firmware(elf: Path, images: int, machine: Machine) -> FirmwareRun:
    """Run the firmware under qemu-system-arm and read back its int8 outputs, instructions, stack and arena."""
    printed = run_under_qemu(elf, "the TFLM firmware", machine)
    outputs = re.findall(r"^image \d+: .*; int8 outputs((?: -?\d+)+)$", printed, re.MULTILINE)
    invokes = re.findall(r"^invoke ticks (\d+) stack (\d+)( overflowed)?$", printed, re.MULTILINE)
    arena = re.search(r"^arena used: (\d+) of \d+ bytes$", printed, re.MULTILINE)
    objects = re.search(r"^interpreter and resolver: (\d+) bytes$", printed, re.MULTILINE)
    if len(outputs) != images or len(invokes) != images or any(flag for *_, flag in invokes) or not (arena and objects):
        raise RuntimeError(f"unexpected TFLM firmware output under QEMU:\n{printed[-2000:]}")
    return FirmwareRun(np.array([[int(value) for value in line.split()] for line in outputs], np.int8),
                       instructions([int(ticks) for ticks, _, _ in invokes], machine),
                       max(int(stack) for _, stack, _ in invokes), int(arena.group(1)), int(objects.group(1)), machine)


def interpreter_outputs(model_bytes: bytes, images: np.ndarray, normalization: str = "scale") -> np.ndarray:
    """What the firmware's int8 outputs must equal: the Python TFLM interpreter's, on the int8 inputs
    that main.cc makes of `images` (uint8 pixels, / 255 in float32 for "scale", then rounded to even)."""
    from denselab.deploy.tflite import LiteRTClassifier
    from denselab.deploy.tflm import tflm_interpreter

    scale, zero_point = (np.float32(value) for value in LiteRTClassifier(model_bytes).input["quantization"])
    interpreter, outputs = tflm_interpreter(model_bytes), []
    for image in images:
        value = image.astype(np.float32) / np.float32(255.0 if normalization == "scale" else 1.0)
        quantized = np.clip(np.rint(value / scale).astype(np.int32) + int(zero_point), -128, 127).astype(np.int8)
        interpreter.set_input(quantized[None], 0)
        interpreter.invoke()
        outputs.append(np.asarray(interpreter.get_output(0)).reshape(-1))
    return np.stack(outputs).astype(np.int8)


def check_tflm_firmware(sources: Path, library: TFLMLibrary, images: int) -> tuple[TFLMFootprint, FirmwareRun]:
    """Build the exported TFLM program in `sources` against `library`, run it under QEMU on an emulator of
    the library's core, measure it."""
    with tempfile.TemporaryDirectory(prefix="denselab-tflm-firmware-") as folder:
        elf, map_file, baseline_map, machine = build_firmware(sources, library, Path(folder))
        run = run_firmware(elf, images, machine)
        return footprint(map_file.read_text(), baseline_map.read_text(), run), run
