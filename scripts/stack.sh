#!/usr/bin/env bash
# The production topology of docker/docker-compose.yml as local processes, without Docker.
#
#   scripts/stack.sh up       start what is not running: Postgres, the MLflow server (basic-auth,
#                             Postgres store, served artifacts) and its accounts, Airflow (db
#                             migrate, api-server, scheduler, dag-processor, triggerer; LocalExecutor)
#                             on Postgres, a local Elasticsearch node, the API serving `champion`
#                             from the MLflow server, the request-log shipper; prints each part's
#                             start time and the memory of the whole
#   scripts/stack.sh status   each process: pid, port, health, RSS; exit 0 when all are healthy
#   scripts/stack.sh down     stop everything `up` started (its pid files), and nothing else
#   scripts/stack.sh env      exports for a shell: URLs, the secrets file, who to log in as
#
# Every setting comes from the compose file, rewritten for this machine by
# scripts/stack/settings.py (one source: the two cannot drift apart). Secrets are generated at the
# first `up` into $PRICE_ALCHEMY_HOME/stack/secrets.env (mode 0600, the names of docker/.env).
# State, logs and pid files live under $PRICE_ALCHEMY_HOME/stack/. Ports (all on 127.0.0.1):
# STACK_POSTGRES_PORT (5432), STACK_MLFLOW_PORT (5000), STACK_AIRFLOW_PORT (8080),
# STACK_ELASTICSEARCH_PORT (9200), PRICE_ALCHEMY_SERVE_PORT (8000). See docs/stack.md.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=$REPO/.venv/bin
PY=$BIN/python
SETTINGS=$REPO/scripts/stack/settings.py
export PATH="$BIN:$PATH"

