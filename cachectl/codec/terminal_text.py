"""Text made harmless to a terminal: control characters shown as escapes.

A cached value or a class name read from a pickle is whatever its author wrote; on a
terminal its control characters could move the cursor, clear the screen or retitle the
window. ``runtime.output`` shows every line it prints on a terminal through ``visible``,
and ``rendering`` the names it cannot load: a module of its own, below both, so that the
codec does not depend on the output layer that renders with it.
"""

from __future__ import annotations

import re

#: C0 and C1 control characters but newline and tab: on a terminal they can move the
#: cursor, clear the screen or retitle the window, so a cached value shows them escaped.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), for a terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
