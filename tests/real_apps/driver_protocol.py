"""The loop each real app's driver runs inside the app's own environment.

A driver starts the app as its deployment does, then takes one JSON request a line on
standard input (``{"do": "fill"}``) and answers one JSON line on the standard output it
was started with. One long-lived process keeps what a real user session keeps between
requests (the test client's cookies, a login), so the app's own invalidation runs in the
same session that filled the cache. Everything the app prints goes to standard error.
Standard library only: it runs under the app's Python, beside the app's pins.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, Callable, TextIO


def claim_stdout() -> TextIO:
    """Keep standard output for the replies; from here on, what the app prints (Superset's
    config banner as it imports, a command's echo) goes to standard error. Called before
    the app is imported."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return replies


def serve(replies: TextIO, actions: dict[str, Callable[..., Any]]) -> None:
    """Answer requests until standard input closes."""
    replies.write(json.dumps({"ok": True, "result": "ready"}) + "\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"ok": True, "result": actions[request["do"]](*request.get("args", []))}
        except Exception:
            reply = {"ok": False, "error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
