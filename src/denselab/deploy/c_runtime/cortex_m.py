"""Checks two and three: the C runtime built for a board's own Cortex-M core and run on QEMU's
emulation of that core (denselab.deploy.qemu.EMULATORS: the Cortex-M0+ on the micro:bit, or
on mps2-an386 when too large for it; the Cortex-M4 on mps2-an386; the Cortex-M7 on mps2-an500).

The firmware embeds test images, runs `denselab_predict` on each and prints the outputs
over semihosting, with the SysTick count around each call (instructions: see
denselab.deploy.qemu). Before the first call the firmware paints the stack below main()'s
frame, and after it finds how deep the call reached.

Flash and RAM are read from the linker map: what `denselab_model.o` contributes to each
section, plus the stack that inference used.
"""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.data.dataset import IMAGE_SIDE
from denselab.deploy import toolchain
from denselab.deploy.c_runtime.source import SOURCE
from denselab.deploy.qemu import (
    LINKER_SCRIPT,
    Machine,
    board_file,
    instructions,
    largest_machine,
    link_for,
    linker_script,
    placed_sections,
    run_under_qemu,
)
from denselab.deploy.toolchain import ARM_CORES, CORTEX_M4, Core
from denselab.errors import BadInput

QEMU_IMAGES = 100
# The firmware's flash besides the model's C runtime and the embedded images: start-up code,
# main() and newlib's printf and semihosting, 34,372 bytes measured (arm-none-eabi-gcc 12.2,
# -Os), rounded up. Each embedded image takes IMAGE_SIDE² bytes.
FIRMWARE_FLASH_BYTES = 40_960
# -Os is what export ships and checks; -O2 is for comparing speed (bench/runtimes.py).
OPTIMIZATIONS = ("-Os", "-O2")


@dataclass(frozen=True)
class Footprint:
    """What the model's object file takes on one core, from the linker map."""

    text: int
    rodata: int
    data: int
    bss: int
    stack: int  # deepest stack of one denselab_predict call, measured under QEMU

    @property
    def flash_bytes(self) -> int:
        return self.text + self.rodata + self.data

    @property
    def ram_bytes(self) -> int:
        return self.data + self.bss + self.stack


@dataclass(frozen=True)
class EmulatorRun:
    outputs: np.ndarray  # int8, (images, classes)
    instructions: np.ndarray  # per inference, from SysTick (its resolution: machine.instructions_per_tick)
    stack_bytes: int
    first_class: int  # denselab_classify of the first image
    machine: Machine  # the QEMU machine that ran it


def emulated_memory(core: str = CORTEX_M4.name) -> dict[str, int]:
    """Bytes of flash and RAM ("FLASH", "RAM") of the largest machine that emulates `core`."""
    machine = largest_machine(core)
    return {"FLASH": machine.flash_bytes, "RAM": machine.ram_bytes}


