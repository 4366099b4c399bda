"""A small study end to end, and resuming one that was killed with SIGKILL mid-run."""

import base64
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import stored_runs
from denselab.study.run import run_study
from denselab.study.findings import answer_questions, seconds_cell, summarize_variants, table_notes
from denselab.reports.study import build_report, summary_rows, write_report
from denselab.runs.engine import train_runs
from denselab.runs.store import RunStore
from denselab.study.file import parse_study
from conftest import assert_fits_80_columns, assert_no_third_party_logs, assert_one_line_error, denselab
from conftest import SMALL_STUDY


@pytest.fixture(scope="module")
def small_study_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "small.toml"
    path.write_text(SMALL_STUDY)
    return path


def explore_args(study_file, data_dir, root, *extra):
    return ["explore", "--study", study_file, "--data-dir", data_dir, "--db", root / "runs.sqlite",
            "--out", root / "report", "--models-dir", root / "models", *extra]


@pytest.fixture(scope="module")
def explored(small_study_file, fashion_slice_dir, tmp_path_factory):
    """`denselab explore --json` of 2 variants x 2 seeds x 1 epoch on a slice of the real data."""
    root = tmp_path_factory.mktemp("explored")
    result = denselab(*explore_args(small_study_file, fashion_slice_dir, root, "--json"))
    assert result.returncode == 0, result.stderr
    return root, json.loads(result.stdout)


def test_every_run_is_stored(explored):
    root, summary = explored
    runs = stored_runs(root / "runs.sqlite")
    assert [(run["variant"], run["seed"], run["status"]) for run in runs] == [
        ("narrow", 0, "finished"), ("narrow", 1, "finished"), ("wide", 0, "finished"), ("wide", 1, "finished"),
    ]
    for run in runs:
        assert os.path.isfile(run["model_path"]) and 0.5 < run["test_accuracy"] < 1
        assert len(json.loads(run["history"])) == 1 and json.loads(run["config"])["seed"] == run["seed"]
    assert summary["runs_trained"] == 4 and summary["runs_reused"] == 0


def test_findings_are_computed_from_the_stored_numbers(explored):
    root, summary = explored
    runs = stored_runs(root / "runs.sqlite")
    mean = {name: sum(r["test_accuracy"] for r in runs if r["variant"] == name) / 2 for name in ("narrow", "wide")}
    [finding] = summary["findings"]
    assert finding["accuracy_difference"]["estimate"] == pytest.approx(mean["wide"] - mean["narrow"])
    table = {variant["name"]: variant for variant in summary["variants"]}
    assert table["wide"]["test_accuracy"]["mean"] == pytest.approx(mean["wide"])
    report = (root / "report" / "report.md").read_text()
    assert f"{(mean['wide'] - mean['narrow']) * 100:+.2f} pp" in report


def test_both_sides_of_a_question_train_the_same_way_and_each_run_times_its_own_work(explored, fashion, tmp_path):
    """narrow (15,880 MACs) is under the side-by-side threshold on a CPU and wide (31,760) is
    over it; the question compares their times, so the study trains both the same way."""
    from denselab.training.loop import grouping_pays

    root, summary = explored
    runs = stored_runs(root / "runs.sqlite")
    executions = {run["variant"]: json.loads(run["execution"]) for run in runs}
    assert executions["narrow"] == executions["wide"]
    [finding] = summary["findings"]
    assert finding["execution"] == executions["wide"] and finding["times_not_compared_because"] is None
    assert finding["train_seconds_difference"] is not None and finding["compute_ratio"] == pytest.approx(2.0)
    if executions["wide"]["mode"] == "alone":  # a CPU: the case this test is about
        assert grouping_pays(15_880) and not grouping_pays(31_760)
    # Alone in a study, without the question, narrow's seeds share one program, and each run
    # records its own share of that program's time.
    study = parse_study(SMALL_STUDY.split("[[questions]]")[0], "alone.toml")
    study = replace(study, variants=study.variants[:1])
    with RunStore(tmp_path / "runs.sqlite") as store:
        outcome = run_study(study, store, tmp_path / "models", {"fashion-mnist": fashion.subset(train=2000, test=300)})
    assert [run["execution"] for run in outcome.runs] == [{"mode": "side by side", "seeds": 2, "device": "cpu"}] * 2
    for run in outcome.runs:
        [record] = run["history"]
        assert record["seconds"] == pytest.approx(record["group_seconds"] / 2)
        assert run["seconds_per_epoch"] == pytest.approx(record["seconds"])
    # The tables mark such times, and say what the mark means.
    [narrow] = summarize_variants(study, outcome.runs)
    assert seconds_cell(narrow).endswith("*") and summary_rows([narrow])[0][6].endswith("*")
    assert "* seeds trained side by side: s/epoch is the group's time ÷ 2" in table_notes([narrow])


