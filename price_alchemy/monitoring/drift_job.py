"""The drift monitor: recent requests in Elasticsearch vs the champion's training profile.

``run_monitor`` (the ``price-alchemy monitor`` command and the monitoring DAG's task):

1. resolves ``models:/<model>@champion`` in the MLflow registry and loads the reference profile
   its training run logged (``reference/profile.json``);
2. reads the listings of the successful requests of the window from ``price-alchemy-requests*``
   (most recent first, at most ``monitoring.max_listings``). Each request event holds an *array*
   of listings (batch requests), which Elasticsearch maps as an object array: terms and histogram
   aggregations on those fields would count requests, not listings, so the listing values are read
   from ``_source`` (only the few fields needed) with ``search_after`` paging;
3. computes the drift with Evidently (:mod:`price_alchemy.monitoring.drift`; Evidently is imported
   only then, not when this module is);
4. indexes one document per feature and one summary document into
   ``price-alchemy-monitoring-YYYY.MM`` with ids derived from the window and the feature, so a
   rerun for the same window overwrites instead of duplicating;
5. writes Evidently's HTML report to ``$PRICE_ALCHEMY_HOME/reports/drift/`` and logs it, the result
   and the PSI values to a run of the MLflow experiment ``<experiment>-monitoring``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from price_alchemy import mlflow_store
from price_alchemy.config import Settings
from price_alchemy.errors import ModelNotFoundError, MonitoringError
from price_alchemy.monitoring.drift import MODEL_VERSION, WINDOW_COLUMNS, DriftResult, check_drift
from price_alchemy.names import (
    CHAMPION,
    MONITORING_EXPERIMENT_SUFFIX,
    PROFILE_ARTIFACT,
    REQUESTS_INDEX_PATTERN,
    monitoring_index,
)
from price_alchemy.params import Params

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

PAGE_SIZE = 5000
LISTING_FIELDS = tuple(f"price_alchemy.listings.{c}" for c in WINDOW_COLUMNS)


@dataclass(frozen=True)
class MonitorReport:
    """What one drift check produced: the verdict, where it was written, the MLflow run."""

    result: DriftResult
    report_path: Path
    index: str
    document_ids: list[str]
    mlflow_run_id: str

    @property
    def drifted(self) -> bool:
        return self.result.drifted

    def summary(self) -> str:
        return f"{self.result.summary()}\nreport: {self.report_path}\nMLflow run: {self.mlflow_run_id}"

    def to_dict(self) -> dict[str, Any]:
        """A small JSON-able summary (an XCom, a CLI --json)."""
        return {
            "status": self.result.status,
            "drifted": self.drifted,
            "drifted_features": self.result.drifted_features,
            "psi": {f.feature: f.value for f in self.result.features},
            "listings": self.result.listings,
            "requests": self.result.requests,
            "model_version": self.result.model_version,
            "window_start": self.result.window_start.isoformat(),
            "window_end": self.result.window_end.isoformat(),
            "report": str(self.report_path),
            "index": self.index,
            "mlflow_run_id": self.mlflow_run_id,
        }


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    profile: dict[str, Any]


def load_champion(settings: Settings) -> Champion:
    """The champion version and the reference profile logged by its training run."""
    champion = mlflow_store.alias_version(settings, CHAMPION)
    if champion is None:
        raise ModelNotFoundError(
            f"no version of registered model {settings.model_name!r} has alias {CHAMPION!r}: "
            "there is no training profile to compare requests with; train a model first"
        )
    try:
        if champion.run_id is None:
            raise ModelNotFoundError("the version has no training run")
        profile = mlflow_store.run_profile(settings, champion.run_id)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(
            f"champion {settings.model_name} v{champion.version} (run {champion.run_id}) has no {PROFILE_ARTIFACT}"
        ) from exc
    return Champion(champion.version, str(champion.run_id), profile)


def _listing_rows(hit: dict[str, Any]) -> list[dict[str, Any]]:
    source = hit.get("_source", {}).get("price_alchemy", {})
    version = (source.get("model") or {}).get("version")
    listings = source.get("listings") or []
    if isinstance(listings, dict):  # a single listing may be stored as an object
        listings = [listings]
    return [{**{c: item.get(c) for c in WINDOW_COLUMNS}, MODEL_VERSION: version} for item in listings]


def fetch_window(
    client: Elasticsearch,
    start: datetime,
    end: datetime,
    *,
    max_listings: int,
    index: str = REQUESTS_INDEX_PATTERN,
) -> tuple[pd.DataFrame, int]:
    """Listings of successful requests in ``[start, end)``, most recent first; and the request count."""
    from elasticsearch import ApiError, TransportError

    query = {
        "bool": {
            "filter": [
                {"range": {"@timestamp": {"gte": start.isoformat(), "lt": end.isoformat()}}},
                {"range": {"http.response.status_code": {"gte": 200, "lt": 300}}},
                {"exists": {"field": "price_alchemy.listings.price"}},
            ]
        }
    }
    rows: list[dict[str, Any]] = []
    requests = 0
    after: list[Any] | None = None
    try:
        while len(rows) < max_listings:
            page = client.search(
                index=index,
                query=query,
                size=PAGE_SIZE,
                sort=[{"@timestamp": "desc"}, {"event.id": "asc"}],
                source_includes=[*LISTING_FIELDS, "price_alchemy.model.version"],
                search_after=after,
                ignore_unavailable=True,
                allow_no_indices=True,
                track_total_hits=False,
            )
            hits = page["hits"]["hits"]
            for hit in hits:
                rows.extend(_listing_rows(hit))
            requests += len(hits)
            if len(hits) < PAGE_SIZE:
                break
            after = hits[-1]["sort"]
    except (ApiError, TransportError) as exc:
        raise MonitoringError(f"cannot read request events from Elasticsearch ({index}): {exc}") from exc
    frame = pd.DataFrame(rows[:max_listings], columns=[*WINDOW_COLUMNS, MODEL_VERSION])
    return frame, requests


def monitoring_documents(
    result: DriftResult, model_name: str, report_path: Path | None = None
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Target index and ``{id: document}`` for the result: one per feature plus a summary.

    Fields as in docs/request-events.md, "Monitoring documents".
    """
    end, hours = result.window_end, (result.window_end - result.window_start).total_seconds() / 3600
    window = {"start": result.window_start.isoformat(), "end": end.isoformat(), "hours": round(hours, 4)}
    key = f"{end:%Y%m%dT%H%M%SZ}-{hours:g}h-v{result.model_version}"
    common = {
        "@timestamp": end.isoformat(),
        "event": {"kind": "metric", "dataset": "price_alchemy.drift"},
        "price_alchemy": {"model": {"name": model_name, "version": result.model_version}},
        "monitor": {
            "window_start": result.window_start.isoformat(),
            "window_end": end.isoformat(),
            "model_version": result.model_version,
            "requests": result.requests,
            "drifted": result.drifted,
            "report_path": None if report_path is None else str(report_path),
        },
    }
    docs: dict[str, dict[str, Any]] = {}
    for f in result.features:
        docs[f"{key}-{f.feature}"] = {
            **common,
            "drift": {
                "type": "feature",
                "feature": f.feature,
                "kind": f.kind,
                "statistic": f.statistic,
                "value": f.value,
                "watch_threshold": f.watch,
                "threshold": f.threshold,
                "status": f.status,
                "drifted": f.drifted,
                "listings": f.listings,
                "window": window,
            },
        }
    docs[f"{key}-summary"] = {
        **common,
        "drift": {
            "type": "summary",
            "statistic": "psi",
            "value": max((f.value for f in result.features), default=0.0),
            "status": result.status,
            "drifted": result.drifted,
            "drifted_features": result.drifted_features,
            "listings": result.listings,
            "requests": result.requests,
            "window": window,
        },
    }
    return monitoring_index(f"{end:%Y.%m}"), docs


