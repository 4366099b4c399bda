"""Studies as TOML files: defaults, variants that state only what they change, and questions.

A study file looks like `studies/exercise.toml` (the built-in study). Every mistake in
one is reported as `FILE:LINE: problem 'key'`, found by matching the key back to the
file's text, since Python's TOML parser keeps no positions.
"""

import hashlib
import json
import re
import sys
import tomllib
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

from denselab.data.dataset import DEFAULT_DATASET, check_dataset_name
from denselab.errors import BadInput
from denselab.model.spec import ModelSpec
from denselab.training.config import RECIPE_DEFAULTS, RECIPE_FIELDS, TRAINING_REVISION, TrainConfig

BUILTIN_STUDY = "exercise"
STUDY_KEYS = {"name", "description", "seeds", "defaults", "variants", "questions"}
QUESTION_KEYS = {"question", "baseline", "variant"}
# Settings a variant may change, with the TOML type each takes.
SETTING_TYPES = {
    "dataset": str,
    "hidden": list,
    "activation": str,
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "normalization": str,
    "stop_at_accuracy": float,
    "min_epochs": int,
    # Training-only choices (denselab.training.recipe); a search writes its winners with them.
    "dropout_input": float,
    "dropout_hidden": float,
    "weight_decay": float,
    "label_smoothing": float,
    "schedule": str,
    "augment": str,
    "standardize": bool,
    # Knowledge distillation from a teacher used only while training (denselab.training.teacher).
    "teacher": str,
    "teacher_epochs": int,
    "teacher_seed": int,
    "distill_temperature": float,
    "distill_weight": float,
}
VARIANT_KEYS = {"name", "reason"} | set(SETTING_TYPES)
DEFAULT_SEEDS = 3  # the fewest that give a standard deviation worth reading
MAX_SEEDS = 1000  # each seed is a whole training run per variant: more is a typo, not a plan


@dataclass(frozen=True)
class Variant:
    """One model and training configuration of a study."""

    name: str
    reason: str
    dataset: str
    spec: ModelSpec
    config: TrainConfig  # without a seed: the study gives each run its own
    # The MACs that decide whether its seeds train side by side (loop.grouping_pays), when
    # not its own: a study plans the variants whose times it compares the same way
    # (explore.study_runs). How a run executes changes its times, never its result, so
    # this stays out of config_hash.
    grouping_macs: int | None = None

    def config_hash(self) -> str:
        """A short fingerprint of everything that determines a run's result except its seed."""
        config = asdict(self.config)
        # The training-only choices came after runs were stored: at their defaults they
        # stay out of the hash, so those runs are still found; any other value makes new runs.
        for name in RECIPE_FIELDS:
            if config[name] == RECIPE_DEFAULTS[name]:
                del config[name]
        settings = {"dataset": self.dataset, "spec": asdict(self.spec), "config": config,
                    "training_revision": TRAINING_REVISION}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Question:
    """A question of the exercise, answered by comparing `variant` against `baseline`."""

    question: str
    baseline: str
    variant: str


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    questions: tuple[Question, ...]
    source: str

    def variant(self, name: str) -> Variant:
        return next(variant for variant in self.variants if variant.name == name)

    def with_overrides(self, seeds: int | None = None, epochs: int | None = None) -> "Study":
        """This study with `seeds` seeds per variant and/or every variant trained for `epochs` epochs."""
        study = self
        if seeds is not None:
            if not 1 <= seeds <= MAX_SEEDS:
                raise BadInput(f"--seeds must be from 1 to {MAX_SEEDS}, got {seeds}")
            study = replace(study, seeds=tuple(range(seeds)))
        if epochs is not None:
            if epochs < 1:
                raise BadInput(f"--epochs must be >= 1, got {epochs}")
            study = replace(study, variants=tuple(
                replace(variant, config=replace(variant.config, epochs=epochs,
                                                min_epochs=min(variant.config.min_epochs, epochs)))
                for variant in study.variants
            ))
        return study


# --- locating keys in the file's text --------------------------------------------------------

class _Locator:
    """Line numbers of tables and keys in a TOML text, for error messages."""

    def __init__(self, text: str):
        self.tables: list[tuple[str, int, int]] = []  # (table name, index within array, line)
        self.keys: dict[tuple[str, int], dict[str, int]] = {("", 0): {}}
        counts: dict[str, int] = {}
        current = ("", 0)
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            header = re.match(r"^\[\[\s*([^\]]+?)\s*\]\]|^\[\s*([^\]]+?)\s*\]", stripped)
            if header:
                name = header.group(1) or header.group(2)
                index = counts.get(name, 0)
                counts[name] = index + 1
                current = (name, index)
                self.tables.append((name, index, number))
                self.keys.setdefault(current, {})
                continue
            key = re.match(r'^["\']?([A-Za-z0-9_\-]+)["\']?\s*=', stripped)
            if key:
                self.keys[current].setdefault(key.group(1), number)

    def line(self, table: str, index: int, key: str | None = None) -> int:
        lines = self.keys.get((table, index), {})
        if key is not None and key in lines:
            return lines[key]
        for name, table_index, number in self.tables:
            if (name, table_index) == (table, index):
                return number
        return 1


