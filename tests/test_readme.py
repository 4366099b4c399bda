"""The README's terminal examples as tests: every ```text block that starts with "$ " runs here.

Each such block is a terminal session. Its "$ " lines (a trailing backslash continues a command)
run with bash, one after another, in one scratch folder shared by the whole README, so the
train example makes runs/exercise/ for the examples after it. What a command prints (stdout and
stderr together) must match the lines the README shows under it, with these allowances:

- numbers may differ (seeds, timings and machines differ): any number matches any number;
- spacing and line breaks may differ, and so may the length of a table border or a probability bar;
- a line "…" in the README stands for any output.

The scratch folder holds what the examples take as given: a copy of README.md, the tanh model of
the error example, a photo (test image 0, dark on light, 280x280), and a Dense(512) -> Dense(512)
model at the path the study gives it. A
command ending in "&" runs in the background until its block is done. A `cat FILE` of a file
that is not there yet first writes it from the lines the README shows, as a reader would. A trailing comment
"# without the ARM compiler" runs the command with a PATH that lacks arm-none-eabi-gcc. Paths
under the temporary home directory are printed as "~/…", as they read on a user's machine.

Every command's output, the server's included, must also be free of other libraries' log lines,
and its tables must fit the 80 columns it runs in.
The ```sh blocks are set-up and cluster recipes, checked otherwise (SH_BLOCKS below).
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import third_party_log_marks, wait_until_serving
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
REPEATED_MARK = re.compile(r"([─━═])\1+")
BARS = re.compile(r"[█▏▎▍▌▋▊▉]+")  # a probability drawn as a bar: a number in another form
# Whether TFLM's int8 outputs equal LiteRT's reference kernels is a measurement of the trained
# model, like its accuracy: a retrained 512 -> 512 can land a near-tie on the other side of a
# rounding step (the README says so). The C runtime's and the firmware's verdicts are not
# measurements of the model, so a "different" there still fails.
TFLM_VERDICT = re.compile(r"outputs (?:identical to|different from) LiteRT's reference kernels")
BASH = shutil.which("bash")
DEEPER_MODEL = "runs/models/exercise/deeper/seed0-….keras"
WITHOUT_ARM_COMPILER = "# without the ARM compiler"

# Each ```sh block, by its first line, and how it is checked instead of being run here.
SH_BLOCKS = {
    "make run    # set-up (a few minutes the first time), then the exercise's study (~3 minutes on 2 cores)":
        "the set-up and the study: CI runs `make test` on a fresh clone; the study's code runs in test_explore",
    "make run    # creates .venv, installs the pinned dependencies, installs what is missing of":
        "the set-up itself: CI runs `make test` on a fresh clone with an empty HOME",
    "# on the head node: make the token (~/.ray/auth_token), then start the head":
        "the Ray cluster fixture (tests/conftest.py) takes these steps; test_ray_steps_are_the_fixtures",
    "denselab search --target nano33ble                 # a board of boards.toml":
        "tests/test_search.py runs the search on a board and on --flash/--ram budgets, on a slice",
    "denselab search --target nano33ble --teacher cnn --epochs-max 120":
        "tests/test_teacher.py runs a search with --teacher cnn end to end on a slice, locally and on Ray",
    "pip install denselab                 # train, evaluate, predict":
        "tests/test_extras.py: the extras of pyproject.toml, and the core with none of them installed",
    "denselab export runs/exercise/model.keras --runtime c --arduino --out export-c":
        "tests/test_arduino.py: test_export_arduino_end_to_end_on_the_terminal runs this export of the exercise's model",
}


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Session:
    line: int  # where the block starts in README.md
    commands: list[Command]


def fenced_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, fence info, body lines) of every fenced block."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        if lines[index].startswith("```"):
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            blocks.append((index + 1, lines[index][3:].strip(), lines[index + 1:end]))
            index = end
        index += 1
    return blocks


def sessions(text: str) -> list[Session]:
    found = []
    for line, info, body in fenced_blocks(text):
        if info != "text" or not body or not body[0].startswith("$ "):
            continue
        commands, position = [], 0
        while position < len(body):
            if body[position].startswith("$ "):
                command = body[position][2:]
                while command.endswith("\\"):
                    position += 1
                    command += "\n" + body[position]
                commands.append(Command(command))
            else:
                commands[-1].expected.append(body[position])
            position += 1
        found.append(Session(line, commands))
    return found


def normalized(text: str) -> str:
    text = " ".join(REPEATED_MARK.sub(r"\1", BARS.sub(" ", NUMBER.sub("0", text))).split())
    return TFLM_VERDICT.sub("outputs compared with LiteRT's reference kernels", text)


def matches(expected: list[str], actual: str) -> bool:
    """Whether `actual` reads as `expected`, numbers, spacing and "…" lines allowed to vary."""
    segments, current = [], []
    for line in expected:
        if line.strip() == "…":
            segments.append(current)
            current = []
        else:
            current.append(line)
    segments.append(current)
    # A "…" line becomes a wildcard between the segments around it.
    pattern = ".*?".join(re.escape(normalized("\n".join(segment))) for segment in segments)
    return re.fullmatch(pattern, normalized(actual), re.DOTALL) is not None


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, fashion, tanh_int8_model):
    from denselab.model.run_dir import save_model
    from denselab.model.spec import ModelSpec
    from denselab.training.config import TrainConfig
    from denselab.training.fit import train

    folder = tmp_path_factory.mktemp("readme")
    shutil.copy(README, folder / "README.md")
    shutil.copy(tanh_int8_model, folder / "tanh_int8.tflite")
    # The built-in study's `deeper` run of seed 0: the exercise's training of 512 -> 512 with seed 0.
    deeper = folder / DEEPER_MODEL
    deeper.parent.mkdir(parents=True)
    save_model(train(ModelSpec((512, 512)), fashion, TrainConfig(seed=0)).model, deeper)
    # "Your own photo": test image 0 (an ankle boot) as a phone would show it, dark on a light background.
    boot = Image.fromarray(255 - fashion.test_images[0]).resize((280, 280), Image.Resampling.BILINEAR)
    boot.save(folder / "photo.png")
    home = tmp_path_factory.mktemp("home")
    # A user's environment: Keras's folder is the one in the (temporary) home, as it is by default.
    environment = {name: value for name, value in os.environ.items() if name != "KERAS_HOME"}
    environment |= {"HOME": str(home), "COLUMNS": "80",
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return folder, environment


def without_arm_compiler(folder: Path, environment: dict) -> dict:
    tools = folder / "tools-without-arm-gcc"
    tools.mkdir(exist_ok=True)
    for program in ("denselab", "cc", "qemu-system-arm"):
        if not (tools / program).exists():
            os.symlink(shutil.which(program, path=environment["PATH"]), tools / program)
    return {**environment, "PATH": str(tools)}


def wait_for_server(command: str) -> None:
    wait_until_serving(int(re.search(r"--port (\d+)", command).group(1)), command)


def run_session(session: Session, folder: Path, environment: dict) -> None:
    background = []
    try:
        for command in session.commands:
            text = command.text.strip()
            shown = re.fullmatch(r"cat ([\w.-]+)", text)
            if shown and not (folder / shown.group(1)).exists():
                (folder / shown.group(1)).write_text("\n".join(command.expected) + "\n")
            env = without_arm_compiler(folder, environment) if text.endswith(WITHOUT_ARM_COMPILER) else environment
            if text.endswith("&"):
                log = open(folder / f"background-{len(background)}.log", "w+")
                background.append((subprocess.Popen([BASH, "-c", text[:-1]], cwd=folder, env=env, start_new_session=True,
                                                    stdout=log, stderr=subprocess.STDOUT), log, text))
                wait_for_server(text)
                continue
            result = subprocess.run([BASH, "-c", text], cwd=folder, env=env, timeout=900,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            printed = result.stdout.replace(environment["HOME"], "~")
            assert matches(command.expected, printed), (
                f"README.md line {session.line}: `{text}` printed\n{printed}\nwhere the README shows\n"
                + "\n".join(command.expected))
            assert_no_log_lines(text, printed)
            tables = [line for line in printed.splitlines() if any(mark in line for mark in "│┃─━")]
            assert all(len(line.rstrip()) <= 80 for line in tables), f"`{text}` printed a table wider than 80 columns"
    finally:
        for process, log, text in background:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
            log.seek(0)
            assert_no_log_lines(text, log.read())
            log.close()


def assert_no_log_lines(command: str, printed: str) -> None:
    """No line of TensorFlow's, absl's, LiteRT's, JAX's or Python's warnings reaches the user's terminal."""
    marks = third_party_log_marks(printed)
    assert not marks, f"`{command}` printed another library's log lines ({marks}):\n{printed[-3000:]}"


SESSIONS = sessions(README.read_text())


@pytest.mark.parametrize("session", SESSIONS, ids=[f"line{session.line}" for session in SESSIONS])
def test_readme_session(session, scratch):
    folder, environment = scratch
    run_session(session, folder, environment)


# Printed between the README's Python blocks, to cut what they print into each block's part.
BLOCK_MARK = "--- next README block ---"


def python_blocks(text: str) -> list[tuple[int, list[str], list[str] | None]]:
    """(line, code, expected output) of each ```python block; the output is the ```text block right after it."""
    blocks = fenced_blocks(text)
    found = []
    for index, (line, info, body) in enumerate(blocks):
        if info == "python":
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            # Right after: its fence opens on the line after this block's closing fence.
            adjacent = following and following[1] == "text" and following[0] == line + len(body) + 2 \
                and not following[2][0].startswith("$ ")
            found.append((line, body, following[2] if adjacent else None))
    return found


def test_readme_python_blocks(scratch):
    """The "From Python" section: its blocks run in order in one interpreter, and print what it shows."""
    folder, environment = scratch
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3
    program = f"\nprint({BLOCK_MARK!r})\n".join("\n".join(code) for _, code, _ in blocks)
    result = subprocess.run([sys.executable, "-c", program], cwd=folder, env=environment, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_log_lines("the README's Python blocks", result.stdout + result.stderr)
    for (line, _, expected), printed in zip(blocks, result.stdout.split(BLOCK_MARK + "\n"), strict=True):
        if expected is not None:
            assert matches(expected, printed), f"README line {line} shows\n{chr(10).join(expected)}\nbut printed\n{printed}"


def test_every_shell_block_is_run_or_checked_elsewhere():
    text = README.read_text()
    sh_blocks = [body[0] for _, info, body in fenced_blocks(text) if info == "sh"]
    assert sorted(sh_blocks) == sorted(SH_BLOCKS)
    # the first five minutes (a quick study, your photo, the page), a study with a mistake, train,
    # evaluate, predict twice, export twice, serve, info, bad input
    assert len(SESSIONS) >= 13


def test_ray_steps_are_the_fixtures():
    """The README's Ray recipe names the commands the cluster fixture runs (tests/conftest.py)."""
    fixture = (Path(__file__).parent / "conftest.py").read_text()
    recipe = next(body for _, info, body in fenced_blocks(README.read_text()) if info == "sh" and "ray" in body[0])
    for line in recipe:
        if line.startswith("#") or not line.strip():
            continue
        for word in ("get-auth-token", "--generate", "--head", "--port=", "RAY_AUTH_MODE", "--address="):
            if word in line:
                assert word in fixture, f"README's `{line}` has {word}, the cluster fixture does not"


