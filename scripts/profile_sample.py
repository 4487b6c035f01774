"""Write the profile of a real Mercari sample to tests/fixtures/real_sample_profile.json.

Run once by hand (the tests never read the real data):

    .venv/bin/python scripts/profile_sample.py /path/to/train_head_5k.tsv
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from price_alchemy.data.files import read_listings
from price_alchemy.data.synthetic import listing_profile

log = logging.getLogger("profile_sample")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real_sample_profile.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sample", type=Path, help="a Kaggle-format train file (e.g. train_head_5k.tsv)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = read_listings(args.sample)
    if len(result.rejects):
        log.warning("%d records rejected while reading %s", len(result.rejects), args.sample)
    profile = {"source": args.sample.name, **listing_profile(result.listings)}
    args.out.write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("wrote profile of %d listings to %s", profile["n_rows"], args.out)


if __name__ == "__main__":
    main()