# --- reading a study file --------------------------------------------------------------------

def builtin_study_path() -> Path:
    return Path(str(resources.files("denselab.study") / "studies" / f"{BUILTIN_STUDY}.toml"))


def load_study(path: Path | None = None) -> Study:
    """Read and check a study file (the built-in exercise study when `path` is None)."""
    path = Path(path) if path is not None else builtin_study_path()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"cannot read study file {path}: {getattr(error, 'strerror', None) or error}") from None
    return parse_study(text, str(path))


def parse_study(text: str, source: str) -> Study:
    """Parse and check the text of a study file; `source` names it in error messages."""
    document = _toml_document(text, source)
    locate = _Locator(text)

    def fail(table: str, index: int, key: str | None, problem: str):
        raise BadInput(f"{source}:{locate.line(table, index, key)}: {problem}")

    name, description, seeds = _study_header(document, source, fail)
    defaults = _defaults(document, fail)
    variants = _variants(document, defaults, fail)
    questions = _questions(document, {variant.name for variant in variants}, fail)
    return Study(name, description, tuple(range(seeds)), tuple(variants), tuple(questions), source)


# Each check below reports through `fail(table, index, key, problem)`, which raises a
# BadInput pointing at the line of `key` in table `table` number `index`.

def _study_header(document: dict, source: str, fail) -> tuple[str, str, int]:
    """The study's top-level keys, checked: its name, description and number of seeds."""
    for key in document:
        if key not in STUDY_KEYS:
            fail("", 0, key, f"unknown key {key!r} (expected one of {', '.join(sorted(STUDY_KEYS))})")
    name = document.get("name", Path(source).stem)
    description = document.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            fail("", 0, key, f"'{key}' must be a string")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        fail("", 0, "name", f"'name' {name!r} must be letters, digits, '-', '_' or '.'")
    seeds = document.get("seeds", DEFAULT_SEEDS)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= MAX_SEEDS:
        fail("", 0, "seeds", f"'seeds' must be an integer from 1 to {MAX_SEEDS}, got {_shown(seeds)}")
    return name, description, seeds


def _defaults(document: dict, fail) -> dict:
    """The [defaults] table, each setting checked."""
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        fail("", 0, "defaults", "'defaults' must be a table ([defaults])")
    for key, value in defaults.items():
        if key not in SETTING_TYPES:
            fail("defaults", 0, key, f"unknown key {key!r} in [defaults] (expected one of {', '.join(SETTING_TYPES)})")
        _check_setting(key, value, lambda problem, key=key: fail("defaults", 0, key, problem))
    return defaults


def _variants(document: dict, defaults: dict, fail) -> list[Variant]:
    """The [[variants]] tables, each the defaults with its own settings over them."""
    raw_variants = document.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        fail("", 0, "variants", "a study needs at least one [[variants]] table")
    variants, names = [], set()
    for index, raw in enumerate(raw_variants):
        def fail_here(key, problem, index=index):
            fail("variants", index, key, problem)

        if not isinstance(raw, dict):  # an inline array such as `variants = [1]`
            fail("", 0, "variants", "each variant must be a [[variants]] table")
        _check_variant_keys(raw, index, names, fail_here)
        names.add(raw["name"])
        settings = {**defaults}
        for key, value in raw.items():
            if key in SETTING_TYPES:
                _check_setting(key, value, lambda problem, key=key: fail_here(key, problem))
                settings[key] = value
        variants.append(_variant(raw["name"], raw["reason"], settings, lambda problem: fail_here(None, problem)))
    return variants


def _check_variant_keys(raw: dict, index: int, names: set[str], fail_here) -> None:
    """A variant's keys are known, its name and reason non-empty strings, its name new."""
    for key in raw:
        if key not in VARIANT_KEYS:
            fail_here(key, f"unknown key {key!r} in variant {raw.get('name', index + 1)!r}")
    for key in ("name", "reason"):
        if key not in raw:
            fail_here(None, f"variant {index + 1} has no '{key}'")
        if not isinstance(raw[key], str) or not raw[key].strip():
            fail_here(key, f"'{key}' must be a non-empty string")
    if raw["name"] in names:
        fail_here("name", f"duplicate variant name {raw['name']!r}")


