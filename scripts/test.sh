#!/usr/bin/env bash
# README command 2: set everything up, then lint (ruff), type-check (mypy) and run every test tier.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m unit`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "== ruff" && .venv/bin/ruff check price_alchemy tests benchmarks scripts dags && .venv/bin/ruff format --check price_alchemy tests benchmarks scripts dags
echo "== mypy" && .venv/bin/mypy
echo "== pytest"
exec .venv/bin/pytest "$@"
