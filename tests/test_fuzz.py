"""Fuzzing the parsers of outside input: IDX files, images, study files, /predict bodies, and more.

Each parser gets fully random input and mutations of a valid one (bytes flipped, cut or
added; lines, keys and values changed). The property is the README's promise for bad
input: a parser either succeeds or raises BadInput with a one-line message, and the
server answers 2xx, or 4xx with a JSON {"error": ...}, never 5xx. A crash found here is
fixed in the parser, and its input stays below as an @example.

DENSELAB_FUZZ_PROFILE picks the Hypothesis profile: "quick" (the default, for `make test`)
or "fuzz" (`make fuzz`, with --hypothesis-show-statistics to report the examples run).
"""

import gzip
import io
import json
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

from conftest import SMALL_STUDY, idx_bytes
from denselab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, SPLIT_FILES, load_split, parse_idx, read_idx_bytes
from denselab.data.images import image_bytes_to_pixels
from denselab.errors import BadInput
from denselab.study.file import builtin_study_path, load_study, parse_study

# "quick" tests the same examples on every run, so `make test` passes or fails repeatably;
# "fuzz" draws fresh ones each time to look further. Neither writes Hypothesis's example
# database into the repository (database=None); a failure prints its input instead.
settings.register_profile(
    "quick", max_examples=300, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile(os.environ.get("DENSELAB_FUZZ_PROFILE", "quick"))
# Even without a database Hypothesis keeps caches (Unicode tables, the constants of the
# code under test) in ./.hypothesis, and fills them while pytest collects the tests, before
# any fixture runs: a temporary folder, removed at exit, keeps them out of the repository.
HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="denselab-hypothesis-")
set_hypothesis_home_dir(HYPOTHESIS_HOME.name)

# Damaged files make Pillow warn (corrupt EXIF, tags past the end, a header claiming a
# huge size that the decoder then refuses); the property is about what is raised, so the
# warnings are noise here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]


def parses_or_bad_input(parse, *args):
    """Call `parse`; a BadInput must be one line. Any other exception fails the test."""
    try:
        return parse(*args)
    except BadInput as error:
        message = str(error)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        return None


# --- mutations of valid input ------------------------------------------------------------

INTERESTING_U32 = [0, 1, 27, 28, 29, 255, 256, 2**16, 2**31 - 1, 2**31, 2**32 - 1]


@st.composite
def mutated(draw, valid: st.SearchStrategy, header_size: int = 0) -> bytes:
    """Bytes drawn from `valid`, then changed by a few random edits.

    With `header_size`, half the edits fall in the header, where a parser makes its
    decisions: a flipped byte among the pixels tells little.
    """
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "extend", "field"]))
        end = len(data) if not header_size or draw(st.booleans()) else min(header_size, len(data))
        position = draw(st.integers(0, max(end - 1, 0)))
        if edit == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif edit == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif edit == "truncate":
            del data[position:]
        elif edit == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete":
            del data[position: position + draw(st.integers(1, 16))]
        elif edit == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
        elif edit == "field":
            # A whole 4-byte big-endian field (magic number or size) set to a telling value.
            value = draw(st.sampled_from(INTERESTING_U32) | st.integers(0, 2**32 - 1))
            start = position - position % 4
            data[start: start + 4] = value.to_bytes(4, "big")
    return bytes(data)


# --- the IDX reader ----------------------------------------------------------------------

MAGICS = st.sampled_from([IMAGES_MAGIC, LABELS_MAGIC])


