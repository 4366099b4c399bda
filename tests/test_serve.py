"""The HTTP API against the app (FastAPI's TestClient), every bad input included, and `denselab
serve` itself: a real uvicorn on loopback, and the start-ups that fail."""

import io
import shutil
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import assert_one_line_error, denselab, unused_port, wait_until_serving
from denselab.errors import BadInput
from denselab.model.run_dir import load_trained_model
from denselab.serve.app import create_app
from denselab.serve.inputs import MAX_BATCH


def png(pixels: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def predictor(trained_dir):
    return load_trained_model(trained_dir / "model.keras").predictor()


def test_health_model_and_openapi(client):
    assert client.get("/health").json() == {"status": "ok"}
    model = client.get("/model").json()
    assert model["format"] == "keras" and model["layer_sizes"] == [784, 20, 10] and model["parameters"] == 15910
    assert model["classes"][9] == "Ankle boot" and 0.5 < model["test_accuracy"] < 1
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_predict_png_equals_the_predictor(client, predictor, fashion):
    response = client.post("/predict", content=png(fashion.test_images[0]), headers={"content-type": "image/png"})
    assert response.status_code == 200
    answer = response.json()
    expected = predictor.probabilities(fashion.test_images[0])
    assert list(answer["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-6)
    assert answer["top_class"] == max(answer["probabilities"], key=answer["probabilities"].get)
    assert answer["input"] == fashion.test_images[0].tolist() and answer["latency_ms"] >= 0


def test_predict_json_pixels_and_multipart(client, fashion):
    by_json = client.post("/predict", json={"pixels": fashion.test_images[1].tolist()}).json()
    upload = {"file": ("photo.png", png(255 - fashion.test_images[1], "RGB"), "image/png")}
    by_file = client.post("/predict", files=upload).json()
    assert by_json["top_class"] == by_file["top_class"] == "Pullover"


def test_batch(client, predictor, fashion):
    inputs = [{"pixels": image.tolist()} for image in fashion.test_images[:5]]
    predictions = client.post("/predict/batch", json={"inputs": inputs}).json()["predictions"]
    tops = predictor.probabilities(fashion.test_images[:5]).argmax(axis=1)
    names = client.get("/model").json()["classes"]
    assert [p["top_class"] for p in predictions] == [names[i] for i in tops]
    too_many = client.post("/predict/batch", json={"inputs": inputs[:1] * (MAX_BATCH + 1)})
    assert too_many.status_code == 400 and "at most 256" in too_many.json()["error"]


def test_batch_of_files_under_one_field_name(client, predictor, fashion):
    # As `curl -F file=@a.png -F file=@b.png` sends them: each file is an image, none is dropped.
    files = [("file", (f"{i}.png", png(fashion.test_images[i]), "image/png")) for i in range(3)]
    predictions = client.post("/predict/batch", files=files).json()["predictions"]
    names = client.get("/model").json()["classes"]
    assert [p["top_class"] for p in predictions] == \
        [names[i] for i in predictor.probabilities(fashion.test_images[:3]).argmax(axis=1)]
    too_many = client.post("/predict/batch", files=files[:1] * (MAX_BATCH + 1))
    assert too_many.status_code == 400 and "at most 256 files" in too_many.json()["error"]


def test_random_test_image(client, fashion):
    answer = client.get("/random-test-image").json()
    assert np.array_equal(fashion.test_images[answer["index"]], answer["pixels"])
    assert answer["true_label"] in client.get("/model").json()["classes"]


def huge_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_REQUESTS = [
    ("not an image", {"content": b"hello there", "headers": {"content-type": "image/png"}}, 400, "not an image"),
    ("truncated", {"content": None, "headers": {"content-type": "image/png"}}, 400, "damaged image"),
    ("over 5 MB", {"content": b"\x89PNG" + bytes(5 * 1024 * 1024), "headers": {"content-type": "image/png"}}, 413, "over the limit"),
    ("over 4096x4096", {"content": huge_png(4097, 16), "headers": {"content-type": "image/png"}}, 413, "4097x16"),
    ("wrong shape", {"json": {"pixels": [[0] * 28] * 27}}, 400, "shape [27, 28]"),
    ("values over 255", {"json": {"pixels": [[300] * 28] * 28}}, 400, "outside 0-255"),
    ("negative values", {"json": {"pixels": [[-1] * 28] * 28}}, 400, "outside 0-255"),
    ("not numbers", {"json": {"pixels": [["a"] * 28] * 28}}, 400, "28 rows of 28 numbers"),
    ("no pixels", {"json": {"image": []}}, 400, "needs \"pixels\""),
    ("wrong content type", {"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "text/plain"),
    ("empty body", {"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty request body"),
    ("broken JSON", {"content": b"{", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    # Found by tests/test_fuzz.py: each was a 500, or a 400 without {"error": ...}.
    ("number past float64", {"content": b'{"pixels": [[1' + b"0" * 400 + b"]]}", "headers": {"content-type": "application/json"}},
     400, "outside 0-255"),
    ("number of 4301 digits", {"content": b'{"pixels": ' + b"9" * 4301 + b"}", "headers": {"content-type": "application/json"}},
     400, "not valid JSON"),
    ("JSON nested too deeply", {"content": b"[" * 100000 + b"]" * 100000, "headers": {"content-type": "application/json"}},
     400, "not valid JSON"),
    ("multipart without boundary", {"content": b"x", "headers": {"content-type": "multipart/form-data"}}, 400, "boundary"),
]


@pytest.mark.parametrize("name, request_args, status, fragment", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_inputs_get_a_4xx_with_a_json_error(client, fashion, name, request_args, status, fragment):
    if name == "truncated":
        data = png(np.tile(fashion.test_images[0], (8, 8)))
        request_args = {**request_args, "content": data[: len(data) // 2]}
    response = client.post("/predict", **request_args)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    # ...and the server keeps serving.
    assert client.post("/predict", json={"pixels": fashion.test_images[0].tolist()}).status_code == 200


def test_concurrent_requests(client, fashion):
    def one(index):
        return client.post("/predict", json={"pixels": fashion.test_images[index].tolist()}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(64))) == {200}


@pytest.fixture(scope="module")
def int8_file(trained_dir, fashion, tmp_path_factory):
    """The trained model as an int8 .tflite, alone in its folder (no metrics.json beside it)."""
    from denselab.deploy.tflite import calibration_images, convert

    trained = load_trained_model(trained_dir / "model.keras")
    path = tmp_path_factory.mktemp("int8") / "model_int8.tflite"
    path.write_bytes(convert(trained.model, "int8", calibration_images(fashion)))
    return path


def test_serves_an_int8_tflite_model(int8_file, fashion, predictor):
    tflite_client = TestClient(create_app(int8_file))
    model = tflite_client.get("/model").json()
    assert model["format"] == "tflite" and model["input_type"] == "int8"
    images = fashion.test_images[:20]
    answers = [tflite_client.post("/predict", json={"pixels": image.tolist()}).json() for image in images]
    agree = np.mean([a["top_class"] == model["classes"][i] for a, i in
                     zip(answers, predictor.probabilities(images).argmax(axis=1))])
    assert agree >= 0.9


def test_not_a_model(tmp_path):
    (tmp_path / "model.tflite").write_bytes(b"junk")
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "notes.keras").write_text("not a zip")
    (tmp_path / "folder.keras").mkdir()
    for name, message in [("model.tflite", "is not a TensorFlow Lite model"), ("absent.keras", "does not exist"),
                          ("empty.tflite", "empty.tflite is empty, not a model file"),
                          ("notes.keras", "notes.keras is not a Keras model file (not a zip archive)"),
                          ("folder.keras", "folder.keras is a directory, not a model file")]:
        with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
            create_app(tmp_path / name)


def test_what_lies_beside_a_tflite_model_is_checked(int8_file, tmp_path):
    """metrics.json beside an export says what its inputs are; a damaged one, or a bad override, is refused."""
    shutil.copy(int8_file, tmp_path / "model_int8.tflite")
    (tmp_path / "metrics.json").write_text("{damaged")
    with pytest.raises(BadInput, match="metrics.json is not valid JSON"):
        create_app(tmp_path / "model_int8.tflite")
    (tmp_path / "metrics.json").write_text('{"normalization": "none"}')
    assert create_app(tmp_path / "model_int8.tflite")  # what a run's metrics.json says
    with pytest.raises(BadInput, match="unknown normalization 'zscore'"):
        create_app(tmp_path / "model_int8.tflite", normalization="zscore")
    with pytest.raises(BadInput, match="is not a directory"):
        create_app(tmp_path / "model_int8.tflite", data_dir=tmp_path / "metrics.json")


# --- `denselab serve`: the real server, and start-ups that fail in one line ---------------------

def test_a_port_in_use_is_one_line_and_the_first_server_keeps_serving(trained_dir):
    port = unused_port()
    command = [sys.executable, "-m", "denselab", "serve", str(trained_dir / "model.keras"), "--port", str(port)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(port, "denselab serve", process=first)
        second = denselab("serve", trained_dir / "model.keras", "--port", port)
        assert_one_line_error(second, f"cannot listen on 127.0.0.1:{port}: the port is already in use")
        assert "ERROR" not in second.stdout + second.stderr and "serving" not in second.stdout  # uvicorn's own line
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
    finally:
        first.terminate()
        stdout, stderr = first.communicate(timeout=30)
    assert stdout.splitlines()[0].endswith(f"on http://127.0.0.1:{port}/") and stderr == ""


@pytest.mark.parametrize("args, fragments", [
    (["--host", "no-such-host.invalid"], ["cannot listen on no-such-host.invalid:", "does not resolve"]),
    (["--host", "203.0.113.7"], ["cannot listen on 203.0.113.7:", "not an address of this machine"]),  # TEST-NET-3
    (["--host", ""], ["--host '' is not an address"]),
    (["--host", "local\nhost"], ["--host 'local\\nhost' is not an address"]),
    (["--port", "0"], ["--port 0 is not a port number"]),
    (["--port", "65536"], ["--port 65536 is not a port number"]),
    (["--port", "x"], ["--port"]),
])
def test_a_start_up_that_fails_is_one_line(trained_dir, args, fragments):
    result = denselab("serve", trained_dir / "model.keras", "--port", unused_port(), *args)
    assert_one_line_error(result, *fragments)
    assert "ERROR" not in result.stdout + result.stderr


def test_serve_refuses_a_directory_and_a_file_that_is_not_a_model(tmp_path):
    (tmp_path / "README.md").write_text("# not a model")
    assert_one_line_error(denselab("serve", tmp_path), f"{tmp_path} is a directory, not a model file")
    assert_one_line_error(denselab("serve", tmp_path / "README.md"), "README.md is not a Keras model file")
