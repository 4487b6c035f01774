#!/usr/bin/env bash
# README command 1: set everything up, then run the main job end to end on the embedded default
# (synthetic listings -> DuckDB warehouse -> Great Expectations -> Hyperopt + MLflow -> champion -> predictions).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PRICE_ALCHEMY_HOME=${PRICE_ALCHEMY_HOME:-$PWD/.price_alchemy}
exec .venv/bin/price-alchemy demo "$@"
