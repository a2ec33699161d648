"""Import the app's own code the way ``flask --app`` finds it, without leaving a trace.

A memoized function, a custom backend class or a serializer is imported from the
current directory (and the app's path) first, as Flask's loader has it. The
directories go on ``sys.path`` only for the import, through this one helper, so
no other import in cachectl's process is redirected by them afterwards. Code is imported
this way only by a name the operator gave (a command-line argument, ``--config``, the
environment with ``--env``, the app): never by a name from a config file that was found
rather than named (``cachectl.config.sources``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import ModuleType


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


def lazy_module(name: str) -> ModuleType:
    """``name``, imported on first attribute access: the command modules name the
    operations they call at the top, but ``--help`` or another command does not pay for
    importing them (``importlib.util.LazyLoader``)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
