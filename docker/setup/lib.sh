# Helpers shared by the stack's one-shot setup jobs (docker/setup/*.sh). POSIX sh and curl only, as
# in the curlimages/curl image the jobs run in. Source it; it defines functions and nothing else.
#
# Secrets never reach a command line (which `ps` shows): credentials go to curl through a config
# file only this process can read, request bodies through standard input.

log() { printf '[%s] %s\n' "${SETUP_NAME:-setup}" "$*"; }
die() {
  printf '[%s] error: %s\n' "${SETUP_NAME:-setup}" "$*" >&2
  exit 1
}

# require NAME...: every named variable is set and not empty.
require() {
  for name in "$@"; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || die "$name is not set (docker/.env)"
  done
}

# quote VALUE: sets QUOTED to VALUE as a JSON string literal. The same two escapes (\\ and \")
# quote a value in a curl config file. Control characters are refused rather than escaped.
quote() {
  case $1 in
    *[[:cntrl:]]*) die "a value contains a control character (tab, newline, ...)" ;;
  esac
  QUOTED="\"$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')\""
}

# use_credentials USER PASSWORD: every later `call` authenticates as USER (HTTP basic auth).
use_credentials() {
  if [ -z "${SETUP_CURL_CONFIG:-}" ]; then
    SETUP_CURL_CONFIG=$(mktemp)
    SETUP_BODY=$(mktemp)
    trap 'rm -f "$SETUP_CURL_CONFIG" "$SETUP_BODY"' EXIT
  fi
  quote "$1:$2"
  printf 'user = %s\n' "$QUOTED" >"$SETUP_CURL_CONFIG"
}

# call METHOD URL [BODY]: sends BODY (JSON) if given; sets STATUS (the HTTP status, 000 when
# nothing answered) and BODY. Run it in this shell, not in a pipeline (a pipeline's subshell would
# lose STATUS and BODY). printf is a shell builtin: BODY reaches curl through a pipe, never argv.
call() {
  method=$1 url=$2
  if [ $# -ge 3 ]; then
    STATUS=$(printf '%s' "$3" | curl -sS --max-time 30 -K "$SETUP_CURL_CONFIG" -X "$method" \
      -H 'Content-Type: application/json' --data-binary @- -o "$SETUP_BODY" -w '%{http_code}' "$url") ||
      STATUS=000
  else
    STATUS=$(curl -sS --max-time 30 -K "$SETUP_CURL_CONFIG" -X "$method" -o "$SETUP_BODY" \
      -w '%{http_code}' "$url") || STATUS=000
  fi
  BODY=$(cat "$SETUP_BODY" 2>/dev/null || true)
}

# expect WHAT OK_STATUSES METHOD URL [BODY]: `call`, and stop unless the HTTP status is one of
# OK_STATUSES (space-separated).
expect() {
  what=$1 oks=$2
  shift 2
  call "$@"
  for ok in $oks; do
    [ "$STATUS" = "$ok" ] && return 0
  done
  die "$what: HTTP $STATUS from $1 ${2%%\?*}: $(printf '%s' "$BODY" | head -c 500)"
}

# wait_until URL SECONDS: GET URL until it answers 200, for at most SECONDS; refused credentials
# stop at once (retrying cannot fix them).
wait_until() {
  deadline=$(($(date +%s) + $2))
  while :; do
    call GET "$1"
    [ "$STATUS" = 200 ] && return 0
    case $STATUS in
      401 | 403) die "${1%%\?*} refused the credentials (HTTP $STATUS): $(printf '%s' "$BODY" | head -c 300)" ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || die "${1%%\?*} did not answer 200 within $2 s (last: HTTP $STATUS)"
    sleep 3
  done
}
