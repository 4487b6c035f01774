#!/usr/bin/env bash
# Create or refresh ./.venv with the locked stack (requirements.txt) and the package, idempotently.
# Needs only python3 (3.11) on PATH; installs uv with pip when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$candidate; break
    fi
  done
fi

# uv from PATH, else the interpreter's own `python -m uv` (installed with pip when missing): a pip
# install may put the uv executable in a folder that is not on PATH.
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
else
  if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
    echo "bootstrap: installing uv with pip" >&2
    "$PYTHON" -m pip install --quiet --user uv 2>/dev/null || "$PYTHON" -m pip install --quiet uv
  fi
  UV=("$PYTHON" -m uv)
fi

stamp=.venv/.price-alchemy-lock
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "bootstrap: creating .venv from requirements.txt (first run takes a few minutes)" >&2
[ -x .venv/bin/python ] || "${UV[@]}" venv --quiet --python "$PYTHON" .venv
"${UV[@]}" pip install --quiet --python .venv/bin/python --compile-bytecode -r requirements.txt
"${UV[@]}" pip install --quiet --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
