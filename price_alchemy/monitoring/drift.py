"""Drift of served listings against the champion's training profile (pure: no I/O).

The statistic is the **Population Stability Index** per feature,
``PSI = sum_i (c_i - r_i) * ln(c_i / r_i)`` over bins ``i``, where ``r_i`` is the share of
training rows and ``c_i`` the share of the window's listings in bin ``i`` (both floored at a small
epsilon: an empty bin would make it infinite). PSI is symmetric in the two samples, works the same
for categorical levels and numeric bins, and has a widely used reading: below 0.1 stable,
0.1-0.25 a moderate shift worth watching, 0.25 and above a significant shift. Those are the
default ``watch`` and ``drift`` thresholds of ``params.monitoring.psi``.

Bins: every level of a categorical feature the profile lists (condition, shipping, top category,
the top-k brands) plus an ``(other)`` bin for the rest; numeric features (name length,
description length, predicted price) use the fixed edges stored in the profile (training deciles,
see :mod:`price_alchemy.profile`). Profiles logged before those histograms existed fall back to
bins between their stored quantiles.

With fewer than ``min_listings`` listings the verdict is ``insufficient_data``: the PSI of an
unshifted sample of ``n`` listings over ``B`` bins is about ``(B - 1) / n``, noise that would
otherwise be read as drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from price_alchemy.params import DriftThreshold, MonitoringParams
from price_alchemy.profile import MISSING, bin_counts, bin_labels

Status = Literal["stable", "watch", "drifted", "insufficient_data"]
OTHER = "(other)"
STATISTIC = "psi"

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


def psi(
    reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray, epsilon: float
) -> float:
    """Population Stability Index of two share vectors over the same bins (shares floored at epsilon)."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    c = np.maximum(np.asarray(current, dtype=np.float64), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


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


def _status(value: float, limits: DriftThreshold, enough: bool) -> Status:
    if not enough:
        return "insufficient_data"
    if value >= limits.drift:
        return "drifted"
    return "watch" if value >= limits.watch else "stable"


def feature_drift(
    name: str,
    values: pd.Series,
    profile: Mapping[str, Any],
    params: MonitoringParams,
    *,
    min_listings: int | None = None,
) -> FeatureDrift:
    """PSI of one feature of the window (one value per listing) against the profile."""
    kind, key = FEATURES[name]
    limits = params.feature_thresholds.get(name, params.psi)
    values = values.dropna() if kind == "numeric" else values
    if kind == "categorical":
        top_k = params.top_k_brands if name == "brand_name" else None
        levels, reference = categorical_reference(profile[key], top_k)
        known = set(levels[:-1])
        keys = values.map(_categorical_key)
        keys = keys.where(keys.isin(known), OTHER)
        counts = keys.value_counts().reindex(levels, fill_value=0).to_numpy()
        labels = levels
    else:
        edges, reference = numeric_reference(profile, key)
        counts = bin_counts(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64), edges)
        labels = bin_labels(edges)
    current = _shares(counts)
    value = psi(reference, current, params.epsilon) if counts.sum() else 0.0
    n = int(counts.sum())
    return FeatureDrift(
        feature=name,
        kind=kind,
        statistic=STATISTIC,
        value=round(value, 6),
        watch=limits.watch,
        threshold=limits.drift,
        status=_status(value, limits, n >= (min_listings or params.min_listings)),
        listings=n,
        bins=labels,
        reference=[round(float(r), 6) for r in reference],
        current=[round(float(c), 6) for c in current],
    )


def compute_drift(
    window: pd.DataFrame,
    profile: Mapping[str, Any],
    params: MonitoringParams,
    *,
    window_start: datetime,
    window_end: datetime,
    model_version: str | None = None,
    requests: int | None = None,
) -> DriftResult:
    """Drift of every feature of ``window`` (one row per listing, :data:`WINDOW_COLUMNS`).

    Inputs are compared over all listings; predicted prices only over those the model version
    under test answered (another version's predictions say nothing about this one), when the frame
    has a ``model_version`` column.
    """
    missing = [c for c in WINDOW_COLUMNS if c not in window.columns]
    if missing:
        raise ValueError(f"window frame lacks columns {missing}")
    versions: dict[str, int] = {}
    predictions = window["price"]
    if MODEL_VERSION in window.columns:
        seen = window[MODEL_VERSION].dropna().astype(str)
        versions = {str(k): int(v) for k, v in seen.value_counts().items()}
        if model_version is not None:
            predictions = window.loc[window[MODEL_VERSION].astype(str) == str(model_version), "price"]
    features = [
        feature_drift(name, window[name] if name != "price" else predictions, profile, params)
        for name in WINDOW_COLUMNS
    ]
    return DriftResult(
        window_start=window_start,
        window_end=window_end,
        model_version=model_version,
        requests=len(window) if requests is None else requests,
        listings=len(window),
        min_listings=params.min_listings,
        features=features,
        model_versions_seen=versions,
    )
