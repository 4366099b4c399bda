"""The programs the C runtime's checks need, found on PATH or named in a one-line error.

Each is a Debian package that `scripts/system-packages.sh c-runtime` installs.
"""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from denselab.errors import BadInput

# program -> the Debian packages that provide it (and what it needs to link programs)
PACKAGES = {
    "cc": "gcc",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
}


@dataclass(frozen=True)
class Core:
    """A CPU core and the compiler flags that select it (and its floating-point unit); every
    object and every link of a firmware for it takes them."""

    name: str
    flags: tuple[str, ...]


# The cores of boards.toml's Arm boards. The Cortex-M0+ (ARMv6-M) has no FPU, no DSP
# instructions and no 32x32->64 multiply; the STM32F746's Cortex-M7 has a single-precision FPU.
CORTEX_M0PLUS = Core("cortex-m0plus", ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"))
CORTEX_M4 = Core("cortex-m4", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"))
CORTEX_M7 = Core("cortex-m7", ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"))
ARM_CORES = {core.name: core for core in (CORTEX_M0PLUS, CORTEX_M4, CORTEX_M7)}

HOST_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
# denselab's C runtime and its firmware, for any core (after the core's own flags).
C_RUNTIME_FLAGS = ("-Os", "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections")


def c_runtime_flags(core: Core) -> tuple[str, ...]:
    return (*core.flags, *C_RUNTIME_FLAGS)


def find(program: str) -> str:
    """The path of `program`, or BadInput saying which package to install."""
    path = shutil.which(program)
    if path is None:
        raise BadInput(f"{program} not found: install Debian's {PACKAGES[program]} "
                       "(scripts/system-packages.sh c-runtime does it)")
    return path


def arm_tool(name: str) -> str:
    """arm-none-eabi-<name> (size, nm), installed beside the compiler."""
    return str(Path(find("arm-none-eabi-gcc")).with_name(f"arm-none-eabi-{name}"))


def compile_c(command: list[str], what: str) -> None:
    """Run a compiler; a failure is a denselab bug (the sources are generated), so it raises with the log."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building {what} failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")
