#!/bin/sh
# Import the Price Alchemy data views, visualizations and dashboard into Kibana (idempotent:
# stable ids, overwrite=true). POSIX sh, so that it also runs in the compose stack's curl image.
#
#   KIBANA_URL=http://localhost:5601 sh scripts/kibana_import.sh [FILE.ndjson]
#
# Optional auth: KIBANA_API_KEY (an Elastic API key, base64 "id:key"), or KIBANA_USERNAME and
# KIBANA_PASSWORD (basic auth). KIBANA_SPACE imports into a space other than the default one.
# Waits up to KIBANA_WAIT_S seconds (default 120) for Kibana to answer; exits non-zero when the
# import fails or reports errors.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
file=${1:-}
if [ -z "$file" ]; then
  for candidate in /kibana/price-alchemy-dashboards.ndjson "$here/../docker/kibana/price-alchemy-dashboards.ndjson"; do
    if [ -f "$candidate" ]; then file=$candidate; break; fi
  done
fi
[ -n "$file" ] && [ -f "$file" ] || { echo "saved objects file not found: ${file:-<none>}" >&2; exit 2; }

url=${KIBANA_URL:-http://localhost:5601}
url=${url%/}
if [ -n "${KIBANA_SPACE:-}" ]; then url="$url/s/$KIBANA_SPACE"; fi

set -- -sS --max-time 60 -H "kbn-xsrf: true"
if [ -n "${KIBANA_API_KEY:-}" ]; then
  set -- "$@" -H "Authorization: ApiKey $KIBANA_API_KEY"
elif [ -n "${KIBANA_USERNAME:-}" ]; then
  set -- "$@" -u "$KIBANA_USERNAME:${KIBANA_PASSWORD:-}"
fi

deadline=$(( $(date +%s) + ${KIBANA_WAIT_S:-120} ))
until curl "$@" -o /dev/null -f "${KIBANA_URL:-http://localhost:5601}/api/status" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then echo "Kibana at ${KIBANA_URL:-http://localhost:5601} did not answer" >&2; exit 1; fi
  sleep 3
done

response=$(curl "$@" -X POST "$url/api/saved_objects/_import?overwrite=true" --form "file=@$file")
echo "$response"
case "$response" in
  *'"success":true'*) echo "imported $file into $url" ;;
  *) echo "import of $file failed" >&2; exit 1 ;;
esac