# --- the matcher itself ---------------------------------------------------------------------

def test_matcher_lets_numbers_and_spacing_vary_and_nothing_else():
    expected = ["test accuracy 0.8525, test loss 0.4161", "│ 1     │ 0.5824 │"]
    assert matches(expected, "test accuracy 0.91, test\nloss 12\n│ 1 │ 0.5 │")
    assert not matches(expected, "test accuracy 0.91, train loss 12\n│ 1 │ 0.5 │")
    assert not matches(expected, "test accuracy 0.91, test loss 12\n│ 1 │ 0.5 │\nextra line")
    assert matches(["first", "…", "last 3"], "first\nanything at all\nlast 4")
    assert not matches(["first", "…", "last"], "first\nanything")
    assert matches(["━━━━━┳━━", "│ Sandal │ 0.03 │ █ │"], "━━┳━━━━━━━━\n│ Sandal │ 0.0001 │   │")


def test_matcher_lets_tflms_verdict_on_a_retrained_model_vary_and_no_other():
    shown = ["TensorFlow Lite Micro: 1000 test images, accuracy 0.8720, outputs identical to",
             "LiteRT's reference kernels; smallest arena 14,424 bytes"]
    assert matches(shown, "TensorFlow Lite Micro: 1000 test images, accuracy 0.8790, outputs different from\n"
                          "LiteRT's reference kernels; smallest arena 14,424 bytes")
    assert not matches(shown, "TensorFlow Lite Micro: 1000 test images, accuracy 0.8790, outputs different from\n"
                              "TFLM's; smallest arena 14,424 bytes")
    c_runtime = ["int8 outputs identical to TFLM's"]
    assert not matches(c_runtime, "int8 outputs different from TFLM's")
