"""A fork server for the console script: each run is a process forked from one that has
already started Python and imported cachectl, instead of a new interpreter.

Started as a script (``python zygote.py SOCKET SCRIPT MODULE...``), it imports ``cachectl.cli``
and the client modules a run would import, then serves requests on a Unix socket: the
run's argv, its whole environment, its working directory and umask, and three descriptors
(stdin, stdout, stderr) passed with ``SCM_RIGHTS``. For each it forks; the child becomes
what the console script is (argv, ``sys.path[0]`` the script's directory, descriptors 0-2,
nothing else open, the run's environment, directory and umask), runs ``sys.exit(main())``
at the top level of this file and ends as a Python program ends, as far as anything outside
it can tell (threads, atexit, flushing, exit status: ``_end``), without the teardown of its
modules. The server reports the child's pid, then its exit status (negative: the signal
that ended it), as ``subprocess`` would, with what the run's memory came to: its peak
resident set (``ru_maxrss`` from ``wait4``) and the server's own resident set, whole and its
anonymous part, just before the fork (a child starts out counting the pages it shares with
the server). It ends when its parent closes its stdin. What ``ps`` shows as a run's command
line is the server's (``sys.argv`` is the run's).

What the fork cannot reproduce is interpreter start-up under another environment, so
the client (tests/forked_runs.py) sends here only runs that agree with the server's
environment on every variable read at start-up; the rest start afresh. The bad-input
corpus runs a sample of its cases both ways, where the outcomes must be the same
(tests/fuzz/test_bad_inputs.py), and the tests about start-up itself, the installed
script, terminals and signals sent to the process start it afresh.

Started with ``--python SOCKET MODULE...``, it serves the test apps' own processes
instead (``python -c CODE`` and scripts such as ``flask``, run by ``run_python`` in
tests/conftest.py): it imports only the modules named (Flask and the like, which such a
process imports first anyway) and no cachectl, and each child runs its command line as
``python`` would. Only the app's side uses it: cachectl's own runs never start with Flask
imported, since tests check what cachectl imports.

This file imports nothing of the tests: it runs with the console script's own imports.
"""

from __future__ import annotations

import array
import atexit
import builtins
import contextlib
import gc
import importlib
import json
import os
import pkgutil
import resource
import runpy
import selectors
import signal
import socket
import sys
import types
from collections.abc import Callable
from typing import NoReturn

#: The package's modules that run something, or import Flask, when imported.
ENTRY_POINTS = ("cachectl.__main__", "cachectl.flask_command", "cachectl.flask_group")


def _receive(connection: socket.socket) -> tuple[dict | None, list[int]]:
    """One request: its length (8 bytes, sent with the descriptors), then a JSON document
    of that length. None when the client has closed the connection."""
    fds = array.array("i")
    header, ancillary, _flags, _address = connection.recvmsg(8, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if len(header) < 8:
        return None, list(fds)
    size = int.from_bytes(header, "big")
    body = bytearray()
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            return None, list(fds)
        body += chunk
    return json.loads(body), list(fds)


def _become_the_script(request: dict, fds: list[int]) -> None:
    """In the child: the console script's process, as far as a fork can make it one."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, 1 << 16)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    sys.argv = [request["script"], *request["argv"]]
    sys.path[0] = os.path.dirname(request["script"])
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _resident() -> dict:
    """This process's resident set in bytes, whole and its anonymous part (what a fork copies
    for certain), from /proc/self/statm; empty where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            _size, resident, shared = (int(field) for field in statm.read().split()[:3])
    except (OSError, ValueError):
        return {}
    page = os.sysconf("SC_PAGE_SIZE")
    return {"rss_at_fork": resident * page, "anon_rss_at_fork": (resident - shared) * page}


def _reap(
    children: dict[int, socket.socket],
    at_fork: dict[int, dict],
    pid: int,
    status: int,
    usage: resource.struct_rusage,
) -> None:
    owner = children.pop(pid, None)
    report = {"exit": os.waitstatus_to_exitcode(status), **at_fork.pop(pid, {})}
    if "rss_at_fork" in report:  # Linux, where ru_maxrss is in KiB
        report["peak_rss"] = usage.ru_maxrss * 1024
    if owner is not None:
        with contextlib.suppress(OSError):
            owner.sendall(json.dumps(report).encode() + b"\n")


