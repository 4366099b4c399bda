"""The programs and files the Uno check needs, found or named in a one-line error.

Each comes from a Debian package that `scripts/system-packages.sh arduino` installs.
"""

import shutil
from pathlib import Path

from denselab.errors import BadInput

# program or file -> the Debian packages that provide it
PACKAGES = {
    "avr-gcc": "gcc-avr avr-libc",
    "simavr": "simavr",
    "arduino-builder": "arduino-builder arduino-ctags",
    "arduino-ctags": "arduino-ctags",
}
AVR_CORE = Path("/usr/share/arduino/hardware/arduino/avr/boards.txt")
AVR_CORE_PACKAGE = "arduino-core-avr"


def _missing(what: str, package: str) -> BadInput:
    return BadInput(f"{what} not found: install Debian's {package} (scripts/system-packages.sh arduino does it)")


def find(program: str) -> str:
    """The path of `program`, or BadInput saying which package to install."""
    path = shutil.which(program)
    if path is None:
        raise _missing(program, PACKAGES[program])
    return path


def check_arduino_tools() -> None:
    """BadInput naming the package of the first program or core that is missing."""
    for program in PACKAGES:
        find(program)
    if not AVR_CORE.is_file():
        raise _missing(f"the Arduino AVR core ({AVR_CORE.parent})", AVR_CORE_PACKAGE)
