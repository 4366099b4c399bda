"""The extras: denselab trains and predicts without any, a command says which one it misses, and
denselab.extras agrees with pyproject.toml and requirements.txt.

The tests without an extra run denselab in a child process whose imports of everything only
the extras bring are refused, as in an environment where `pip install denselab` put only
the core.
"""

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from conftest import assert_one_line_error
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import denselab
from denselab.extras import MODULES, PURPOSES, extra_imports, missing_message

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = {name: PROJECT["optional-dependencies"][name] for name in PURPOSES}

# denselab's modules that cannot be imported without an extra, with that extra: the serving app
# is built on FastAPI's and Starlette's types. Every other module imports its extras inside the
# functions that use them. The test of the core fails when this is wrong either way.
NEEDS_EXTRA_AT_IMPORT = {"denselab.serve.app": "serve", "denselab.serve.inputs": "serve"}

# What `python -m venv` puts in every environment (pip; setuptools before Python 3.12), which a
# core-only environment has too, though TensorFlow also asks for setuptools.
IN_EVERY_VENV = {"pip", "setuptools", "wheel"}

# Installed first in the child process: a finder that refuses the top-level modules named in
# $DENSELAB_BLOCKED, as Python does a module that is not installed.
BLOCKER = """
import importlib.abc, os, sys
BLOCKED = frozenset(os.environ["DENSELAB_BLOCKED"].split(","))
imported = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
assert not imported, f"imported before the blocker: {imported}"

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/test_extras.py)", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""

# Every module of denselab imported (`__main__` would run the CLI), then the exercise's model
# trained for an epoch on the data folder in argv[1] and predicting. Prints what failed to import.
CORE = BLOCKER + """
import importlib, json, pkgutil
from pathlib import Path

import denselab
from denselab.errors import BadInput

failed = {}
def record(name):
    error = sys.exc_info()[1]
    failed[name] = (["missing", error.name] if isinstance(error, ModuleNotFoundError) else
                    ["BadInput", str(error)] if isinstance(error, BadInput) else ["other", repr(error)])

for found in list(pkgutil.walk_packages(denselab.__path__, "denselab.", onerror=record)):
    if found.name != "denselab.__main__" and found.name not in failed:
        try:
            importlib.import_module(found.name)
        except ModuleNotFoundError as error:
            failed[found.name] = ["missing", error.name]
        except BadInput as error:
            failed[found.name] = ["BadInput", str(error)]