@st.composite
def valid_idx(draw, magic: int | None = None, count: int | None = None) -> bytes:
    """A valid IDX file of up to 3 images or labels."""
    magic = draw(MAGICS) if magic is None else magic
    count = draw(st.integers(0, 3)) if count is None else count
    shape = (count, 28, 28) if magic == IMAGES_MAGIC else (count,)
    pixels = draw(st.binary(min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return idx_bytes(np.frombuffer(pixels, np.uint8).reshape(shape), magic)


def magic_then_random(magic: int) -> st.SearchStrategy:
    """A right magic number followed by random bytes, to get past the first check."""
    return st.binary(max_size=3200).map(lambda rest: magic.to_bytes(4, "big") + rest)


@FUZZ
@given(data=st.binary(max_size=64) | MAGICS.flatmap(magic_then_random), expected=MAGICS)
def test_parse_idx_random_bytes(data, expected):
    parses_or_bad_input(parse_idx, data, expected, "fuzz.idx")


@FUZZ
@given(data=mutated(valid_idx(), header_size=16), expected=MAGICS)
def test_parse_idx_mutated(data, expected):
    array = parses_or_bad_input(parse_idx, data, expected, "fuzz.idx")
    if array is not None:
        assert array.dtype == np.uint8 and array.ndim == (3 if expected == IMAGES_MAGIC else 1)


@st.composite
def idx_file_bytes(draw, magic: int, gz: bool) -> bytes:
    """What an IDX file on disk may hold: random bytes, or a valid file (gzip-compressed
    when `gz`) with a few edits, in the compressed stream or before compressing."""
    valid = valid_idx(magic, count=draw(st.integers(0, 2)))
    if not gz:
        return draw(st.binary(max_size=256) | mutated(valid, header_size=16) | valid)
    compressed = valid.map(gzip.compress)
    return draw(
        st.binary(max_size=256) | mutated(compressed, header_size=10) | compressed
        | mutated(valid, header_size=16).map(gzip.compress)
    )


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    """One folder for the files the examples write, each overwriting the last."""
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.data(), magic=MAGICS, gz=st.booleans())
def test_read_idx_files(fuzz_dir, data, magic, gz):
    path = fuzz_dir / ("fuzz-idx" + (".gz" if gz else ""))
    path.write_bytes(data.draw(idx_file_bytes(magic, gz)))
    raw = parses_or_bad_input(read_idx_bytes, path)
    if raw is not None:
        parses_or_bad_input(parse_idx, raw, magic, path)


@FUZZ
@given(data=st.data(), split=st.sampled_from(sorted(SPLIT_FILES)), gz=st.booleans())
def test_load_split_of_damaged_files(fuzz_dir, data, split, gz):
    # Images and labels are checked against each other too: counts, label range, classes.
    folder = fuzz_dir / "split"
    folder.mkdir(exist_ok=True)
    for path in folder.iterdir():
        path.unlink()
    for stem, magic in zip(SPLIT_FILES[split], (IMAGES_MAGIC, LABELS_MAGIC)):
        if data.draw(st.integers(0, 9), label=f"{stem} is written unless 0"):
            (folder / (stem + (".gz" if gz else ""))).write_bytes(data.draw(idx_file_bytes(magic, gz), label=stem))
    parses_or_bad_input(load_split, folder, split)


# --- the image decoder ---------------------------------------------------------------------

# Modes each format can save, so a drawn image is always a valid file before it is changed.
FORMAT_MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["L", "P"],
    "BMP": ["1", "L", "P", "RGB"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "F", "YCbCr"],
    "WEBP": ["RGB", "RGBA"],
    "ICO": ["RGBA"],
    "PPM": ["1", "L", "RGB", "I"],
    "TGA": ["L", "LA", "P", "RGB", "RGBA"],
}
# First bytes of formats Pillow reads, so random bytes get past identification into decoders.
SIGNATURES = [
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF", b"P5\n", b"P6\n",
    b"Pf\n", b"PF\n", b"\x00\x00\x01\x00", b"\x00\x00\x02\x00", b"8BPS", b"qoif", b"DDS ", b"SIMPLE  =", b"\x01\xda",
    b"\x0a\x05\x01\x08", b"icns", b"BLP2",
]


