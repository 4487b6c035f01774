"""Every third-party import is declared in pyproject.toml, by core or by the extra that owns it.

A module's owner is its subpackage: ``serving/`` -> ``serve``, ``monitoring/`` -> ``monitor``,
``training/spark_tuning.py`` -> ``spark``, everything else -> core (the package's own
dependencies); the DAG files in ``dags/`` -> ``airflow``.
Each import is parsed with ``ast`` (also inside functions and ``TYPE_CHECKING`` blocks) and mapped to
the distributions that provide its top-level name in this environment; one of them must be
declared by the owner (an extra includes core and the extras it names, e.g. ``price-alchemy[monitor]``).
The clean-install test (tests/integration/test_clean_install.py) checks the same thing for real.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "price_alchemy"
OWNERS = {"serving": "serve", "monitoring": "monitor"}  # subpackage -> extra; the rest is core
FILE_OWNERS = {"training/spark_tuning.py": "spark"}  # imports pyspark lazily, only for tuning.backend: spark
EXTRAS = ("serve", "monitor", "airflow", "spark", "all")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> tuple[str, set[str]]:
    """``"price-alchemy[serve,monitor]"`` -> ``("price-alchemy", {"serve", "monitor"})``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement)
    assert match, f"unparsable requirement {requirement!r} in pyproject.toml"
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return normalize(match.group(1)), extras


@cache
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(extra: str | None) -> set[str]:
    """Distributions installed by ``price-alchemy`` (extra None) or ``price-alchemy[extra]``."""
    found: set[str] = set()
    pending = [project()["dependencies"], *([project()["optional-dependencies"][extra]] if extra else [])]
    seen: set[str] = set()
    while pending:
        for requirement in pending.pop():
            name, extras = requirement_name(requirement)
            if name == normalize(project()["name"]):
                for sub in extras - seen:
                    seen.add(sub)
                    pending.append(project()["optional-dependencies"][sub])
            else:
                found.add(name)
    return found


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the non-stdlib, non-project modules ``path`` imports (absolute imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        for module in modules:
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in {"price_alchemy", "__future__"}:
                names.add(top)
    return names


def owner(path: Path) -> str | None:
    if path.is_relative_to(ROOT / "dags"):
        return "airflow"
    rel = path.relative_to(PACKAGE)
    return FILE_OWNERS.get(rel.as_posix()) or OWNERS.get(rel.parts[0])


def undeclared(paths: list[Path]) -> list[str]:
    providers = packages_distributions()
    problems = []
    for path in paths:
        extra = owner(path)
        allowed = declared(extra)
        for name in sorted(third_party_imports(path)):
            dists = {normalize(d) for d in providers.get(name, [])}
            if not dists:
                problems.append(
                    f"{path.relative_to(ROOT)}: imports {name}, which no installed distribution provides"
                )
            elif not dists & allowed:
                where = f"the [{extra}] extra" if extra else "core dependencies"
                problems.append(
                    f"{path.relative_to(ROOT)}: imports {name} ({', '.join(sorted(dists))}), not in {where}"
                )
    return problems


def test_every_import_is_declared_by_its_owner() -> None:
    paths = sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "dags").glob("*.py"))
    assert undeclared(paths) == []


def test_an_undeclared_import_is_reported(tmp_path: Path) -> None:
    """The check itself: a core module importing FastAPI (a serve dependency) is caught."""
    module = PACKAGE / "tmp_undeclared_probe.py"
    try:
        module.write_text("import fastapi\nimport numpy\n")
        assert undeclared([module]) == [
            "price_alchemy/tmp_undeclared_probe.py: imports fastapi (fastapi), not in core dependencies"
        ]
    finally:
        module.unlink()


def test_extras_are_complete_and_all_is_the_union() -> None:
    extras = project()["optional-dependencies"]
    assert set(EXTRAS) <= set(extras)
    union = set().union(*(declared(extra) for extra in ("serve", "monitor", "airflow", "spark")))
    assert declared("all") == union
    assert {"fastapi", "uvicorn", "prometheus-client"} <= declared("serve")
    assert {"evidently", "elasticsearch", "httpx"} <= declared("monitor")
    assert {"apache-airflow", "evidently"} <= declared("airflow")  # the monitoring DAG checks drift
    assert not declared(None) & {"fastapi", "evidently", "elasticsearch", "apache-airflow"}


def test_python_versions_match_the_bootstrap_and_the_workflow() -> None:
    assert project()["requires-python"] == ">=3.11,<3.14"
    classifiers = {c for c in project()["classifiers"] if re.fullmatch(r".*Python :: 3\.\d+", c)}
    versions = sorted(c.rsplit(" ", 1)[1] for c in classifiers)
    assert versions == ["3.11", "3.12", "3.13"]
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "SUPPORTED=(3.13 3.12 3.11)" in bootstrap
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    for version in versions:
        assert f'"{version}"' in workflow, f"the CI matrix misses Python {version}"


def test_the_workflow_installs_the_wheel_with_every_extra() -> None:
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = workflow["jobs"]["test"]["strategy"]["matrix"]["include"]
    covered = {extra for job in jobs for extra in str(job.get("extras", "")).split(",") if extra}
    extras = set(project()["optional-dependencies"]) - {"dev"}
    assert extras | {"core"} == covered, "an extra no clean-install job of the workflow checks"


def test_the_cli_names_the_modules_each_extra_brings() -> None:
    """``price_alchemy.cli.extras.EXTRA_MODULES`` (what a command checks before it runs) is what the
    extra declares beyond core, and covers every import of the extra's subpackage not in core."""
    from price_alchemy.cli.extras import EXTRA_MODULES

    providers = packages_distributions()
    core = declared(None)
    for extra, modules in EXTRA_MODULES.items():
        for module in modules:
            dists = {normalize(d) for d in providers.get(module, [])}
            assert dists & declared(extra), f"{module} is not provided by the [{extra}] extra"
        subpackage = next(sub for sub, name in OWNERS.items() if name == extra)
        imported = set().union(*(third_party_imports(p) for p in (PACKAGE / subpackage).rglob("*.py")))
        beyond_core = {m for m in imported if not {normalize(d) for d in providers.get(m, [])} & core}
        assert beyond_core <= set(modules), f"[{extra}]: the CLI does not check {beyond_core - set(modules)}"
    # the server asks uvicorn for these by name (loop="uvloop", http="httptools"): no import to parse
    assert {"uvloop", "httptools"} <= set(EXTRA_MODULES["serve"])
    assert {"uvloop", "httptools"} <= declared("serve")


def test_missing_modules_are_found_by_import_spec() -> None:
    from price_alchemy.cli import extras

    assert extras.missing_modules("serve") == []  # the locked environment has every extra
    assert extras.missing_modules("monitor") == []
