#!/usr/bin/env bash
# Label Studio for refava, in its own virtual environment (it pins packages that clash with refava's).
#
#   tools/labelstudio.sh install               # .lsvenv with label-studio 1.23.x
#   tools/labelstudio.sh start DATA_DIR ROOT   # server on 127.0.0.1:${LS_PORT:-8080}, SQLite in DATA_DIR,
#                                              # keyframes served from ROOT (a workspace or a folder above it)
#   tools/labelstudio.sh stop DATA_DIR
#
# The admin user comes from LABEL_STUDIO_USERNAME / LABEL_STUDIO_PASSWORD and its legacy API token from
# LABEL_STUDIO_API_KEY, the variable refava reads too (LABEL_STUDIO_USER_TOKEN, Label Studio's own name, also works).
# Personal access tokens (Account & Settings) work with refava as well: put one in LABEL_STUDIO_API_KEY.
# The server sends nothing outside: error reporting (Sentry, back end and front end), analytics and the version check
# are off. A second server for the verify stage: another DATA_DIR and LS_PORT (see README, "two servers").
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${LS_VENV:-$HERE/.lsvenv}"
PY="${PYTHON:-python3}"

case "${1:-}" in
  install)
    test -x "$VENV/bin/label-studio" || { "$PY" -m venv "$VENV" && "$VENV/bin/pip" install --quiet 'label-studio>=1.23,<1.24'; }
    ;;
  start)
    data="$(realpath -m "$2")"; root="$(realpath -m "$3")"; port="${LS_PORT:-8080}"
    mkdir -p "$data"
    : "${LABEL_STUDIO_USERNAME:?set LABEL_STUDIO_USERNAME}" "${LABEL_STUDIO_PASSWORD:?set LABEL_STUDIO_PASSWORD}"
    LABEL_STUDIO_USER_TOKEN="${LABEL_STUDIO_API_KEY:-${LABEL_STUDIO_USER_TOKEN:-}}"
    : "${LABEL_STUDIO_USER_TOKEN:?set LABEL_STUDIO_API_KEY, the admin token that refava uses}"
    LABEL_STUDIO_BASE_DATA_DIR="$data" LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK=true LATEST_VERSION_CHECK=false \
    COLLECT_ANALYTICS=false LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true \
    SENTRY_DSN= FRONTEND_SENTRY_DSN= LABEL_STUDIO_SENTRY_DSN= LABEL_STUDIO_FRONTEND_SENTRY_DSN= \
    LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$root" \
      nohup "$VENV/bin/label-studio" start --host 127.0.0.1 --port "$port" --no-browser \
        --data-dir "$data" --username "$LABEL_STUDIO_USERNAME" --password "$LABEL_STUDIO_PASSWORD" \
        --user-token "$LABEL_STUDIO_USER_TOKEN" > "$data/server.log" 2>&1 &
    echo $! > "$data/server.pid"
    for _ in $(seq 1 240); do
      if curl -fsS "http://127.0.0.1:$port/health" > /dev/null 2>&1; then
        echo "Label Studio on http://127.0.0.1:$port (log $data/server.log)"; exit 0
      fi
      kill -0 "$(cat "$data/server.pid")" 2>/dev/null || { echo "Label Studio exited; log:"; tail -30 "$data/server.log"; exit 1; }
      sleep 1
    done
    echo "Label Studio did not answer in 240 s; log: $data/server.log"; exit 1
    ;;
  stop)
    pid="$(cat "$2/server.pid" 2>/dev/null || true)"
    test -n "$pid" && kill "$pid" 2>/dev/null && echo "stopped $pid" || true
    ;;
  *) sed -n 2,16p "$0"; exit 2 ;;
esac
