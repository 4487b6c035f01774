#!/bin/sh
# One-shot setup of the stack's Elasticsearch accounts (the `elasticsearch-setup` service).
#
# As the `elastic` superuser: sets the password of Kibana's built-in `kibana_system` user, puts
# every role in elasticsearch-roles/ (role name = file name), and creates or updates one user per
# client, each with exactly one of those roles. Idempotent: it runs at every `up`, so changing a
# client's password in docker/.env and re-running it rotates that password.
#
#   client           user (compose x-accounts)      role
#   shipper          price-alchemy-shipper           price_alchemy_shipper
#   Logstash         price-alchemy-logstash          price_alchemy_logstash
#   drift monitor    price-alchemy-drift-monitor     price_alchemy_drift_monitor
#   dashboard import price-alchemy-kibana-import     price_alchemy_kibana_import
set -eu
SETUP_NAME=elasticsearch-setup
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

require ELASTIC_PASSWORD KIBANA_SYSTEM_PASSWORD \
  SHIPPER_ES_USERNAME SHIPPER_ES_PASSWORD LOGSTASH_ES_USERNAME LOGSTASH_ES_PASSWORD \
  DRIFT_ES_USERNAME DRIFT_ES_PASSWORD KIBANA_IMPORT_ES_USERNAME KIBANA_IMPORT_ES_PASSWORD
es=${ELASTICSEARCH_URL:-http://elasticsearch:9200}
es=${es%/}
roles=${ES_ROLES_DIR:-$here/elasticsearch-roles}

use_credentials elastic "$ELASTIC_PASSWORD"
wait_until "$es/_cluster/health?wait_for_status=yellow&timeout=10s" "${SETUP_WAIT_S:-300}"

quote "$KIBANA_SYSTEM_PASSWORD"
expect "password of kibana_system" 200 POST "$es/_security/user/kibana_system/_password" "{\"password\":$QUOTED}"
log "kibana_system: password set"

found=0
for file in "$roles"/*.json; do
  [ -f "$file" ] || continue
  role=$(basename "$file" .json)
  expect "role $role" 200 PUT "$es/_security/role/$role" "$(cat "$file")"
  log "role $role: put"
  found=$((found + 1))
done
[ "$found" -gt 0 ] || die "no role definitions in $roles"

# ensure_user NAME PASSWORD ROLE: create NAME, or update its password and roles.
ensure_user() {
  [ -f "$roles/$3.json" ] || die "user $1: no role definition $3.json"
  quote "$2"
  password=$QUOTED
  quote "$3"
  expect "user $1" 200 PUT "$es/_security/user/$1" \
    "{\"password\":$password,\"roles\":[$QUOTED],\"full_name\":\"price-alchemy stack client\"}"
  log "user $1: role $3"
}

ensure_user "$SHIPPER_ES_USERNAME" "$SHIPPER_ES_PASSWORD" price_alchemy_shipper
ensure_user "$LOGSTASH_ES_USERNAME" "$LOGSTASH_ES_PASSWORD" price_alchemy_logstash
ensure_user "$DRIFT_ES_USERNAME" "$DRIFT_ES_PASSWORD" price_alchemy_drift_monitor
ensure_user "$KIBANA_IMPORT_ES_USERNAME" "$KIBANA_IMPORT_ES_PASSWORD" price_alchemy_kibana_import
log "done"
