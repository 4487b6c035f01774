"""The package's layout rules, checked on its source (so a change that breaks one fails here).

- one door to MLflow: only the ``price_alchemy/mlflow_store`` package imports ``mlflow``, and only
  its ``tracking`` module builds a client;
- one-way dependencies: nothing outside ``training/`` imports it, apart from the entry points
  (the ``cli`` package and ``tasks.py``);
- boundary names (aliases, artifact paths, index names, the missing-value marker) are written as
  literals in ``names.py`` only;
- every error class is defined in ``errors.py``;
- no module is over 400 lines except ``estimators.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "price_alchemy"
MODULES = sorted(PACKAGE.rglob("*.py"))
ENTRY_POINTS = ("cli/", "tasks.py")  # the CLI package and the orchestrator tasks
BOUNDARY_NAMES = {
    "champion",
    "challenger",
    "reference/profile.json",
    "search/outcome.json",
    "promotion.json",
    "price-alchemy-requests",
    "price-alchemy-requests*",
    "price-alchemy-requests-",
    "price-alchemy-monitoring",
    "price-alchemy-monitoring*",
    "price-alchemy-monitoring-",
    "(missing)",
}
#: Error classes that must subclass a framework's type and so cannot live in errors.py.
FRAMEWORK_ERRORS = {"BodyTooLargeError"}  # a Starlette HTTPException, raised inside the ASGI middleware


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
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


def test_the_package_has_the_expected_modules() -> None:
    """Guards the checks below against passing vacuously on an empty or moved package."""
    names = {_rel(p) for p in MODULES}
    assert {
        "mlflow_store/tracking.py",
        "names.py",
        "errors.py",
        "training/stages.py",
        "cli/commands.py",
        "tasks.py",
    } <= names
    assert len(names) > 40


def test_only_the_mlflow_door_imports_mlflow() -> None:
    offenders = {
        _rel(p): sorted(n for n in _imported(_tree(p)) if n == "mlflow" or n.startswith("mlflow."))
        for p in MODULES
        if not _rel(p).startswith("mlflow_store/")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_mlflow_client_is_constructed_in_one_module() -> None:
    builders = sorted(
        _rel(p)
        for p in MODULES
        for node in ast.walk(_tree(p))
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "MlflowClient"
    )
    assert builders == ["mlflow_store/tracking.py"]


def test_nothing_outside_training_imports_it_but_the_entry_points() -> None:
    offenders = {
        _rel(p): sorted(n for n in _imported(_tree(p)) if n.startswith("price_alchemy.training"))
        for p in MODULES
        if not _rel(p).startswith(("training/", *ENTRY_POINTS))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_boundary_names_are_literals_in_names_py_only() -> None:
    found: dict[str, list[str]] = {}
    for path in MODULES:
        if _rel(path) == "names.py":
            continue
        tree = _tree(path)
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and node.value in BOUNDARY_NAMES
            ):
                found.setdefault(_rel(path), []).append(node.value)
    assert found == {}


def _is_exception(node: ast.ClassDef) -> bool:
    """A class deriving from something named like an exception (``...Error``, ``...Exception``)."""
    bases = [getattr(b, "id", None) or getattr(b, "attr", None) or "" for b in node.bases]
    return any(b.endswith(("Error", "Exception")) for b in bases)


def test_every_error_class_lives_in_errors_py() -> None:
    elsewhere = sorted(
        f"{_rel(p)}:{node.name}"
        for p in MODULES
        if _rel(p) != "errors.py"
        for node in ast.walk(_tree(p))
        if isinstance(node, ast.ClassDef) and node.name not in FRAMEWORK_ERRORS and _is_exception(node)
    )
    assert elsewhere == []


def test_no_module_is_over_400_lines_except_estimators() -> None:
    long = {
        _rel(p): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > 400 and _rel(p) != "estimators.py"
    }
    assert long == {}
