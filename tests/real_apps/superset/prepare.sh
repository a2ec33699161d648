#!/usr/bin/env bash
# Superset's metadata database, made once per environment as Superset's install docs say
# (db upgrade, an admin, init) and kept as a template the tests copy.
set -euo pipefail
venv=$1
here=$(cd "$(dirname "$0")" && pwd)
template=$venv/superset-template.db
rm -f "$template"
# No cache is reached while preparing: a closed port stands for Redis.
export PYTHONPATH=$here/pythonpath REALAPP_SUPERSET_DB=$(cd "$venv" && pwd)/superset-template.db \
  REALAPP_REDIS_URL=redis://127.0.0.1:9/0
"$venv/bin/superset" db upgrade >"$venv/prepare.log" 2>&1
"$venv/bin/superset" fab create-admin --username admin --firstname Ada --lastname Admin \
  --email admin@example.org --password admin >>"$venv/prepare.log" 2>&1
"$venv/bin/superset" init >>"$venv/prepare.log" 2>&1
