"""What every firmware check on the emulated Cortex-M4 shares: running it under QEMU, and
reading what each object file placed in the linker map.

Both the C runtime's firmware (denselab.deploy.c_runtime.cortex_m) and the TFLM program
(denselab.deploy.tflm_firmware) run on QEMU's mps2-an386 with semihosting (printf and exit
reach the host) and `-icount shift=0`: one instruction per nanosecond of virtual time, so the
board's 25 MHz SysTick advances once per 40 instructions and ticks x 40 counts instructions
(not cycles, which QEMU does not model).
"""

import re
import subprocess
from pathlib import Path

from denselab.deploy import toolchain

QEMU_MACHINE = "mps2-an386"
SYSTICK_HZ = 25_000_000  # the board's SYSCLK, which clocks SysTick
INSTRUCTIONS_PER_TICK = 1_000_000_000 // SYSTICK_HZ  # -icount shift=0: one instruction per ns
QEMU_TIMEOUT_SECONDS = 600


def run_under_qemu(elf: Path, what: str) -> str:
    """Run `elf` on the emulated board and return what it printed; RuntimeError naming `what` if it
    did not finish or exited with a nonzero status (99: the fault handler)."""
    command = [toolchain.find("qemu-system-arm"), "-M", QEMU_MACHINE, "-nographic", "-monitor", "none",
               "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=QEMU_TIMEOUT_SECONDS,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} did not finish under QEMU in {QEMU_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        raise RuntimeError(f"{what} exited with status {result.returncode} under QEMU "
                           f"(99: a fault):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


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
