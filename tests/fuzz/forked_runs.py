"""The client of tests/fuzz/zygote.py: a corpus case run in a process forked from one
that has already started Python and imported cachectl.

Starting the interpreter and importing cachectl with its client libraries costs about
0.2 s of CPU a run (redis-py alone about 0.1 s), the same for every case; the corpus's
~1,800 runs spent most of the main lane's time there. A forked run is still a process of
its own, with the case's argv, variables, directory, stdin and output pipes, its exit
status and its signals; what it shares is the start-up. See zygote.py for what differs
and how the corpus keeps that honest.
"""

from __future__ import annotations

import array
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
from typing import Union

Arg = Union[str, bytes]

ZYGOTE = Path(__file__).with_name("zygote.py")
#: What a run imports before it knows its case: the CLI, and each backend's client.
PRELOAD = ("cachectl.cli", "redis", "cachelib", "memcache", "pylibmc")
#: Variables Python reads while it starts: a case that sets one cannot be forked.
STARTUP_VARIABLES = ("PYTHON", "LC_", "LANG", "LANGUAGE")


def forkable(env: Mapping[str, str]) -> bool:
    """Whether a run with these added variables is the same forked as started afresh."""
    return not any(name.startswith(STARTUP_VARIABLES) for name in env)


class ForkServer:
    """One zygote process, started with ``base_env``: the environment every run gets."""

    def __init__(self, script: Path, base_env: Mapping[str, str]) -> None:
        self.script = script
        self._directory = tempfile.mkdtemp(prefix="cachectl-zygote-")
        self.socket_path = os.path.join(self._directory, "socket")
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE), self.socket_path, *PRELOAD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(base_env),
            cwd=self._directory,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline() != b"ready\n":
            _, err = self.process.communicate(timeout=10)
            raise RuntimeError(f"the corpus's fork server did not start: {err.decode()}")

    def close(self) -> None:
        self.process.kill()
        self.process.communicate()
        os.unlink(self.socket_path)
        os.rmdir(self._directory)

    def run(
        self,
        argv: Sequence[Arg],
        env: Mapping[str, str],
        cwd: Path,
        stdin: bytes,
        timeout: float,
    ) -> tuple[int | None, bytes, bytes]:
        """Like ``subprocess.run(..., capture_output=True)``: (status or None on timeout,
        stdout, stderr). A timed-out run is killed."""
        request = {
            "script": str(self.script),
            "argv": [os.fsdecode(arg) for arg in argv],
            "env": dict(env),
            "cwd": str(cwd),
        }
        body = json.dumps(request).encode()
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
        feeder = threading.Thread(target=_feed, args=(stdin_write, stdin), daemon=True)
        feeder.start()
        replies = connection.makefile("rb")
        try:
            stdout, stderr, finished = _collect(out_read, err_read, deadline)
            status: int | None = None
            if finished:
                connection.settimeout(max(0.1, deadline - time.monotonic()))
                for line in replies:
                    reply = json.loads(line)
                    if "exit" in reply:
                        status = reply["exit"]
                        break
        except (TimeoutError, socket.timeout):
            status = None
        finally:
            replies.close()
            connection.close()  # the server kills a run whose client has gone
            feeder.join(timeout=5)
        return status, stdout, stderr


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
