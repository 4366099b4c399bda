"""What every firmware check on an emulated Cortex-M core shares: QEMU's machines, linking for
one, running on it, and reading what each object file placed in the linker map.

Both the C runtime's firmware (denselab.deploy.c_runtime.cortex_m) and the TFLM program
(denselab.deploy.tflm_firmware) are built for a board's own core (toolchain.ARM_CORES) and run
under QEMU with semihosting (printf and exit reach the host) and `-icount shift=0`: one
instruction per nanosecond of virtual time. SysTick runs on each machine's system clock, so
ticks x (10^9 / that clock) counts instructions (not cycles, which QEMU does not model);
tests/test_cores.py calibrates it on each machine against a loop of known length.
"""

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

from denselab.deploy import toolchain

QEMU_TIMEOUT_SECONDS = 600
LINKER_SCRIPT = "firmware.ld"  # in board/, with each machine's memory filled in


@dataclass(frozen=True)
class Machine:
    """One of qemu-system-arm's boards, with the memory its firmware is linked for."""

    name: str  # qemu-system-arm -M NAME
    cpu: str  # the core QEMU emulates there
    flash_bytes: int  # code memory at 0
    ram_bytes: int  # data memory at 0x20000000
    systick_hz: int  # the clock of SysTick (its CLKSOURCE=1)

    @property
    def instructions_per_tick(self) -> float:
        return 1e9 / self.systick_hz

    @property
    def painted_stack_bytes(self) -> int:
        """How much free stack a firmware paints to measure a call's depth: a quarter of RAM, at most 64 KB."""
        return min(65_536, self.ram_bytes // 4)


MACHINES = {machine.name: machine for machine in (
    # The BBC micro:bit's nRF51822: 256 KB of flash, 16 KB of RAM, SysTick at 16 MHz (62.5 instructions a tick).
    Machine("microbit", "Cortex-M0", 256 * 1024, 16 * 1024, 16_000_000),
    # Arm's MPS2 FPGA images: 4 MB of code and 4 MB of data memory, SysTick at 25 MHz (40 a tick).
    Machine("mps2-an386", "Cortex-M4", 4 * 1024 * 1024, 4 * 1024 * 1024, 25_000_000),
    Machine("mps2-an500", "Cortex-M7", 4 * 1024 * 1024, 4 * 1024 * 1024, 25_000_000),
)}

# The machines that run each core's code, smallest first. A Cortex-M0+ (ARMv6-M) program runs
# on the micro:bit's Cortex-M0, and unchanged on the Cortex-M4, whose ARMv7E-M holds the
# ARMv6-M subset: that is where one too large for the micro:bit's memory runs.
EMULATORS = {
    "cortex-m0plus": ("microbit", "mps2-an386"),
    "cortex-m4": ("mps2-an386",),
    "cortex-m7": ("mps2-an500",),
}


def machines_for(core: str) -> tuple[Machine, ...]:
    return tuple(MACHINES[name] for name in EMULATORS[core])


def largest_machine(core: str) -> Machine:
    """The machine of `core` with the most flash: the limit of what can be checked for it."""
    return max(machines_for(core), key=lambda machine: machine.flash_bytes)


def board_file(name: str) -> str:
    """A file of the shared board layer (board/: start-up code, linker script, TFLM's Invoke hooks)."""
    return (resources.files("denselab.deploy") / "board" / name).read_text()


def linker_script(machine: Machine) -> str:
    return (board_file(LINKER_SCRIPT).replace("@FLASH_BYTES@", str(machine.flash_bytes))
            .replace("@RAM_BYTES@", str(machine.ram_bytes)))


Linked = TypeVar("Linked")


def link_for(core: str, link: Callable[[Machine], Linked]) -> tuple[Machine, Linked]:
    """`link(machine)` for the first machine of `core` whose memory holds the program.

    `link` writes linker_script(machine) and links; a program that overflows a region (the
    linker says so) is linked again for the next, larger machine.
    """
    machines = machines_for(core)
    for machine in machines[:-1]:
        try:
            return machine, link(machine)
        except RuntimeError as error:
            if "overflowed" not in str(error) and "will not fit" not in str(error):
                raise
    return machines[-1], link(machines[-1])


def run_under_qemu(elf: Path, what: str, machine: Machine) -> str:
    """Run `elf` on the emulated `machine` and return what it printed; RuntimeError naming `what` if it
    did not finish or exited with a nonzero status (99: the fault handler)."""
    command = [toolchain.find("qemu-system-arm"), "-M", machine.name, "-nographic", "-monitor", "none",
               "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=QEMU_TIMEOUT_SECONDS,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} did not finish under QEMU {machine.name} in {QEMU_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        raise RuntimeError(f"{what} exited with status {result.returncode} under QEMU {machine.name} "
                           f"(99: a fault):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def instructions(ticks, machine: Machine):
    """SysTick counts on `machine` as instructions, rounded to whole ones (ints or an int64 array)."""
    import numpy as np

    counted = np.rint(np.asarray(ticks, np.int64) * machine.instructions_per_tick).astype(np.int64)
    return counted if counted.ndim else int(counted)


# A line of the map's memory map that places an input section:
# " .text._ZN6tflite...   0x00000200   0x3d40 /tmp/x/libtflm.a(micro_interpreter.o)"
_PLACED = re.compile(r"^ (\.[\w.$+-]+|COMMON)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)$", re.MULTILINE)


def placed_sections(map_text: str) -> list[tuple[str, int, str]]:
    """(section kind, bytes, owner) of every nonempty input section a GNU ld map places.

    The kind is the output section's name ("text", "rodata", "data", "bss", "init_array", or
    "COMMON"); the owner is "archive(member)" or an object file's path.
    """
    placed = map_text[map_text.index("Linker script and memory map"):]
    placed = re.sub(r"^ (\.[\w.$+-]+)\n\s+", r" \1 ", placed, flags=re.MULTILINE)  # long names wrap
    found = []
    for name, size, owner in _PLACED.findall(placed):
        kind = "COMMON" if name == "COMMON" else name.lstrip(".").split(".")[0]
        if int(size, 16):
            found.append((kind, int(size, 16), owner))
    return found
