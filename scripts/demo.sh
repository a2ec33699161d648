#!/usr/bin/env bash
# A short tour of cachectl on its embedded default: a FileSystemCache in a fresh
# temporary directory, so no server is needed. Installs cachectl into .venv first.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >/dev/null; fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
cachectl="$PWD/.venv/bin/cachectl"

demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
cat > "$demo/cachectl.toml" <<TOML
# The Flask-Caching the app runs (2.5, legacy for 1.9-2.4, or its release such as "2.4"):
# it decides how keys and file names are formed, and cachectl never guesses it.
compat = "2.5"
# What an app with CACHE_TYPE = "FileSystemCache" would have in its config.
CACHE_TYPE = "FileSystemCache"
CACHE_DIR = "$demo/cache"
CACHE_DEFAULT_TIMEOUT = 600
TOML
mkdir "$demo/cache"
cd "$demo"   # cachectl finds cachectl.toml here by itself

# Each step is shown as it would be typed: an argument with spaces or quotes in single quotes.
shown() {
  local arg out=""
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=-]+$ ]]; then out+=" $arg"; else out+=" '${arg//\'/\'\\\'\'}'"; fi
  done
  printf '%s' "$out"
}
step() { printf '\n$ cachectl%s\n' "$(shown "$@")"; "$cachectl" "$@"; }
step config
step set greeting "hello from cachectl"
step set visits 41 --as int
step set profile '{"name": "alice", "roles": ["admin"]}' --as json --ttl 0
step get greeting visits profile
step --json get visits
step delete greeting no-such-key
step clear --dry-run
step clear --yes
printf '\n$ cachectl get profile   # gone: exit code 1\n'
"$cachectl" get profile || echo "(exit code $?)"
