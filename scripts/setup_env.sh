#!/usr/bin/env bash
# Idempotent set-up: .venv, editable install with dev extras, assets.
# Fast when nothing changed: the install is skipped while the stamp in .venv matches
# the hash of pyproject.toml; assets are only re-checked (sha256 of cached files).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.kpdesk-setup"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
    echo "setup: installing kpdesk[dev] into $VENV (pyproject.toml changed or first run)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[dev]'
    echo "$want" > "$stamp"
fi

# Missing assets are not fatal: the app falls back to the Haar detector.
"$VENV/bin/python" -m kpdesk.assets fetch --quiet || echo "setup: some assets are missing (see above); continuing"
