"""The package's layout rules, checked on its source and on what it imports.

- one door to MLflow: only the ``price_alchemy/mlflow_store`` package imports ``mlflow`` (also
  through ``importlib`` or ``__import__``), only its ``tracking`` module builds a client, and no
  module reaches ``mlflow`` or ``MlflowClient`` through the door's namespace;
- models are deserialized in ``model_files.py`` only (no ``pickle``/``joblib``/``skops`` load and
  no MLflow ``load_model`` anywhere else);
- one-way dependencies: nothing outside ``training/`` imports it (relative imports resolved),
  apart from the entry points (the ``cli`` package and ``tasks.py``), and importing the API, the
  drift monitor or batch prediction does not load it;
- boundary names (every string constant of ``names.py``) are written as literals there only;
- every exception class is defined in ``errors.py`` (checked on the imported classes);
- no module is over 400 lines except ``estimators.py``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "price_alchemy"
MODULES = sorted(PACKAGE.rglob("*.py"))
ENTRY_POINTS = ("cli/", "tasks.py")  # the CLI package and the orchestrator tasks
DOOR = "mlflow_store/"
#: names.py constants too generic to police as literals (JSON keys and artifact folder names).
GENERIC_NAMES = {"model", "run_id", "test_rmsle", "predictions"}
#: An index name or pattern (not a Kibana object id such as ``price-alchemy-requests-per-minute``).
INDEX_LIKE = re.compile(r"price-alchemy-(requests|monitoring)(\*|-\d|-$|$)")
#: Error classes that must subclass a framework's type and so cannot live in errors.py.
FRAMEWORK_ERRORS = {"price_alchemy.serving.middleware.BodyTooLargeError"}  # a Starlette HTTPException
DESERIALIZERS = {"pickle", "cloudpickle", "joblib", "skops.io", "dill"}


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _module_name(path: Path) -> str:
    parts = ["price_alchemy", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported(path: Path) -> set[str]:
    """Every module and ``module.name`` a file imports, relative imports resolved, dynamic ones too."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = getattr(func, "attr", None) or getattr(func, "id", None)
            if called in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the constant nodes that are docstrings (module, class, function, attribute)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for stmt in body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                found.add(id(stmt.value))
    return found


def _boundary_names() -> set[str]:
    """The string values ``names.py`` defines (its ``NAME: Final = "..."`` constants)."""
    values = {
        node.value.value
        for node in ast.walk(_tree(PACKAGE / "names.py"))
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    return values - GENERIC_NAMES


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def test_the_package_has_the_expected_modules() -> None:
    """Guards the checks below against passing vacuously on an empty or moved package."""
    names = {_rel(p) for p in MODULES}
    expected = {"mlflow_store/tracking.py", "names.py", "errors.py", "training/stages.py", "cli/commands.py"}
    assert expected | {"tasks.py", "model_files.py"} <= names
    assert len(names) > 40
    assert {
        "champion",
        "reference/profile.json",
        "(missing)",
        "price_alchemy.model_digest",
    } <= _boundary_names()


def test_only_the_mlflow_door_imports_mlflow() -> None:
    offenders = {
        _rel(p): sorted(n for n in _imported(p) if n == "mlflow" or n.startswith("mlflow."))
        for p in MODULES
        if not _rel(p).startswith(DOOR)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nothing_reaches_mlflow_through_the_doors_namespace() -> None:
    leaks = {
        _rel(p): sorted(
            n
            for n in _imported(p)
            if n.startswith("price_alchemy.mlflow_store")
            and n.rpartition(".")[2] in {"mlflow", "MlflowClient"}
        )
        for p in MODULES
    }
    attribute_use = sorted(
        f"{_rel(p)}:{node.lineno}"
        for p in MODULES
        if not _rel(p).startswith(DOOR)
        for node in ast.walk(_tree(p))
        if isinstance(node, ast.Attribute) and node.attr in {"mlflow", "MlflowClient"}
    )
    assert ({k: v for k, v in leaks.items() if v}, attribute_use) == ({}, [])


def test_mlflow_client_is_constructed_in_one_module() -> None:
    builders = sorted(
        _rel(p)
        for p in MODULES
        for node in ast.walk(_tree(p))
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "MlflowClient"
    )
    assert builders == ["mlflow_store/tracking.py"]


def test_models_are_deserialized_in_model_files_only() -> None:
    found = sorted(
        f"{_rel(p)}:{node.lineno}:{_dotted(node.func)}"
        for p in MODULES
        for node in ast.walk(_tree(p))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and (
            (node.func.attr in {"load", "loads"} and _dotted(node.func.value) in DESERIALIZERS)
            or (node.func.attr == "load_model" and _dotted(node.func.value).split(".")[0] == "mlflow")
        )
    )
    assert all(entry.startswith("model_files.py:") for entry in found), found
    assert any("skops.io.load" in entry for entry in found)  # the one place that does load


def test_nothing_outside_training_imports_it_but_the_entry_points() -> None:
    offenders = {
        _rel(p): sorted(n for n in _imported(p) if n.startswith("price_alchemy.training"))
        for p in MODULES
        if not _rel(p).startswith(("training/", *ENTRY_POINTS))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_serving_monitoring_and_inference_load_no_training_code() -> None:
    code = (
        "import sys\n"
        "import price_alchemy.serving.app, price_alchemy.monitoring.drift_job, price_alchemy.inference\n"
        "print(sorted(m for m in sys.modules if m.startswith('price_alchemy.training')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_boundary_names_are_literals_in_names_py_only() -> None:
    boundary = _boundary_names()
    found: dict[str, list[str]] = {}
    for path in MODULES:
        if _rel(path) == "names.py":
            continue
        tree = _tree(path)
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in docstrings:
                continue
            value = node.value
            if value in boundary or value.strip("@/:.") in boundary or INDEX_LIKE.search(value):
                found.setdefault(_rel(path), []).append(value)
    assert found == {}


def test_every_exception_class_lives_in_errors_py() -> None:
    elsewhere = []
    for path in MODULES:
        if path.name == "__main__.py":  # runs the CLI when imported
            continue
        module = importlib.import_module(_module_name(path))
        for name, obj in inspect.getmembers(module, inspect.isclass):
            qualified = f"{obj.__module__}.{name}"
            if (
                obj.__module__ == module.__name__
                and issubclass(obj, BaseException)
                and module.__name__ != "price_alchemy.errors"
                and qualified not in FRAMEWORK_ERRORS
            ):
                elsewhere.append(qualified)
    assert elsewhere == []


def test_no_module_is_over_400_lines_except_estimators() -> None:
    long = {
        _rel(p): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > 400 and _rel(p) != "estimators.py"
    }
    assert long == {}


def test_every_public_name_of_the_package_resolves() -> None:
    import price_alchemy

    names = list(price_alchemy.__all__)
    assert "run_training" in names
    for name in names:
        assert getattr(price_alchemy, name) is not None, name
