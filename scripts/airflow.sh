#!/usr/bin/env bash
# Run the Price Alchemy DAGs in a local Airflow (SQLite metadata DB, LocalExecutor, examples off).
#
#   scripts/airflow.sh init                 create AIRFLOW_HOME and migrate the metadata DB
#   scripts/airflow.sh dags-test [CONF] [DATE]
#                                           run price_alchemy_training once through Airflow
#                                           (`airflow dags test`; CONF is JSON, e.g. '{"max_evals": 6}';
#                                           DATE, the logical date, defaults to now and is remembered)
#   scripts/airflow.sh run-state [RUN]      state of a price_alchemy_training run and of each task
#                                           (RUN: logical date or run id; default: the last dags-test);
#                                           exit 0 success, 1 failed (naming the failed tasks),
#                                           3 not finished or no such run
#   scripts/airflow.sh start                `airflow standalone` in its own process group, in the background;
#                                           waits for the UI, prints its URL and the admin credentials
#   scripts/airflow.sh stop                 stop the whole process group (TERM, then KILL after 30 s)
#   scripts/airflow.sh status               running or not, processes, memory (RSS sum), UI health
#   scripts/airflow.sh env                  print the exports, for `eval "$(scripts/airflow.sh env)"`
#
# State lives under the home that `price-alchemy config` resolves in the repository ($PRICE_ALCHEMY_HOME,
# its .env, default ./.price_alchemy): AIRFLOW_HOME defaults to $PRICE_ALCHEMY_HOME/airflow. The port
# is $AIRFLOW_PORT (default 8080).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DAG_ID=price_alchemy_training