def most_embedded_images(model_flash_bytes: int, core: str = CORTEX_M4.name) -> int:
    """How many test images the firmware's flash holds beside a C runtime of `model_flash_bytes`."""
    free = emulated_memory(core)["FLASH"] - model_flash_bytes - FIRMWARE_FLASH_BYTES
    return max(0, free // (IMAGE_SIDE * IMAGE_SIDE))


def check_embedded_images(images: int, model_flash_bytes: int) -> None:
    """BadInput, before anything is built, when `images` test images and the model overflow the flash of
    the emulator of any core the C runtime is checked on."""
    core = min(ARM_CORES, key=lambda name: emulated_memory(name)["FLASH"])
    limit, machine = most_embedded_images(model_flash_bytes, core), largest_machine(core).name
    flash = f"{emulated_memory(core)['FLASH'] // 1024:,} KB of flash"
    if limit < 1:
        raise BadInput(f"the model's C runtime ({model_flash_bytes:,} bytes) leaves no room for a test image in "
                       f"the emulated {machine}'s {flash}; export it with --no-check")
    if images > limit:
        raise BadInput(f"--qemu-images {images} is more than the emulated {machine}'s {flash} holds "
                       f"beside this model: at most {limit:,}")


def firmware_main(pixels: np.ndarray, machine: Machine) -> str:
    """main.c of the QEMU firmware: `pixels` (n, 784) uint8 embedded, each classified and timed."""
    rows = ",\n".join("  {" + ",".join(str(int(value)) for value in row) + "}" for row in pixels)
    return f"""/* denselab's check under QEMU {machine.name}: outputs and SysTick counts over semihosting. */
#include <stdio.h>
#include "denselab_model.h"

#define DL_IMAGES {len(pixels)}
#define DL_PAINT 0xA5A5A5A5u
#define DL_PAINTED {machine.painted_stack_bytes}u
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)

static const uint8_t dl_images[DL_IMAGES][DENSELAB_INPUT_SIZE] = {{
{rows}
}};

int main(void) {{
  static int8_t input[DENSELAB_INPUT_SIZE];
  int8_t output[DENSELAB_CLASSES];
  uint32_t sp, start, end;
  volatile uint32_t *word, *bottom;
  int k, c;
  /* Paint the free stack below this frame; what denselab_predict overwrites, it used. */
  __asm volatile("mov %0, sp" : "=r"(sp));
  bottom = (volatile uint32_t *)(sp - DL_PAINTED);
  for (word = bottom; word < (volatile uint32_t *)sp; ++word) *word = DL_PAINT;
  denselab_quantize(dl_images[0], input);
  denselab_predict(input, output);
  for (word = bottom; word < (volatile uint32_t *)sp && *word == DL_PAINT; ++word) {{
  }}
  printf("stack %lu%s\\n", (unsigned long)(sp - (uint32_t)word), word == bottom ? " overflowed" : "");
  k = denselab_classify(dl_images[0]);
  printf("classify %d %s\\n", k, denselab_class_names[k]);
  SYST_RVR = 0xFFFFFFu; /* SysTick on the core clock, counting down, no interrupt */
  SYST_CVR = 0;
  SYST_CSR = 5;
  for (k = 0; k < DL_IMAGES; ++k) {{
    denselab_quantize(dl_images[k], input);
    start = SYST_CVR;
    denselab_predict(input, output);
    end = SYST_CVR;
    printf("image %d ticks %lu:", k, (unsigned long)((start - end) & 0xFFFFFFu));
    for (c = 0; c < DENSELAB_CLASSES; ++c) printf(" %d", output[c]);
    printf("\\n");
  }}
  return 0;
}}
"""


def build_firmware(sources: Path, pixels: np.ndarray, folder: Path, core: Core = CORTEX_M4,
                   optimization: str = "-Os") -> tuple[Path, Path, Machine]:
    """Compile the model and a firmware main for `core`; the ELF, the linker map, and the machine it is for.

    `optimization` ("-Os" or "-O2") follows the C runtime's flags, whose own -Os it overrides
    (GCC obeys the last -O); "-Os" leaves the commands as they are.
    """
    if optimization not in OPTIMIZATIONS:
        raise BadInput(f"unknown C runtime optimization {optimization!r}; choose one of {', '.join(OPTIMIZATIONS)}")
    extra = () if optimization == "-Os" else (optimization,)
    compiler, flags = toolchain.find("arm-none-eabi-gcc"), (*toolchain.c_runtime_flags(core), *extra)
    (folder / "startup.c").write_text(board_file("startup.c"))
    objects = []
    for source in (sources / SOURCE, folder / "startup.c"):
        target = folder / (source.stem + ".o")
        toolchain.compile_c([compiler, *flags, f"-I{sources}", "-c", str(source), "-o", str(target)],
                            f"{source.name} for the {core.name}")
        objects.append(target)
    elf, map_file = folder / "firmware.elf", folder / "firmware.map"

    def link(machine: Machine) -> None:
        # main() paints as much stack as the machine's RAM allows, so it is built per machine.
        (folder / "firmware.c").write_text(firmware_main(pixels, machine))
        (folder / LINKER_SCRIPT).write_text(linker_script(machine))
        toolchain.compile_c([compiler, *flags, f"-I{sources}", "-c", str(folder / "firmware.c"), "-o",
                             str(folder / "firmware.o")], f"firmware.c for the {core.name}")
        toolchain.compile_c([compiler, *flags, "--specs=rdimon.specs", "-nostartfiles",
                             f"-T{folder / LINKER_SCRIPT}", f"-Wl,-Map={map_file}", "-Wl,--gc-sections",
                             *map(str, objects), str(folder / "firmware.o"), "-o", str(elf)],
                            f"the {core.name} firmware for {machine.name}")

    machine, _ = link_for(core.name, link)
    return elf, map_file, machine


def section_sizes(map_text: str, object_name: str) -> dict[str, int]:
    """Bytes that `object_name` contributes to .text, .rodata, .data and .bss in a GNU ld map."""
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for kind, size, owner in placed_sections(map_text):
        if Path(owner).name == object_name and kind in sizes:
            sizes[kind] += size
    return sizes


def run_on_qemu(elf: Path, images: int, machine: Machine) -> EmulatorRun:
    """Run the firmware under qemu-system-arm and read back its outputs, SysTick counts and stack depth."""
    printed = run_under_qemu(elf, "the firmware", machine)
    stack = re.search(r"^stack (\d+)( overflowed)?$", printed, re.MULTILINE)
    classified = re.search(r"^classify (\d+) ", printed, re.MULTILINE)
    lines = re.findall(r"^image (\d+) ticks (\d+):((?: -?\d+)+)$", printed, re.MULTILINE)
    if stack is None or stack.group(2) or classified is None or len(lines) != images:
        raise RuntimeError(f"unexpected firmware output under QEMU:\n{printed[-2000:]}")
    outputs = np.array([[int(value) for value in values.split()] for _, _, values in lines], np.int8)
    ticks = np.array([int(count) for _, count, _ in lines], np.int64)
    return EmulatorRun(outputs, instructions(ticks, machine), int(stack.group(1)), int(classified.group(1)), machine)


def check_on_core(sources: Path, pixels: np.ndarray, core: Core = CORTEX_M4,
                  optimization: str = "-Os") -> tuple[Footprint, EmulatorRun]:
    """Build for `core` at `optimization` (see build_firmware), measure the model's flash and RAM, and
    run `pixels` on an emulator of that core."""
    if len(pixels) < 1:
        raise BadInput(f"the {core.name} check needs at least one image")
    with tempfile.TemporaryDirectory(prefix=f"denselab-{core.name}-") as folder:
        elf, map_file, machine = build_firmware(sources, pixels, Path(folder), core, optimization)
        sizes = section_sizes(map_file.read_text(), Path(SOURCE).with_suffix(".o").name)
        run = run_on_qemu(elf, len(pixels), machine)
    return Footprint(**sizes, stack=run.stack_bytes), run