case ${PRICE_ALCHEMY_HOME:-/} in /*) ;; *) export PRICE_ALCHEMY_HOME=$PWD/$PRICE_ALCHEMY_HOME ;; esac
settings=$(cd "$REPO" && "$BIN/price-alchemy" config --shell) || {
  echo "stack.sh: cannot read the settings (\`price-alchemy config --shell\` failed; run scripts/bootstrap.sh?)" >&2
  exit 1
}
eval "$settings"
export STACK_DIR=$PRICE_ALCHEMY_HOME/stack
export PRICE_ALCHEMY_SERVE_PORT
export STACK_POSTGRES_PORT=${STACK_POSTGRES_PORT:-5432}
export STACK_MLFLOW_PORT=${STACK_MLFLOW_PORT:-5000}
export STACK_AIRFLOW_PORT=${STACK_AIRFLOW_PORT:-8080}
export STACK_ELASTICSEARCH_PORT=${STACK_ELASTICSEARCH_PORT:-9200}
SECRETS=$STACK_DIR/secrets.env
RUN=$STACK_DIR/run
LOGS=$STACK_DIR/logs
PGDATA=$STACK_DIR/postgres/data
PGSOCKET=$STACK_DIR/postgres/run
START_TIMEOUT=${STACK_START_TIMEOUT:-240}
AIRFLOW_PARTS="airflow-apiserver airflow-scheduler airflow-dag-processor airflow-triggerer"

say() { echo "stack.sh: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- processes ------------------------------------------------------------------------------

running() { # PID: alive and not a zombie (a leader whose parent exited may stay unreaped)
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  case $state in Z* | "") return 1 ;; esac
}

group_running() { # PGID: some process of the group is alive and not a zombie
  ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

started_at() { # PID -> its start time (clock ticks since boot, /proc/PID/stat field 22)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # the command name may hold spaces and parentheses: fields after the last ")"
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}"
}

alive() { # NAME -> the pid of a running process of ours
  # The pid file holds "PID START": a pid the kernel reused for another process has another start
  # time, so `down` never signals a process the stack did not start.
  local pid start
  [ -f "$RUN/$1.pid" ] || return 1
  read -r pid start <"$RUN/$1.pid" || [ -n "${pid:-}" ] || return 1
  [ -n "$pid" ] && running "$pid" || return 1
  [ -z "$start" ] || [ "$(started_at "$pid")" = "$start" ] || return 1
  echo "$pid"
}

tree_mem_kb() { # PID -> "RSS PSS" (kB) of the process and all its descendants; PSS shares out
  # the pages several processes map (Postgres' shared buffers, forked workers), so it adds up
  local pid rss=0 pss=0 kb
  for pid in $(ps -eo pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END { for (p in parent) { q = p; while (q != root && q in parent && q > 1) q = parent[q]; if (q == root) print p } }'); do
    kb=$(awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { print r + 0, p + 0 }' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
    rss=$((rss + ${kb% *}))
    pss=$((pss + ${kb#* }))
  done
  echo "$rss $pss"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_port() { # PORT SETTING
  port_free "$1" || die "port $1 on 127.0.0.1 is in use by something this stack did not start; set $2 to a free port"
}

# start NAME SERVICE: SERVICE's command with its environment (both from the compose file), in its
# own session (process group = its pid) so that `down` ends it and whatever it spawned.
start() {
  local name=$1 service=$2 env_file cmd=()
  env_file=$(mktemp)
  "$PY" "$SETTINGS" env "$service" >"$env_file"
  mapfile -t cmd < <("$PY" "$SETTINGS" command "$service")
  (
    # shellcheck disable=SC1090
    . "$env_file"
    rm -f "$env_file"
    case $service in
    mlflow) export PYTHONPATH=$REPO/.cache/stack/mlflow-auth${PYTHONPATH:+:$PYTHONPATH} ;;
    airflow-*) export PYTHONPATH=$REPO/.cache/stack/airflow-overlay${PYTHONPATH:+:$PYTHONPATH} ;;
    esac
    cd "$STACK_DIR"
    exec setsid "${cmd[@]}" </dev/null >>"$LOGS/$name.log" 2>&1
  ) &
  echo "$! $(started_at $!)" >"$RUN/$name.pid"
}

wait_http() { # NAME URL: until URL answers 2xx, or the process died, or the timeout
  local deadline=$((SECONDS + START_TIMEOUT))
  until curl -fs -o /dev/null --max-time 3 "$2"; do
    alive "$1" >/dev/null || {
      tail -n 30 "$LOGS/$1.log" >&2
      die "$1 exited (log: $LOGS/$1.log)"
    }
    [ $SECONDS -lt $deadline ] || die "$1 did not answer $2 within ${START_TIMEOUT}s (log: $LOGS/$1.log)"
    sleep 1
  done
}

stop_group() { # NAME: TERM its process group, KILL after 30 s
  local pid
  pid=$(alive "$1") || {
    rm -f "$RUN/$1.pid"
    return 0
  }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    group_running "$pid" || break
    sleep 0.5
  done
  if group_running "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  rm -f "$RUN/$1.pid"
  say "stopped $1 (process group $pid)"
}

# --- Postgres ---------------------------------------------------------------------------------

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

as_pg() { # run a Postgres server binary as the postgres user when we are root (it refuses root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_pid() { [ -f "$PGDATA/postmaster.pid" ] && head -n 1 "$PGDATA/postmaster.pid"; }

pg_running() { local pid; pid=$(pg_pid) && running "$pid"; }

ensure_postgres_installed() {
  pg_bin >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed (Debian: apt-get install -y postgresql, as root)"
  say "installing Debian's postgresql (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >"$LOGS/apt-postgresql.log" 2>&1 || {
    apt-get update -q >>"$LOGS/apt-postgresql.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >>"$LOGS/apt-postgresql.log" 2>&1
  } || die "apt-get install postgresql failed (see $LOGS/apt-postgresql.log)"
  pg_bin >/dev/null || die "postgresql installed, but no initdb under /usr/lib/postgresql/*/bin"
}

psql_super() { # SQL on stdin, as the superuser the compose image creates (POSTGRES_USER)
  (
    eval "$("$PY" "$SETTINGS" env postgres)"
    PGPASSWORD=$POSTGRES_PASSWORD psql -v ON_ERROR_STOP=1 -q -h "$PGSOCKET" -p "$STACK_POSTGRES_PORT" \
      -U "$POSTGRES_USER" -d "$1"
  )
}

