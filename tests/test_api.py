"""The Python API: each object passes on as it is, against the CLI's own results as reference."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_STUDY, denselab, unused_port, wait_until_serving

import denselab as dl
from denselab.model.predict import DensePredictor
from denselab.model.run_dir import load_trained_model


def test_import_is_cheap_and_no_function_shadows_a_module():
    # `import denselab` loads no Keras, JAX, matplotlib or SciPy: a notebook pays on first use.
    code = ("import sys, denselab; heavy = {'keras', 'jax', 'matplotlib', 'scipy', 'tensorflow'} & set(sys.modules); "
            "print(sorted(heavy))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    import pkgutil

    # Importing denselab.X sets the package's attribute X to the module, hiding a function X.
    modules = {info.name for info in pkgutil.iter_modules(dl.__path__)}
    assert {"api", "data", "model", "training", "deploy"} <= modules
    assert not modules & set(dl.__all__), "a public name is also a module's name"
    for name in dl.__all__:
        assert getattr(dl, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        dl.trian


def test_a_run_is_evaluated_predicted_and_saved_without_files(fashion, tmp_path):
    small = fashion.subset(train=3000, test=500)
    run = dl.train((20,), small, dl.TrainConfig(epochs=1, seed=3))
    # The reference: the numbers train computed itself, and Keras's own predict.
    evaluation = dl.evaluate(run, small)
    assert evaluation == run.evaluation
    probabilities = dl.predict(run, small.test_images[:5])
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    keras_probabilities = run.model.predict(small.test_images[:5] / 255.0, verbose=0)
    np.testing.assert_allclose(probabilities, keras_probabilities, atol=1e-5)
    np.testing.assert_allclose(dl.predict(run, small.test_images[0]), probabilities[:1], atol=1e-7)
    folder = run.save(tmp_path / "run")
    # The saved run gives the same answers, by folder, by file and loaded.
    for model in (folder, folder / "model.keras", str(folder), load_trained_model(folder / "model.keras")):
        np.testing.assert_allclose(dl.predict(model, small.test_images[:5]), probabilities, atol=1e-6)
        assert dl.evaluate(model, small).test_accuracy == evaluation.test_accuracy
    assert dl.class_names(run)[9] == "Ankle boot"


def test_predict_reads_image_files_and_refuses_bad_shapes(trained_dir, fashion, tmp_path):
    from PIL import Image

    path = tmp_path / "shoe.png"
    Image.fromarray(fashion.test_images[0]).save(path)
    reference = DensePredictor.from_keras(load_trained_model(trained_dir / "model.keras").model)
    np.testing.assert_allclose(dl.predict(trained_dir, path), reference.probabilities(fashion.test_images[:1]),
                               atol=1e-6)
    assert dl.predict(trained_dir, [path, path]).shape == (2, 10)
    with pytest.raises(dl.BadInput, match=r"images must have shape \(n, 28, 28\) or \(28, 28\), got \(3, 784\)"):
        dl.predict(trained_dir, np.zeros((3, 784), dtype=np.uint8))
    with pytest.raises(dl.BadInput, match="nowhere.keras does not exist"):
        dl.evaluate(tmp_path / "nowhere.keras")
    with pytest.raises(dl.BadInput, match="is a directory, not a model file"):  # a folder without model.keras
        dl.predict(tmp_path, fashion.test_images[0])


def test_export_of_a_run_equals_the_cli_export_of_its_saved_model(fashion, tmp_path):
    run = dl.train((16,), fashion.subset(train=2000, test=300), dl.TrainConfig(epochs=1, seed=5))
    options = dl.ExportOptions(target="nano33ble", tflm_images=50)
    report = dl.export(run, options, tmp_path / "from-python", data=fashion)
    run.save(tmp_path / "saved")
    cli = denselab("export", tmp_path / "saved" / "model.keras", "--target", "nano33ble", "--tflm-images", "50",
                   "--out", tmp_path / "from-cli", "--json")
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    got = report.as_dict()
    for key in ("model", "tflm", "macs", "boards_that_fit", "target"):
        assert got[key] == expected[key], key
    assert [row["size_bytes"] for row in got["exports"]] == [row["size_bytes"] for row in expected["exports"]]
    assert report.boards_that_fit == expected["boards_that_fit"]
    assert [Path(path).parent for path in report.files] == [tmp_path / "from-python"]


def test_options_refuse_bad_values_with_the_cli_messages(trained_dir, tmp_path):
    cases = {
        "--calibration must be >= 1, got 0": dict(calibration=0),
        "unknown runtime 'arduino'; choose tflm or c": dict(runtime="arduino"),
        "unknown target 'leonardo'": dict(target="leonardo"),
        "--target, --c-array and --runtime c need the int8 export": dict(quantize="float16", c_array=True),
    }
    for message, options in cases.items():
        with pytest.raises(dl.BadInput, match=message.replace("(", r"\(")):
            dl.ExportOptions(**options)
        flags = [f"--{key.replace('_', '-')}" + ("" if value is True else f"={value}") for key, value in options.items()]
        result = denselab("export", trained_dir / "model.keras", *flags, "--out", tmp_path / "x")
        assert result.returncode == 2 and message in result.stderr
    with pytest.raises(dl.BadInput, match="give `out`"):
        dl.export(dl.train((8,), dl.load_dataset().subset(train=500, test=100), dl.TrainConfig(epochs=1, seed=0)))


def test_explore_runs_a_study_file_and_answers_its_question(fashion_slice_dir, tmp_path):
    study_file = tmp_path / "small.toml"
    study_file.write_text(SMALL_STUDY)
    runner = dl.Runner(db=tmp_path / "runs.sqlite", models_dir=tmp_path / "models")
    started = []
    result = dl.explore(study_file, out=tmp_path / "report", runner=runner, data_dir=fashion_slice_dir,
                        on_start=started.append)
    assert [study.name for study in started] == ["small"]
    assert (result.trained, result.reused, result.failed) == (4, 0, [])
    assert len(result.answers) == 1 and result.answers[0].startswith("Doubling the neurons")
    assert (tmp_path / "report" / "report.html").is_file()
    assert result.best_model.is_file()
    # The CLI reads the same store and report: nothing is trained again, and its JSON is the result's.
    cli = denselab("explore", "--study", study_file, "--db", runner.db, "--models-dir", runner.models_dir,
                   "--out", tmp_path / "report", "--data-dir", fashion_slice_dir, "--json")
    assert cli.returncode == 0, cli.stderr
    again = json.loads(cli.stdout)
    assert (again["runs_trained"], again["runs_reused"]) == (0, 4)
    assert again["findings"][0]["answer"] == result.answers[0]
    assert again["variants"] == result.as_dict()["variants"]
    # The store reads back as `denselab runs list` and `runs show` print it.
    stored = dl.stored_runs("small", db=runner.db)
    assert sorted((run["variant"], run["seed"]) for run in stored) == sorted((run["variant"], run["seed"])
                                                                             for run in result.runs)
    shown = denselab("runs", "show", str(stored[0]["id"]), "--db", runner.db, "--json")
    assert json.loads(shown.stdout) == json.loads(json.dumps(dl.stored_run(stored[0]["id"], db=runner.db)))
    with pytest.raises(dl.BadInput, match="nowhere.sqlite does not exist"):
        dl.stored_runs(db=tmp_path / "nowhere.sqlite")


def test_info_is_what_the_cli_prints():
    assert dl.info() == json.loads(denselab("info", "--json").stdout)


def test_serve_model_serves_what_the_cli_serves(trained_dir):
    port = unused_port()
    code = f"import denselab; denselab.serve_model({str(trained_dir / 'model.keras')!r}, port={port})"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(port, "serve_model", process=process)
        import httpx

        model = httpx.get(f"http://127.0.0.1:{port}/model").json()
        assert model["path"] == str(trained_dir / "model.keras") and model["format"] == "keras"
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/" in output