@st.composite
def valid_image(draw) -> bytes:
    """A small image of any mode its format can hold, saved as that format."""
    image_format = draw(st.sampled_from(sorted(FORMAT_MODES)))
    mode = draw(st.sampled_from(FORMAT_MODES[image_format]))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    pixels = draw(st.binary(min_size=width * height * 4, max_size=width * height * 4))
    image = Image.frombytes("RGBA", (width, height), pixels)
    image = image.convert("L").convert(mode) if mode in ("I", "I;16", "F", "1") else image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def assert_dataset_form(pixels) -> None:
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8


@FUZZ
@given(data=st.binary(max_size=512) | st.tuples(st.sampled_from(SIGNATURES), st.binary(max_size=512)).map(b"".join))
def test_image_random_bytes(data):
    pixels = parses_or_bad_input(image_bytes_to_pixels, data, "fuzz.png")
    if pixels is not None:
        assert_dataset_form(pixels)


@FUZZ
@given(data=valid_image())
def test_valid_image_of_any_format_and_mode_decodes(data):
    assert_dataset_form(image_bytes_to_pixels(data, "fuzz.png"))


@FUZZ
@given(data=mutated(valid_image(), header_size=64))
def test_image_mutated(data):
    pixels = parses_or_bad_input(image_bytes_to_pixels, data, "fuzz.png")
    if pixels is not None:
        assert_dataset_form(pixels)


# --- the study-file parser -------------------------------------------------------------------

STUDY_KEYS = ["name", "description", "seeds", "defaults", "variants", "questions", "dataset", "hidden",
              "activation", "epochs", "batch_size", "learning_rate", "normalization", "stop_at_accuracy",
              "min_epochs", "reason", "question", "baseline", "variant"]
TOML_KEYS = st.sampled_from(STUDY_KEYS) | st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True) | st.text(max_size=8).map(json.dumps)


def toml_float(value: float) -> str:
    return "nan" if value != value else {float("inf"): "inf", float("-inf"): "-inf"}.get(value, repr(value))


# TOML value literals: JSON strings are TOML basic strings; integers may exceed 64 bits,
# and even Python's 4300-digit conversion limit; arrays may nest deeper than its recursion limit.
TOML_SCALARS = (
    st.integers().map(str) | st.integers(-(10**400), 10**400).map(str) | st.floats().map(toml_float)
    | st.integers(1, 6000).map(lambda digits: "9" * digits) | st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth)
    | st.booleans().map(lambda flag: "true" if flag else "false") | st.text(max_size=12).map(json.dumps)
    | st.sampled_from(["relu", "tanh", "scale", "none", "fashion-mnist", "mnist", "narrow", "wide", "base"]).map(json.dumps)
    | st.sampled_from(["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00"])
)
TOML_VALUES = st.recursive(TOML_SCALARS, lambda children: (
    st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
    | st.lists(st.tuples(TOML_KEYS, children), max_size=3).map(
        lambda pairs: "{" + ", ".join(f"{key} = {value}" for key, value in pairs) + "}")
), max_leaves=8)
TOML_LINES = (
    st.tuples(TOML_KEYS, TOML_VALUES).map(lambda pair: f"{pair[0]} = {pair[1]}")
    | st.sampled_from(["[defaults]", "[[variants]]", "[[questions]]", "[variants]", "[[defaults]]", "[questions]"])
    | TOML_KEYS.map(lambda key: f"[{key}]") | TOML_KEYS.map(lambda key: f"[[{key}]]") | st.text(max_size=20)
)
VALID_STUDIES = st.sampled_from([SMALL_STUDY, builtin_study_path().read_text()])


@st.composite
def mutated_study(draw) -> str:
    """A valid study file with a few lines deleted, repeated, moved, rewritten or added."""
    lines = draw(VALID_STUDIES).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["delete", "duplicate", "swap", "value", "key", "insert"]))
        index = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if edit == "insert" or not lines:
            lines.insert(index, draw(TOML_LINES))
        elif edit == "delete":
            del lines[index]
        elif edit == "duplicate":
            lines.insert(index, lines[index])
        elif edit == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif "=" in lines[index]:
            key, value = lines[index].split("=", 1)
            new_key, new_value = (key, draw(TOML_VALUES)) if edit == "value" else (draw(TOML_KEYS), value)
            lines[index] = f"{new_key} = {new_value}"
    return "\n".join(lines) + "\n"