def serve(listener: socket.socket) -> dict | None:
    """Serve until the parent closes this process's stdin. Returns a request in a child,
    None in the server when it is done."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    selector.register(0, selectors.EVENT_READ, "parent")
    children: dict[int, socket.socket] = {}
    at_fork: dict[int, dict] = {}  # the server's resident set as each child was forked
    # A child's end is seen on its pidfd (Linux 5.3); elsewhere the loop polls.
    pidfds = hasattr(os, "pidfd_open")
    while True:
        for key, _events in selector.select(timeout=None if pidfds else 0.02):
            if key.data == "parent":
                if not os.read(0, 4096):
                    for pid in children:
                        os.kill(pid, signal.SIGKILL)
                    return None
                continue
            if key.data == "listener":
                connection, _ = listener.accept()
                selector.register(connection, selectors.EVENT_READ, "connection")
                continue
            if isinstance(key.data, int):  # a child's pidfd: it has ended
                selector.unregister(key.fileobj)
                os.close(key.fd)
                pid, status, usage = os.wait4(key.data, 0)
                _reap(children, at_fork, pid, status, usage)
                continue
            connection = key.fileobj  # type: ignore[assignment]
            try:
                request, fds = _receive(connection)
            except (OSError, ValueError):
                request, fds = None, []
            if request is None:
                for fd in fds:
                    os.close(fd)
                selector.unregister(connection)
                for pid, owner in list(children.items()):
                    if owner is connection:
                        os.kill(pid, signal.SIGKILL)
                connection.close()
                continue
            if request.get("stop"):
                return None
            resident = _resident()
            pid = os.fork()
            if pid == 0:
                for registered in list(selector.get_map().values()):
                    if isinstance(registered.fileobj, socket.socket):
                        registered.fileobj.detach()
                selector.close()
                _become_the_script(request, fds)
                return request
            for fd in fds:
                os.close(fd)
            children[pid] = connection
            at_fork[pid] = resident
            if pidfds:
                selector.register(os.pidfd_open(pid), selectors.EVENT_READ, pid)
            connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        while children and not pidfds:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                break
            _reap(children, at_fork, pid, status, usage)


def _end(run: Callable[[], object]) -> NoReturn:
    """In a child: ``run`` (the script's ``sys.exit(main())``, or a Python command line),
    ended as a Python program ends as far as anything outside it can tell: its other
    threads waited for, its atexit handlers run (logging's, ``weakref.finalize``'s), its
    standard streams flushed, its exit status. Then ``os._exit``, leaving out the teardown
    of every module, whose reference-count writes copy most of the server's pages: 11 of
    the 15 ms of CPU a short run took. A run that ends by an exception other than
    SystemExit (a traceback, Ctrl-C's re-raised signal), or whose streams cannot be
    flushed (a closed pipe: exit 120, the message Python prints), is left to the
    interpreter to end, as it would end unforked."""
    try:
        run()
        code: object = 0
    except SystemExit as stop:
        code = stop.code
    if code is None:
        code = 0
    elif not isinstance(code, int) or isinstance(code, bool) or not -(1 << 31) <= code < 1 << 31:
        sys.exit(code)
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None and not stream.closed:
                stream.flush()
    except BaseException:
        sys.exit(code)
    os._exit(code)


def _run_python() -> None:
    """In a child of a ``--python`` server: run its command line as ``python`` would run
    ``-c CODE ARGS...`` (``sys.argv[0]`` ``-c``, ``sys.path[0]`` empty: the working
    directory) or ``SCRIPT ARGS...``, in a new ``__main__`` module, then exit 0."""
    if sys.argv[0] == "-c":
        code = sys.argv.pop(1)
        main_module = types.ModuleType("__main__")
        main_module.__dict__.update(__builtins__=builtins, __spec__=None)
        sys.modules["__main__"] = main_module
        exec(compile(code, "<string>", "exec"), main_module.__dict__)
    else:
        runpy.run_path(sys.argv[0], run_name="__main__")
    sys.exit(0)


if __name__ == "__main__":
    # ``--python SOCKET MODULE...``: a server for the app's own processes (``python -c``
    # or a script such as ``flask``), with only the modules named imported; no cachectl.
    python = sys.argv[1] == "--python"
    if python:
        socket_path, script, *preload = sys.argv[2], "", *sys.argv[3:]
        # Not this file's directory: nothing of tests/ may stand in for what is preloaded.
        # (Not the working directory either: each run's sys.path[0] is its own.)
        sys.path[0] = os.path.dirname(sys.executable)
    else:
        socket_path, script, *preload = sys.argv[1:]
        # The script's directory, not this file's (tests/), is where its imports start.
        sys.path[0] = os.path.dirname(script)
    for module in preload:
        # An optional client an environment lacks (the legacy lane has no python-memcached):
        # a run that needs it fails there as a fresh one would, on its own import.
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    if not python:
        import cachectl
        from cachectl.cli import main

        # Every module of the package a run may import lazily (its commands, operations
        # and backends), but the entry points that run something or import Flask when
        # imported.
        for found in pkgutil.walk_packages(cachectl.__path__, "cachectl."):
            if found.name not in ENTRY_POINTS:
                with contextlib.suppress(ImportError):  # a module of an optional client
                    importlib.import_module(found.name)

    # What was imported stays put: the collector does not walk it in each child, where
    # touching every object's header would copy most of the server's pages.
    gc.freeze()

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(64)
    os.write(1, b"ready\n")  # past sys.stdout, whose buffer each child inherits empty
    if serve(server) is None:
        # The parent has gone (or closed it): leave no socket behind, whoever is first.
        with contextlib.suppress(OSError):
            os.unlink(socket_path)
            os.rmdir(os.path.dirname(socket_path))
        sys.exit(0)
    if python:
        _end(_run_python)
    _end(lambda: sys.exit(main()))
