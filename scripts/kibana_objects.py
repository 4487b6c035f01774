"""Write the Kibana saved objects generated from the panel definitions (never edit them by hand).

    .venv/bin/python scripts/kibana_objects.py           # writes docker/kibana/price-alchemy-dashboards.ndjson
    .venv/bin/python scripts/kibana_objects.py --check   # exit 1, with a diff, if the file is out of date

The objects come from ``price_alchemy/monitoring/panels.py`` through
``price_alchemy.monitoring.kibana``; change a panel there and run this script.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from price_alchemy.monitoring import kibana

DEFAULT_PATH = Path(__file__).resolve().parents[1] / kibana.SAVED_OBJECTS_FILE


def _readable(ndjson: str) -> list[str]:
    """One object per block, indented, with the JSON-in-strings decoded, so a diff shows the field."""
    lines: list[str] = []
    for row in ndjson.splitlines():
        try:
            obj = json.loads(row)
        except json.JSONDecodeError:
            lines.append(row)
            continue
        attributes = obj.get("attributes", {})
        for key in ("visState", "panelsJSON", "optionsJSON", "uiStateJSON"):
            if isinstance(attributes.get(key), str):
                attributes[key] = json.loads(attributes[key])
        meta = attributes.get("kibanaSavedObjectMeta", {})
        if isinstance(meta.get("searchSourceJSON"), str):
            meta["searchSourceJSON"] = json.loads(meta["searchSourceJSON"])
        lines += json.dumps(obj, indent=2, sort_keys=True).splitlines()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare instead of writing; exit 1 on a difference"
    )
    parser.add_argument(
        "--path", type=Path, default=DEFAULT_PATH, help="the NDJSON file (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    generated = kibana.render_ndjson(kibana.saved_objects())
    if not args.check:
        args.path.write_text(generated, encoding="utf-8")
        print(f"wrote {args.path}")
        return 0
    committed = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
    if committed == generated:
        print(f"{args.path} is up to date")
        return 0
    diff = difflib.unified_diff(
        _readable(committed), _readable(generated), f"{args.path} (committed)", "generated", lineterm=""
    )
    print(f"{args.path} differs from the panel definitions:", file=sys.stderr)
    print("\n".join(diff) or "(only formatting differs)", file=sys.stderr)
    print("regenerate it with: python scripts/kibana_objects.py", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
