"""The quickstart notebook runs top to bottom against the installed package and beats the baseline."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


@pytest.mark.integration
def test_quickstart_notebook_runs(tmp_path: Path) -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict[str, object] = {}
    previous_uri = mlflow.get_tracking_uri()
    try:
        for cell in cells:
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                exec(compile(source, f"{NOTEBOOK.name}", "exec"), namespace)
    finally:
        mlflow.set_tracking_uri(previous_uri)
    fitted = namespace["fitted"]
    parts = namespace["parts"]
    from price_alchemy.estimators import MedianPriceBaseline
    from price_alchemy.training.evaluate import rmsle

    model_score = rmsle(parts.test.price, fitted.pipeline.predict(parts.test))  # type: ignore[attr-defined]
    baseline = MedianPriceBaseline().fit(parts.train, parts.train.price)  # type: ignore[attr-defined]
    assert model_score < rmsle(parts.test.price, baseline.predict(parts.test))  # type: ignore[attr-defined]
