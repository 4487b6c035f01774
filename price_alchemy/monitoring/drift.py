"""Drift of served listings against the champion's training profile, measured by Evidently.

The statistic is the **Population Stability Index** per feature, computed by Evidently's drift
metrics with its ``psi`` stattest (``DataDriftPreset(method="psi")``, one ``ValueDrift`` per
feature): ``PSI = sum_i (c_i - r_i) * ln(c_i / r_i)`` over bins ``i`` (``r_i`` training share,
``c_i`` window share). Below ``psi.watch`` (0.1) stable, from ``psi.drift`` (0.25) drifted.

**Reference.** A model keeps a *profile* (shares over the bins of :mod:`price_alchemy.profile`),
not rows, so Evidently is given both sides *binned*, as categorical columns: each window value as
its profile bin (a level, ``(other)``, or a numeric bin label), and the profile rebuilt as ``rows``
labels (its row count) whose counts are the shares times ``rows``. The shares were counted on those
rows, so the reference is exact and Evidently's PSI is the PSI over the profile's own bins (docs/
monitoring.md compares this with rebuilding raw values). Evidently gives an empty bin the share
:data:`EVIDENTLY_EMPTY_BIN`, the default ``monitoring.epsilon``; another epsilon is refused.

Kept here, as Evidently cannot express it: the ``watch`` level (its flag has one threshold),
``insufficient_data`` below ``min_listings`` listings (PSI of an unshifted sample of ``n`` over
``B`` bins is about ``(B - 1) / n``), and predicted prices compared only for the champion's version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from price_alchemy.errors import ConfigError, MonitoringError
from price_alchemy.params import DriftThreshold, MonitoringParams
from price_alchemy.profile import MISSING, bin_labels

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

Status = Literal["stable", "watch", "drifted", "insufficient_data"]
OTHER = "(other)"
STATISTIC = "psi"
#: The share Evidently's PSI gives an empty bin (``get_binned_data``), not configurable there.
EVIDENTLY_EMPTY_BIN = 1e-4
#: Reference samples are rebuilt from the profile's row count, this many when it does not say,
#: at most the maximum (each share is then off by less than its inverse).
DEFAULT_REFERENCE_ROWS, MAX_REFERENCE_ROWS = 20_000, 200_000

#: Feature name -> (kind, key of the profile holding its reference).
FEATURES: dict[str, tuple[Literal["categorical", "numeric"], str]] = {
    "item_condition_id": ("categorical", "item_condition_id"),
    "shipping": ("categorical", "shipping"),
    "top_category": ("categorical", "top_category"),
    "brand_name": ("categorical", "brand_name"),
    "name_length": ("numeric", "name_length"),
    "description_length": ("numeric", "description_length"),
    "price": ("numeric", "prediction"),
}
#: Quantile levels of the fallback references (profiles without histograms).
_FALLBACK_LEVELS = {
    "name_length": (0.1, 0.5, 0.9),
    "description_length": (0.1, 0.5, 0.9),
    "prediction": (0.05, 0.25, 0.5, 0.75, 0.95),
}
#: Columns a window frame must have (one row per served listing), as in docs/request-events.md.
WINDOW_COLUMNS: tuple[str, ...] = tuple(FEATURES)
MODEL_VERSION = "model_version"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison: the statistic, its thresholds, the verdict and both distributions."""

    feature: str
    kind: str
    statistic: str
    value: float
    watch: float
    threshold: float
    status: Status
    listings: int
    bins: list[str]
    reference: list[float]
    current: list[float]

    @property
    def drifted(self) -> bool:
        return self.status == "drifted"


@dataclass(frozen=True)
class DriftResult:
    """The verdict of one window: per-feature results and the overall status."""

    window_start: datetime
    window_end: datetime
    model_version: str | None
    requests: int
    listings: int
    min_listings: int
    features: list[FeatureDrift]
    model_versions_seen: dict[str, int] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        if self.listings < self.min_listings:
            return "insufficient_data"
        statuses = {f.status for f in self.features}
        for status in ("drifted", "watch"):
            if status in statuses:
                return status
        return "stable"

    @property
    def drifted(self) -> bool:
        return self.status == "drifted"

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def feature(self, name: str) -> FeatureDrift:
        return next(f for f in self.features if f.feature == name)

    def summary(self) -> str:
        """A few lines for a terminal or a task log."""
        head = (
            f"drift check {self.window_start:%Y-%m-%d %H:%M} .. {self.window_end:%Y-%m-%d %H:%M} UTC, "
            f"model version {self.model_version or '?'}: {self.status.upper()} "
            f"({self.listings} listings in {self.requests} requests; minimum {self.min_listings})"
        )
        rows = [
            f"  {f.feature:<20} {f.statistic.upper()} {f.value:7.4f}  (watch {f.watch:g}, drift {f.threshold:g})"
            f"  {f.status}"
            for f in self.features
        ]
        return "\n".join([head, *rows])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["window_start"] = self.window_start.isoformat()
        out["window_end"] = self.window_end.isoformat()
        out["status"] = self.status
        out["drifted"] = self.drifted
        return out


