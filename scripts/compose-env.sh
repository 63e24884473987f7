#!/usr/bin/env bash
# Writes reflow.env for the compose stack (temporal-compose/docker-compose.yml): a fresh random
# value for every credential the stack requires, and the third-party keys and settings the
# operator may fill in, empty. The compose file refuses to start without the generated values
# (`${NAME:?…}`); nothing in it is a password that works.
#
#   scripts/compose-env.sh [PATH]      # default: temporal-compose/reflow.env
#
# The file is created readable by its owner only (600), and never overwritten: an existing
# file is refused (the stack's volumes keep the passwords they were created with; rotating one
# is a step of its own, docs/runbook.md "Compose stack"). Random values come from
# `openssl rand`, or Python's `secrets` without openssl.
set -euo pipefail

out="${1:-$(dirname "$0")/../temporal-compose/reflow.env}"
if [ -e "$out" ] || [ -L "$out" ]; then
    echo "compose-env: $out exists; not overwritten (move it away to generate a new one)" >&2
    exit 1
fi

# hex N: N random bytes as 2N hex digits (safe in URLs, env files and shell words).
hex() {
    openssl rand -hex "$1" 2>/dev/null \
        || python3 -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))' "$1"
}
# b64 N: N random bytes, standard base64 (the payload codec's key format).
b64() {
    openssl rand -base64 "$1" 2>/dev/null | tr -d '\n' \
        || python3 -c 'import base64, secrets, sys; print(base64.b64encode(secrets.token_bytes(int(sys.argv[1]))).decode(), end="")' "$1"
}
value() {
    local v
    v="$("$@")" || true
    [ -n "$v" ] || { echo "compose-env: no random source (openssl or python3)" >&2; exit 1; }
    printf '%s' "$v"
}

# Every value first (a failure stops the script here), then the file.
postgres_password="$(value hex 32)"
reflow_db_password="$(value hex 32)"
minio_root_user="$(value hex 10)"
minio_root_password="$(value hex 20)"
reflow_s3_access_key_id="$(value hex 10)"
reflow_s3_secret_access_key="$(value hex 20)"
grafana_admin_password="$(value hex 32)"
reflow_api_token="$(value hex 32)"
secret_key="$(value hex 32)"
codec_key="$(value b64 32)"

umask 077
dir="$(dirname "$out")"
mkdir -p "$dir"
tmp="$(mktemp "$dir/.reflow.env.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

cat >"$tmp" <<EOF
# reflow's compose stack: credentials and settings (temporal-compose/docker-compose.yml).
# Written by scripts/compose-env.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Secret: keep it mode 600,
# out of git (.gitignore) and out of images (.dockerignore). Use it with
#   docker compose --env-file reflow.env up -d --build
# (or export COMPOSE_ENV_FILES=reflow.env). docs/runbook.md, "Compose stack".

# ---- Generated: random, required (compose refuses to start without them) ----

# PostgreSQL's superuser \`temporal\` (Temporal's two databases).
POSTGRES_PASSWORD=${postgres_password}
# reflow's own database user \`reflow\`.
REFLOW_DB_PASSWORD=${reflow_db_password}
# MinIO's root (MinIO allows at most 20 and 40 characters: 80 and 160 random bits).
MINIO_ROOT_USER=${minio_root_user}
MINIO_ROOT_PASSWORD=${minio_root_password}
# reflow's own MinIO user (readwrite on the buckets; created by minio-buckets).
REFLOW_S3_ACCESS_KEY_ID=${reflow_s3_access_key_id}
REFLOW_S3_SECRET_ACCESS_KEY=${reflow_s3_secret_access_key}
# Grafana's \`admin\`.
GRAFANA_ADMIN_PASSWORD=${grafana_admin_password}
# Operator token: sees every run and transcript, decodes payloads. At least 32 bytes (reflow
# refuses shorter): \`openssl rand -hex 32\`.
REFLOW_API_TOKEN=${reflow_api_token}
# Signs users' JWTs and shareable audio links (HS256). At least 32 bytes: \`openssl rand -hex 32\`.
# Rotating it: docs/runbook.md, "Rotating SECRET_KEY" (SECRET_KEY_PREVIOUS and its date).
SECRET_KEY=${secret_key}
# SECRET_KEY_PREVIOUS=
# SECRET_KEY_PREVIOUS_UNTIL=
# Payload encryption keys, newest first: id:base64(32 bytes). Rotation: docs/runbook.md.
REFLOW_CODEC_KEYS=k1:${codec_key}

# ---- Third-party credentials: fill in the ones you use (empty: that integration is off) ----

# Daily.co (without DAILY_WEBHOOK_SECRET every webhook is refused).
DAILY_API_KEY=
DAILY_WEBHOOK_SECRET=
# Daily's recordings bucket, when it is not the stack's MinIO (empty: MinIO, reflow's user).
DAILYCO_STORAGE_AWS_ACCESS_KEY_ID=
DAILYCO_STORAGE_AWS_SECRET_ACCESS_KEY=
# DAILYCO_STORAGE_AWS_BUCKET_NAME=daily-recordings
# DAILYCO_STORAGE_AWS_REGION=
# DAILYCO_STORAGE_AWS_ENDPOINT_URL=
# GPU transcription / LLM services, with TRANSCRIPT_BACKEND / LLM_BACKEND pointing at them.
TRANSCRIPT_MODAL_API_KEY=
LLM_API_KEY=
# Zulip notifications.
ZULIP_API_KEY=
# ZULIP_REALM=
# ZULIP_BOT_EMAIL=

# ---- Settings (commented: the compose file's default) ----

# TRANSCRIPT_BACKEND=embedded
# TRANSCRIPT_URL=
# LLM_BACKEND=embedded
# LLM_URL=
# UI_BASE_URL=
# Worker versioning: docs/runbook.md, "Upgrading workers with meetings in flight".
# REFLOW_DEPLOYMENT_NAME=reflow
# REFLOW_BUILD_ID=
# Browser origins allowed on reflow's codec endpoint (the Web UI through your tunnel/proxy).
# REFLOW_CODEC_CORS_ORIGINS=http://localhost:8080
# Where reflow's API (port 8000) is published. Loopback by default: reach it through your TLS
# proxy on this host. Another address only for a private interface a proxy elsewhere reaches.
# REFLOW_BIND_ADDRESS=127.0.0.1
# Where your TLS proxy publishes the API (https://…: the codec cookie is then Secure).
# REFLOW_PUBLIC_URL=
EOF

# Atomic and never over an existing file: a hard link fails if $out appeared meanwhile.
if ! ln "$tmp" "$out"; then
    echo "compose-env: could not create $out (it exists now, or links are not supported there)" >&2
    exit 1
fi
echo "compose-env: wrote $out (mode 600)" >&2
