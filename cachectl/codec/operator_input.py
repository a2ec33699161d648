"""What an operator types (or pipes) into ``set``, made into the value to store."""

from __future__ import annotations

import json
from typing import Any

from cachectl.errors import UsageError

VALUE_TYPES = ("str", "int", "float", "json", "bytes")


def parse_input_value(data: bytes, as_type: str, from_stdin: bool = False) -> Any:
    """The Python value an operator means by ``data`` read as ``as_type``. From standard
    input one trailing newline is dropped for ``str`` (``echo hello | cachectl set k -``
    stores ``"hello"``); ``bytes`` keeps every byte."""
    if as_type == "bytes":
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the value is not UTF-8 text; use --as bytes ({exc})") from exc
    if as_type == "str":
        return text.removesuffix("\n") if from_stdin else text
    try:
        if as_type == "int":
            return int(text.strip())
        if as_type == "float":
            return float(text.strip())
        if as_type == "json":
            return json.loads(text)
    except json.JSONDecodeError as exc:  # says where, never quotes the value
        raise UsageError(f"the value is not valid {as_type}: {exc}") from exc
    except ValueError:
        # int() and float() quote the value in their message: a value may be a secret
        # (an API key), and the error line reaches the audit log.
        raise UsageError(f"the value is not valid {as_type}") from None
    except RecursionError:
        raise UsageError(f"the value is nested too deeply to be read as {as_type}") from None
    raise UsageError(f"unknown value type {as_type!r} (use one of {', '.join(VALUE_TYPES)})")
