"""The client of tests/zygote.py: the console script run in a process forked from one
that has already started Python and imported cachectl.

Starting the interpreter and importing cachectl with its client libraries costs about
0.2 s of CPU a run (redis-py alone about 0.1 s), the same for every run; the corpus's
~1,800 runs, and the few hundred runs of the other test files (``run_console`` in
tests/conftest.py), spent most of their time there. A forked run is still a process of
its own, with its argv, its whole environment, its directory, umask, stdin and output
pipes, its exit status and its signals; what it shares is the start-up. See zygote.py
for what differs and how the tests keep that honest.

The test apps' own processes (``run_python`` in tests/conftest.py: an app filling its
cache or serving a request, the ``flask`` command) are forked likewise, from a
``--python`` server that has imported Flask and the apps' extensions (about 0.3 to 0.7 s
of CPU a run started afresh), never cachectl.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Union

Arg = Union[str, bytes]

ZYGOTE = Path(__file__).with_name("zygote.py")
#: What a run imports before it knows its case: the CLI, and each backend's client.
PRELOAD = ("cachectl.cli", "redis", "cachelib", "memcache", "pylibmc")
#: Variables Python (or a module the fork server has imported) reads while it starts:
#: locale, interpreter options and paths, the time zone (``time`` reads it on import),
#: the temporary directory (``tempfile`` keeps the first it finds) and the home
#: directory. A run whose values of these differ from the fork server's is started afresh.
STARTUP_VARIABLES = ("PYTHON", "LC_", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "HOME")


class Memory(NamedTuple):
    """What a forked run's memory came to, in bytes: its peak resident set (the kernel's
    ``ru_maxrss``), and the fork server's resident set just before the fork, whole and its
    anonymous part. The child starts out counting the server's pages as its own: all of
    the anonymous ones, whose page tables a fork copies, and of the rest (file-backed
    pages) only those it touches again."""

    peak_rss: int
    rss_at_fork: int
    anon_rss_at_fork: int

    @property
    def growth(self) -> int:
        """How far the run's resident set rose above what it had from the server, counting
        every file-backed page of the server it touched again as its own: never below what
        the run itself allocated and touched (its new pages), at most the server's
        file-backed pages above it."""
        return self.peak_rss - self.anon_rss_at_fork


def _startup_part(env: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.startswith(STARTUP_VARIABLES)}


def forkable(added: Mapping[str, str]) -> bool:
    """Whether a run that adds these variables to the fork server's environment is the
    same forked as started afresh."""
    return not _startup_part(added)


class ForkServer:
    """One zygote process, started with ``base_env``: runs whose environment agrees with
    it on every start-up variable are forked from it (``can_fork``). ``script`` None: a
    ``--python`` server (zygote.py), with ``preload`` imported, whose runs' argv is a
    Python command line (``-c CODE ...`` or ``SCRIPT ...``), run by ``python`` (another
    environment's interpreter: the Flask-Caching 1.x oracle's)."""

    def __init__(
        self,
        script: Path | None,
        base_env: Mapping[str, str],
        preload: Sequence[str] = PRELOAD,
        python: str = sys.executable,
    ) -> None:
        self.script = script
        self._startup = _startup_part(base_env)
        self._directory = tempfile.mkdtemp(prefix="cachectl-zygote-")
        self.socket_path = os.path.join(self._directory, "socket")
        mode = [self.socket_path, str(script)] if script else ["--python", self.socket_path]
        self.process = subprocess.Popen(
            [python, str(ZYGOTE), *mode, *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(base_env),
            cwd=self._directory,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline() != b"ready\n":
            _, err = self.process.communicate(timeout=10)
            raise RuntimeError(f"the fork server did not start: {err.decode()}")

    def can_fork(self, env: Mapping[str, str]) -> bool:
        """Whether a run with exactly this environment is the same forked as started afresh."""
        return _startup_part(env) == self._startup

    def close(self) -> None:
        """Stop the server: closing its stdin ends it (and the runs still going), as the
        end of this process would; it removes its socket."""
        self.process.communicate(timeout=30)
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
            os.rmdir(self._directory)

    def run(
        self,
        argv: Sequence[Arg],
        env: Mapping[str, str],
        cwd: Path | str,
        stdin: bytes | None,
        timeout: float,
    ) -> tuple[int | None, bytes, bytes]:
        """Like ``subprocess.run(..., capture_output=True)`` with ``env`` as the whole
        environment: (status or None on timeout, stdout, stderr). A timed-out run is
        killed. ``stdin`` None: the run reads this process's own standard input, as a
        child started without ``input`` would."""
        status, stdout, stderr, _memory = self.run_measured(argv, env, cwd, stdin, timeout)
        return status, stdout, stderr

    def run_measured(
        self,
        argv: Sequence[Arg],
        env: Mapping[str, str],
        cwd: Path | str,
        stdin: bytes | None,
        timeout: float,
    ) -> tuple[int | None, bytes, bytes, Memory | None]:
        """``run``, and what the run's memory came to (None where the server cannot say:
        no /proc, or the run timed out)."""
        umask = os.umask(0)
        os.umask(umask)
        args = [os.fsdecode(arg) for arg in argv]
        script = str(self.script) if self.script else args.pop(0)
        request = {
            "script": script,
            "argv": args,
            "env": dict(env),
            "cwd": str(cwd),
            "umask": umask,
        }
        body = json.dumps(request).encode()
        if stdin is None:
            stdin_read, stdin_write = os.dup(0), None
        else:
            stdin_read, stdin_write = os.pipe()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        try:
            connection.connect(self.socket_path)
            fds = array.array("i", [stdin_read, out_write, err_write])
            connection.sendmsg(
                [len(body).to_bytes(8, "big")],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())],
            )
            connection.sendall(body)
        finally:
            for fd in (stdin_read, out_write, err_write):
                os.close(fd)
        feeder = None
        if stdin_write is not None:
            feeder = threading.Thread(target=_feed, args=(stdin_write, stdin), daemon=True)
            feeder.start()
        replies = connection.makefile("rb")
        try:
            stdout, stderr, finished = _collect(out_read, err_read, deadline)
            status: int | None = None
            memory = None
            if finished:
                connection.settimeout(max(0.1, deadline - time.monotonic()))
                for line in replies:
                    reply = json.loads(line)
                    if "exit" in reply:
                        status = reply["exit"]
                        if "peak_rss" in reply:
                            memory = Memory(
                                reply["peak_rss"], reply["rss_at_fork"], reply["anon_rss_at_fork"]
                            )
                        break
        except (TimeoutError, socket.timeout):
            status, memory = None, None
        finally:
            replies.close()
            connection.close()  # the server kills a run whose client has gone
            if feeder is not None:
                feeder.join(timeout=5)
        return status, stdout, stderr, memory


def _feed(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:  # the run ended without reading it all, as a real stdin allows
        pass
    finally:
        os.close(fd)


def _collect(out_fd: int, err_fd: int, deadline: float) -> tuple[bytes, bytes, bool]:
    """Both outputs until both are closed (True) or the deadline passes (False)."""
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    selector = selectors.DefaultSelector()
    for fd in chunks:
        selector.register(fd, selectors.EVENT_READ)
    try:
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return b"".join(chunks[out_fd]), b"".join(chunks[err_fd]), False
            for key, _ in selector.select(timeout=left):
                data = os.read(key.fd, 65536)
                if data:
                    chunks[key.fd].append(data)
                else:
                    selector.unregister(key.fd)
        return b"".join(chunks[out_fd]), b"".join(chunks[err_fd]), True
    finally:
        selector.close()
        os.close(out_fd)
        os.close(err_fd)


_shared: dict[tuple[int, str, Path | None, tuple[str, ...]], ForkServer] = {}
_shared_lock = threading.Lock()
#: The environment the test process started with, before any test changed it.
_BASE_ENV = dict(os.environ)


def shared_server(
    script: Path | None, preload: Sequence[str] = PRELOAD, python: str = sys.executable
) -> ForkServer:
    """This test process's own fork server for ``script`` (None: for Python command lines
    run by ``python``), with ``preload`` imported, started on first use with the
    environment the process started with (not one a test has changed), stopped when the
    process exits. (Keyed by pid: a test that forks must not share its parent's.)"""
    key = (os.getpid(), python, script, tuple(preload))
    with _shared_lock:
        server = _shared.get(key)
        if server is None:
            server = _shared[key] = ForkServer(script, _BASE_ENV, preload, python)
            atexit.register(server.close)
        return server
