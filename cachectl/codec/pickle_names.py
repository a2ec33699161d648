"""The names pickles refer to, read at C speed in a worker process that can be killed.

``pickle_refs`` walks a pickle's opcodes in Python: 25 to 35 µs a value, a walk inside
Redis's Lua about as long. ``check-pickles`` on a million entries needs the names of
hundreds of thousands of values, so here pickle's own C unpickler does the walk, in a
process of cachectl's own (``python -I -S``, nothing of the app's imported), with every
name the pickle asks for (``find_class``) answered by an inert stand-in of this module:
nothing is imported, and the only Python code the unpickler can reach is the stand-ins',
which note how each name is used (pushed, called as by REDUCE, or instantiated as by
NEWOBJ) and build nothing. Plain data (strings, numbers, lists, dicts) is built as pickle
builds it, and dropped.

What the C unpickler cannot bound is bounded from outside:
- memory (a memo index near 2**32 makes it allocate gigabytes): the worker's address
  space is capped (``RLIMIT_AS``, ``MEMORY_HEADROOM`` over what it had when it started);
  a value that hits the cap fails, and is walked by ``pickle_refs`` instead;
- time (the keys of a dict whose hashes collide make building it quadratic): the parent
  kills a worker that does not answer a batch in time and walks that batch itself with
  ``pickle_refs``, within its ``DecodeLimits``.

Only values the C unpickler reads to their STOP, of protocol 3 or later (one PROTO, at the
start: below 3, pickle maps Python 2's names, as the walk does), and no longer than
``FAST_VALUE_BYTES``, take the fast path; any other value, and any the C unpickler refuses
(cut short, malformed, an unregistered extension code, a name that is no text), is walked
by ``pickle_refs``, so the names are ``pickle_refs``' names. One difference is kept: a
name that INST or OBJ (protocols 0 and 1 only, which Python 3 never writes) calls with
arguments is noted as called where ``pickle_refs`` says instantiated.
"""

from __future__ import annotations

import collections
import contextlib
import io
import marshal
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, NamedTuple

from cachectl.codec import pickle_refs
from cachectl.codec.limits import DecodeLimits, current_limits

#: Longer values are walked by ``pickle_refs`` (within its limits), never loaded.
FAST_VALUE_BYTES = 64 * 1024
#: The worker's address space may grow this much past what it had at its start.
MEMORY_HEADROOM = 256 * 1024 * 1024
#: How long the parent waits for a batch: this, plus ``SECONDS_PER_KIB`` a KiB of records
#: (a value of a few hundred bytes takes the C unpickler a few microseconds).
BATCH_SECONDS, SECONDS_PER_KIB = 2.0, 0.04
#: Workers killed (or lost) in one run before the rest is walked in this process.
MOST_RESTARTS = 3

_LENGTH = struct.Struct("<I")
#: A frame between the two processes: its length, and the bytes of each value to skip.
_FRAME = struct.Struct("<QI")

# --- in the worker -------------------------------------------------------------------


