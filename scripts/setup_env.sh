#!/usr/bin/env bash
# Idempotent set-up: .venv, editable install with dev extras, assets.
# Fast when nothing changed: the install is skipped while the stamp in .venv matches
# pyproject.toml (and the package list); assets are only re-checked (sha256 of cached files).
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
# Keyed on pyproject.toml and on which top-level packages exist (the editable install
# maps packages found at install time, so a new package needs a re-install).
want=$( (cat pyproject.toml; ls -d -- */__init__.py 2>/dev/null) | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
    echo "setup: installing kpdesk[dev] into $VENV (pyproject.toml changed or first run)"
    log="$VENV/pip-install.log"
    if ! "$VENV/bin/python" -m pip install -e '.[dev]' >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "setup: pip install failed (full log: $log)" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi

# Missing assets are not fatal: the app falls back to the Haar detector.
"$VENV/bin/python" -m kpdesk.assets fetch --quiet || echo "setup: some assets are missing (see above); continuing"
