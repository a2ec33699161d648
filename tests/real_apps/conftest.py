"""The real-app lane runs only when asked: scripts/test.sh sets CACHECTL_REAL_APPS=1 after
scripts/real_apps.sh has built the apps' environments. The main lane leaves it out."""

from __future__ import annotations

import os

if os.environ.get("CACHECTL_REAL_APPS") != "1":
    collect_ignore_glob = ["test_*.py"]
