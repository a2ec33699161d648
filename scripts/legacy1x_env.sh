#!/usr/bin/env bash
# Create .venv-fc1x: a real Flask-Caching 1.10.1 install, the oracle of
# tests/test_flask_caching_1x.py for apps that still run the 1.x series.
#
# Why a separate interpreter: Flask-Caching 1.10.1 declares Python 3.6-3.9 (setup.py
# classifiers; python_requires >=3.5), and the era's Flask/Werkzeug are what such apps run.
# Python 3.9 is preferred, then 3.8 and 3.10 (both checked to install and run these pins).
# The interpreter is looked for in `pyenv root`/versions, then as python3.X on PATH;
# FC1X_BASE_PYTHON names one explicitly.
#
# Idempotent: when .venv-fc1x already imports exactly the pinned versions, nothing is
# installed. Exits 1 with a message when no suitable interpreter exists.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-fc1x
# Flask-Caching 1.10.1 (March 2021) with the Flask 2.0 line of the same year, and every
# transitive dependency pinned, so the oracle is the same on every machine.
PINS=(
  "flask-caching==1.10.1"
  "flask==2.0.3"
  "werkzeug==2.0.3"
  "jinja2==3.0.3"
  "markupsafe==2.0.1"
  "itsdangerous==2.0.1"
  "click==8.0.4"
  "redis==3.5.3"
)
SUPPORTED_MINORS=(3.9 3.8 3.10)

# Print "name==version" for every pin the venv's interpreter can import at that version;
# exits non-zero at the first mismatch, so "already done" is decided by the venv itself.
pins_satisfied() {
  local python=$1
  [ -x "$python" ] || return 1
  "$python" - "${PINS[@]}" <<'PY' >/dev/null 2>&1
import sys
from importlib import metadata

for pin in sys.argv[1:]:
    name, version = pin.split("==")
    if metadata.version(name) != version:
        sys.exit(1)
import flask_caching, flask, redis  # noqa: E401,F401  (they must import, not only be listed)
PY
}

# The major.minor of an interpreter, or nothing when it does not run.
minor_of() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

find_interpreter() {
  if [ -n "${FC1X_BASE_PYTHON:-}" ]; then
    echo "$FC1X_BASE_PYTHON"
    return
  fi
  local root="" minor candidate
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root 2>/dev/null || true)
  fi
  for minor in "${SUPPORTED_MINORS[@]}"; do
    if [ -n "$root" ] && [ -d "$root/versions" ]; then
      # The newest patch release of this minor that pyenv holds.
      for candidate in $(ls -d "$root/versions/$minor".* 2>/dev/null | sort -V -r); do
        if [ -x "$candidate/bin/python$minor" ]; then
          echo "$candidate/bin/python$minor"
          return
        fi
      done
    fi
    candidate=$(command -v "python$minor" 2>/dev/null || true)
    # pyenv's shims answer for every version; only a real interpreter counts.
    if [ -n "$candidate" ] && [ "$(minor_of "$candidate")" = "$minor" ]; then
      echo "$candidate"
      return
    fi
  done
}

if pins_satisfied "$VENV/bin/python"; then
  echo "$VENV is ready: $("$VENV/bin/python" --version 2>&1) ($(readlink -f "$VENV/bin/python"))," \
    "flask-caching 1.10.1"
  exit 0
fi

base=$(find_interpreter)
if [ -z "$base" ]; then
  echo "error: no Python ${SUPPORTED_MINORS[*]} found (looked in \`pyenv root\`/versions and for" \
    "python3.X on PATH); Flask-Caching 1.10.1 needs one of them. Install one (pyenv install" \
    "3.9) or name it with FC1X_BASE_PYTHON=/path/to/python3.9." >&2
  exit 1
fi
minor=$(minor_of "$base")
if [[ ! " ${SUPPORTED_MINORS[*]} " =~ " $minor " ]]; then
  echo "error: $base is Python ${minor:-(does not run)}; Flask-Caching 1.10.1 needs one of" \
    "${SUPPORTED_MINORS[*]}" >&2
  exit 1
fi
echo "using $base (Python $("$base" -c 'import platform; print(platform.python_version())'))"

# A venv made by another interpreter (or a half-made one) is rebuilt, not patched.
if [ -e "$VENV" ] && [ "$(minor_of "$VENV/bin/python")" != "$minor" ]; then
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$base" -m venv "$VENV"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" \
  >"$log" 2>&1; then
  cat "$log" >&2
  echo "error: installing ${PINS[*]} into $VENV failed" >&2
  exit 1
fi
if ! pins_satisfied "$VENV/bin/python"; then
  echo "error: $VENV does not import the pinned versions after installing them" >&2
  "$VENV/bin/python" -m pip list --disable-pip-version-check >&2 || true
  exit 1
fi
echo "$VENV is ready: flask-caching 1.10.1 on $("$VENV/bin/python" --version 2>&1)"