def test_report_answers_first_and_names_each_comparison_once(explored):
    root, summary = explored
    lines = (root / "report" / "report.md").read_text().splitlines()
    sections = [line for line in lines if line.startswith("## ")]
    assert sections[:2] == ["## Answers", "## Findings"]
    first_bullet = next(line for line in lines if line.startswith("- "))
    assert first_bullet == f"- {summary['findings'][0]['answer']}"
    question = summary["findings"][0]["question"]
    headings = [line for line in lines if line.startswith("**") and question in line]
    assert headings == [f"**{question}**"]
    html = (root / "report" / "report.html").read_text()
    assert html.index("<h2>Answers</h2>") < html.index("<h2>Findings</h2>") < html.index("<h2>Variants")


def test_report_files_with_embedded_images(explored):
    root, _ = explored
    html = (root / "report" / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 7  # the answers' forest plot and six figures
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "http://" not in html and "https://" not in html  # opens offline
    markdown = (root / "report" / "report.md").read_text()
    for name in re.findall(r"\(figures/([\w-]+\.png)\)", markdown):
        assert (root / "report" / "figures" / name).read_bytes().startswith(b"\x89PNG")
    assert "| narrow | 15,910 |" in markdown


def test_report_names_the_boards_each_variant_fits_with_the_c_runtime(explored, fashion):
    from denselab.deploy.boards import boards_that_fit_c

    root, _ = explored
    lines = (root / "report" / "report.md").read_text().splitlines()
    boards = lines[lines.index("## Boards"):]
    header = next(line for line in boards if line.startswith("| variant |")).strip("| ").split(" | ")
    narrow = next(line for line in boards if line.startswith("| narrow |")).strip("| ").split(" | ")
    c_marks = {board: mark.split()[1] for board, mark in zip(header[2:], narrow[2:], strict=True)}
    fits = boards_that_fit_c((20,), fashion.class_names, 28 * 28 + 10)
    assert c_marks == {board: "✓" if board in fits else "–" for board in header[2:]}
    assert c_marks["samd21"] == "✓"


def test_terminal_output_fits_80_columns_and_ends_with_next_steps(explored, small_study_file, fashion_slice_dir):
    """The same study again (every run reused), as a person sees it in an 80-column terminal."""
    root, summary = explored
    result = denselab(*explore_args(small_study_file, fashion_slice_dir, root), env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    table_end = next(i for i, line in enumerate(lines) if line.startswith("mean ± std over seeds"))
    assert all(len(line) <= 80 for line in lines[:table_end + 1]), "\n".join(lines[:table_end + 1])
    wide = next(v for v in summary["variants"] if v["name"] == "wide")["test_accuracy"]
    row = next(line for line in lines if line.strip().startswith("wide "))
    assert f"{wide['mean']:.3f}±{wide['std']:.3f}" in row and "…" not in row  # mean ± std on one line, not cut
    model_line = next(line for line in lines if line.strip().startswith("MODEL="))
    assert Path(model_line.strip().removeprefix("MODEL=")).is_file()
    for command in ("denselab predict $MODEL", "denselab serve $MODEL", "denselab export $MODEL --runtime c",
                    "denselab search --target"):
        assert any(line.strip().startswith(command) for line in lines[-10:]), command


def test_second_run_reuses_everything(explored, small_study_file, fashion_slice_dir):
    root, _ = explored
    before = stored_runs(root / "runs.sqlite")
    result = denselab(*explore_args(small_study_file, fashion_slice_dir, root, "--json"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["runs_trained"] == 0
    assert stored_runs(root / "runs.sqlite") == before


def test_runs_commands(explored):
    root, _ = explored
    db = root / "runs.sqlite"
    listed = json.loads(denselab("runs", "list", "--db", db, "--json").stdout)
    assert len(listed) == 4 and {run["status"] for run in listed} == {"finished"}
    shown = json.loads(denselab("runs", "show", str(listed[0]["id"]), "--db", db, "--json").stdout)
    assert shown["history"][0]["epoch"] == 1
    ids = [str(run["id"]) for run in listed[:3:2]]
    compared = json.loads(denselab("runs", "compare", *ids, "--db", db, "--json").stdout)
    assert compared["differing_settings"]["hidden_units"] == [[20], [40]]
    assert denselab("runs", "show", "999", "--db", db).returncode == 2
    assert denselab("runs", "list", "--db", root / "absent.sqlite").returncode == 2
    table = denselab("runs", "list", "--db", db, env={"COLUMNS": "80"})
    assert table.returncode == 0 and "narrow" in table.stdout
    assert_fits_80_columns(table.stdout)
    assert_no_third_party_logs(table)
    fields = denselab("runs", "show", str(listed[0]["id"]), "--db", db, env={"COLUMNS": "80"})
    assert fields.returncode == 0 and "model_path" in fields.stdout
    execution = json.loads(stored_runs(db)[0]["execution"])
    label = "alone on cpu" if execution["mode"] == "alone" else f"side by side with {execution['seeds']} seeds on cpu"
    assert re.search(rf"^execution +{label}$", fields.stdout, re.M)
    # A field and its value per line, never split across lines (the terminal wraps a long value);
    # then the history table, in 80 columns.
    fields_part, history = fields.stdout.split("history", 1)
    assert all(re.match(r"[a-z0-9_.]+ {2}", line) for line in fields_part.splitlines() if line.strip())
    assert_fits_80_columns(history)


def test_resume_after_sigkill_mid_run(small_study_file, fashion_slice_dir, tmp_path):
    args = explore_args(small_study_file, fashion_slice_dir, tmp_path / "killed", "--epochs", "2")
    db = tmp_path / "killed" / "runs.sqlite"
    process = subprocess.Popen([sys.executable, "-m", "denselab", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it once one run has finished and the next one is training.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            statuses = [run["status"] for run in stored_runs(db)]
        except sqlite3.OperationalError:  # not created yet, or its schema is being written
            statuses = []
        if "finished" in statuses and "running" in statuses:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the study never reached its second run")
    process.send_signal(signal.SIGKILL)  # a 'running' row: the kill lands inside a run
    process.wait()
    interrupted = stored_runs(db)
    finished_before = [run for run in interrupted if run["status"] == "finished"]
    assert 1 <= len(finished_before) < 4 and any(run["status"] == "running" for run in interrupted)

    resumed = denselab(*args, "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["runs_reused"] == len(finished_before)
    assert summary["runs_trained"] == 4 - len(finished_before)
    final = stored_runs(db)
    assert len(final) == 4 and {run["status"] for run in final} == {"finished"}
    for run in finished_before:  # kept as they were: not trained again
        assert next(r for r in final if r["id"] == run["id"]) == run

    fresh_args = explore_args(small_study_file, fashion_slice_dir, tmp_path / "fresh", "--epochs", "2", "--json")
    uninterrupted = json.loads(denselab(*fresh_args).stdout)
    # The final table equals that of an uninterrupted study (timings aside, which differ run to run).
    for resumed_row, fresh_row in zip(summary["variants"], uninterrupted["variants"], strict=True):
        for metric in ("train_accuracy", "test_accuracy", "test_loss", "epochs_run"):
            assert resumed_row[metric] == fresh_row[metric], (resumed_row["name"], metric)


def test_a_failing_run_is_recorded_and_the_others_finish(fashion, tmp_path):
    """The library path the CLI uses. The fault is injected: no real variant fails on demand."""

    def task_failing_wide(variant, dataset, seeds, on_progress=None):
        if variant.spec.hidden_units == (40,):
            raise RuntimeError("injected fault")
        return train_runs(variant, dataset, seeds, on_progress)

    study = parse_study(SMALL_STUDY, "x.toml")
    small = fashion.subset(train=2000, test=300)
    with RunStore(tmp_path / "runs.sqlite") as store:
        outcome = run_study(study, store, tmp_path / "models", {"fashion-mnist": small}, task=task_failing_wide)
        assert {run["status"] for run in store.runs() if run["variant"] == "wide"} == {"failed"}
    assert outcome.trained == 2 and [run["variant"] for run in outcome.failed] == ["wide", "wide"]
    assert "RuntimeError: injected fault" in outcome.failed[0]["error"]
    assert not (tmp_path / "models" / "small" / "wide").exists()  # no partial model left behind
    report = build_report(study, outcome.runs, small, outcome.failed)
    assert report.findings == answer_questions(study, outcome.runs)
    write_report(report, tmp_path / "report")
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize("old, new, expected", [
    ("epochs = 1", "epochs = 1\nepoch = 3", ":9: unknown key 'epoch' in [defaults]"),
    ("hidden = [40]", 'hidden = "forty"', ":16: 'hidden' must be a list of integers"),
    ('name = "wide"\n', "", ":14: variant 2 has no 'name'"),
    ('name = "wide"', 'name = "narrow"', ":15: duplicate variant name 'narrow'"),
])
def test_bad_study_files_exit_2_naming_line_and_key(tmp_path, old, new, expected):
    path = tmp_path / "bad.toml"
    path.write_text(SMALL_STUDY.replace(old, new, 1))
    result = denselab("explore", "--study", path, "--db", tmp_path / "runs.sqlite", "--out", tmp_path / "report")
    assert_one_line_error(result, f"{path}{expected}")
    assert not (tmp_path / "runs.sqlite").exists() and not (tmp_path / "report").exists()


def test_a_models_dir_that_is_a_file_is_refused_before_any_run(small_study_file, fashion_slice_dir, tmp_path):
    (tmp_path / "models").write_text("notes")
    result = denselab(*explore_args(small_study_file, fashion_slice_dir, tmp_path))
    assert_one_line_error(result, f"models directory {tmp_path / 'models'} is a file; choose another --models-dir")
    assert not (tmp_path / "runs.sqlite").exists() and (tmp_path / "models").read_text() == "notes"
