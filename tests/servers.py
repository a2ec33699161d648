"""Real cache servers for the tests: private processes on free loopback ports.

Never the machine's own Redis on 6379, never a fake: each server is started
here, on a port the kernel hands out, and stopped when the session ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, name: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not open port {port}")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed; the README's test command installs it "
            "(Debian packages redis-server and memcached)"
        )
    return path


@dataclass
class ServerProcess:
    name: str
    port: int
    process: subprocess.Popen
    workdir: Path
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(*extra_args: str) -> ServerProcess:
    binary = require_binary("redis-server")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cachectl-redis-"))
    log = workdir / "redis.log"
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--logfile",
        str(log),
        "--daemonize",
        "no",
        *extra_args,
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait_for_port(port, process, "redis-server", log)
    return ServerProcess("redis", port, process, workdir)


def start_memcached() -> ServerProcess:
    binary = require_binary("memcached")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cachectl-memcached-"))
    log = workdir / "memcached.log"
    args = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        args += ["-u", "root"]  # memcached refuses to run as root without naming a user
    with open(log, "wb") as handle:
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)
    _wait_for_port(port, process, "memcached", log)
    return ServerProcess("memcached", port, process, workdir)