start_postgres() {
  local bin started
  pg_running && return 0
  require_port "$STACK_POSTGRES_PORT" STACK_POSTGRES_PORT
  started=$(now)
  bin=$(pg_bin)
  mkdir -p "$PGSOCKET" "$STACK_DIR/postgres"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$STACK_DIR/postgres" "$PGSOCKET"
    runuser -u postgres -- test -x "$STACK_DIR/postgres" ||
      die "the postgres user cannot enter $STACK_DIR (make every folder above it searchable: chmod o+x)"
  fi
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    # As the postgres image of the compose file does: the superuser is POSTGRES_USER (airflow) with
    # POSTGRES_PASSWORD, database POSTGRES_DB; then docker/postgres/init-mlflow-db.sh. Password
    # (scram) authentication for every connection, the socket included.
    (
      eval "$("$PY" "$SETTINGS" env postgres)"
      pwfile=$(mktemp -p "$STACK_DIR/postgres")
      printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
      [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
      as_pg "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
        -E UTF8 >"$LOGS/postgres-initdb.log" 2>&1 || {
        rm -f "$pwfile"
        tail -n 20 "$LOGS/postgres-initdb.log" >&2
        die "initdb failed"
      }
      rm -f "$pwfile"
    )
    local fresh=1
  fi
  [ "$(id -u)" = 0 ] && touch "$LOGS/postgres.log" && chown postgres: "$LOGS/postgres.log"
  as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -w -t 60 -s \
    -o "-c listen_addresses=127.0.0.1 -p $STACK_POSTGRES_PORT -c unix_socket_directories='$PGSOCKET'" start ||
    die "Postgres did not start (log: $LOGS/postgres.log)"
  if [ "${fresh:-0}" = 1 ]; then
    (
      eval "$("$PY" "$SETTINGS" env postgres)"
      echo "CREATE DATABASE \"$POSTGRES_DB\";" | psql_super postgres 2>/dev/null || true
      PGHOST=$PGSOCKET PGPORT=$STACK_POSTGRES_PORT PGPASSWORD=$POSTGRES_PASSWORD \
        sh "$REPO/docker/postgres/init-mlflow-db.sh" >"$LOGS/postgres-init.log" 2>&1 ||
        die "docker/postgres/init-mlflow-db.sh failed (log: $LOGS/postgres-init.log)"
    )
  fi
  say "postgres: ready on 127.0.0.1:$STACK_POSTGRES_PORT after $(since "$started")s"
}

stop_postgres() {
  local bin
  pg_running || return 0
  bin=$(pg_bin)
  as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w -t 60 -s stop || true
  say "stopped postgres"
}

# --- the other parts --------------------------------------------------------------------------

ensure_overlay() { # NAME PIN...: packages the lock lacks, for one kind of process only (PYTHONPATH)
  local name=$1 dir=$REPO/.cache/stack/$1
  shift
  if [ "$(cat "$dir/.pins" 2>/dev/null)" = "$*" ]; then return 0; fi
  say "installing $* for $name only (into $dir)"
  rm -rf "$dir"
  mkdir -p "$dir"
  if command -v uv >/dev/null; then
    uv pip install --quiet --python "$PY" --no-deps --target "$dir" "$@"
  else
    "$PY" -m pip install --quiet --no-deps --target "$dir" "$@"
  fi || die "cannot install $*"
  echo "$*" >"$dir/.pins"
}

ensure_overlays() {
  local pins
  # MLflow's basic-auth app needs Flask-WTF: the pins of the mlflow image (docker/Dockerfile)
  mapfile -t pins < <("$PY" "$SETTINGS" pins)
  ensure_overlay mlflow-auth "${pins[@]}"
  mapfile -t pins < <(grep -v '^#' "$REPO/scripts/stack/airflow-overlay.txt" | grep .)
  ensure_overlay airflow-overlay "${pins[@]}"
}

start_elasticsearch() { # in the background: the caller waits with wait_elasticsearch
  if PRICE_ALCHEMY_HOME=$STACK_DIR "$PY" "$REPO/scripts/elasticsearch.py" status >/dev/null 2>&1; then return 0; fi
  require_port "$STACK_ELASTICSEARCH_PORT" STACK_ELASTICSEARCH_PORT
  mkdir -p "$STACK_DIR/elasticsearch"
  chmod 755 "$STACK_DIR/elasticsearch"
  ES_STARTED=$(now)
  PRICE_ALCHEMY_HOME=$STACK_DIR "$PY" "$REPO/scripts/elasticsearch.py" start --daemon \
    --port "$STACK_ELASTICSEARCH_PORT" --data-dir "$STACK_DIR/elasticsearch/node" \
    >"$LOGS/elasticsearch.log" 2>&1 &
  ES_LAUNCHER=$!
}

wait_elasticsearch() {
  [ -n "${ES_LAUNCHER:-}" ] || return 0
  wait "$ES_LAUNCHER" || die "the Elasticsearch node did not start (log: $LOGS/elasticsearch.log)"
  say "elasticsearch: ready on 127.0.0.1:$STACK_ELASTICSEARCH_PORT after $(since "$ES_STARTED")s"
}

write_airflow_passwords() { # the simple auth manager's file: our generated admin password, 0600
  local file=$STACK_DIR/airflow/simple_auth_manager_passwords.json
  [ -s "$file" ] && return 0
  mkdir -p "$STACK_DIR/airflow"
  (
    umask 077
    eval "$("$PY" "$SETTINGS" env airflow-apiserver)"
    # shellcheck disable=SC1090
    AIRFLOW_ADMIN_PASSWORD=$(sed -n 's/^AIRFLOW_ADMIN_PASSWORD=//p' "$SECRETS") \
      "$PY" -c 'import json, os, sys
users = [u.split(":")[0] for u in os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",") if u]
# the first user gets the generated password; Airflow generates (and logs) any other user'"'"'s
json.dump({users[0]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, open(sys.argv[1], "w"))' "$file"
  )
}

cmd_up() {
  local t0 started
  t0=$(now)
  mkdir -p "$RUN" "$LOGS"
  chmod 755 "$STACK_DIR" # the postgres and nobody (Elasticsearch) users enter it; secrets.env stays 0600
  "$PY" "$SETTINGS" secrets "$SECRETS"
  ensure_postgres_installed
  ensure_overlays
  for name in mlflow $AIRFLOW_PARTS api; do
    alive "$name" >/dev/null && continue
    case $name in
    mlflow) require_port "$STACK_MLFLOW_PORT" STACK_MLFLOW_PORT ;;
    airflow-apiserver) require_port "$STACK_AIRFLOW_PORT" STACK_AIRFLOW_PORT ;;
    api) require_port "$PRICE_ALCHEMY_SERVE_PORT" PRICE_ALCHEMY_SERVE_PORT ;;
    esac
  done
  start_postgres
  start_elasticsearch # ~30-60 s of JVM start, meanwhile the rest comes up

  if ! alive mlflow >/dev/null; then
    started=$(now)
    "$PY" "$SETTINGS" auth-ini "$STACK_DIR/mlflow/basic_auth.ini"
    mkdir -p "$STACK_DIR/mlflow/artifacts"
    start mlflow mlflow
    MLFLOW_STARTED=$started
  fi
  if ! alive airflow-apiserver >/dev/null; then
    started=$(now)
    (
      eval "$("$PY" "$SETTINGS" env airflow-init)"
      export PYTHONPATH=$REPO/.cache/stack/airflow-overlay${PYTHONPATH:+:$PYTHONPATH}
      mkdir -p "$AIRFLOW_HOME"
      mapfile -t cmd < <("$PY" "$SETTINGS" command airflow-init)
      "${cmd[@]}" >"$LOGS/airflow-init.log" 2>&1
    ) || {
      tail -n 30 "$LOGS/airflow-init.log" >&2
      die "airflow db migrate failed (log: $LOGS/airflow-init.log)"
    }
    say "airflow-init: db migrate on Postgres took $(since "$started")s"
  fi
  if [ -n "${MLFLOW_STARTED:-}" ]; then
    wait_http mlflow "http://127.0.0.1:$STACK_MLFLOW_PORT/health"
    say "mlflow: ready on 127.0.0.1:$STACK_MLFLOW_PORT after $(since "$MLFLOW_STARTED")s"
  fi
  started=$(now)
  (
    eval "$("$PY" "$SETTINGS" env mlflow-setup)"
    mapfile -t cmd < <("$PY" "$SETTINGS" command mlflow-setup)
    "${cmd[@]}" >"$LOGS/mlflow-setup.log" 2>&1
  ) || {
    cat "$LOGS/mlflow-setup.log" >&2
    die "the MLflow accounts could not be set up (docker/setup/mlflow.sh)"
  }
  say "mlflow-setup: accounts and grants in $(since "$started")s"

  write_airflow_passwords
  started=$(now)
  local launched=0
  for name in $AIRFLOW_PARTS; do
    alive "$name" >/dev/null && continue
    start "$name" "$name"
    launched=1
  done
  if ! alive api >/dev/null; then
    API_STARTED=$(now)
    mkdir -p "$STACK_DIR/api"
    start api api
  fi
  if [ $launched = 1 ]; then
    wait_http airflow-apiserver "http://127.0.0.1:$STACK_AIRFLOW_PORT/api/v2/monitor/health"
    wait_airflow_components
    say "airflow: api-server, scheduler, dag-processor, triggerer healthy after $(since "$started")s"
  fi
  if [ -n "${API_STARTED:-}" ]; then
    wait_http api "http://127.0.0.1:$PRICE_ALCHEMY_SERVE_PORT/health/live"
    say "api: answering on 127.0.0.1:$PRICE_ALCHEMY_SERVE_PORT after $(since "$API_STARTED")s"
  fi
  wait_elasticsearch
  if ! alive shipper >/dev/null; then start shipper shipper; fi
  say "up in $(since "$t0")s"
  cmd_status || true
}

