#!/bin/sh
# Container entrypoint: secrets that the application reads from files arrive as environment
# variables (ECS task-definition secrets); write them to a private file under /tmp first.
set -eu
if [ -n "${FCM_CREDENTIALS_JSON:-}" ]; then
    dir="${TMPDIR:-/tmp}/buildpeer-secrets"
    mkdir -p "$dir"
    chmod 700 "$dir"
    umask 077
    printf '%s' "$FCM_CREDENTIALS_JSON" > "$dir/fcm.json"
    export BUILDPEER_FCM_CREDENTIALS="$dir/fcm.json"
    unset FCM_CREDENTIALS_JSON
fi
exec "$@"
