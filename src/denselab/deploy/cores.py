"""The CPU cores of boards.toml's boards: how each is built for, and what checks it here.

Every board names its core. A 32-bit Arm core is built with its own flags
(denselab.deploy.toolchain.ARM_CORES) and checked under QEMU on a machine of that core
(denselab.deploy.qemu.EMULATORS), with both runtimes. The AVR of the Arduino Uno runs only the
C runtime (TFLM needs a 32-bit core), built with Debian's Arduino core and run under simavr.
The ESP32's Xtensa has neither a compiler nor an emulator in Debian: its figures are the
Cortex-M4's, and everything that shows its fit says it was not checked here.
"""

from dataclasses import dataclass

from denselab.deploy.qemu import EMULATORS, MACHINES


@dataclass(frozen=True)
class CoreInfo:
    name: str
    title: str  # how text names it: "Cortex-M0+"
    description: str
    emulator: str | None  # what runs its code here; None where nothing does
    tflm: bool  # whether TensorFlow Lite Micro runs on it (it needs a 32-bit core)
    figures_of: str  # the core whose measured figures stand for it ("" for its own)

    @property
    def checked(self) -> bool:
        return self.emulator is not None

    @property
    def note(self) -> str:
        """What a fit on this core rests on, in a few words."""
        if not self.checked:
            return "not checked here (no Xtensa toolchain)"
        return f"checked on {self.emulator}"


def _qemu(core: str) -> str:
    machines = [MACHINES[name] for name in EMULATORS[core]]
    text = f"QEMU {machines[0].name} ({machines[0].cpu})"
    if len(machines) > 1:
        text += f", or {machines[1].name} ({machines[1].cpu}) when too large for it"
    return text


CORES = {core.name: core for core in (
    CoreInfo("cortex-m0plus", "Cortex-M0+", "Arm Cortex-M0+ (ARMv6-M)", _qemu("cortex-m0plus"), True, ""),
    CoreInfo("cortex-m4", "Cortex-M4", "Arm Cortex-M4F (ARMv7E-M)", _qemu("cortex-m4"), True, ""),
    CoreInfo("cortex-m7", "Cortex-M7", "Arm Cortex-M7F (ARMv7E-M)", _qemu("cortex-m7"), True, ""),
    CoreInfo("avr", "AVR", "AVR (8-bit, ATmega328P)", "simavr (atmega328p at 16 MHz)", False, ""),
    CoreInfo("xtensa-lx6", "Xtensa LX6", "Xtensa LX6", None, True, "cortex-m4"),
)}


def core_info(name: str) -> CoreInfo:
    if name not in CORES:
        raise ValueError(f"boards.toml names an unknown core {name!r}; known: {', '.join(CORES)}")
    return CORES[name]


def measured_core(name: str) -> str:
    """The core whose measured figures a board of core `name` uses: its own, or a stand-in's."""
    return core_info(name).figures_of or name
