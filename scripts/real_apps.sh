#!/usr/bin/env bash
# Build the real-app lane's environments: one per directory of tests/real_apps/ that has a
# requirements.txt (exact pins of a real Flask app and its dependency tree, as its users
# install it), in .venv-realapp-<name>/, with cachectl from this checkout installed beside
# the app without moving any of its pins. tests/real_apps/ then drives the app and its
# cachectl through subprocesses (scripts/test.sh runs them with CACHECTL_REAL_APPS=1).
#
# An environment is rebuilt only when its pins, its prepare.sh or cachectl's own declared
# dependencies (pyproject.toml) change: their hash is kept inside it. cachectl is installed
# editable, so a change to its code needs no rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."

UV=.venv/bin/uv
# Packages compiled as installed (scripts/test.sh says why); part of what an environment
# is built from, so one built without bytecode is built again.
export UV_COMPILE_BYTECODE=1
# The apps run on the Python of .venv (3.11 on Debian 12); uv takes the base interpreter.
PYTHON=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')

for pins in tests/real_apps/*/requirements.txt; do
  app_dir=$(dirname "$pins")
  name=$(basename "$app_dir")
  venv=.venv-realapp-$name
  inputs=("$pins" pyproject.toml)
  [ -f "$app_dir/prepare.sh" ] && inputs+=("$app_dir/prepare.sh")
  wanted=$( (cat "${inputs[@]}" && echo "UV_COMPILE_BYTECODE=$UV_COMPILE_BYTECODE") | sha256sum | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.pins-sha256" 2>/dev/null)" = "$wanted" ]; then
    echo "== real app $name: $venv is up to date" >&2
    continue
  fi
  echo "== real app $name: building $venv" >&2
  SECONDS=0
  rm -rf "$venv"
  "$UV" venv --quiet --python "$PYTHON" "$venv"
  VIRTUAL_ENV=$venv "$UV" pip install --quiet -r "$pins"
  VIRTUAL_ENV=$venv "$UV" pip freeze --quiet >"$venv/app-freeze.txt"
  # cachectl and only what it lacks, under the app's own versions as constraints: a
  # cachectl that needed any of them moved would fail to resolve here.
  VIRTUAL_ENV=$venv "$UV" pip install --quiet -e . --constraint "$venv/app-freeze.txt"
  VIRTUAL_ENV=$venv "$UV" pip check --quiet
  moved=$(comm -23 <(sort "$venv/app-freeze.txt") <(VIRTUAL_ENV=$venv "$UV" pip freeze --quiet | sort))
  if [ -n "$moved" ]; then
    echo "installing cachectl moved the app's pins in $venv:" >&2
    echo "$moved" >&2
    exit 1
  fi
  if [ -f "$app_dir/prepare.sh" ]; then
    bash "$app_dir/prepare.sh" "$venv"
  fi
  echo "$wanted" >"$venv/.pins-sha256"
  echo "== real app $name: built in ${SECONDS}s" >&2
done
