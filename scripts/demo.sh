#!/usr/bin/env bash
# README command 1: set everything up, then run the main job end to end on the embedded default,
# through Airflow: `airflow dags test price_alchemy_training` (synthetic listings for today ->
# Great Expectations -> DuckDB warehouse -> Hyperopt + MLflow -> registered, champion per the rule),
# sample predictions with the champion, the API serving it (sample requests shown; request events
# shipped to a local Elasticsearch node when one can start; a drift check of that traffic), then the
# Airflow UI (standalone) left running with the run.
#
#   bash scripts/demo.sh [--rows N] [--max-evals N] [--timeout S] [--no-ui] [--cli]
#
# --no-ui skips starting the Airflow UI; `--cli [ARGS]` (first) runs the same job without Airflow:
# `price-alchemy demo [ARGS]`.
# Stop what it started with `bash scripts/services.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=${MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR:-false}
PA=.venv/bin/price-alchemy
# Home, API address, tracking URI: as the package resolves them (environment, then .env).
settings=$("$PA" config --shell) || { echo "demo.sh: \`price-alchemy config --shell\` failed" >&2 && exit 1; }
eval "$settings"

rows=10000 max_evals="" timeout="" ui=1
while [ $# -gt 0 ]; do
  case $1 in
  --rows) rows=$2 && shift 2 ;;
  --max-evals) max_evals=$2 && shift 2 ;;
  --timeout) timeout=$2 && shift 2 ;;
  --no-ui) ui=0 && shift ;;
  --cli) shift && exec "$PA" demo "$@" ;;
  *) echo "demo.sh: unknown argument $1 (see the header of $0)" >&2 && exit 2 ;;
  esac
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
started=$SECONDS
conf=$(printf '{"rows": %d, "max_evals": %s, "timeout": %s}' "$rows" "${max_evals:-null}" "${timeout:-null}")

if bash scripts/airflow.sh status >/dev/null 2>&1; then
  step "stopping the running Airflow UI first (SQLite allows one writer)"
  bash scripts/airflow.sh stop
fi

step "1. train through Airflow: airflow dags test price_alchemy_training, conf $conf"
log=${AIRFLOW_HOME:-$PRICE_ALCHEMY_AIRFLOW_HOME}/last-dags-test.log
mkdir -p "$(dirname "$log")"
echo "(full Airflow log: $log)"
# Show the pipeline's own messages and the task outcomes; keep everything in the log file.
bash scripts/airflow.sh dags-test "$conf" 2>&1 | tee "$log" |
  grep --line-buffered -E '\[price_alchemy\.(tasks|ingest)\]|\[DAG TEST\] (starting|end) task|Task failed|DagRun Finished' |
  sed -E -u 's/^[0-9T:.-]+Z \[[a-z ]+\] //; s/ +\[(price_alchemy|airflow)[^]]*\].*$//; s/ map_index=-1//' || true
# Success is the run's state in Airflow's metadata DB (and each task's), not a line in the log.
if ! bash scripts/airflow.sh run-state; then
  echo "demo.sh: the price_alchemy_training run did not succeed; full log: $log" >&2
  exit 1
fi

step "2. predict new listings with the champion"
new=$PRICE_ALCHEMY_HOME/demo/new_listings.tsv predictions=$PRICE_ALCHEMY_HOME/demo/predictions.csv
"$PA" generate --rows 10 --seed 1 --start-id 10000000 --test-format --output "$new"
"$PA" predict --input "$new" --output "$predictions" --show 10

step "3. serve the champion over REST (and ship request logs to a local Elasticsearch)"
bash scripts/services.sh start
api=$PRICE_ALCHEMY_API_URL
sample='{"name": "Nike Air Max 90 sneakers, size 10", "item_condition_id": 3, "category_name": "Men/Shoes/Athletic", "brand_name": "Nike", "shipping": 1, "item_description": "Worn a few times, no box."}'
echo "\$ curl -s $api/v1/predict -H 'Content-Type: application/json' -d '$sample'"
curl -fsS "$api/v1/predict" -H 'Content-Type: application/json' -d "$sample" | .venv/bin/python -m json.tool
echo "\$ curl -s $api/v1/predict -H 'Content-Type: application/json' -d '{\"name\": \"x\", \"item_condition_id\": 7, \"shipping\": 1}'"
curl -sS "$api/v1/predict" -H 'Content-Type: application/json' -d '{"name": "x", "item_condition_id": 7, "shipping": 1}' | .venv/bin/python -m json.tool
eval "$(bash scripts/services.sh env)" # PRICE_ALCHEMY_ELASTICSEARCH_URL when the node runs
.venv/bin/python scripts/demo_traffic.py --api "$api" --listings 600
if [ -n "${PRICE_ALCHEMY_ELASTICSEARCH_URL:-}" ]; then
  step "4. drift check of the requests just made against the champion's training profile"
  "$PA" monitor --window-hours 1 || [ $? = 3 ] # exit 3 = drift found: reported, not a demo failure
fi

if [ "$ui" = 1 ]; then
  step "5. start the Airflow UI (airflow standalone) with the run above"
  bash scripts/airflow.sh start
  echo "Open it, log in, then Dags > price_alchemy_training > Runs: the run, its task states and each task's"
  echo "XCom (tune: MLflow run id; register: model version; promote: the decision). \`dags test\` runs tasks"
  echo "in-process, so their logs are in $log; runs triggered from the UI keep their logs in the UI."
fi
home_env=""
[ "$PRICE_ALCHEMY_HOME" = "$(pwd -P)/.price_alchemy" ] || home_env="PRICE_ALCHEMY_HOME=$(printf %q "$PRICE_ALCHEMY_HOME") "
case $PRICE_ALCHEMY_TRACKING_URI in
sqlite:* | file:*) mlflow_ui=".venv/bin/mlflow ui --backend-store-uri $(printf %q "$PRICE_ALCHEMY_TRACKING_URI") --port 5000" ;;
*) mlflow_ui="$PRICE_ALCHEMY_TRACKING_URI (the configured tracking server)" ;;
esac
echo
echo "MLflow UI:      $mlflow_ui"
echo "API:            $api/docs (OpenAPI), $api/v1/model, $api/metrics"
echo "Stop it all:    ${home_env}bash scripts/services.sh stop   (API, shipper, Elasticsearch, Airflow UI)"
echo "Done in $((SECONDS - started)) s."
