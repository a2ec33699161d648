"""Chunks written behind a sweep: the server takes the next step while the last one's
entries are compressed, written and ``fsync``ed in a thread of their own.

A keeping sweep spends most of its time waiting on ``fsync`` when it writes each step's
chunk before it goes on (a few milliseconds each, more on a busy disk). ``WriteBehind``
takes a chunk and returns a ticket at once; a thread writes whatever chunks are waiting
with one ``fsync`` for all of them, and ``durable`` says up to which ticket they are on
disk. The sweep unlinks a step's keys only once its ticket is durable, so the promise of
``--backup`` holds unchanged: no key goes before its entry is on disk.
"""

from __future__ import annotations

import threading
from collections import deque

from cachectl.backup.writer import Keeper


class WriteBehind:
    """One cache's chunks, on disk in the order given, each ticket durable in turn."""

    def __init__(self, keeper: Keeper) -> None:
        self._keeper = keeper
        self._waiting: deque[tuple[int, int, bytes]] = deque()
        self._changed = threading.Condition()
        self._given = 0
        self._durable = 0
        self._error: BaseException | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    @property
    def durable(self) -> int:
        """The last ticket whose chunk (and every one before) is on disk."""
        with self._changed:
            self._raise()
            return self._durable

    def submit(self, count: int, laid_out: bytes, taken_ms: int) -> int:
        """Hand over a chunk; its ticket (``wait`` for it, or compare with ``durable``)."""
        with self._changed:
            self._raise()
            self._given += 1
            self._waiting.append((taken_ms, count, laid_out))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="backup-writer", daemon=True)
                self._thread.start()
            self._changed.notify_all()
            return self._given

    def wait(self, ticket: int | None = None) -> None:
        """Return once ``ticket`` (default: every chunk given) is on disk."""
        with self._changed:
            wanted = self._given if ticket is None else ticket
            while self._durable < wanted and self._error is None:
                self._changed.wait()
            self._raise()

    def close(self) -> None:
        """Every chunk given on disk, and the thread ended (whatever ends the sweep)."""
        try:
            self.wait()
        finally:
            with self._changed:
                self._closing = True
                self._changed.notify_all()
            if self._thread is not None:
                self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closing:
                    self._changed.wait()
                if not self._waiting:
                    return
                batch = list(self._waiting)
                self._waiting.clear()
            try:
                self._keeper.keep_laid_out_chunks(batch)
            except BaseException as exc:  # raised in the sweep at its next call
                with self._changed:
                    self._error = exc
                    self._changed.notify_all()
                return
            with self._changed:
                self._durable += len(batch)
                self._changed.notify_all()
