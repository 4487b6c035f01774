"""Every notebook runs top to bottom against the installed package, on synthetic data, in a temp home.

No Jupyter kernel is installed here, so the code cells are executed in order in one namespace (the
notebooks use no IPython magics; a cell's last expression, which Jupyter would display, is simply
evaluated), with matplotlib's Agg backend, from a temporary working directory and without any
``PRICE_ALCHEMY_*`` / ``MLFLOW_*`` variable. Each notebook's results are then checked (a notebook
without checks here fails), and so is its form: outputs stripped, only the package's public API
(no mlflow, evidently, duckdb or elasticsearch import, no private names), and a runtime budget.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: Each notebook runs in well under a minute on a quiet machine; the bound leaves room for a busy one.
MAX_SECONDS = 120
#: What a notebook may import: the package, the standard library it needs and the plotting stack.
ALLOWED_IMPORTS = {"price_alchemy", "tempfile", "pathlib", "datetime", "matplotlib", "numpy", "pandas"}

Namespace = dict[str, Any]


def _code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def run_notebook(path: Path) -> tuple[Namespace, float]:
    """Execute the code cells of ``path`` in order in one namespace; the namespace and the seconds."""
    import matplotlib

    matplotlib.use("Agg")
    namespace: Namespace = {"__name__": "__main__"}
    started = time.perf_counter()
    for number, source in enumerate(_code_cells(path), start=1):
        exec(compile(source, f"{path.name}[cell {number}]", "exec"), namespace)
    return namespace, time.perf_counter() - started


def _check_quickstart(ns: Namespace) -> None:
    from price_alchemy.estimators import MedianPriceBaseline
    from price_alchemy.training.evaluate import rmsle

    fitted, parts = ns["fitted"], ns["parts"]
    model_score = rmsle(parts.test.price, fitted.pipeline.predict(parts.test))
    baseline = MedianPriceBaseline().fit(parts.train, parts.train.price)
    assert model_score < rmsle(parts.test.price, baseline.predict(parts.test))


def _check_explore_listings(ns: Namespace) -> None:
    reasons = ns["reasons"].set_index("reason")["rows"].to_dict()
    assert reasons == {"item_condition_id not in 1..5": 15, "price not in 0..10000": 15, "name missing": 10}
    assert set(ns["reasons"]["batch_id"]) == {"2025-06-02"}  # the clean batch quarantined nothing
    assert len(ns["listings"]) == 4000 - 40 and ns["batches"]["rows"].sum() == 3960
    assert ns["by_category"]["count"].sum() == 3960
    assert ns["correlations"]["log_price"] == pytest.approx(1.0)


def _check_compare_runs(ns: Namespace) -> None:
    results, comparison = ns["results"], ns["comparison"]
    assert len(ns["trainings"]) == 2 and len(ns["trials"]) == 2 * 3  # three trials per training
    assert set(ns["trials"]["training"]) == {"notebook:small sample", "notebook:full sample"}
    lineage = ns["lineage"]
    assert len(lineage) == 6 and set(lineage["context"]) == {"training", "validation", "test"}
    full = lineage[(lineage.training == "full") & (lineage.context == "test")]
    assert full["rows"].item() == results["full"].sizes["test"] == len(ns["test"])
    assert comparison["champion"].sum() == 1
    champion = comparison[comparison["champion"]].iloc[0]
    other = comparison[~comparison["champion"]].iloc[0]
    # Promotion compared the two on these very rows: the champion is not worse beyond the margin.
    margin = ns["quick"].promotion.margin
    assert champion["RMSLE on the shared test rows"] <= other["RMSLE on the shared test rows"] + margin
    assert np.isfinite(ns["by_category"]["mean"]).all()


def _check_monitoring(ns: Namespace) -> None:
    from price_alchemy.monitoring.report import BANNER_ID

    calm, shifted = ns["calm"].result, ns["shifted"].result
    assert calm.status in ("stable", "watch") and not calm.drifted, calm.summary()
    assert shifted.drifted and {"item_condition_id", "top_category"} <= set(shifted.drifted_features)
    html = ns["report_path"].read_text()
    assert BANNER_ID in html and html.count('"stattest_name": "PSI"') == len(shifted.features)
    summaries = ns["summaries"]
    assert len(summaries) == 12 and len(ns["timeline"]) == 12 * len(shifted.features)
    assert summaries["status"].iloc[0] != "drifted" and summaries["status"].iloc[-1] == "drifted"


CHECKS: dict[str, Callable[[Namespace], None]] = {
    "quickstart.ipynb": _check_quickstart,
    "explore_listings.ipynb": _check_explore_listings,
    "compare_runs.ipynb": _check_compare_runs,
    "monitoring.ipynb": _check_monitoring,
}


@pytest.mark.unit
def test_every_notebook_is_executed_here() -> None:
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == set(CHECKS)


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_is_stripped_and_uses_only_the_public_api(name: str) -> None:
    notebook = json.loads((NOTEBOOKS / name).read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "outputs are not stripped"
    tree = ast.parse("\n".join(_code_cells(NOTEBOOKS / name)))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m.split(".")[0] for m in imported} <= ALLOWED_IMPORTS, imported
    private = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    private += [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
    assert [p for p in private if p.startswith("_") and not p.startswith("__")] == []


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_runs_top_to_bottom(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    try:
        namespace, seconds = run_notebook(NOTEBOOKS / name)
        CHECKS[name](namespace)
    finally:
        plt.close("all")
    assert seconds < MAX_SECONDS, f"{name} took {seconds:.0f} s"