data = denselab.load_dataset("fashion-mnist", Path(sys.argv[1]), allow_download=False)
run = denselab.train(denselab.ModelSpec((20,)), data, denselab.TrainConfig(epochs=1, seed=3))
predicted = run.predictor().probabilities(data.test_images[:500]).argmax(axis=1)
accuracy = float((predicted == data.test_labels[:500]).mean())
print(json.dumps({"failed": failed, "accuracy": accuracy}))
"""

# `denselab ARGS` as `python -m denselab` runs it, behind the blocker.
COMMAND = BLOCKER + """
import runpy
sys.argv = ["denselab", *sys.argv[1:]]
runpy.run_module("denselab", run_name="__main__", alter_sys=True)
"""


@cache
def brought(requirements: tuple[str, ...]) -> frozenset[str]:
    """The installed distributions (canonical names) that `requirements` install, theirs included."""
    found, seen, todo = set(), set(), [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        for extra in {"", *requirement.extras}:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            try:
                requires = importlib.metadata.distribution(name).requires or []
            except importlib.metadata.PackageNotFoundError:
                continue  # optional and not installed here
            found.add(name)
            todo += [child for child in map(Requirement, requires)
                     if child.marker is None or child.marker.evaluate({"extra": extra})]
    return frozenset(found)


@cache
def blocked_modules() -> dict[str, frozenset[str]]:
    """Per extra, the top-level modules that only the extras install (what the core does not bring)."""
    core = brought(tuple(PROJECT["dependencies"])) | IN_EVERY_VENV
    only_extras = set().union(*(brought(tuple(requirements)) for requirements in EXTRAS.values())) - core
    providers = {module: {canonicalize_name(name) for name in names}
                 for module, names in importlib.metadata.packages_distributions().items()}
    return {extra: frozenset(module for module, names in providers.items()
                             if names <= only_extras and names & brought(tuple(requirements)))
            for extra, requirements in EXTRAS.items()}


def all_blocked() -> frozenset[str]:
    return frozenset().union(*blocked_modules().values())


def without(modules) -> dict:
    """The environment of a child process in which `modules` cannot be imported."""
    return {**os.environ, "DENSELAB_BLOCKED": ",".join(sorted(modules))}


def denselab_without(modules, *args):
    """`denselab ARGS` in a child process where `modules` cannot be imported; its CompletedProcess."""
    return subprocess.run([sys.executable, "-c", COMMAND, *map(str, args)], capture_output=True, text=True,
                          env=without(modules), timeout=600)


def test_the_blocked_modules_are_every_extra_and_what_only_they_bring():
    # What the tests below refuse: every module of denselab.extras, python-multipart's other
    # name, a dependency of a dependency (Optuna's SQLAlchemy), and none of the core.
    assert set(MODULES) | {"multipart", "sqlalchemy"} <= all_blocked()
    assert not all_blocked() & {"keras", "jax", "numpy", "typer", "rich", "PIL", "matplotlib", "packaging"}


def test_the_core_imports_trains_and_predicts_with_no_extra_installed(fashion_slice_dir):
    result = subprocess.run([sys.executable, "-c", CORE, str(fashion_slice_dir)], capture_output=True, text=True,
                            env=without(all_blocked()), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["failed"]) == set(NEEDS_EXTRA_AT_IMPORT), report["failed"]
    for module, (kind, detail) in report["failed"].items():
        extra = NEEDS_EXTRA_AT_IMPORT[module]
        assert (kind == "missing" and detail.partition(".")[0] in blocked_modules()[extra]) or \
            (kind == "BadInput" and f"denselab[{extra}]" in detail), (module, kind, detail)
    assert report["accuracy"] > 0.6


@pytest.mark.parametrize("blocked, module", [
    (None, "fastapi"),
    ({"python_multipart", "multipart"}, "python_multipart"),  # FastAPI and uvicorn there: refused all the same
], ids=["no-extra", "no-python-multipart"])
def test_serve_without_its_extra_is_one_line_naming_it(trained_dir, blocked, module):
    result = denselab_without(blocked or all_blocked(), "serve", trained_dir / "model.keras")
    assert_one_line_error(result, "pip install 'denselab[serve]'")
    assert result.stderr.strip() == f"error: {missing_message(module)}"


def test_export_without_its_extra_is_one_line_naming_it(trained_dir, fashion_slice_dir):
    result = denselab_without(all_blocked(), "export", trained_dir / "model.keras", "--data-dir", fashion_slice_dir)
    assert_one_line_error(result, "pip install 'denselab[deploy]'")


def test_a_missing_module_of_an_installed_extra_keeps_its_traceback():
    # Only the extra itself missing is the user's to install; a hole in an installed one is a bug.
    with pytest.raises(ModuleNotFoundError), extra_imports():
        import uvicorn.no_such_module  # noqa: F401


def test_pyproject_extras_and_denselab_extras_agree():
    optional = PROJECT["optional-dependencies"]
    assert set(optional) == set(PURPOSES) | {"all", "test"}
    [everything] = map(Requirement, optional["all"])
    assert canonicalize_name(everything.name) == "denselab" and everything.extras == set(PURPOSES)

    names = {extra: {canonicalize_name(Requirement(text).name) for text in requirements}
             for extra, requirements in EXTRAS.items()}
    core = {canonicalize_name(Requirement(text).name) for text in PROJECT["dependencies"]}
    assert not core & set().union(*names.values()), "an extra's distribution is in the core dependencies too"
    for module, (distribution, extra) in MODULES.items():
        assert canonicalize_name(distribution) in names[extra], (module, distribution, extra)
    for extra, distributions in names.items():  # and every distribution of an extra has its module in MODULES
        assert distributions == {canonicalize_name(p.distribution) for p in MODULES.values() if p.extra == extra}


def test_each_module_of_denselab_extras_is_installed_by_the_distribution_it_names():
    providers = importlib.metadata.packages_distributions()
    for module, (distribution, extra) in MODULES.items():
        installed_by = {canonicalize_name(name) for name in providers.get(module, [])}
        assert installed_by & brought((distribution,)), (module, distribution, installed_by)


def test_requirements_txt_pins_the_core_and_every_extra_within_their_ranges():
    # `make run` and `make test` install requirements.txt, and denselab with --no-deps.
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    wanted = PROJECT["dependencies"] + [text for name, texts in PROJECT["optional-dependencies"].items()
                                        if name != "all" for text in texts]
    for requirement in map(Requirement, wanted):
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned and requirement.specifier.contains(pinned, prereleases=True), (str(requirement), pinned)


def test_every_import_of_an_extra_is_under_extra_imports():
    # Lazy imports of an extra go through denselab.extras, which says which extra to install;
    # a module that needs its extra when imported (NEEDS_EXTRA_AT_IMPORT) cannot be without it anyway.
    unwrapped = []
    package = Path(denselab.__file__).parent
    for path in sorted(package.rglob("*.py")):
        module = ".".join(("denselab", *path.relative_to(package).with_suffix("").parts))
        if module in NEEDS_EXTRA_AT_IMPORT:
            continue
        tree = ast.parse(path.read_text(), str(path))
        wrapped = {id(node) for with_node in ast.walk(tree) if isinstance(with_node, ast.With)
                   and any(ast.unparse(item.context_expr) == "extra_imports()" for item in with_node.items)
                   for node in ast.walk(with_node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            if any(name.partition(".")[0] in MODULES for name in names) and id(node) not in wrapped:
                unwrapped.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not unwrapped
