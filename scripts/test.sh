#!/usr/bin/env bash
# Install what the tests need and run them: the README's test command, and what CI runs.
#
# - Debian's redis-server, redis-tools, memcached and sasl2-bin when missing (the tests
#   start their own private servers on free loopback ports; they never use a running one),
#   and what pylibmc builds against;
# - a virtual environment .venv with cachectl and its test dependencies
#   (Flask and Flask-Caching are the oracle for key and value formats);
# - ruff and mypy, then pytest (extra arguments go to it), then the key-derivation oracle and
#   the invalidation tests again in .venv-legacy against Flask-Caching 2.4 (legacy).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v memcached >/dev/null || missing+=(memcached)
command -v saslpasswd2 >/dev/null || missing+=(sasl2-bin)
command -v openssl >/dev/null || missing+=(openssl)
command -v gcc >/dev/null || missing+=(gcc)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
python3 -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
  2>/dev/null || missing+=(python3-dev)
# pylibmc (for the SASL backends) is built against these, and SASL's PLAIN plugin.
for package in libmemcached-dev libsasl2-dev libsasl2-modules zlib1g-dev; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# pylibmc from source: the wheel bundles a libsasl2 that cannot use Debian's SASL plugins.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-binary pylibmc -e '.[test]'

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

# pytest's exit 5 (no tests collected) is a failure here, not a silent pass.
run_pytest() {
  local python=$1
  shift
  local status=0
  "$python" -m pytest "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests ($*): that is a failure, not a pass" >&2
    return 1
  fi
  return "$status"
}

# The Flask-Caching 1.x oracle (tests/test_flask_caching_1x.py) runs a real 1.10 app on a
# Python it supports (3.9, else 3.8 or 3.10, from pyenv or PATH). Once the environment is
# made, its tests fail rather than skip; a machine with none of those Pythons says so here.
if bash scripts/legacy1x_env.sh; then
  export CACHECTL_REQUIRE_FC1X=1
else
  echo "NOT RUN: the Flask-Caching 1.x oracle (no Python 3.8-3.10 on this machine)" >&2
fi

run_pytest .venv/bin/python "$@"

# The key-derivation oracle, the end-to-end invalidation tests and app mode (live
# backends, class-based views) again, against legacy Flask-Caching (2.0-2.4).
if [ ! -x .venv-legacy/bin/python ]; then
  python3 -m venv .venv-legacy
fi
.venv-legacy/bin/python -m pip install --quiet --disable-pip-version-check --no-binary pylibmc -e . \
  'flask-caching>=2.4,<2.5' 'pytest>=8' 'hypothesis>=6.100' 'python-memcached>=1.59' \
  'pylibmc>=1.6' 'flask-restx>=1.3' 'flask-smorest>=0.44'
run_pytest .venv-legacy/bin/python -p no:cacheprovider tests/oracle tests/test_invalidation.py \
  tests/test_app_caches.py tests/test_class_views.py