class _Inert:
    """What a stand-in builds: takes any state, items and calls, and keeps none."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, item: object) -> None:
        pass

    def extend(self, items: object) -> None:
        pass

    def add(self, item: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> _Inert:
        return _INERT


_INERT = _Inert()
#: The uses noted while one value is read, as (path, role) pairs (emptied per value): a
#: set's ``add`` of a pair made once per name is the cheapest note a stand-in can take.
_seen: set[tuple[str, int]] = set()
_note = _seen.add
#: Each name's stand-in, and the pair noting that the pickle pushed it.
_stand_ins: dict[tuple[str, str], tuple[type, tuple[str, int]]] = {}


def _stand_in(path: str) -> type:
    """The class a name is answered with: called (REDUCE, INST and OBJ with arguments:
    its metaclass's ``__call__``) or instantiated (NEWOBJ, INST and OBJ without
    arguments: its ``__new__``), it notes so and returns an ``_Inert``."""
    called, instantiated = (path, pickle_refs.CALLED), (path, pickle_refs.INSTANTIATED)

    class Called(type):
        def __call__(cls, *args: object, **kwargs: object) -> _Inert:
            _note(called)
            return _INERT

    def new(cls: type, *args: object, **kwargs: object) -> _Inert:
        _note(instantiated)
        return _INERT

    return Called("StandIn", (), {"__new__": new, "__slots__": ()})


def _unpickler_class() -> type:
    import pickle

    class Reader(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> type:
            known = _stand_ins.get((module, name))
            if known is None:
                path = f"{module}.{name}"
                known = (_stand_in(path), (path, pickle_refs.REFERENCED))
                if len(_stand_ins) < 100_000:  # names are few; millions are not kept
                    _stand_ins[(module, name)] = known
            _note(known[1])
            return known[0]

    return Reader


def fast_path_takes(data: bytes) -> bool:
    """Whether the C unpickler may read ``data``: protocol 3 or later, declared once at
    the start (no second PROTO to change how names map), and short enough."""
    return (
        len(data) <= FAST_VALUE_BYTES
        and data[:1] == b"\x80"
        and len(data) > 1
        and 3 <= data[1] <= 5
        and data.count(b"\x80") == 1
    )


def names_by_loading(data: bytes, reader: Any) -> pickle_refs.Refs:
    """The names ``data`` refers to, read by the C unpickler ``reader`` (the class
    ``_unpickler_class`` makes), or an exception where it refuses the value."""
    _seen.clear()
    reader(io.BytesIO(data)).load()
    if not _seen:
        return pickle_refs.NONE
    names: dict[str, int] = {}
    for path, role in sorted(_seen):
        names[path] = names.get(path, 0) | role
    return pickle_refs.Refs(names)


def _cap_memory() -> None:
    """The worker's address space capped at what it has now plus ``MEMORY_HEADROOM``."""
    try:
        import resource

        with open("/proc/self/statm", encoding="ascii") as statm:
            now = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (now + MEMORY_HEADROOM, resource.RLIM_INFINITY))
    except (ImportError, OSError, ValueError):  # no such cap here: the parent's clock remains
        pass


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def serve() -> None:
    """The worker's loop: a frame of records in (``summed``'s), a frame of their sums out,
    until the parent closes its end. Ctrl-C is the parent's to handle."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    (size, _) = _FRAME.unpack(_read_exactly(source, _FRAME.size))
    limits = DecodeLimits(*marshal.loads(_read_exactly(source, size)))
    _cap_memory()
    reader = _unpickler_class()
    while True:
        try:
            size, skip = _FRAME.unpack(_read_exactly(source, _FRAME.size))
            records = _read_exactly(source, size)
        except (EOFError, struct.error):
            return
        reply = marshal.dumps(tuple(summed(records, skip, limits, reader)))
        sink.write(_FRAME.pack(len(reply), 0) + reply)
        sink.flush()


#: A record: its tag's length and its value's length, then the tag, then the value.
RECORD = struct.Struct("<II")


class Summary(NamedTuple):
    """A batch of records summed: the values that name nothing (count, bytes), and per
    tag and names, the values naming them: (tag, names as (path, roles) pairs, why the
    walk stopped or None, count, bytes)."""

    plain: int
    plain_bytes: int
    sums: list[tuple[bytes, tuple[tuple[str, int], ...], str | None, int, int]]


def summed(records: bytes, skip: int, limits: DecodeLimits, reader: Any = None) -> Summary:
    """The names of each record's value (after ``skip`` bytes: cachelib's ``!``), summed
    by tag and names: a census hands over labels and gets sums, a deletion hands over key
    names and gets each one's names. With ``reader`` (in the worker) pickle's C
    unpickler reads what it can; else every value is walked."""
    sums: dict[tuple[bytes, tuple[tuple[str, int], ...], str | None], list[int]] = {}
    plain = plain_bytes = at = 0
    while at < len(records):
        tagged, size = RECORD.unpack_from(records, at)
        at += RECORD.size + tagged + size
        value = records[at - size + skip : at]
        refs = None
        if reader is not None and fast_path_takes(value):
            with contextlib.suppress(Exception):  # refused, out of memory: the walk decides
                refs = names_by_loading(value, reader)
        if refs is None:
            refs = pickle_refs.references(value, limits)
        if refs == pickle_refs.NONE:
            plain += 1
            plain_bytes += size
            continue
        key = (records[at - size - tagged : at - size], tuple(refs.names.items()), refs.stopped)
        known = sums.get(key)
        if known is None:
            sums[key] = [1, size]
        else:
            known[0] += 1
            known[1] += size
    listed = [
        (tag, names, stopped, count, size) for (tag, names, stopped), (count, size) in sums.items()
    ]
    return Summary(plain, plain_bytes, listed)


# --- in cachectl ---------------------------------------------------------------------

_WORKER = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from cachectl.codec.pickle_names import serve; serve()"
)


class NameReader:
    """Reads the names of many pickles through a worker process (started at the first
    batch), or here with ``pickle_refs`` where no worker can run or a worker failed
    ``MOST_RESTARTS`` times. Batches of records are sent with ``send`` and their sums
    (``summed``) taken with ``take`` in the same order, so the caller can fetch the next
    batch while the worker reads this one; ``names`` reads a list of values at once. A
    thread of its own writes the batches, so a worker blocked on answers not yet taken
    never blocks the caller. Use as a context manager: the worker ends with it."""

    def __init__(self, limits: DecodeLimits | None = None) -> None:
        self.limits = limits or current_limits()
        self._worker: subprocess.Popen[bytes] | None = None
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._restarts = 0
        #: The batches sent and not yet taken: their records, and their sums where read here.
        self._sent: collections.deque[tuple[bytes, int, Summary | None]]
        self._sent = collections.deque()

    def __enter__(self) -> NameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def names(self, values: Sequence[bytes]) -> list[pickle_refs.Refs]:
        """Each value's names, in order (each value a pickle, without cachelib's ``!``)."""
        parts: list[bytes] = []
        for number, value in enumerate(values):
            parts += (RECORD.pack(4, len(value)), _LENGTH.pack(number), value)
        self.send(b"".join(parts), 0)
        found = [pickle_refs.NONE] * len(values)
        for tag, names, stopped, _, _ in self.take().sums:
            found[_LENGTH.unpack(tag)[0]] = pickle_refs.Refs(dict(names), stopped)
        return found

    def send(self, records: bytes, skip: int) -> None:
        """Hands a batch of records (``RECORD`` each: a tag and a value, whose first
        ``skip`` bytes are not the pickle's) to the worker; ``take`` returns its sums."""
        if records and self._running() is not None:
            self._outbox.put(_FRAME.pack(len(records), skip) + records)
            self._sent.append((records, skip, None))
        else:
            self._sent.append((records, skip, self._here(records, skip)))

    def take(self) -> Summary:
        """The sums of the oldest batch not yet taken."""
        records, skip, done = self._sent.popleft()
        if done is not None:
            return done
        waiting = len(records) + sum(len(later) for later, _, _ in self._sent)
        deadline = time.monotonic() + BATCH_SECONDS + SECONDS_PER_KIB * waiting / 1024
        try:
            worker = self._worker
            if worker is None or worker.stdout is None:
                raise EOFError
            size, _ = _FRAME.unpack(_read_by(worker.stdout, _FRAME.size, deadline))
            plain, plain_bytes, sums = marshal.loads(_read_by(worker.stdout, size, deadline))
            return Summary(plain, plain_bytes, sums)
        except (OSError, EOFError, ValueError, TimeoutError, struct.error):
            self._lose()
            return self._here(records, skip)

    def close(self) -> None:
        """Ends the worker: its input closed (by its writer), then killed if it lingers."""
        worker, self._worker = self._worker, None
        self._sent.clear()
        if worker is None:
            return
        self._outbox.put(None)
        if worker.stdout is not None:
            worker.stdout.close()
        try:
            worker.wait(timeout=1)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    def _here(self, records: bytes, skip: int) -> Summary:
        return summed(records, skip, self.limits)

    def _running(self) -> subprocess.Popen[bytes] | None:
        if self._worker is not None or self._restarts >= MOST_RESTARTS:
            return self._worker
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            if not sys.executable:
                raise OSError("no interpreter to start")
            worker = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WORKER, root],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            self._restarts = MOST_RESTARTS
            return None
        settings = marshal.dumps(tuple(self.limits))
        self._outbox = queue.SimpleQueue()
        self._outbox.put(_FRAME.pack(len(settings), 0) + settings)
        writer = threading.Thread(
            target=_write_all, args=(worker, self._outbox), name="pickle-names", daemon=True
        )
        writer.start()
        self._worker = worker
        return worker

    def _lose(self) -> None:
        """The worker failed or ran out of time: killed, and the batches it held read
        here; the next batch starts another worker."""
        worker, self._worker = self._worker, None
        self._restarts += 1
        if worker is not None:
            self._outbox.put(None)
            worker.kill()
            worker.wait()
            if worker.stdout is not None:
                worker.stdout.close()
        held = list(self._sent)
        self._sent.clear()
        for records, skip, done in held:
            self._sent.append((records, skip, self._here(records, skip) if done is None else done))


def _write_all(worker: subprocess.Popen[bytes], outbox: queue.SimpleQueue[bytes | None]) -> None:
    """The writer thread: each batch to the worker's input, in order, until None (or the
    worker is gone: its reader then finds the answers missing); then the input closed."""
    stream = worker.stdin
    assert stream is not None
    with contextlib.suppress(OSError), stream:
        while True:
            frame = outbox.get()
            if frame is None:
                break
            stream.write(frame)
            stream.flush()


def _read_by(stream: IO[bytes], size: int, deadline: float) -> bytes:
    """``size`` bytes of the worker's output, or TimeoutError once ``deadline`` passed."""
    chunks, wanted = [], size
    descriptor = stream.fileno()
    while wanted:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([descriptor], [], [], left)[0]:
            raise TimeoutError("the worker did not answer in time")
        chunk = os.read(descriptor, min(wanted, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)
