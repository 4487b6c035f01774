"""What each fsync policy of the request-event log costs on the request path.

    .venv/bin/python benchmarks/eventlog_fsync.py [--events 20000] [--rate 400] [--dir /var/tmp]

Appends real request events (the API's own builder, single listings, ~700 bytes) through
``EventLogWriter`` with ``fsync`` = ``never``, ``interval`` (1 s, a background thread) and ``always``
(``always`` with a tenth of the events: each costs a disk flush), at ``--rate`` appends per second
(0: as fast as possible), and prints the append latency p50/p99/max and appends/s. With
``interval`` the flush runs beside the appends: its cost is whatever it makes an append wait.
The folder must be on the disk the API's home would use (``/tmp`` may be a RAM disk).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shipping import EventFactory  # the benchmarks' shared event builder

from price_alchemy.eventlog import EventLogWriter, encode_event


def run(folder: Path, policy: str, lines: list[bytes], rate: float) -> dict[str, float]:
    shutil.rmtree(folder, ignore_errors=True)
    latencies = np.empty(len(lines))
    writer = EventLogWriter(folder, fsync=policy, fsync_interval_s=1.0)  # type: ignore[arg-type]
    started = time.perf_counter()
    for i, line in enumerate(lines):
        if rate:
            pause = started + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        t0 = time.perf_counter()
        writer.append_line(line)
        latencies[i] = time.perf_counter() - t0
    elapsed = time.perf_counter() - started
    writer.close()
    return {
        "appends": len(lines),
        "per_s": len(lines) / elapsed,
        "p50_us": float(np.percentile(latencies, 50)) * 1e6,
        "p99_us": float(np.percentile(latencies, 99)) * 1e6,
        "max_ms": float(latencies.max()) * 1e3,
        "mean_us": statistics.fmean(latencies) * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=400.0, help="appends per second (0: flat out)")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where to write")
    args = parser.parse_args()
    factory = EventFactory()
    lines = [encode_event(factory.event(datetime.now(UTC))) for _ in range(args.events)]
    print(f"{len(lines):,} events, {sum(map(len, lines)) / len(lines):.0f} bytes each on average")
    base = Path(tempfile.mkdtemp(prefix="pa-fsync-", dir=args.dir))
    try:
        for policy in ("never", "interval", "always", "never", "interval"):
            subset = lines if policy != "always" else lines[: max(1, len(lines) // 10)]
            result = run(base / policy, policy, subset, args.rate)
            print(
                f"{policy:<9} {result['appends']:>7,} appends  {result['per_s']:>9,.0f}/s  "
                f"p50 {result['p50_us']:>7.1f} us  p99 {result['p99_us']:>8.1f} us  "
                f"max {result['max_ms']:>7.2f} ms  mean {result['mean_us']:>7.1f} us",
                flush=True,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