airflow_health() { curl -fs --max-time 3 "http://127.0.0.1:$STACK_AIRFLOW_PORT/api/v2/monitor/health"; }

wait_airflow_components() { # the scheduler, DAG processor and triggerer heartbeat into the DB
  local deadline=$((SECONDS + START_TIMEOUT)) health
  while :; do
    health=$(airflow_health || true)
    if [ -n "$health" ] && "$PY" -c 'import json, sys
h = json.loads(sys.argv[1])
sys.exit(0 if all(h.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler", "dag_processor", "triggerer")) else 1)' "$health"; then
      return 0
    fi
    for name in $AIRFLOW_PARTS; do
      alive "$name" >/dev/null || {
        tail -n 30 "$LOGS/$name.log" >&2
        die "$name exited (log: $LOGS/$name.log)"
      }
    done
    [ $SECONDS -lt $deadline ] || die "Airflow's components not healthy within ${START_TIMEOUT}s: $health"
    sleep 2
  done
}

cmd_down() {
  stop_group shipper
  stop_group api
  for name in airflow-triggerer airflow-dag-processor airflow-scheduler airflow-apiserver; do stop_group "$name"; done
  stop_group mlflow
  if [ -f "$STACK_DIR/elasticsearch/node.json" ]; then
    PRICE_ALCHEMY_HOME=$STACK_DIR "$PY" "$REPO/scripts/elasticsearch.py" stop >/dev/null 2>&1 || true
    say "stopped elasticsearch"
  fi
  stop_postgres
  say "down"
}

row() { printf '%-22s %-8s %-6s %-46s %8s %8s\n' "$@"; }

cmd_status() {
  local total_rss=0 total_pss=0 healthy=1 pid health airflow es_pid
  row PROCESS PID PORT HEALTH "RSS MB" "PSS MB"
  airflow=$(airflow_health 2>/dev/null || true)
  component() { # the api-server's view of a component (from its heartbeat in the metadata DB)
    [ -n "$airflow" ] || {
      echo "unknown (no answer from the api-server)"
      return
    }
    "$PY" -c 'import json, sys
c = json.loads(sys.argv[1]).get(sys.argv[2], {})
beat = c.get("latest_" + sys.argv[2] + "_heartbeat") or ""
print(c.get("status", "unknown") + (" (heartbeat " + beat[11:19] + ")" if beat else ""))' "$airflow" "$1"
  }
  show() { # NAME PID PORT HEALTH
    local mem="0 0"
    if [ -n "$2" ]; then mem=$(tree_mem_kb "$2"); fi
    total_rss=$((total_rss + ${mem% *}))
    total_pss=$((total_pss + ${mem#* }))
    case $4 in healthy* | ready* | alive* | running*) ;; *) healthy=0 ;; esac
    row "$1" "${2:--}" "$3" "$4" "$((${mem% *} / 1024))" "$((${mem#* } / 1024))"
  }
  http_health() { # PID URL -> healthy / not answering / not running
    if [ -z "$1" ]; then
      echo "not running"
    elif curl -fs -o /dev/null --max-time 3 "$2"; then
      echo healthy
    else
      echo "not answering"
    fi
  }
  pid=""
  if pg_running; then pid=$(pg_pid); fi
  if [ -z "$pid" ]; then
    health="not running"
  elif pg_isready -q -h 127.0.0.1 -p "$STACK_POSTGRES_PORT" 2>/dev/null; then
    health=healthy
  else
    health="not accepting connections"
  fi
  show postgres "$pid" "$STACK_POSTGRES_PORT" "$health"
  pid=$(alive mlflow || true)
  show mlflow "$pid" "$STACK_MLFLOW_PORT" "$(http_health "$pid" "http://127.0.0.1:$STACK_MLFLOW_PORT/health")"
  pid=$(alive airflow-apiserver || true)
  show airflow-apiserver "$pid" "$STACK_AIRFLOW_PORT" "$(http_health "$pid" "http://127.0.0.1:$STACK_AIRFLOW_PORT/api/v2/monitor/health")"
  for part in scheduler dag_processor triggerer; do
    pid=$(alive "airflow-${part/_/-}" || true)
    show "airflow-${part/_/-}" "$pid" - "$(if [ -n "$pid" ]; then component "$part"; else echo not running; fi)"
  done
  es_pid=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["pid"])' "$STACK_DIR/elasticsearch/node.json" 2>/dev/null || true)
  if [ -n "$es_pid" ] && ! running "$es_pid"; then es_pid=""; fi
  health=$(http_health "$es_pid" "http://127.0.0.1:$STACK_ELASTICSEARCH_PORT/_cluster/health")
  if [ "$health" = healthy ]; then
    health="healthy ($(curl -fs --max-time 3 "http://127.0.0.1:$STACK_ELASTICSEARCH_PORT/_cluster/health" |
      "$PY" -c 'import json, sys; print(json.load(sys.stdin)["status"])'))"
  fi
  show elasticsearch "$es_pid" "$STACK_ELASTICSEARCH_PORT" "$health"
  pid=$(alive api || true)
  health=$(http_health "$pid" "http://127.0.0.1:$PRICE_ALCHEMY_SERVE_PORT/health/live")
  if [ "$health" = healthy ]; then
    health=$(curl -s --max-time 3 "http://127.0.0.1:$PRICE_ALCHEMY_SERVE_PORT/health/ready" | "$PY" -c 'import json, sys
b = json.load(sys.stdin)
print("ready (serving v" + b["model_version"] + ")" if b.get("status") == "ready" else "alive (no champion yet)")')
  fi
  show api "$pid" "$PRICE_ALCHEMY_SERVE_PORT" "$health"
  pid=$(alive shipper || true)
  show shipper "$pid" - "$(if [ -n "$pid" ]; then echo "running (log logs/shipper.log)"; else echo not running; fi)"
  row total "" "" "" "$((total_rss / 1024))" "$((total_pss / 1024))"
  [ $healthy = 1 ]
}

cmd_env() {
  printf 'export PRICE_ALCHEMY_STACK_SECRETS=%q\n' "$SECRETS"
  printf 'export AIRFLOW_URL=%q\n' "http://127.0.0.1:$STACK_AIRFLOW_PORT"
  printf 'export MLFLOW_TRACKING_URI=%q\n' "http://127.0.0.1:$STACK_MLFLOW_PORT"
  printf 'export PRICE_ALCHEMY_API_URL=%q\n' "http://127.0.0.1:$PRICE_ALCHEMY_SERVE_PORT"
  printf 'export PRICE_ALCHEMY_ELASTICSEARCH_URL=%q\n' "http://127.0.0.1:$STACK_ELASTICSEARCH_PORT"
  echo "# Airflow: user admin, password AIRFLOW_ADMIN_PASSWORD; MLflow: MLFLOW_ADMIN_USERNAME (admin) /"
  echo "# MLFLOW_ADMIN_PASSWORD; the API: X-API-Key PRICE_ALCHEMY_API_KEY; all in $SECRETS"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
*)
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