ONE_VARIANT = '[[variants]]\nname = "a"\nreason = "b"\n'


@FUZZ
@given(text=st.text() | st.lists(TOML_LINES, max_size=12).map("\n".join))
# Crashes found by fuzzing and fixed in study.py, kept as regression tests:
@example(text='"\\r1" = 1\n')  # a key holding a carriage return made a two-line message
@example(text="seeds = " + "9" * 4301)  # over Python's integer-conversion limit: ValueError from tomllib
@example(text="seeds = " + "[" * 5000 + "]" * 5000)  # RecursionError from tomllib
# ...and found by reading study.py, then by the strategies above once they drew such values:
@example(text="questions = [1]\n" + ONE_VARIANT)  # TypeError: a question that is not a table
@example(text="seeds = 99999999999999999999\n" + ONE_VARIANT)  # OverflowError building the seeds
@example(text="[defaults]\nlearning_rate = 1" + "0" * 400 + "\n" + ONE_VARIANT)  # OverflowError in float()
def test_study_random_text(text):
    parses_or_bad_input(parse_study, text, "fuzz.toml")


@FUZZ
@given(text=mutated_study())
def test_study_mutated(text):
    parses_or_bad_input(parse_study, text, "fuzz.toml")


@FUZZ
@given(data=st.binary(max_size=256) | mutated_study().map(str.encode).flatmap(lambda text: mutated(st.just(text))))
def test_study_file_bytes(fuzz_dir, data):
    path = fuzz_dir / "fuzz.toml"
    path.write_bytes(data)
    parses_or_bad_input(load_study, path)


# --- the /predict body parser ----------------------------------------------------------------

# `client` (conftest.py) serves a trained model; the parser, not the answers, is under test.

def assert_served(response) -> None:
    """A 2xx with an answer, or a 4xx whose body is JSON {"error": "..."}; never a 5xx."""
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body, dict) and isinstance(body.get("error"), str), response.text
    else:
        assert "top_class" in body or len(body["predictions"]) >= 1


ENDPOINTS = st.sampled_from(["/predict", "/predict/batch"])
CONTENT_TYPES = st.sampled_from([
    "image/png", "image/jpeg", "application/json", "application/json; charset=utf-8", "multipart/form-data",
    "multipart/form-data; boundary=x", "text/plain", "", "IMAGE/PNG ; q=1", "application/octet-stream",
]) | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


def post(client, endpoint: str, body: bytes, content_type: str):
    headers = {"content-type": content_type} if content_type else {}
    return client.post(endpoint, content=body, headers=headers)


@FUZZ
@given(endpoint=ENDPOINTS, body=st.binary(max_size=512), content_type=CONTENT_TYPES)
# Starlette's own 400s for multipart bodies it cannot parse came as {"detail": ...} (fixed in serve.py):
@example(endpoint="/predict", body=b"", content_type="multipart/form-data")
@example(endpoint="/predict", body=b"--x\r\nbroken\r\n", content_type="multipart/form-data; boundary=x")
def test_predict_random_bodies(client, endpoint, body, content_type):
    assert_served(post(client, endpoint, body, content_type))


# JSON value literals for a pixel: numbers of any size, the non-standard constants Python's
# json module accepts, and values of the wrong kind.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=2),
    max_leaves=6,
).map(json.dumps)
PIXEL_LITERALS = (
    st.integers(0, 255).map(str) | JSON_VALUES | st.integers(1, 6000).map(lambda digits: "9" * digits)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "255.4", "255.6", "-0.4", "\"7\""])
    | st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth)
)


