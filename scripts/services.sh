#!/usr/bin/env bash
# The embedded serving side, in the background: a local Elasticsearch node (when one can start),
# the API (`price-alchemy serve`) and the request-log shipper (`price-alchemy ship --follow`).
#
#   scripts/services.sh start     start what is not running; wait until the API is ready
#   scripts/services.sh stop      stop the shipper, the API, the node, and the Airflow UI if running
#   scripts/services.sh status    what runs, where
#   scripts/services.sh env       exports for using them from a shell: eval "$(scripts/services.sh env)"
#
# Home, host and port are the settings as `price-alchemy config` resolves them in the repository
# (environment, then its .env). State and logs: $PRICE_ALCHEMY_HOME/services/ (api.log, shipper.log,
# *.pid). The API listens on $PRICE_ALCHEMY_SERVE_HOST:$PRICE_ALCHEMY_SERVE_PORT (default
# 127.0.0.1:8000). Without Java or the Elasticsearch download, the API still starts: request events
# wait in the durable buffer ($PRICE_ALCHEMY_HOME/request-log/) until a shipper can deliver them.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=$REPO/.venv/bin/python
PA=$REPO/.venv/bin/price-alchemy
# A relative home the caller gave is relative to the caller's directory, not to the repository.
case ${PRICE_ALCHEMY_HOME:-/} in /*) ;; *) export PRICE_ALCHEMY_HOME=$PWD/$PRICE_ALCHEMY_HOME ;; esac
settings=$(cd "$REPO" && "$PA" config --shell) || {
  echo "services.sh: cannot read the settings (\`price-alchemy config --shell\` failed; run scripts/bootstrap.sh?)" >&2
  exit 1
}
eval "$settings"
RUN=$PRICE_ALCHEMY_HOME/services
API=$PRICE_ALCHEMY_API_URL
NODE_STATE=$PRICE_ALCHEMY_HOME/elasticsearch/node.json
mkdir -p "$RUN"

say() { echo "services.sh: $*" >&2; }

alive() { # pid file -> running pid
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

es_url() { [ -f "$NODE_STATE" ] && "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["url"])' "$NODE_STATE"; }

start_es() {
  if "$PY" "$REPO/scripts/elasticsearch.py" status >/dev/null 2>&1; then
    return 0
  fi
  say "starting a local Elasticsearch node (first time: fetch from Maven Central)"
  if ! "$PY" "$REPO/scripts/elasticsearch.py" start --daemon --port "${ELASTICSEARCH_PORT:-9200}" >"$RUN/elasticsearch.log" 2>&1; then
    say "no Elasticsearch node (see $RUN/elasticsearch.log): request events stay buffered until one is up"
    return 1
  fi
}

start_api() {
  if alive "$RUN/api.pid" >/dev/null; then return 0; fi
  say "starting the API on $API"
  setsid "$PA" serve >"$RUN/api.log" 2>&1 </dev/null & # host and port: the exported settings
  echo $! >"$RUN/api.pid"
  local deadline=$((SECONDS + ${API_START_TIMEOUT:-180}))
  until curl -fs -o /dev/null --max-time 2 "$API/health/ready"; do
    if ! alive "$RUN/api.pid" >/dev/null || [ $SECONDS -gt $deadline ]; then
      say "the API did not become ready; last lines of $RUN/api.log:"
      tail -n 20 "$RUN/api.log" >&2
      return 1
    fi
    sleep 1
  done
}

start_shipper() {
  local url=$1
  if alive "$RUN/shipper.pid" >/dev/null; then return 0; fi
  say "starting the shipper: request events -> $url"
  PRICE_ALCHEMY_ELASTICSEARCH_URL=$url setsid "$PA" ship --follow >"$RUN/shipper.log" 2>&1 </dev/null &
  echo $! >"$RUN/shipper.pid"
}

stop_pidfile() {
  local pid
  pid=$(alive "$1") || { rm -f "$1"; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$1"
}

case ${1:-} in
start)
  es=0
  start_es && es=1 || true
  start_api
  if [ $es = 1 ]; then start_shipper "$(es_url)"; fi
  "$0" status
  ;;
stop)
  stop_pidfile "$RUN/shipper.pid"
  stop_pidfile "$RUN/api.pid"
  "$PY" "$REPO/scripts/elasticsearch.py" stop >/dev/null 2>&1 || true
  bash "$REPO/scripts/airflow.sh" stop >/dev/null 2>&1 || true
  say "stopped"
  ;;
status)
  if pid=$(alive "$RUN/api.pid"); then echo "api:           pid $pid, $API (docs $API/docs)"; else echo "api:           not running"; fi
  if url=$(es_url) && "$PY" "$REPO/scripts/elasticsearch.py" status >/dev/null 2>&1; then
    echo "elasticsearch: $url"
  else
    echo "elasticsearch: not running"
  fi
  if pid=$(alive "$RUN/shipper.pid"); then echo "shipper:       pid $pid (log $RUN/shipper.log)"; else echo "shipper:       not running"; fi
  ;;
env)
  printf 'export PRICE_ALCHEMY_HOME=%q\n' "$PRICE_ALCHEMY_HOME"
  if "$PY" "$REPO/scripts/elasticsearch.py" status >/dev/null 2>&1 && url=$(es_url); then
    printf 'export PRICE_ALCHEMY_ELASTICSEARCH_URL=%q\n' "$url"
  fi
  ;;
*)
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
