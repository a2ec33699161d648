#!/usr/bin/env bash
# Create .venv-fc250: cachectl beside a real Flask-Caching 2.5.0, the oracle of
# tests/oracle/test_release_exact.py for the one release whose view keys differ from 2.5.1's
# (a view argument named `path` or `query_args` was taken as make_cache_key's own argument).
# The main .venv has 2.5.1 or later: the same tests there are the other half of the oracle.
#
# Python 3.11 (Flask-Caching 2.5 needs it), built with uv (pip takes minutes). Every library
# that takes part in a key or a stored value is pinned, so the oracle is the same everywhere.
# Idempotent: when the environment already has exactly these pins, nothing is installed.
#
#   bash scripts/fc250_env.sh              # makes ./.venv-fc250 for this checkout
#   FC250_VENV=/elsewhere bash scripts/fc250_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${FC250_VENV:-.venv-fc250}
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || UV=$(command -v uv)
PINS=(
  "flask-caching==2.5.0"
  "cachelib==0.17.0"
  "flask==3.1.3"
  "werkzeug==3.1.9"
  "jinja2==3.1.6"
  "markupsafe==3.0.4"
  "itsdangerous==2.2.0"
  "blinker==1.9.0"
  "click==8.5.1"
  "redis==8.2.0"
  "pytest==9.2.0"
  "hypothesis==6.170.27"
)

pins_satisfied() {
  local python=$VENV/bin/python
  [ -x "$python" ] || return 1
  "$python" - "$PWD" "${PINS[@]}" <<'PY' >/dev/null 2>&1
import os
import sys
from importlib import metadata

import cachectl

# The editable install must be this checkout's, or the tests would run another one's code.
assert os.path.dirname(os.path.dirname(os.path.abspath(cachectl.__file__))) == sys.argv[1]
for pin in sys.argv[2:]:
    name, _, version = pin.partition("==")
    assert metadata.version(name) == version, pin
PY
}

if pins_satisfied; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$UV" venv --quiet --python 3.11 "$VENV"
VIRTUAL_ENV=$VENV "$UV" pip install --quiet -e . "${PINS[@]}"
pins_satisfied || { echo "$VENV does not hold the pinned Flask-Caching 2.5.0 stack" >&2; exit 1; }