# The settings as the package resolves them (not re-derived here). A relative home the caller gave
# is relative to the caller's directory, not to the repository where `config` runs.
case ${PRICE_ALCHEMY_HOME:-/} in /*) ;; *) export PRICE_ALCHEMY_HOME=$PWD/$PRICE_ALCHEMY_HOME ;; esac
settings=$(cd "$REPO" && "$REPO/.venv/bin/price-alchemy" config --shell) || {
  echo "airflow.sh: cannot read the settings (\`price-alchemy config --shell\` failed; run scripts/bootstrap.sh?)" >&2
  exit 1
}
eval "$settings"
export AIRFLOW_HOME=${AIRFLOW_HOME:-$PRICE_ALCHEMY_AIRFLOW_HOME}
export PATH="$REPO/.venv/bin:$PATH" # standalone starts `airflow` from PATH
export AIRFLOW__CORE__DAGS_FOLDER=$REPO/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}
# Two cores: two task slots (the training tasks use a core each), one API worker, one parser.
export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-2}
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=${AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG:-2}
export AIRFLOW__API__WORKERS=${AIRFLOW__API__WORKERS:-1}
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=${AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES:-1}
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}
export AIRFLOW__API__PORT=${AIRFLOW_PORT:-${AIRFLOW__API__PORT:-8080}}
export AIRFLOW__LOGGING__LOGGING_LEVEL=${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}

PIDFILE=$AIRFLOW_HOME/standalone.pid
LOGFILE=$AIRFLOW_HOME/standalone.log
PASSWORDS=$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
LAST_RUN=$AIRFLOW_HOME/last-dags-test.date # the logical date of the last dags-test, for run-state
URL="http://localhost:$AIRFLOW__API__PORT"
START_TIMEOUT=${AIRFLOW_START_TIMEOUT:-180}

say() { echo "airflow.sh: $*" >&2; }

running_pid() { # the process-group leader of a running standalone, or nothing
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null && echo "$pid"
}

ui_up() { curl -fs -o /dev/null --max-time 3 "$URL/api/v2/monitor/health"; }

group_rss_mb() { # RSS sum of every process in the group, in MB
  ps -eo pgid=,rss= | awk -v g="$1" '$1 == g { kb += $2 } END { printf "%.0f", kb / 1024 }'
}

group_size() { ps -eo pgid= | awk -v g="$1" '$1 == g { n++ } END { print n + 0 }'; }

credentials() {
  if [ -f "$PASSWORDS" ]; then
    python3 -c 'import json, sys
for user, password in json.load(open(sys.argv[1])).items():
    print(f"  user {user}  password {password}")' "$PASSWORDS"
  else
    echo "  (no password file yet: see $LOGFILE)"
  fi
}

cmd_init() {
  mkdir -p "$AIRFLOW_HOME"
  say "AIRFLOW_HOME=$AIRFLOW_HOME, dags folder $AIRFLOW__CORE__DAGS_FOLDER; migrating the metadata DB"
  airflow db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 || {
    tail -n 30 "$AIRFLOW_HOME/migrate.log" >&2
    exit 1
  }
}

ensure_init() { [ -f "$AIRFLOW_HOME/airflow.db" ] || cmd_init; }

cmd_dags_test() {
  # An explicit logical date (now, to the second, as `dags test` would pick) so that run-state can
  # find this very run afterwards, even when it failed before a task ran.
  local conf=${1:-"{}"} date=${2:-$(date -u +%Y-%m-%dT%H:%M:%S+00:00)}
  mkdir -p "$AIRFLOW_HOME"
  echo "$date" >"$LAST_RUN" # first: a run-state after a failed init must not see an older run
  ensure_init
  say "airflow dags test $DAG_ID $date -c '$conf'"
  airflow dags test "$DAG_ID" "$date" -c "$conf"
}

cmd_run_state() {
  local run=${1:-} state tasks failed blocked errors=$AIRFLOW_HOME/run-state.err
  if [ -z "$run" ]; then
    run=$(cat "$LAST_RUN" 2>/dev/null) || {
      say "no dags-test run recorded ($LAST_RUN); give a logical date or a run id"
      return 3
    }
  fi
  ensure_init
  # Airflow logs its warnings on stdout too: the answer is the last line ("state" or "state, {conf}").
  state=$(airflow dags state "$DAG_ID" "$run" 2>"$errors" | tail -n 1 | cut -d, -f1) || true
  case $state in
  success | failed) ;;
  "" | None)
    say "no $DAG_ID run for $run: it was never created (see the dags-test output)"
    tail -n 3 "$errors" >&2
    return 3
    ;;
  *)
    say "$DAG_ID run $run is $state, not finished"
    return 3
    ;;
  esac
  # One "task_id state" line per task instance, in the order they started (never-started last);
  # the JSON is the line that starts with "[".
  tasks=$(airflow tasks states-for-dag-run "$DAG_ID" "$run" -o json 2>"$errors" | "$REPO/.venv/bin/python" -c '
import json, sys
lines = [line for line in sys.stdin if line.startswith("[")]
for ti in sorted(json.loads(lines[-1]) if lines else [], key=lambda ti: ti["start_date"] or "~"):
    print(ti["task_id"], ti["state"] or "none")') || true
  echo "$DAG_ID run $run: $state"
  printf '%s\n' "$tasks" | awk 'NF { printf "  %-18s %s\n", $1, $2 }'
  [ "$state" = success ] && return 0
  failed=$(printf '%s\n' "$tasks" | awk '$2 == "failed" { printf "%s%s", sep, $1; sep = ", " }')
  blocked=$(printf '%s\n' "$tasks" | awk '$2 == "upstream_failed" { printf "%s%s", sep, $1; sep = ", " }')
  if [ -n "$failed" ]; then failed="failed task(s): $failed"; else failed="no task failed (the run itself was marked failed)"; fi
  say "$DAG_ID run $run failed: $failed${blocked:+; not run because of it: $blocked}"
  return 1
}

cmd_start() {
  local pid started
  if pid=$(running_pid); then
    say "already running (process group $pid)"
    cmd_status
    return 0
  fi
  ensure_init
  started=$(date +%s.%N)
  # setsid: standalone and the ~20 processes it spawns share one new process group (its pid), so
  # `stop` can end them all; killing only the parent would orphan its children.
  setsid airflow standalone </dev/null >"$LOGFILE" 2>&1 &
  pid=$!
  echo "$pid" >"$PIDFILE"
  say "started airflow standalone (process group $pid); waiting for $URL (log: $LOGFILE)"
  local deadline=$((SECONDS + START_TIMEOUT))
  until ui_up; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "airflow standalone exited:"
      tail -n 40 "$LOGFILE" >&2
      rm -f "$PIDFILE"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "no answer from $URL within ${START_TIMEOUT}s; stopping it"
      cmd_stop
      exit 1
    fi
    sleep 1
  done
  local took
  took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  for _ in $(seq 30); do [ -s "$PASSWORDS" ] && break; sleep 1; done
  echo "Airflow UI: $URL  (answered after ${took}s; $(group_size "$pid") processes, $(group_rss_mb "$pid") MB RSS)"
  credentials
  echo "Stop it with: bash scripts/airflow.sh stop"
}

cmd_stop() {
  local pid
  if ! pid=$(running_pid); then
    say "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  say "stopping process group $pid"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 30); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 -- "-$pid" 2>/dev/null; then
    say "still running after 30 s; killing process group $pid"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  say "stopped"
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    echo "running: process group $pid, $(group_size "$pid") processes, $(group_rss_mb "$pid") MB RSS"
    if ui_up; then echo "UI: $URL (healthy)"; else echo "UI: $URL (not answering yet)"; fi
    credentials
  else
    echo "not running (AIRFLOW_HOME=$AIRFLOW_HOME)"
    return 3
  fi
}

cmd_env() {
  local name
  for name in PRICE_ALCHEMY_HOME AIRFLOW_HOME PATH AIRFLOW__CORE__DAGS_FOLDER AIRFLOW__CORE__LOAD_EXAMPLES \
    AIRFLOW__CORE__EXECUTOR AIRFLOW__CORE__PARALLELISM AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG \
    AIRFLOW__API__WORKERS AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS \
    AIRFLOW__API__PORT; do
    printf 'export %s=%q\n' "$name" "${!name}"
  done
}

case ${1:-} in
init) cmd_init ;;
dags-test) shift && cmd_dags_test "$@" ;;
run-state) shift && cmd_run_state "$@" ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