@dataclass(frozen=True)
class DriftCheck:
    """A verdict and the Evidently run (``Snapshot``) that measured it: its HTML is the report."""

    result: DriftResult
    snapshot: Snapshot


# --- the profile's bins ----------------------------------------------------------------------
def _categorical_key(value: Any) -> str:
    """Profile keys are ``str(value)``; request events carry ints for condition and shipping."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def categorical_reference(
    shares: Mapping[str, float], top_k: int | None = None
) -> tuple[list[str], list[float]]:
    """Levels (most frequent first, at most ``top_k``) and their shares, plus the ``(other)`` remainder."""
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])[: top_k or None]
    levels = [str(k) for k, _ in ranked]
    values = [float(v) for _, v in ranked]
    return [*levels, OTHER], [*values, max(0.0, 1.0 - sum(values))]


def numeric_reference(profile: Mapping[str, Any], key: str) -> tuple[list[float], list[float]]:
    """Bin edges and reference shares of a numeric feature: the stored histogram, else quantiles."""
    stored = profile.get("histograms", {}).get(key)
    if stored:
        return [float(e) for e in stored["edges"]], [float(s) for s in stored["shares"]]
    quantiles = profile.get(f"{key}_quantiles")
    if not quantiles:
        raise KeyError(f"the reference profile has no histogram or quantiles for {key!r}")
    levels = _FALLBACK_LEVELS[key]
    # Between quantiles at levels l_j lie l_{j+1} - l_j of the rows; equal quantiles merge bins.
    bounds = [0.0, *levels, 1.0]
    edges: list[float] = []
    shares: list[float] = []
    for j, q in enumerate(quantiles):
        share = bounds[j + 1] - bounds[j]
        if edges and float(q) == edges[-1]:
            shares[-1] += share
        else:
            edges.append(float(q))
            shares.append(share)
    shares.append(1.0 - bounds[-2])
    return edges, shares


def numeric_labels(edges: list[float]) -> list[str]:
    """Unique, ordered labels of the numeric bins (``01 <3``, ``02 3-7``, ...): Evidently's columns."""
    return [f"{i:02d} {label}" for i, label in enumerate(bin_labels(edges), start=1)]


def binned_feature(
    name: str, values: pd.Series, profile: Mapping[str, Any], params: MonitoringParams
) -> tuple[list[str], list[float], pd.Series]:
    """The profile's bins of a feature: labels, reference shares, and each window value's label.

    Categorical values outside the listed levels fall in ``(other)``; a missing numeric value (a
    listing another model version priced) has no label (NaN) and is left out of the comparison.
    """
    kind, key = FEATURES[name]
    if kind == "categorical":
        top_k = params.top_k_brands if name == "brand_name" else None
        labels, reference = categorical_reference(profile[key], top_k)
        keys = values.map(_categorical_key)
        return labels, reference, keys.where(keys.isin(set(labels[:-1])), OTHER).astype(object)
    edges, reference = numeric_reference(profile, key)
    labels = numeric_labels(edges)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), numbers, side="right")
    binned = np.asarray(labels, dtype=object)[index]
    binned[np.isnan(numbers)] = None
    return labels, reference, pd.Series(binned, index=values.index, dtype=object)


def reference_counts(shares: list[float], rows: int) -> np.ndarray:
    """Counts of ``rows`` reference rows over the bins, proportional to ``shares`` (largest remainders).

    Exact when the shares were counted on ``rows`` rows (as the training profile's are); otherwise
    each share is off by less than ``1 / rows``.
    """
    weights = np.maximum(np.asarray(shares, dtype=np.float64), 0.0)
    total = weights.sum()
    if total <= 0:
        raise ValueError("a reference with no mass in any bin")
    exact = weights / total * rows
    counts = np.floor(exact + 1e-9).astype(np.int64)
    short = rows - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


def _reference_rows(profile: Mapping[str, Any]) -> int:
    rows = profile.get("rows")
    if not isinstance(rows, int | float) or rows < 1:
        return DEFAULT_REFERENCE_ROWS
    return min(int(rows), MAX_REFERENCE_ROWS)


def _status(value: float, limits: DriftThreshold, enough: bool) -> Status:
    if not enough:
        return "insufficient_data"
    if value >= limits.drift:
        return "drifted"
    return "watch" if value >= limits.watch else "stable"


