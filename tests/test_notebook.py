"""examples/exercise.ipynb, run top to bottom on a real Jupyter kernel, and what it prints."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
from conftest import third_party_log_marks
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "exercise.ipynb"
BUILTIN_STUDY = Path(__file__).resolve().parents[1] / "src" / "denselab" / "study" / "studies" / "exercise.toml"


def printed(cell) -> str:
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def cell_with(notebook, code: str):
    return next(cell for cell in notebook.cells if cell.cell_type == "code" and code in cell.source)


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after a real kernel ran it, in a scratch folder (its runs and report land there)."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    folder = tmp_path_factory.mktemp("notebook")
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return notebook, folder


def test_the_exercise_prints_a_probability_vector(executed):
    notebook, _ = executed
    output = printed(cell_with(notebook, "print(classifications[0])"))
    vector = re.search(r"\[([^\]]*)\]", output).group(1)
    probabilities = [float(value) for value in vector.split()]
    assert len(probabilities) == 10
    assert sum(probabilities) == pytest.approx(1, abs=1e-4)
    assert "9 Ankle boot" in output


def test_the_questions_and_the_callback_are_answered(executed):
    notebook, _ = executed
    accuracies = re.findall(r"test accuracy (0\.\d{4})", printed(cell_with(notebook, "wider = denselab.train")))
    assert len(accuracies) == 4
    callback = printed(cell_with(notebook, "stop_at_accuracy=0.86"))
    epochs = [(int(epoch), float(accuracy)) for epoch, accuracy in re.findall(r"epoch (\d+): accuracy ([\d.]+)", callback)]
    # The callback's rule: it stops at the first epoch from 2 on whose accuracy passed 0.86.
    last_epoch, last_accuracy = epochs[-1]
    assert last_epoch == 10 or (last_epoch >= 2 and last_accuracy > 0.86)
    assert all(accuracy <= 0.86 for epoch, accuracy in epochs[1:-1])
    assert f"stopped after {last_epoch} of 10 epochs" in callback


def test_the_study_answers_every_question_and_the_best_model_is_exported(executed):
    notebook, folder = executed
    answers = [line[2:] for line in printed(cell_with(notebook, "denselab.explore(")).splitlines()
               if line.startswith("- ")]
    questions = [question["question"] for question in tomllib.loads(BUILTIN_STUDY.read_text())["questions"]]
    assert len(answers) == len(questions)
    for question, answer in zip(questions, answers):
        assert answer.startswith(question), (question, answer)
    assert (folder / "reports" / "explore" / "report.html").is_file()
    export = printed(cell_with(notebook, "denselab.export("))
    assert re.search(r"Arduino Nano 33 BLE[^:]*: fits", export) and "fits with TFLM: " in export


def test_no_other_library_logs_into_the_notebook(executed):
    notebook, _ = executed
    for cell in notebook.cells:
        if cell.cell_type == "code":
            text = "".join(output.get("text", "") for output in cell.outputs)
            assert not third_party_log_marks(text), (cell.source[:60], text[-2000:])
            assert not [output for output in cell.outputs if output.output_type == "error"]
