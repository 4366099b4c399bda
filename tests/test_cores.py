"""Each board's core: its flags, the QEMU machine that emulates it, and that machine's SysTick
calibrated against a loop of known length (the instruction counts of every firmware check rest on it).

Real arm-none-eabi-gcc and qemu-system-arm; the reference is the loop's own instruction count.
"""

import re

import pytest

from denselab.deploy import toolchain
from denselab.deploy.boards import load_boards
from denselab.deploy.cores import CORES
from denselab.deploy.qemu import EMULATORS, MACHINES, board_file, linker_script, run_under_qemu

# Two instructions per pass (subs, bne) and nothing else: on every core QEMU counts one
# instruction each under -icount shift=0, so N passes are 2N instructions.
CALIBRATION = r"""
#include <stdint.h>
#include <stdio.h>
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
int main(void) {
  uint32_t passes = PASSES, start, end;
  SYST_RVR = 0xFFFFFFu;
  SYST_CVR = 0;
  SYST_CSR = 5;
  start = SYST_CVR;
  __asm volatile(".syntax unified\n1: subs %0, %0, #1\n bne 1b" : "+r"(passes));
  end = SYST_CVR;
  printf("ticks %lu\n", (unsigned long)((start - end) & 0xFFFFFFu));
  return 0;
}
"""


def ticks_for(passes: int, core: toolchain.Core, machine, folder) -> int:
    (folder / "startup.c").write_text(board_file("startup.c"))
    (folder / "main.c").write_text(CALIBRATION.replace("PASSES", str(passes)))
    (folder / "firmware.ld").write_text(linker_script(machine))
    elf = folder / "calibration.elf"
    toolchain.compile_c([toolchain.find("arm-none-eabi-gcc"), *core.flags, "-O2", "--specs=rdimon.specs",
                         "-nostartfiles", f"-T{folder / 'firmware.ld'}", str(folder / "startup.c"),
                         str(folder / "main.c"), "-o", str(elf)], "the calibration loop")
    return int(re.search(r"^ticks (\d+)$", run_under_qemu(elf, "the calibration loop", machine), re.MULTILINE)[1])


@pytest.mark.parametrize("core, machine", [(core, machine) for core, machines in EMULATORS.items()
                                           for machine in machines])
def test_each_machines_systick_counts_instructions_as_calibrated(core, machine, tmp_path):
    machine = MACHINES[machine]
    counts = {}
    for passes in (100_000, 400_000):
        folder = tmp_path / str(passes)
        folder.mkdir()
        counts[passes] = ticks_for(passes, toolchain.ARM_CORES[core], machine, folder) * machine.instructions_per_tick
    # The difference cancels the few instructions around the loop: 600,000 instructions, to one tick.
    assert abs(counts[400_000] - counts[100_000] - 600_000) <= 2 * machine.instructions_per_tick
    assert abs(counts[100_000] - 200_000) <= 8 * machine.instructions_per_tick


def test_every_board_names_a_core_and_says_what_checks_it():
    boards = load_boards()
    for board in boards.values():
        info = CORES[board.core]
        assert info.checked == (board.core != "xtensa-lx6")
        assert board.check_note == (f"checked on {info.emulator}" if info.checked
                                    else "not checked here (no Xtensa toolchain)")
    # Every 32-bit Arm core has its flags and an emulator; the Uno's AVR runs no TFLM.
    assert {board.core for board in boards.values()} - {"avr", "xtensa-lx6"} == set(toolchain.ARM_CORES) == \
        set(EMULATORS)
    assert not CORES["avr"].tflm and boards["esp32"].measured_core == "cortex-m4"
    assert "-mcpu=cortex-m0plus" in toolchain.CORTEX_M0PLUS.flags and "-mfloat-abi=soft" in toolchain.CORTEX_M0PLUS.flags