# --- Evidently -----------------------------------------------------------------------------
def evidently_psi(
    current: pd.DataFrame, reference: pd.DataFrame, thresholds: Mapping[str, float]
) -> tuple[dict[str, float], Snapshot]:
    """PSI of every column with a current value, by Evidently's drift metrics; and their run.

    The columns are categorical bins. ``drift_share`` is one column's share, so Evidently's
    dataset-level flag is ours: the window drifts when any feature does.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import RowCount
    from evidently.presets import DataDriftPreset

    columns = [c for c in current.columns if current[c].notna().any()]
    definition = DataDefinition(categorical_columns=list(current.columns))
    current_data = Dataset.from_pandas(current, data_definition=definition)
    reference_data = Dataset.from_pandas(reference, data_definition=definition)
    if not columns:  # an empty window: nothing to compare, the report says so
        return {}, Report([RowCount()]).run(current_data, reference_data)
    preset = DataDriftPreset(
        columns=columns,
        method=STATISTIC,
        per_column_threshold={c: float(thresholds[c]) for c in columns},
        drift_share=1.0 / len(columns),
    )
    snapshot = Report([preset]).run(current_data, reference_data)
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if str(config.get("type", "")).endswith(":ValueDrift"):
            values[str(config["column"])] = float(metric["value"])
    if set(values) != set(columns):
        raise MonitoringError(f"Evidently measured {sorted(values)}, expected {sorted(columns)}")
    return values, snapshot


def check_drift(
    window: pd.DataFrame,
    profile: Mapping[str, Any],
    params: MonitoringParams,
    *,
    window_start: datetime,
    window_end: datetime,
    model_version: str | None = None,
    requests: int | None = None,
) -> DriftCheck:
    """Drift of every feature of ``window`` (one row per listing, :data:`WINDOW_COLUMNS`).

    Inputs are compared over all listings; predicted prices only over those the model version
    under test answered (another version's predictions say nothing about this one), when the frame
    has a ``model_version`` column.
    """
    missing = [c for c in WINDOW_COLUMNS if c not in window.columns]
    if missing:
        raise ValueError(f"window frame lacks columns {missing}")
    if not np.isclose(params.epsilon, EVIDENTLY_EMPTY_BIN, rtol=1e-9, atol=0.0):
        raise ConfigError(
            f"monitoring.epsilon = {params.epsilon:g}: Evidently's PSI gives an empty bin the share "
            f"{EVIDENTLY_EMPTY_BIN:g} and cannot be told another; set epsilon to {EVIDENTLY_EMPTY_BIN:g}"
        )
    versions: dict[str, int] = {}
    window = window.reset_index(drop=True)
    values = {name: window[name] for name in WINDOW_COLUMNS}
    if MODEL_VERSION in window.columns:
        seen = window[MODEL_VERSION].dropna().astype(str)
        versions = {str(k): int(v) for k, v in seen.value_counts().items()}
        if model_version is not None:
            other = window[MODEL_VERSION].astype(str) != str(model_version)
            values["price"] = window["price"].where(~other)
    rows = _reference_rows(profile)
    bins: dict[str, tuple[list[str], list[float]]] = {}
    current: dict[str, pd.Series] = {}
    reference: dict[str, np.ndarray] = {}
    for name in WINDOW_COLUMNS:
        labels, shares, binned = binned_feature(name, values[name], profile, params)
        counts = reference_counts(shares, rows)
        bins[name] = labels, (counts / rows).tolist()
        current[name] = binned
        reference[name] = np.repeat(np.asarray(labels, dtype=object), counts)
    limits = {name: params.feature_thresholds.get(name, params.psi) for name in WINDOW_COLUMNS}
    psi, snapshot = evidently_psi(
        pd.DataFrame(current, index=window.index, columns=list(WINDOW_COLUMNS)),
        pd.DataFrame(reference, columns=list(WINDOW_COLUMNS)),
        {name: limit.drift for name, limit in limits.items()},
    )
    features = []
    for name in WINDOW_COLUMNS:
        labels, shares = bins[name]
        counts = current[name].value_counts().reindex(labels, fill_value=0).to_numpy()
        n = int(counts.sum())
        value = psi.get(name, 0.0)
        features.append(
            FeatureDrift(
                feature=name,
                kind=FEATURES[name][0],
                statistic=STATISTIC,
                value=round(value, 6),
                watch=limits[name].watch,
                threshold=limits[name].drift,
                status=_status(value, limits[name], n >= params.min_listings),
                listings=n,
                bins=labels,
                reference=[round(s, 6) for s in shares],
                current=[round(float(c) / n, 6) if n else 0.0 for c in counts],
            )
        )
    result = DriftResult(
        window_start=window_start,
        window_end=window_end,
        model_version=model_version,
        requests=len(window) if requests is None else requests,
        listings=len(window),
        min_listings=params.min_listings,
        features=features,
        model_versions_seen=versions,
    )
    return DriftCheck(result, snapshot)


def compute_drift(
    window: pd.DataFrame, profile: Mapping[str, Any], params: MonitoringParams, **context: Any
) -> DriftResult:
    """The verdict of :func:`check_drift` alone (same arguments), when no report is wanted."""
    return check_drift(window, profile, params, **context).result