def index_documents(client: Elasticsearch, index: str, docs: dict[str, dict[str, Any]]) -> None:
    """Index (overwrite) the monitoring documents and make them searchable before returning."""
    from elasticsearch import ApiError, TransportError, helpers

    actions = [{"_op_type": "index", "_index": index, "_id": i, "_source": d} for i, d in docs.items()]
    try:
        helpers.bulk(client, actions, refresh="wait_for")
    except (ApiError, TransportError, helpers.BulkIndexError) as exc:
        raise MonitoringError(f"cannot index monitoring documents into {index}: {exc}") from exc


def log_to_mlflow(settings: Settings, report: Path, result: DriftResult, champion: Champion) -> str:
    """One run in the monitoring experiment: PSI metrics, verdict tags, the report and the result."""
    mlflow_store.configure(settings)
    experiment_id = mlflow_store.ensure_experiment(
        settings, settings.experiment_name + MONITORING_EXPERIMENT_SUFFIX
    )
    with mlflow_store.run(
        experiment_id=experiment_id, run_name=f"drift {result.window_end:%Y-%m-%d %H:%M}"
    ) as run_id:
        mlflow_store.set_tags(
            {
                "price_alchemy.stage": "monitoring",
                "drift.status": result.status,
                "drift.drifted": str(result.drifted),
                "model.version": champion.version,
                "model.run_id": champion.run_id,
            }
        )
        mlflow_store.log_params(
            {
                "window_start": result.window_start.isoformat(),
                "window_end": result.window_end.isoformat(),
                "min_listings": result.min_listings,
            }
        )
        mlflow_store.log_metrics({f"psi_{f.feature}": f.value for f in result.features})
        mlflow_store.log_metrics({"listings": result.listings, "requests": result.requests})
        mlflow_store.log_file(report, "drift")
        mlflow_store.log_dict(result.to_dict(), "drift/result.json")
    return run_id


def run_monitor(
    settings: Settings,
    params: Params,
    *,
    window_hours: float | None = None,
    end: datetime | None = None,
    client: Elasticsearch | None = None,
) -> MonitorReport:
    """Check the window ending at ``end`` (default now) against the champion's profile."""
    from price_alchemy.monitoring.report import write_report

    hours = window_hours or params.monitoring.window_hours
    end = (end or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(hours=hours)
    champion = load_champion(settings)
    if client is None:
        from price_alchemy.monitoring.elastic import connect

        client = connect(settings)
    window, requests = fetch_window(client, start, end, max_listings=params.monitoring.max_listings)
    check = check_drift(
        window,
        champion.profile,
        params.monitoring,
        window_start=start,
        window_end=end,
        model_version=champion.version,
        requests=requests,
    )
    result = check.result
    report = write_report(check, settings.reports_dir / "drift")
    index, docs = monitoring_documents(result, settings.model_name, report)
    index_documents(client, index, docs)
    run_id = log_to_mlflow(settings, report, result, champion)
    log.info(
        "drift check %s: %s (%d listings); report %s", end.isoformat(), result.status, result.listings, report
    )
    return MonitorReport(result, report, index, list(docs), run_id)
