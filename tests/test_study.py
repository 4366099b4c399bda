import pytest

from conftest import SMALL_STUDY
from denselab.errors import BadInput
from denselab.model.spec import ModelSpec
from denselab.study.file import load_study, parse_study



def test_builtin_study_is_the_exercise():
    study = load_study()
    assert [v.name for v in study.variants] == ["base", "base-x2", "512", "1024", "deeper", "unnormalized", "early-stop"]
    assert study.seeds == (0, 1, 2)
    deeper = study.variant("deeper")
    assert deeper.spec == ModelSpec((512, 512)) and deeper.config.epochs == 5 and deeper.config.batch_size == 32
    assert study.variant("unnormalized").config.normalization == "none"
    early = study.variant("early-stop").config
    assert early.stop_at_accuracy == 0.86 and early.min_epochs == 2
    assert all(variant.reason for variant in study.variants)
    assert {(q.baseline, q.variant) for q in study.questions} == {
        ("base", "base-x2"), ("512", "1024"), ("512", "deeper"), ("deeper", "unnormalized"), ("deeper", "early-stop"),
    }


def test_variants_state_only_what_they_change():
    study = parse_study(SMALL_STUDY, "small.toml")
    assert study.variant("narrow").spec.hidden_units == (20,) and study.variant("wide").spec.hidden_units == (40,)
    assert study.variant("wide").config.epochs == 1  # from [defaults]
    assert study.variant("narrow").config_hash() != study.variant("wide").config_hash()


def test_overrides_for_a_quick_look():
    study = load_study().with_overrides(seeds=2, epochs=1)
    assert study.seeds == (0, 1)
    assert {v.config.epochs for v in study.variants} == {1}
    assert study.variant("early-stop").config.min_epochs == 1


def error_of(text):
    with pytest.raises(BadInput) as error:
        parse_study(text, "bad.toml")
    return str(error.value)


def line_of(text, fragment):
    return next(number for number, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.mark.parametrize("old, new, fragment, expected", [
    ('epochs = 1', 'epochs = 1\nepoch = 3', "epoch = 3", "unknown key 'epoch' in [defaults]"),
    ('hidden = [40]', 'hidden = [40]\nlayers = 2', "layers = 2", "unknown key 'layers' in variant 'wide'"),
    ('hidden = [40]', 'hidden = "40"', 'hidden = "40"', "'hidden' must be a list of integers, got '40'"),
    ('epochs = 1', 'epochs = "five"', 'epochs = "five"', "'epochs' must be an integer, got 'five'"),
    ('epochs = 1', 'epochs = 0', 'epochs = 0', "'epochs': epochs must be an integer >= 1"),
    ('hidden = [40]', 'hidden = [40, 0]', 'hidden = [40, 0]', "'hidden': hidden layer size 0 must be a positive integer"),
    ('hidden = [40]', 'stop_at_accuracy = 1.5', 'stop_at_accuracy', "stop-at-accuracy must be in (0, 1]"),
    ('hidden = [40]', 'activation = "swish"', 'activation', "unknown activation 'swish'"),
    ('seeds = 2', 'seeds = 2\nrepeats = 4', 'repeats', "unknown key 'repeats'"),
    ('seeds = 2', 'seeds = 0', 'seeds = 0', "'seeds' must be an integer from 1 to 1000, got 0"),
    ('seeds = 2', 'seeds = 99999999999999999999', 'seeds = 9', "'seeds' must be an integer from 1 to 1000, got 9999"),
    ('epochs = 1', 'learning_rate = 1' + '0' * 400, 'learning_rate', "'learning_rate' is too large to be a number, got 1000"),
    ('baseline = "narrow"', 'baseline = "thin"', 'baseline = "thin"', "'baseline' names no variant: 'thin'"),
])
def test_bad_values_name_file_line_and_key(old, new, fragment, expected):
    text = SMALL_STUDY.replace(old, new, 1)
    message = error_of(text)
    assert message.startswith(f"bad.toml:{line_of(text, fragment)}: "), message
    assert expected in message


def test_missing_variant_name_points_at_its_table():
    text = SMALL_STUDY.replace('name = "wide"\n', "")
    message = error_of(text)
    header_line = [n for n, line in enumerate(text.splitlines(), 1) if line == "[[variants]]"][1]
    assert message == f"bad.toml:{header_line}: variant 2 has no 'name'"


def test_what_the_user_wrote_is_quoted_so_the_message_stays_one_line():
    message = error_of(SMALL_STUDY.replace('hidden = [40]', '"wi\\nde" = 1'))
    assert "unknown key 'wi\\nde' in variant 'wide'" in message and "\n" not in message


@pytest.mark.parametrize("table", ["variants", "questions"])
def test_inline_array_instead_of_tables(table):
    text = SMALL_STUDY.split("[[")[0].replace("seeds = 2", f"seeds = 2\n{table} = [1]")
    if table == "questions":
        text += '[[variants]]\nname = "a"\nreason = "b"\n'
    singular = table.removesuffix("s")
    assert error_of(text) == f"bad.toml:{line_of(text, f'{table} = [1]')}: each {singular} must be a [[{table}]] table"


def test_duplicate_variant_names():
    text = SMALL_STUDY.replace('name = "wide"', 'name = "narrow"')
    assert error_of(text) == f"bad.toml:{line_of(text, 'hidden = [40]') - 1}: duplicate variant name 'narrow'"


def test_not_toml():
    assert error_of("name = \n").startswith("bad.toml:1: not valid TOML")
    # Two errors tomllib raises without a line: Python's integer-conversion limit, and recursion.
    assert error_of("seeds = " + "9" * 4301) == "bad.toml: not valid TOML (an integer of over 4300 digits)"
    assert error_of("seeds = " + "[" * 5000 + "]" * 5000) == "bad.toml: not valid TOML (arrays or tables nested too deeply)"


def test_no_variants():
    assert "at least one [[variants]]" in error_of('name = "x"\n')


def test_unreadable_file(tmp_path):
    with pytest.raises(BadInput, match="cannot read study file"):
        load_study(tmp_path / "absent.toml")
