"""Import the app's own code the way ``flask --app`` finds it, without leaving a trace.

A memoized function, a custom backend class or a serializer is imported from the
current directory (and the app's path) first, as Flask's loader has it. The
directories go on ``sys.path`` only for the import, through this one helper, so
no other import in cachectl's process is redirected by them afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress


@contextmanager
def on_sys_path(*directories: str) -> Iterator[None]:
    """``directories`` first on ``sys.path`` while the block runs."""
    added = [directory for directory in directories if directory not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for directory in added:
            with suppress(ValueError):  # the imported code removed it itself
                sys.path.remove(directory)
