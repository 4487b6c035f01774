"""A writer process standing in for one API worker: the API's own event log and event builder.

    python tests/integration/event_writer.py HOME PREFIX COUNT RATE

Writes COUNT request events (ids ``PREFIX-000000``...) at RATE per second through
``serving.request_log.RequestEventLog`` into ``HOME/request-log/`` and prints the stream it wrote.
Exit code 1 if any event was not written.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from drift_traffic import request_event

from price_alchemy.config import Settings
from price_alchemy.serving.request_log import RequestEventLog

ROW = {
    "name": "Blouse",
    "item_condition_id": 2,
    "category_name": "Women/Tops & Blouses/Blouse",
    "brand_name": None,
    "shipping": 1,
    "item_description": "Soft.",
}


def main(home: Path, prefix: str, count: int, rate: float) -> int:
    events = RequestEventLog(Settings(_env_file=None, home=home))
    started = time.monotonic()
    failed = 0
    for i in range(count):
        pause = started + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        event = request_event(datetime.now(UTC), [ROW], [12.5], event_id=f"{prefix}-{i:06d}")
        if events.write(event) is False:
            failed += 1
    events.close()
    print(getattr(events, "stream", None) or "main", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    home, prefix, count, rate = sys.argv[1:5]
    raise SystemExit(main(Path(home), prefix, int(count), float(rate)))
