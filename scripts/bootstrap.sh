#!/usr/bin/env bash
# Create or refresh ./.venv with the locked stack (requirements.txt) and the package, idempotently.
# Python: the newest supported interpreter found (3.13, then 3.12, then 3.11) on PATH or under pyenv;
# PYTHON=/path/to/python overrides. requirements.txt is one universal lock for all three versions.
# An existing .venv keeps its interpreter when it is a supported one (delete .venv to move it).
# Installs uv with pip when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUPPORTED=(3.13 3.12 3.11) # newest first; keep in step with requires-python in pyproject.toml

version_of() { # "3.12" when $1 runs and is CPython 3.x, else nothing
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}
is_supported() {
  local v
  for v in "${SUPPORTED[@]}"; do [ "$1" = "$v" ] && return 0; done
  return 1
}
find_python() { # the newest supported interpreter: PATH first (pyenv shims that refuse are skipped), then pyenv
  local v candidate root
  root=$(pyenv root 2>/dev/null || true)
  for v in "${SUPPORTED[@]}"; do
    if command -v "python$v" >/dev/null 2>&1 && [ "$(version_of "python$v")" = "$v" ]; then
      echo "python$v"; return 0
    fi
    if [ -n "$root" ]; then
      for candidate in $(ls -d "$root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -Vr); do
        [ "$(version_of "$candidate")" = "$v" ] && { echo "$candidate"; return 0; }
      done
    fi
  done
  for candidate in python3 python; do # a plain python3 of a supported version
    command -v "$candidate" >/dev/null 2>&1 && is_supported "$(version_of "$candidate")" && { echo "$candidate"; return 0; }
  done
  return 1
}

if [ -n "${PYTHON:-}" ]; then
  version=$(version_of "$PYTHON")
  is_supported "$version" || { echo "bootstrap: PYTHON=$PYTHON is not Python ${SUPPORTED[*]} (got '${version:-no interpreter}')" >&2; exit 2; }
  why="PYTHON"
elif [ -x .venv/bin/python ] && is_supported "$(version_of .venv/bin/python)"; then
  PYTHON=.venv/bin/python
  version=$(version_of "$PYTHON")
  why="the existing .venv (delete .venv to move to the newest interpreter)"
else
  PYTHON=$(find_python) || { echo "bootstrap: no Python ${SUPPORTED[*]} found on PATH or under pyenv; set PYTHON=/path/to/python3.x" >&2; exit 2; }
  version=$(version_of "$PYTHON")
  why="newest supported found"
fi
if [ -x .venv/bin/python ] && [ "$(version_of .venv/bin/python)" != "$version" ]; then
  echo "bootstrap: .venv is Python $(version_of .venv/bin/python), recreating it on $version" >&2
  rm -rf .venv
fi

# uv from PATH, else the interpreter's own `python -m uv` (installed with pip when missing): a pip
# install may put the uv executable in a folder that is not on PATH.
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif [ -x .venv/bin/uv ]; then
  UV=(.venv/bin/uv)
else
  if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
    echo "bootstrap: installing uv with pip" >&2
    "$PYTHON" -m pip install --quiet --user uv 2>/dev/null || "$PYTHON" -m pip install --quiet uv
  fi
  UV=("$PYTHON" -m uv)
fi

echo "bootstrap: Python $version ($PYTHON, $why)" >&2
stamp=.venv/.price-alchemy-lock
want=$( (cat requirements.txt pyproject.toml; echo "$version") | sha256sum | cut -c1-16)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "bootstrap: creating .venv from requirements.txt (first run takes a few minutes)" >&2
if [ ! -x .venv/bin/python ]; then
  "${UV[@]}" venv --quiet --python "$PYTHON" .venv
fi
"${UV[@]}" pip install --quiet --python .venv/bin/python --compile-bytecode -r requirements.txt
"${UV[@]}" pip install --quiet --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
