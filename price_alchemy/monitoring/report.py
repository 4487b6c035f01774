"""The drift report: one self-contained HTML page, reference vs current distribution per feature.

Plots are matplotlib PNGs embedded as base64 ``data:`` URIs, so the page can be opened from disk,
attached to an MLflow run or mailed without its images getting lost.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from price_alchemy.monitoring.drift import DriftResult, FeatureDrift

STATUS_COLOURS = {
    "stable": "#2e7d32",
    "watch": "#ef6c00",
    "drifted": "#c62828",
    "insufficient_data": "#616161",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: DAG workers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def feature_plot_png(feature: FeatureDrift) -> bytes:
    """Side-by-side bars of the reference and current shares of each bin."""
    plt = _pyplot()
    x = np.arange(len(feature.bins))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(x) + 2), 3.2))
    ax.bar(x - 0.2, feature.reference, width=0.4, label="training reference", color="#90a4ae")
    ax.bar(x + 0.2, feature.current, width=0.4, label="recent requests", color=STATUS_COLOURS[feature.status])
    ax.set_xticks(x, feature.bins, rotation=45 if len(x) > 6 else 0, ha="right" if len(x) > 6 else "center")
    ax.set_ylabel("share")
    ax.set_title(f"{feature.feature}: PSI {feature.value:.3f} ({feature.status})")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def render_html(result: DriftResult, *, title: str = "Price Alchemy drift report") -> str:
    """The whole report page."""
    esc = html.escape
    rows = "\n".join(
        f"<tr><td>{esc(f.feature)}</td><td>{f.statistic.upper()}</td><td>{f.value:.4f}</td>"
        f"<td>{f.watch:g}</td><td>{f.threshold:g}</td><td>{f.listings}</td>"
        f'<td style="color:{STATUS_COLOURS[f.status]}"><b>{esc(f.status)}</b></td></tr>'
        for f in result.features
    )
    figures = "\n".join(
        f'<figure id="{esc(f.feature)}"><img alt="{esc(f.feature)} reference vs current" '
        f'src="data:image/png;base64,{base64.b64encode(feature_plot_png(f)).decode()}"></figure>'
        for f in result.features
    )
    versions = ", ".join(f"v{esc(k)}: {v}" for k, v in result.model_versions_seen.items()) or "none"
    status = result.status
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}td,th{{padding:4px 10px;text-align:left}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}figure{{display:inline-block;margin:8px}}</style>
</head><body>
<h1>{esc(title)}</h1>
<p>Window <b>{result.window_start.isoformat()}</b> to <b>{result.window_end.isoformat()}</b>;
champion model version <b>{esc(result.model_version or "?")}</b>;
{result.listings} listings in {result.requests} requests (minimum for a verdict: {result.min_listings});
versions that answered: {versions}.</p>
<h2>Verdict: <span style="color:{STATUS_COLOURS[status]}">{esc(status.upper())}</span></h2>
<p>Statistic: Population Stability Index of each feature's binned distribution against the
training reference logged with the model (PSI below the watch level is stable, at or above the
drift level a significant shift).</p>
<table><tr><th>feature</th><th>statistic</th><th>value</th><th>watch</th><th>drift</th>
<th>listings</th><th>status</th></tr>
{rows}
</table>
<h2>Reference vs recent requests</h2>
{figures}
</body></html>
"""


def write_report(result: DriftResult, folder: Path) -> Path:
    """Write the report as ``drift-<window end>.html`` in ``folder``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"drift-{result.window_end:%Y%m%dT%H%M%SZ}.html"
    path.write_text(render_html(result), encoding="utf-8")
    return path
