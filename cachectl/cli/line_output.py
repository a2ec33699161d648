"""The output of a command run inside another (a batch's line, one cache of ``--cache
all``): never interactive, and with --json each command's document kept for the one
document of the run around it. Here, below both ``batch_runner`` and ``every_cache``,
so that neither imports the other for it; such a command's exit status, its failure
reported as the group reports one, is ``failures.exit_status_of``.
"""

from __future__ import annotations

import json
from typing import Any

from cachectl.runtime.output import Output


class LineOutput(Output):
    """A line's output: never interactive (a line never asks), and with --json its
    document is kept for the batch's one document instead of printed; kept as printed
    (through JSON), so it is the document the line alone would print."""

    def __init__(
        self, as_json: bool, quiet: bool, already_warned: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(as_json=as_json, quiet=quiet)
        self.documents: list[Any] = []
        #: Warnings the line gave when it was checked (shown then, not again).
        self.already_warned = already_warned

    @property
    def interactive(self) -> bool:
        return False

    def warn(self, text: str) -> None:
        if text not in self.already_warned:
            super().warn(text)

    def record(self, payload: dict[str, Any], last: bool = False) -> None:
        """A streamed result's records are not kept (a batch's document holds one
        document a line): its summary, the last, stands for it."""
        if last:
            self.document(payload)

    def document(self, payload: dict[str, Any]) -> None:
        from cachectl.codec.rendering import stack_room

        with stack_room(2 * 1000 + 10):
            self.documents.append(json.loads(json.dumps(payload, default=str)))
