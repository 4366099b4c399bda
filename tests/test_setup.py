"""The set-up's steps (scripts/step.sh, used by the Makefile and scripts/system-packages.sh):
one line a step on the terminal, the step's whole output in build/setup-logs/NAME.log, and on
failure a one-line error naming the step, the log's end and its path, within 80 columns."""

import re
import shutil
import subprocess
from pathlib import Path

STEP = Path(__file__).resolve().parents[1] / "scripts" / "step.sh"


def run_step(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """scripts/step.sh ARGS, from a copy in tmp_path, so its logs go to tmp_path/build/."""
    (tmp_path / "scripts").mkdir(exist_ok=True)
    shutil.copy(STEP, tmp_path / "scripts" / "step.sh")
    return subprocess.run(
        ["bash", "scripts/step.sh", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_a_step_prints_one_line_and_logs_all(tmp_path):
    done = run_step(tmp_path, "demo", "saying hello", "sh", "-c", "echo hi; echo there >&2")
    assert done.returncode == 0
    assert re.fullmatch(r"saying hello \.\.\. done in \d+ s\n", done.stdout)
    assert done.stderr == ""
    log = (tmp_path / "build" / "setup-logs" / "demo.log").read_text()
    assert log.splitlines() == ["$ sh -c echo hi; echo there >&2", "hi", "there"]


def test_a_failing_step_names_itself_its_log_and_the_cause(tmp_path):
    failed = run_step(
        tmp_path, "demo", "installing things: a b", "sh", "-c",
        "for i in $(seq 1 30); do echo line $i; done; echo the cause >&2; exit 3",
    )
    assert failed.returncode == 3
    assert re.fullmatch(r"installing things: a b \.\.\. failed after \d+ s\n", failed.stdout)
    lines = failed.stderr.splitlines()
    assert lines[0] == "error: installing things failed (exit status 3); its log ends with:"
    assert lines[1:-1] == [f"    line {i}" for i in range(17, 31)] + ["    the cause"]
    assert lines[-1] == "the whole log: build/setup-logs/demo.log"


def test_long_lines_fit_80_columns(tmp_path):
    packages = " ".join(f"package-number-{i}" for i in range(12))
    long_line = "x " * 100
    failed = run_step(
        tmp_path, "demo", f"installing Debian packages: {packages}", "sh", "-c",
        f"echo '{long_line}'; false",
    )
    assert failed.returncode == 1
    printed = (failed.stdout + failed.stderr).splitlines()
    assert all(len(line) <= 80 for line in printed), printed
    # Every package is still named, and the step's line ends with its outcome.
    assert all(f"package-number-{i}" in failed.stdout for i in range(12))
    assert re.search(r"package-number-11 \.\.\. failed after \d+ s\n$", failed.stdout)
    assert "    x x x" in failed.stderr
