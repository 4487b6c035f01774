"""The drift report: Evidently's HTML page of the check, under a one-line verdict.

The page is Evidently's own (``Snapshot.get_html_str``): its data-drift table (PSI per feature,
its drift threshold, drift detected or not) and, per feature, the reference and current
distributions over the profile's bins. It is self-contained (scripts and fonts inlined, about
3.7 MB), so it opens from disk, from the MLflow run's artifacts or as an attachment.

Evidently knows one threshold per feature; the verdict of the check (``stable``, ``watch``,
``drifted`` or ``insufficient_data``, see :mod:`price_alchemy.monitoring.drift`) is the project's,
so a short banner above Evidently's page states it, the window and the champion version.
"""

from __future__ import annotations

import html
from pathlib import Path

from price_alchemy.monitoring.drift import DriftCheck, DriftResult

STATUS_COLOURS = {
    "stable": "#2e7d32",
    "watch": "#ef6c00",
    "drifted": "#c62828",
    "insufficient_data": "#616161",
}
BANNER_ID = "price-alchemy-verdict"


def verdict_banner(result: DriftResult) -> str:
    """The verdict line: status, window, champion version, listings; watch and drifted features."""
    esc = html.escape
    status = result.status
    flagged = ", ".join(
        f"{esc(f.feature)} ({f.status} {f.value:.3f})"
        for f in result.features
        if f.status in ("watch", "drifted")
    )
    return (
        f'<div id="{BANNER_ID}" style="font-family:sans-serif;padding:12px 20px;'
        f'border-left:8px solid {STATUS_COLOURS[status]};background:#fafafa">'
        f'<b style="color:{STATUS_COLOURS[status]}">{esc(status.upper())}</b> '
        f"window {esc(result.window_start.isoformat())} to {esc(result.window_end.isoformat())}, "
        f"champion version {esc(result.model_version or '?')}, {result.listings} listings in "
        f"{result.requests} requests (minimum for a verdict {result.min_listings}). "
        f"PSI below the watch level is stable, at the drift level drifted"
        f"{'; ' + flagged if flagged else ''}.</div>"
    )


def render_html(check: DriftCheck) -> str:
    """Evidently's page with the verdict banner as the first thing in its body."""
    page = check.snapshot.get_html_str(as_iframe=False)
    banner = verdict_banner(check.result)
    head, found, body = page.partition("<body>")
    return f"{head}<body>\n{banner}{body}" if found else banner + page


def write_report(check: DriftCheck, folder: Path) -> Path:
    """Write the report as ``drift-<window end>.html`` in ``folder``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"drift-{check.result.window_end:%Y%m%dT%H%M%SZ}.html"
    path.write_text(render_html(check), encoding="utf-8")
    return path
