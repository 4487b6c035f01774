#!/bin/sh
# One-shot setup of the stack's MLflow accounts (the `mlflow-setup` service).
#
# As the admin (created by the server itself on its first start from MLFLOW_AUTH_ADMIN_*), it
# creates or updates two ordinary (non-admin) users and their grants:
#
#   user (compose x-accounts)  used by                          can
#   price-alchemy-airflow      Airflow: training, promotion,    EDIT every experiment and the
#                              drift monitor                    registered model (log runs,
#                                                               register versions, move aliases)
#   price-alchemy-api          the API                          READ only (the server's
#                                                               default_permission): never
#                                                               registers a version or moves
#                                                               `champion`
#
# The registered model is created here, by the admin, so that no other account can create it
# first and own it. Idempotent: it runs at every `up`; changing a client's password in
# docker/.env and re-running it rotates that password. The admin's own password is read by the
# server only while the admin does not exist yet (see docs/security.md to rotate it).
set -eu
SETUP_NAME=mlflow-setup
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

require MLFLOW_ADMIN_USERNAME MLFLOW_ADMIN_PASSWORD MLFLOW_AIRFLOW_USERNAME MLFLOW_AIRFLOW_PASSWORD \
  MLFLOW_API_USERNAME MLFLOW_API_PASSWORD PRICE_ALCHEMY_MODEL_NAME
mlflow=${MLFLOW_URL:-http://mlflow:5000}
mlflow=${mlflow%/}
api2=$mlflow/api/2.0/mlflow
api3=$mlflow/api/3.0/mlflow

for client in "$MLFLOW_AIRFLOW_USERNAME" "$MLFLOW_API_USERNAME"; do
  [ "$client" != "$MLFLOW_ADMIN_USERNAME" ] || die "a client user cannot be the admin ($client)"
done
[ "$MLFLOW_AIRFLOW_USERNAME" != "$MLFLOW_API_USERNAME" ] || die "the Airflow and API users must differ"

use_credentials "$MLFLOW_ADMIN_USERNAME" "$MLFLOW_ADMIN_PASSWORD"
wait_until "$mlflow/health" "${SETUP_WAIT_S:-300}" # unauthenticated
call GET "$api2/users/current"
case $STATUS:$BODY in
  200:*'"is_admin": true'* | 200:*'"is_admin":true'*) ;;
  200:*) die "$MLFLOW_ADMIN_USERNAME is not an MLflow admin" ;;
  401:*) die "MLflow refused $MLFLOW_ADMIN_USERNAME: the server reads MLFLOW_ADMIN_PASSWORD only on its first start, so a changed value must be set with the update-password API first (docs/security.md)" ;;
  *) die "users/current: HTTP $STATUS: $(printf '%s' "$BODY" | head -c 500)" ;;
esac

# ensure_user NAME PASSWORD: create NAME, or set its password; never an admin.
ensure_user() {
  quote "$1"
  name=$QUOTED
  quote "$2"
  credentials="{\"username\":$name,\"password\":$QUOTED}"
  call POST "$api2/users/create" "$credentials"
  case $STATUS:$BODY in
    200:*) log "user $1: created" ;;
    400:*RESOURCE_ALREADY_EXISTS*)
      expect "password of $1" 200 PATCH "$api2/users/update-password" "$credentials"
      log "user $1: password set"
      ;;
    *) die "user $1: HTTP $STATUS from users/create: $(printf '%s' "$BODY" | head -c 300)" ;;
  esac
  expect "admin flag of $1" 200 PATCH "$api2/users/update-admin" "{\"username\":$name,\"is_admin\":false}"
}

# grant USER RESOURCE_TYPE RESOURCE_ID PERMISSION: exactly PERMISSION (an existing grant of another
# level on the same resource is replaced).
grant() {
  quote "$1"
  user=$QUOTED
  quote "$3"
  resource="{\"username\":$user,\"resource_type\":\"$2\",\"resource_id\":$QUOTED"
  call POST "$api3/users/permissions/grant" "$resource,\"permission\":\"$4\"}"
  case $STATUS:$BODY in
    200:*) ;;
    400:*RESOURCE_ALREADY_EXISTS*)
      expect "revoke $2 $3 from $1" 200 POST "$api3/users/permissions/revoke" "$resource}"
      expect "grant $2 $3 to $1" 200 POST "$api3/users/permissions/grant" "$resource,\"permission\":\"$4\"}"
      ;;
    *) die "grant $2 $3 to $1: HTTP $STATUS: $(printf '%s' "$BODY" | head -c 300)" ;;
  esac
  log "user $1: $4 on $2 $3"
}

ensure_user "$MLFLOW_AIRFLOW_USERNAME" "$MLFLOW_AIRFLOW_PASSWORD"
ensure_user "$MLFLOW_API_USERNAME" "$MLFLOW_API_PASSWORD"

quote "$PRICE_ALCHEMY_MODEL_NAME"
call POST "$api2/registered-models/create" "{\"name\":$QUOTED}"
case $STATUS:$BODY in
  200:*) log "registered model $PRICE_ALCHEMY_MODEL_NAME: created" ;;
  400:*RESOURCE_ALREADY_EXISTS*) log "registered model $PRICE_ALCHEMY_MODEL_NAME: exists" ;;
  *) die "registered model: HTTP $STATUS: $(printf '%s' "$BODY" | head -c 300)" ;;
esac

grant "$MLFLOW_AIRFLOW_USERNAME" experiment '*' EDIT
grant "$MLFLOW_AIRFLOW_USERNAME" registered_model "$PRICE_ALCHEMY_MODEL_NAME" EDIT
log "done"