@st.composite
def pixel_rows(draw) -> list[list[str]]:
    """28 rows of 28 pixel literals, a few of them replaced, and rows perhaps added or removed."""
    rows = [["0"] * 28 for _ in range(28)]
    for _ in range(draw(st.integers(0, 4))):
        row, column = draw(st.integers(0, 27)), draw(st.integers(0, 27))
        rows[row][column] = draw(PIXEL_LITERALS)
    change = draw(st.sampled_from(["none", "drop row", "add row", "drop column"]))
    if change == "drop row":
        del rows[draw(st.integers(0, 27))]
    elif change == "add row":
        rows.append(list(rows[0]))
    elif change == "drop column":
        del rows[draw(st.integers(0, 27))][-1]
    return rows


@st.composite
def json_pixel_body(draw, batch: bool) -> bytes:
    """A JSON body of pixel arrays with values, keys or structure changed, perhaps then byte-edited."""
    pixels = "[" + ", ".join("[" + ", ".join(row) + "]" for row in draw(pixel_rows())) + "]"
    key = draw(st.sampled_from(["pixels", "pixels", "Pixels", "image", ""]))
    if draw(st.integers(0, 9)) == 0:
        pixels = draw(PIXEL_LITERALS)  # pixels that are not rows at all
    item = f'{{"{key}": {pixels}}}'
    if batch:
        count = draw(st.integers(0, 3))
        item = '{"inputs": [' + ", ".join([item] * count + draw(st.lists(PIXEL_LITERALS, max_size=2))) + "]}"
    body = item.encode()
    return draw(mutated(st.just(body)) | st.just(body))


JSON_REQUESTS = ENDPOINTS.flatmap(lambda endpoint: st.tuples(st.just(endpoint), json_pixel_body(endpoint.endswith("batch"))))


@FUZZ
@given(request=JSON_REQUESTS, content_type=st.sampled_from(["application/json", "application/json; charset=utf-8"]))
# 500s found by fuzzing and fixed in serve.py, kept as regression tests:
@example(request=("/predict", b'{"pixels": [[' + b"9" * 400 + b"]]}"), content_type="application/json")  # OverflowError
@example(request=("/predict", b'{"pixels": ' + b"9" * 4301 + b"}"), content_type="application/json")  # ValueError
@example(request=("/predict/batch", b"[" * 100000 + b"]" * 100000), content_type="application/json")  # RecursionError
def test_predict_mutated_json(client, request, content_type):
    endpoint, body = request
    assert_served(post(client, endpoint, body, content_type))


def multipart_body(files: list[tuple[str, bytes]], boundary: str = "fuzzboundary") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


@FUZZ
@given(endpoint=ENDPOINTS, data=st.data())
def test_predict_mutated_images_and_multipart(client, endpoint, data):
    image = data.draw(mutated(valid_image(), header_size=64) | valid_image())
    how = data.draw(st.sampled_from(["image/png", "image/jpeg", "multipart", "damaged multipart"]))
    if how.startswith("image/"):
        assert_served(post(client, endpoint, image, how))
        return
    name = data.draw(st.text(max_size=12).filter(lambda text: '"' not in text and "\r" not in text and "\n" not in text))
    body = multipart_body([(name, image)] * data.draw(st.integers(1, 3)))
    content_type = "multipart/form-data; boundary=fuzzboundary"
    if how == "damaged multipart":
        body = data.draw(mutated(st.just(body), header_size=120))
        content_type = data.draw(st.sampled_from([content_type, "multipart/form-data", "multipart/form-data; boundary=",
                                                  "multipart/form-data; boundary=other"]))
    assert_served(post(client, endpoint, body, content_type))


# --- the .tflite reader of the C runtime ------------------------------------------------------