def _questions(document: dict, names: set[str], fail) -> list[Question]:
    """The [[questions]] tables, each comparing two of the variants `names`."""
    questions = []
    raw_questions = document.get("questions", [])
    if not isinstance(raw_questions, list):
        fail("", 0, "questions", "'questions' must be [[questions]] tables")
    for index, raw in enumerate(raw_questions):
        if not isinstance(raw, dict):  # an inline array such as `questions = [1]`
            fail("", 0, "questions", "each question must be a [[questions]] table")
        for key in raw:
            if key not in QUESTION_KEYS:
                fail("questions", index, key,
                     f"unknown key {key!r} in a question (expected {', '.join(sorted(QUESTION_KEYS))})")
        for key in sorted(QUESTION_KEYS):
            if key not in raw:
                fail("questions", index, None, f"question {index + 1} has no '{key}'")
            if not isinstance(raw[key], str):
                fail("questions", index, key, f"'{key}' must be a string")
        for key in ("baseline", "variant"):
            if raw[key] not in names:
                fail("questions", index, key, f"'{key}' names no variant: {raw[key]!r}")
        questions.append(Question(raw["question"], raw["baseline"], raw["variant"]))
    return questions


def _toml_document(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"\(at line (\d+)", str(error))
        line = match.group(1) if match else "?"
        raise BadInput(f"{source}:{line}: not valid TOML ({str(error).split(' (at')[0]})") from None
    except ValueError:
        # tomllib lets Python's limit on integer conversion through, without a position.
        raise BadInput(f"{source}: not valid TOML (an integer of over 4300 digits)") from None
    except RecursionError:
        raise BadInput(f"{source}: not valid TOML (arrays or tables nested too deeply)") from None


def _shown(value) -> str:
    """A value as an error message quotes it: its repr, cut short, since it may be huge."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_setting(key: str, value, fail) -> None:
    """Check one setting's TOML type and value, calling `fail(problem)` when it is wrong."""
    expected = SETTING_TYPES[key]
    numeric = expected is float and isinstance(value, (int, float)) and not isinstance(value, bool)
    exact = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
    if not (numeric or exact):
        fail(f"'{key}' must be {_type_words(expected)}, got {_shown(value)}")
    if numeric and abs(value) > sys.float_info.max:
        fail(f"'{key}' is too large to be a number, got {_shown(value)}")  # TOML integers have no limit
    try:
        if key == "hidden":
            ModelSpec(tuple(value))
        elif key == "activation":
            ModelSpec((1,), value)
        elif key == "dataset":
            check_dataset_name(value)
        else:
            TrainConfig(**{key: value})
    except BadInput as error:
        fail(f"'{key}': {error}")


def _type_words(kind: type) -> str:
    return {str: "a string", list: "a list of integers", int: "an integer", float: "a number",
            bool: "true or false"}[kind]


def _variant(name: str, reason: str, settings: dict, fail) -> Variant:
    spec = ModelSpec(tuple(settings.get("hidden", ModelSpec().hidden_units)), settings.get("activation", "relu"))
    train_settings = {key: settings[key] for key in settings if key not in ("hidden", "activation", "dataset")}
    for key, kind in SETTING_TYPES.items():
        if kind is float and key in train_settings:  # TOML writes 0 for 0.0
            train_settings[key] = float(train_settings[key])
    try:
        config = TrainConfig(**train_settings)
    except BadInput as error:
        fail(str(error))
    return Variant(name, reason.strip(), settings.get("dataset", DEFAULT_DATASET), spec, config)


# --- writing a study file --------------------------------------------------------------------

def variant_settings(variant: Variant) -> dict:
    """The settings of a variant as a study file states them (training-only ones where not default)."""
    config = variant.config
    settings = {"dataset": variant.dataset, "hidden": list(variant.spec.hidden_units),
                "activation": variant.spec.activation, "epochs": config.epochs, "batch_size": config.batch_size,
                "learning_rate": config.learning_rate, "normalization": config.normalization}
    if config.stop_at_accuracy is not None:
        settings.update(stop_at_accuracy=config.stop_at_accuracy, min_epochs=config.min_epochs)
    return {**settings, **config.recipe_settings()}


def study_toml(name: str, description: str, seeds: int, variant: Variant) -> str:
    """A study file of one variant that `denselab explore --study` reads back to the same runs."""
    def value(item) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (list, tuple)):
            return "[" + ", ".join(value(element) for element in item) + "]"
        return json.dumps(item)  # strings and numbers: JSON's forms are valid TOML

    lines = [f"name = {value(name)}", f"description = {value(description)}", f"seeds = {seeds}", "",
             "[[variants]]", f"name = {value(variant.name)}", f"reason = {value(variant.reason)}"]
    lines += [f"{key} = {value(item)}" for key, item in variant_settings(variant).items()]
    return "\n".join(lines) + "\n"
