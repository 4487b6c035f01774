"""Send the demo's traffic to a running API and show where it went.

Synthetic listings (not the training rows) go to the API as single requests from 8 concurrent
clients and as batches; the script prints latency and price figures, then, when
``PRICE_ALCHEMY_ELASTICSEARCH_URL`` is set, waits until the shipper has made every request
searchable in Elasticsearch and prints how long that took.

    .venv/bin/python scripts/demo_traffic.py --api http://127.0.0.1:8000 --listings 600
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from price_alchemy.data.synthetic import generate_listings
from price_alchemy.schema import FEATURE_COLUMNS

SINGLE = 120
BATCH = 100


def listing_payloads(n: int) -> list[dict[str, Any]]:
    frame = generate_listings(n, seed=2024, start_id=20_000_000, with_price=False)
    rows = []
    for record in frame[list(FEATURE_COLUMNS)].to_dict(orient="records"):
        rows.append({k: (None if isinstance(v, float) and v != v else v) for k, v in record.items()})
    return rows


def send(api: str, rows: list[dict[str, Any]]) -> tuple[list[float], list[float], int]:
    """Single requests for the first rows, batches for the rest; latencies (ms), prices, requests."""
    singles, batches = rows[:SINGLE], [rows[i : i + BATCH] for i in range(SINGLE, len(rows), BATCH)]
    latencies: list[float] = []
    prices: list[float] = []
    with httpx.Client(base_url=api, timeout=30) as client:

        def one(row: dict[str, Any]) -> tuple[float, float]:
            started = time.perf_counter()
            response = client.post("/v1/predict", json=row)
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000, response.json()["price"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            for latency, price in pool.map(one, singles):
                latencies.append(latency)
                prices.append(price)
        for batch in batches:
            response = client.post("/v1/predict/batch", json={"listings": batch})
            response.raise_for_status()
            prices.extend(p["price"] for p in response.json()["predictions"])
    return latencies, prices, len(singles) + len(batches)


def wait_until_searchable(url: str, expected: int, timeout_s: float = 120.0) -> tuple[int, float]:
    started = time.perf_counter()
    count = 0
    while time.perf_counter() - started < timeout_s:
        try:
            urllib.request.urlopen(f"{url}/price-alchemy-requests*/_refresh", data=b"", timeout=5).close()
            with urllib.request.urlopen(f"{url}/price-alchemy-requests*/_count", timeout=5) as response:
                count = int(json.load(response)["count"])
        except OSError:
            count = 0
        if count >= expected:
            break
        time.sleep(0.5)
    return count, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--listings", type=int, default=600)
    args = parser.parse_args()

    rows = listing_payloads(args.listings)
    latencies, prices, requests = send(args.api, rows)
    cuts = statistics.quantiles(prices, n=10)
    print(
        f"sent {requests} requests ({SINGLE} single from 8 clients, the rest in batches of {BATCH}) for "
        f"{len(rows)} listings; single-request latency p50 {statistics.median(latencies):.1f} ms, "
        f"max {max(latencies):.1f} ms; suggested prices p10 ${cuts[0]:.2f}, median "
        f"${statistics.median(prices):.2f}, p90 ${cuts[-1]:.2f}"
    )
    es = os.environ.get("PRICE_ALCHEMY_ELASTICSEARCH_URL")
    if not es:
        print("no Elasticsearch node: the request events wait in $PRICE_ALCHEMY_HOME/request-log/")
        return 0
    count, seconds = wait_until_searchable(es, requests)
    print(f"{count} request events searchable in Elasticsearch ({es}) after {seconds:.1f} s")
    return 0 if count >= requests else 1


if __name__ == "__main__":
    sys.exit(main())