@pytest.fixture(scope="module")
def small_int8_model(fashion) -> bytes:
    """An untrained Dense(4) converted to int8: small, so that edits often land in its structure."""
    from denselab.deploy.tflite import calibration_images, convert
    from denselab.model.spec import ModelSpec, build_model

    return convert(build_model(ModelSpec((4,))), "int8", calibration_images(fashion, 20))


def reads_or_bad_input(model_bytes: bytes) -> None:
    """read_quantized_classifier succeeds, and its numbers make C sources, or it raises BadInput."""
    from denselab.deploy.c_runtime.quantized import read_quantized_classifier
    from denselab.deploy.c_runtime.source import c_sources

    try:
        classifier = read_quantized_classifier(model_bytes, "fuzz.tflite")
    except BadInput as error:
        assert "\n" not in str(error) and "fuzz.tflite" in str(error)
        return
    names = tuple(f"class {index}" for index in range(classifier.classes))
    assert set(c_sources(classifier, names, "scale", "fuzz")) == {"denselab_model.h", "denselab_model.c", "main.c"}


@FUZZ
@given(data=st.binary(max_size=256) | st.binary(max_size=2048).map(lambda rest: b"\x1c\x00\x00\x00TFL3" + rest))
def test_tflite_random_bytes(data):
    reads_or_bad_input(data)


@FUZZ
@given(data=st.data())
def test_tflite_mutated(small_int8_model, data):
    reads_or_bad_input(data.draw(mutated(st.just(small_int8_model))))


# --- .keras files read without Keras ----------------------------------------------------------

@pytest.fixture(scope="module")
def small_keras_file(tmp_path_factory) -> bytes:
    from denselab.model.run_dir import save_model
    from denselab.model.spec import ModelSpec, build_model

    return save_model(build_model(ModelSpec((4,))), tmp_path_factory.mktemp("keras") / "small.keras").read_bytes()


def keras_reads_or_bad_input(data: bytes, folder) -> None:
    from denselab.model.keras_file import read_dense_weights

    path = folder / "fuzz.keras"
    path.write_bytes(data)
    try:
        weights = read_dense_weights(path)
    except BadInput as error:
        assert "\n" not in str(error) and "fuzz.keras" in str(error)
        return
    assert weights.kernels[0].shape[0] == 784 and weights.kernels[-1].shape[1] == 10


@FUZZ
@given(data=st.binary(max_size=512))
def test_keras_file_random_bytes(fuzz_dir, data):
    keras_reads_or_bad_input(data, fuzz_dir)


@FUZZ
@given(data=st.data())
def test_keras_file_mutated(small_keras_file, fuzz_dir, data):
    keras_reads_or_bad_input(data.draw(mutated(st.just(small_keras_file))), fuzz_dir)


