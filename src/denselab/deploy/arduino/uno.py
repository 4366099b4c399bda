"""The Arduino library's example on an Arduino Uno: built with arduino-builder and Debian's AVR
core, run under simavr's emulated ATmega328P.

arduino-builder keeps its build and core cache where it is told (a temporary folder here), so
it runs with an empty or read-only home. simavr prints the sketch's serial output (on stderr
for simavr 1.6, on stdout for others: both are read) with colour escapes and a "." for each
carriage return; it exits when the sketch sleeps with interrupts off, as the example does.
"""

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.deploy.arduino.sketch import DONE, EXAMPLE_NAME
from denselab.deploy.arduino.tools import find
from denselab.deploy.boards import board

FQBN = "arduino:avr:uno"
SIMAVR_TIMEOUT_S = 120
# Where Debian's packages put the core, arduino-builder's own platform.txt (without it the
# build stops: "ctags pattern is missing") and its tools.
HARDWARE = ("/usr/share/arduino-builder", "/usr/share/arduino/hardware")
TOOLS = "/usr/share/arduino-builder"
# Debian's avr-gcc 5.4 has no DECIMAL_DIG in C++, which the core's WString.cpp needs.
EXTRA_FLAGS = "-prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=17"

_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_IMAGE_LINE = re.compile(r"^image (\d+): (.*) \(class (\d+), true (\d+)\), (\d+) cycles = (\d+) us, "
                         r"outputs((?: -?\d+)+)$")
_STACK_LINE = re.compile(r"^stack (\d+) bytes$")


@dataclass(frozen=True)
class UnoBuild:
    elf: Path
    flash_bytes: int  # "Sketch uses N bytes": .text and .data
    ram_bytes: int  # "Global variables use N bytes": .data and .bss (the run measures the stack)


@dataclass(frozen=True)
class SketchRun:
    """What the example printed for each image, in order."""

    outputs: np.ndarray  # int8, (images, classes)
    classes: list[int]  # the class it printed as found
    labels: list[int]  # the true class it printed
    names: list[str]  # the class name it printed
    cycles: np.ndarray  # CPU cycles of each denselab_predict call
    stack_bytes: int  # the deepest the sketch's stack went from the top of RAM (painted RAM), interrupts included


def build_for_uno(library_dir: Path, build_dir: Path) -> UnoBuild:
    """Compile the library's examples/Classify sketch for the Uno in `build_dir`; its ELF, flash and RAM.

    The sketch and the library are generated, so a failed build is denselab's bug: RuntimeError
    with the end of arduino-builder's log.
    """
    builder = find("arduino-builder")
    find("avr-gcc")
    library_dir = Path(library_dir).resolve()
    sketch = library_dir / "examples" / EXAMPLE_NAME / f"{EXAMPLE_NAME}.ino"
    build_path, cache = build_dir / "build", build_dir / "cache"
    build_path.mkdir(parents=True, exist_ok=True)
    cache.mkdir(exist_ok=True)
    command = [builder, *(argument for folder in HARDWARE for argument in ("-hardware", folder)), "-tools", TOOLS,
               "-libraries", str(library_dir.parent), "-fqbn", FQBN, EXTRA_FLAGS, "-build-path", str(build_path),
               "-build-cache", str(cache), str(sketch)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=build_dir)
    log = result.stdout + result.stderr
    flash = re.search(r"Sketch uses (\d+) bytes", log)
    ram = re.search(r"Global variables use (\d+) bytes", log)
    elf = build_path / f"{sketch.name}.elf"
    if result.returncode != 0 or flash is None or ram is None or not elf.is_file():
        raise RuntimeError(f"building {sketch.name} for the Uno failed:\n{' '.join(command)}\n{log[-4000:]}")
    return UnoBuild(elf, int(flash.group(1)), int(ram.group(1)))


def parse_sketch_output(printed: str, images: int) -> SketchRun:
    """The example's lines in simavr's output (an AVR's: the stack line is printed there); ValueError
    unless every image's line, the stack line and "done" are there."""
    lines = [_ESCAPES.sub("", line).rstrip(". \r") for line in printed.splitlines()]
    found = [match for match in map(_IMAGE_LINE.match, lines) if match]
    if [int(match.group(1)) for match in found] != list(range(images)) or DONE not in lines:
        raise ValueError(f"expected {images} image lines and {DONE!r}, got:\n{printed[-2000:]}")
    outputs = [[int(value) for value in match.group(7).split()] for match in found]
    if len({len(row) for row in outputs}) != 1 or any(not -128 <= value <= 127 for row in outputs for value in row):
        raise ValueError(f"outputs of unequal length or outside int8:\n{printed[-2000:]}")
    stack = [int(match.group(1)) for match in map(_STACK_LINE.match, lines) if match]
    if len(stack) != 1:
        raise ValueError(f"expected one line 'stack N bytes', got:\n{printed[-2000:]}")
    return SketchRun(np.array(outputs, np.int8), [int(match.group(3)) for match in found],
                     [int(match.group(4)) for match in found], [match.group(2) for match in found],
                     np.array([int(match.group(5)) for match in found], np.int64), stack[0])


def run_under_simavr(elf: Path, images: int, timeout_s: int = SIMAVR_TIMEOUT_S) -> SketchRun:
    """Run the example's ELF on simavr's ATmega328P at 16 MHz and read back what it printed."""
    simavr = find("simavr")
    command = [simavr, "-m", "atmega328p", "-f", str(board("uno").clock_hz), str(elf)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired as expired:
        raise RuntimeError(f"the sketch did not finish under simavr in {timeout_s} s:\n"
                           f"{_text(expired.stderr)[-2000:]}") from None
    try:
        return parse_sketch_output(result.stdout + "\n" + result.stderr, images)
    except ValueError as error:
        raise RuntimeError(f"unexpected output of the sketch under simavr (exit {result.returncode}): {error}") \
            from None


def _text(output) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


def check_on_uno(library_dir: Path, images: int) -> tuple[int, int, SketchRun]:
    """Build the example for the Uno and run it under simavr in a temporary folder: flash, RAM, the run."""
    with tempfile.TemporaryDirectory(prefix="denselab-uno-") as folder:
        build = build_for_uno(library_dir, Path(folder))
        return build.flash_bytes, build.ram_bytes, run_under_simavr(build.elf, images)
