"""Drift statistic (Evidently's PSI) and verdicts on synthetic windows against a training profile.

The reference is built by the training code itself (``reference_profile``) on synthetic listings,
with the listing's own price standing in for the model's prediction. Windows are other synthetic
listings: from the same generator (no drift), or with exactly one feature shifted. The PSI values
Evidently reports are checked against the formula over the profile's bins (the numbers the
hand-written PSI gave), and the reference it is given against the profile's shares.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from price_alchemy.data.synthetic import generate_listings
from price_alchemy.errors import ConfigError
from price_alchemy.monitoring.drift import (
    EVIDENTLY_EMPTY_BIN,
    OTHER,
    WINDOW_COLUMNS,
    DriftResult,
    categorical_reference,
    check_drift,
    compute_drift,
    numeric_reference,
    reference_counts,
)
from price_alchemy.monitoring.report import BANNER_ID, write_report
from price_alchemy.params import MonitoringParams, Params, load_params
from price_alchemy.profile import bin_counts, histogram, quantile_edges, reference_profile, signals_frame

pytestmark = pytest.mark.unit

END = datetime(2025, 6, 1, 12, tzinfo=UTC)
START = END - timedelta(hours=24)
PARAMS = MonitoringParams()


def window_from_listings(listings: pd.DataFrame, predictions: np.ndarray) -> pd.DataFrame:
    """A window frame from canonical listings and their predicted prices, as the API would log them."""
    return signals_frame(listings).assign(price=np.asarray(predictions, dtype=np.float64))


def _predictions(listings: pd.DataFrame) -> np.ndarray:
    return np.clip(listings["price"].to_numpy(dtype=np.float64), 3.0, None)


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    train = generate_listings(6000, seed=1)
    return reference_profile(train, _predictions(train))


@pytest.fixture(scope="module")
def served() -> pd.DataFrame:
    """3,000 listings from the same generator (another seed, other ids), as the API would log them."""
    listings = generate_listings(3000, seed=2, start_id=10**7)
    return window_from_listings(listings, _predictions(listings))


def _drift(
    window: pd.DataFrame, profile: dict[str, Any], params: MonitoringParams = PARAMS, **kw: Any
) -> DriftResult:
    return compute_drift(window, profile, params, window_start=START, window_end=END, **kw)


def _check(window: pd.DataFrame, profile: dict[str, Any], params: MonitoringParams = PARAMS, **kw: Any):
    return check_drift(window, profile, params, window_start=START, window_end=END, **kw)


def _formula(reference: list[float], current: list[float]) -> float:
    """PSI over the bins as the old hand-written code computed it, empty bins at Evidently's 1e-4
    (every non-empty share of these windows is above 1e-4, where Evidently's rule is that floor)."""
    r = np.where(np.asarray(reference) == 0, EVIDENTLY_EMPTY_BIN, reference)
    c = np.where(np.asarray(current) == 0, EVIDENTLY_EMPTY_BIN, current)
    return float(np.sum((c - r) * np.log(c / r)))


def test_evidently_psi_is_the_formula_over_the_profile_bins(
    served: pd.DataFrame, profile: dict[str, Any]
) -> None:
    window = served.assign(price=served["price"] * 2.5, brand_name="Brand never seen in training")

    check = _check(window, profile)

    metrics = check.snapshot.dict()["metrics"]
    measured = {m["config"]["column"]: m for m in metrics if m["config"]["type"].endswith(":ValueDrift")}
    assert set(measured) == set(WINDOW_COLUMNS)
    for f in check.result.features:
        assert measured[f.feature]["config"]["method"] == "psi"
        assert measured[f.feature]["config"]["threshold"] == f.threshold
        assert f.value == pytest.approx(float(measured[f.feature]["value"]), abs=1e-6)
        # (the shares in the result are rounded to 6 decimals)
        assert f.value == pytest.approx(_formula(f.reference, f.current), rel=1e-4, abs=2e-5), f.feature
    # Numeric values are binned by the profile's own rule (profile.histogram over its edges).
    for name, key, column in [
        ("name_length", "name_length", "name_length"),
        ("price", "prediction", "price"),
    ]:
        edges, _ = numeric_reference(profile, key)
        expected = histogram(window[column].to_numpy(dtype=np.float64), edges)["shares"]
        assert check.result.feature(name).current == pytest.approx(expected, abs=1e-6)
    # An empty current bin costs a large but finite amount: every known brand bin is empty here.
    brand = check.result.feature("brand_name")
    assert 3.0 < brand.value < 20.0


def test_the_reference_given_to_evidently_is_the_profile_exactly(
    served: pd.DataFrame, profile: dict[str, Any]
) -> None:
    """Shares counted on ``rows`` rows come back exactly; other shares within 1 / rows."""
    rows = profile["rows"]
    _, shares = categorical_reference(profile["brand_name"], 20)
    counts = reference_counts(shares, rows)
    assert counts.sum() == rows and (counts / rows).tolist() == pytest.approx(shares, abs=1e-12)
    _, hist = numeric_reference(profile, "name_length")
    assert (reference_counts(hist, rows) / rows).tolist() == pytest.approx(hist, abs=1e-12)

    served_check = _check(served.head(600), profile).result
    assert served_check.feature("brand_name").reference == pytest.approx(shares, abs=1e-6)
    assert served_check.feature("name_length").reference == pytest.approx(hist, abs=1e-6)

    odd = [1 / 3, 1 / 3, 1 / 3 - 1e-3, 1e-3]
    counts = reference_counts(odd, 1000)
    assert counts.sum() == 1000 and np.abs(counts / 1000 - odd).max() < 1 / 1000
    assert reference_counts([0.5, 0.5, 0.0], 7).tolist() in ([4, 3, 0], [3, 4, 0])


def test_another_epsilon_is_refused_evidently_floors_empty_bins_itself(
    served: pd.DataFrame, profile: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match="epsilon"):
        _drift(served, profile, MonitoringParams.model_validate({"epsilon": 1e-3}))


def test_an_empty_window_is_insufficient_data_with_a_report(
    served: pd.DataFrame, profile: dict[str, Any], tmp_path: Any
) -> None:
    check = _check(served.head(0), profile)

    assert check.result.status == "insufficient_data" and check.result.listings == 0
    assert {f.value for f in check.result.features} == {0.0}
    html = write_report(check, tmp_path).read_text()
    assert BANNER_ID in html and "INSUFFICIENT_DATA" in html


def test_the_report_is_evidentlys_page_under_the_verdict(
    served: pd.DataFrame, profile: dict[str, Any], tmp_path: Any
) -> None:
    check = _check(served.assign(price=served["price"] * 2.5), profile, model_version="3")

    path = write_report(check, tmp_path / "drift")

    html = path.read_text()
    assert path.name == "drift-20250601T120000Z.html"
    body = html[html.index("<body>") :]
    assert body.index(BANNER_ID) < body.index("<script")  # the verdict first, then Evidently's page
    assert "DRIFTED" in body[: body.index("<script")] and "price (drifted 1." in html
    # Evidently's own drift table: its verdict per column agrees with ours (one drifted of seven).
    assert "window.drawDashboard(" in html and '"stattest_name": "PSI"' in html
    assert "Drift is detected for 14.286% of columns (1 out of 7)." in html
    assert "Dataset Drift is detected." in html  # one drifted feature is enough, as for our verdict
    for feature in WINDOW_COLUMNS:
        assert f'"column_name": "{feature}"' in html


def test_binning_rule_and_decile_edges() -> None:
    assert bin_counts([0, 1, 2, 3, 4, 5], [2, 4]).tolist() == [2, 2, 2]  # (-inf,2) [2,4) [4,inf)
    hist = histogram(np.arange(1000))
    assert len(hist["edges"]) == 9 and hist["shares"] == pytest.approx([0.1] * 10)
    assert quantile_edges([5, 5, 5, 5]) == [5.0]  # ties collapse: no empty reference bins


def test_profile_keeps_its_keys_and_adds_decile_histograms(profile: dict[str, Any]) -> None:
    assert {"item_condition_id", "shipping", "top_category", "brand_name", "prediction_quantiles"} <= set(
        profile
    )
    for key in ("name_length", "description_length", "prediction"):
        hist = profile["histograms"][key]
        assert len(hist["shares"]) == len(hist["edges"]) + 1
        assert sum(hist["shares"]) == pytest.approx(1.0)
        assert max(hist["shares"]) < 0.3, key  # decile edges: no bin holds most of the rows


def test_same_distribution_is_stable_on_every_feature(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    result = _drift(served, profile, model_version="3")

    assert result.status == "stable" and not result.drifted
    assert {f.feature for f in result.features} == set(WINDOW_COLUMNS)
    for f in result.features:
        assert f.value < PARAMS.psi.watch, (f.feature, f.value)
        assert f.listings == len(served) and sum(f.current) == pytest.approx(1.0, abs=1e-4)
    assert result.listings == 3000 and result.model_version == "3"


@pytest.mark.parametrize(
    ("feature", "shift"),
    [
        (
            "item_condition_id",
            lambda w, rng: w.assign(
                item_condition_id=np.where(rng.random(len(w)) < 0.7, 5, w["item_condition_id"])
            ),
        ),
        (
            "top_category",
            lambda w, rng: w.assign(
                top_category=np.where(rng.random(len(w)) < 0.5, "Electronics", w["top_category"])
            ),
        ),
        ("price", lambda w, rng: w.assign(price=w["price"] * 2.5)),
        ("description_length", lambda w, rng: w.assign(description_length=w["description_length"] // 3)),
    ],
)
def test_a_shifted_feature_drifts_and_only_that_one(
    served: pd.DataFrame, profile: dict[str, Any], feature: str, shift: Any
) -> None:
    window = shift(served.copy(), np.random.default_rng(0))

    result = _drift(window, profile)

    assert result.drifted and result.status == "drifted"
    assert result.drifted_features == [feature]
    assert result.feature(feature).value >= PARAMS.psi.drift
    assert all(f.value < PARAMS.psi.watch for f in result.features if f.feature != feature)


def test_unseen_levels_fall_into_the_other_bin(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    window = served.assign(brand_name="Brand never seen in training")

    result = _drift(window, profile)

    brand = result.feature("brand_name")
    assert brand.bins[-1] == OTHER and brand.current[-1] == pytest.approx(1.0)
    assert len(brand.bins) == PARAMS.top_k_brands + 1
    assert result.drifted_features == ["brand_name"]


def test_too_few_listings_is_insufficient_data_not_drift(
    served: pd.DataFrame, profile: dict[str, Any]
) -> None:
    few = served.head(PARAMS.min_listings - 1).assign(price=lambda w: w["price"] * 4)

    result = _drift(few, profile)

    assert result.status == "insufficient_data" and not result.drifted
    assert {f.status for f in result.features} == {"insufficient_data"}
    assert result.feature("price").value > PARAMS.psi.drift  # still computed and reported
    assert "INSUFFICIENT_DATA" in result.summary()


def test_predictions_of_other_model_versions_are_not_compared(
    served: pd.DataFrame, profile: dict[str, Any]
) -> None:
    window = served.assign(model_version="7")
    old = window.sample(frac=0.4, random_state=0).index
    window.loc[old, "model_version"] = "6"
    window.loc[old, "price"] = window.loc[old, "price"] * 5  # the old model priced very differently

    result = _drift(window, profile, model_version="7")

    assert not result.drifted
    assert result.feature("price").listings == len(window) - len(old)
    assert result.feature("item_condition_id").listings == len(window)
    assert result.model_versions_seen == {"7": len(window) - len(old), "6": len(old)}


def test_per_feature_thresholds_override_the_default(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    window = served.assign(price=served["price"] * 2.5)
    lenient = MonitoringParams.model_validate(
        {"feature_thresholds": {"price": {"watch": 5.0, "drift": 10.0}}}
    )

    result = _drift(window, profile, lenient)

    assert result.feature("price").threshold == 10.0 and result.feature("price").status == "stable"
    assert not result.drifted


def test_profiles_without_histograms_fall_back_to_their_quantiles(
    served: pd.DataFrame, profile: dict[str, Any]
) -> None:
    old_profile = {k: v for k, v in profile.items() if k != "histograms"}
    edges, shares = numeric_reference(old_profile, "prediction")
    assert edges == sorted(edges) and sum(shares) == pytest.approx(1.0)

    assert not _drift(served, old_profile).drifted
    shifted = _drift(served.assign(price=served["price"] * 2.5), old_profile)
    assert shifted.drifted_features == ["price"]


def test_window_frame_must_have_every_feature(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        _drift(served.drop(columns=["shipping"]), profile)


def test_monitoring_params_refuse_a_watch_level_above_the_drift_level() -> None:
    with pytest.raises(ValueError, match="watch threshold"):
        Params.model_validate({"monitoring": {"psi": {"watch": 0.3, "drift": 0.2}}})
    assert load_params().monitoring == MonitoringParams()  # the packaged file states the defaults


def test_every_monitoring_document_field_is_mapped(served: pd.DataFrame, profile: dict[str, Any]) -> None:
    """The monitoring template is ``dynamic: false``: an unmapped field could not be charted."""
    from pathlib import Path

    from price_alchemy.monitoring.drift_job import monitoring_documents
    from price_alchemy.monitoring.templates import MONITORING_TEMPLATE, TEMPLATES, field_paths

    result = _drift(served.assign(price=served["price"] * 2.5), profile, model_version="3")
    index, docs = monitoring_documents(result, "price-alchemy", Path("/tmp/report.html"))

    mapped = field_paths(TEMPLATES[MONITORING_TEMPLATE]["template"]["mappings"])

    def leaves(node: dict[str, Any], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for key, value in node.items():
            out |= leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
        return out

    assert index == "price-alchemy-monitoring-2025.06" and len(docs) == len(WINDOW_COLUMNS) + 1
    for doc_id, doc in docs.items():
        assert leaves(doc) <= set(mapped), (doc_id, leaves(doc) - set(mapped))
    summary = docs[next(i for i in docs if i.endswith("-summary"))]
    assert summary["drift"]["drifted_features"] == ["price"] and summary["monitor"]["drifted"] is True
    assert summary["monitor"]["report_path"] == "/tmp/report.html"


def test_evidently_is_imported_only_when_a_check_runs() -> None:
    """``import evidently`` costs seconds: the CLI, the DAG file and the API must not pay for it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import price_alchemy.monitoring.drift_job, price_alchemy.monitoring.report, price_alchemy.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'evidently'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