@FUZZ
@given(data=st.data())
def test_keras_file_with_mutated_members(small_keras_file, fuzz_dir, data):
    """Edits inside config.json or model.weights.h5, behind a valid zip."""
    import io
    import zipfile

    member = data.draw(st.sampled_from(["config.json", "model.weights.h5"]))
    with zipfile.ZipFile(io.BytesIO(small_keras_file)) as original:
        contents = {name: original.read(name) for name in original.namelist()}
    contents[member] = data.draw(mutated(st.just(contents[member])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as changed:
        for name, value in contents.items():
            changed.writestr(name, value)
    keras_reads_or_bad_input(buffer.getvalue(), fuzz_dir)


# --- a run's metrics.json beside a model, as predict, evaluate, serve and export read it -------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["scale", "none", "fashion-mnist", "mnist"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
METRICS_KEYS = st.sampled_from(["normalization", "dataset", "test_accuracy", "seed", "epochs"])


@FUZZ
@given(data=st.binary(max_size=128) | st.dictionaries(METRICS_KEYS, JSON_VALUES, max_size=4).map(
    lambda metadata: json.dumps(metadata).encode()))
@example(data=b'{"dataset": []}')  # TypeError: a list does not hash
@example(data=b'{"test_accuracy": NaN}')  # /model then answered 500: NaN is not JSON
def test_metrics_json_beside_a_model(fuzz_dir, data):
    from denselab.data.dataset import CLASS_NAMES, NORMALIZATIONS
    from denselab.model.run_dir import read_metadata

    (fuzz_dir / "metrics.json").write_bytes(data)
    read = parses_or_bad_input(read_metadata, fuzz_dir / "model.keras")
    if read is not None:
        normalization, dataset, test_accuracy = read
        assert normalization in NORMALIZATIONS and dataset in CLASS_NAMES
        assert test_accuracy is None or 0 <= test_accuracy <= 1


# --- --ray-address ---------------------------------------------------------------------------

ADDRESS_PARTS = st.text(max_size=12) | st.sampled_from(["10.0.0.5", "[::1]", "ray://head", "localhost", ""])
PORTS = st.text(alphabet="0123456789+-²٣ x", max_size=6) | st.integers(-10, 70_000).map(str)


@FUZZ
@given(address=st.text(max_size=30) | st.tuples(ADDRESS_PARTS, PORTS).map(":".join))
@example(address="head:²")  # str.isdigit() takes it, int() does not
def test_ray_address(address):
    from denselab.runs.executors import split_address

    parsed = parses_or_bad_input(split_address, address)
    if parsed is not None:
        host, port = parsed
        assert host and host in address and 0 < port < 65536 and int(address.rpartition(":")[2]) == port


# --- TFLM's measured figures in the cache -----------------------------------------------------

FIGURE_VALUES = st.integers(-5, 10**7) | st.floats(allow_nan=True) | st.text(max_size=4) | st.none() | st.booleans()


@FUZZ
@given(data=st.binary(max_size=128) | st.dictionaries(
    st.sampled_from(["code_bytes", "static_ram_bytes", "interpreter_bytes", "stack_bytes", "ops", "core"]),
    FIGURE_VALUES, max_size=6).map(lambda figures: json.dumps(figures).encode()))
@example(data=b'{"code_bytes": true, "static_ram_bytes": 0, "interpreter_bytes": 0, "stack_bytes": 0, "core": "m4"}')
@example(data=b'{"code_bytes": 1, "static_ram_bytes": 0, "interpreter_bytes": 0, "stack_bytes": 0}')
def test_a_damaged_tflm_figures_entry_is_measured_again(fuzz_dir, data):
    """A cache entry is read as TFLM's figures only when it holds all four as byte counts; else it is remeasured."""
    from denselab.deploy.tflm_runtime import FIGURES, read_figures

    (fuzz_dir / "runtime.json").write_bytes(data)
    figures = read_figures(fuzz_dir / "runtime.json")
    assert figures is None or all(type(figures[name]) is int and figures[name] >= 0 for name in FIGURES)
    assert figures is None or isinstance(figures["core"], str)  # an older denselab's entry is measured again


@FUZZ
@given(data=st.binary(max_size=96) | st.dictionaries(st.text(max_size=4) | st.integers(-3, 9).map(str),
                                                     st.lists(FIGURE_VALUES, max_size=3), max_size=4)
       .map(lambda sizes: json.dumps(sizes).encode()))
@example(data=b'{"16": [15360, 3344], "0": [1, 1], "x": [1, 1]}')
@example(data=b'{"16": [true, 3344.5]}')
def test_a_damaged_dense_sizes_entry_is_measured_again(fuzz_dir, data):
    """`denselab boards`' kept int8 sizes and arenas are read only as {units: [bytes, arena]} of positive
    integers; anything else reads as nothing kept, so every size is measured again."""
    from denselab.deploy.largest import _read_sizes

    (fuzz_dir / "sizes.json").write_bytes(data)
    sizes = _read_sizes(fuzz_dir / "sizes.json")
    assert isinstance(sizes, dict)
    assert all(type(units) is int and units > 0 and type(size) is int and size > 0 and type(arena) is int and arena > 0
               for units, (size, arena) in sizes.items())
