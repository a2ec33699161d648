"""cachectl's own memcached clients, of the library cachelib would pick for the app.

memcached client libraries decode values themselves, unpickling whatever a value's
flags say is a pickle and inflating whatever they say is compressed, whole. The clients
built here decode values with cachectl's codec instead (``decode_memcached_value``: the
restricted unpickler unless allowed, at most ``max_bytes`` inflated), and python-memcached's
sockets bound each whole reply (``deadline``).

The factory builds the app's client with them, and ``CrawledKeys`` (``memcached_keys``)
one per server, to delete a key on the server the crawler found it on: a module of its
own, so that neither needs the backend module (``memcached``) that uses both.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from cachectl.backends.deadline import DeadlineSocket
from cachectl.codec.stored import MEMCACHED_ZLIB, decode_memcached_value
from cachectl.codec.unpickler import RestrictedUnpickler
from cachectl.errors import ConfigError

#: cachelib 0.17's ``memcache_client_lib`` names, in the order cachelib tries them when
#: none is named (``MemcachedCache.import_preferred_memcache_lib``), with their modules.
CLIENT_LIBRARIES = {
    "pylibmc": "pylibmc",
    "google": "google.appengine.api.memcache",
    "memcache": "memcache",
    "libmc": "libmc",
}

#: Why cachectl cannot work with a library cachelib can use.
_UNSUPPORTED = {
    "google": (
        "App Engine's memcache service (memcache_client_lib 'google') is reached only from "
        "inside App Engine, not over CACHE_MEMCACHED_SERVERS, which cachelib ignores for it; "
        "cachectl cannot administer it"
    ),
    "libmc": (
        "libmc (memcache_client_lib 'libmc') is not supported: it is not installed with "
        "cachectl, and it writes values in a format of its own (marshal, its own flags) and "
        "unpickles them itself, where cachectl could not bound them; cachectl reads values "
        "written by pylibmc or python-memcached ('memcache')"
    ),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or set to None
        return False


def client_library(named: Any) -> tuple[str, str]:
    """The library the app's cachelib uses, and why: the one ``memcache_client_lib``
    names, else the first of cachelib's order that is installed (as cachelib picks it
    when none is named). Nothing is imported."""
    if named is not None:
        if named not in CLIENT_LIBRARIES:
            raise ConfigError(
                "CACHE_OPTIONS memcache_client_lib must be pylibmc, memcache, libmc or "
                f"google, not {named!r}"
            )
        return str(named), "named by CACHE_OPTIONS memcache_client_lib"
    for name, module in CLIENT_LIBRARIES.items():
        if _installed(module):
            return (
                name,
                "the first of pylibmc, google, memcache, libmc installed, as cachelib picks",
            )
    raise ConfigError(
        "MemcachedCache needs a memcached client: pip install 'flask-cachectl[memcached]'"
    )


def build_client(servers: list[str], timeout: float, named: Any) -> Any:
    """cachectl's own client, of the library the app uses (``client_library``); one
    error line (exit 2) for a library cachectl cannot use or that is not installed. With
    none named, a library whose import fails is passed over, as cachelib passes it over."""
    name, _why = client_library(named)
    order = (
        [name]
        if named is not None
        else list(CLIENT_LIBRARIES)[list(CLIENT_LIBRARIES).index(name) :]
    )
    for candidate in order:
        if named is None and not _installed(CLIENT_LIBRARIES[candidate]):
            continue
        if candidate in _UNSUPPORTED:
            raise ConfigError(_UNSUPPORTED[candidate])
        try:
            if candidate == "pylibmc":
                return pylibmc_client(servers, timeout)
            return python_memcached_client(servers, timeout)
        except ImportError as exc:
            if named is None:
                continue
            package = "pylibmc" if candidate == "pylibmc" else "python-memcached"
            raise ConfigError(
                f"memcache_client_lib {candidate!r} names a library that is not installed: "
                f"pip install {package}"
            ) from exc
    raise ConfigError(
        "MemcachedCache needs a memcached client: pip install 'flask-cachectl[memcached]'"
    )


def python_memcached_client(servers: list[str], timeout: float) -> Any:
    """A python-memcached client whose unpickler is the restricted one unless allowed."""
    import memcache

    class BoundedHost(memcache._Host):
        """A server whose every reply must arrive whole within the socket timeout."""

        def _get_socket(self) -> Any:
            sock = super()._get_socket()
            if sock is not None and not isinstance(sock, DeadlineSocket):
                sock = self.socket = DeadlineSocket(sock, self.socket_timeout)
            return sock

        def send_cmd(self, cmd: Any) -> None:
            self._start_reply()  # every command is sent with one of these two
            super().send_cmd(cmd)

        def send_cmds(self, cmds: Any) -> None:
            self._start_reply()
            super().send_cmds(cmds)

        def _start_reply(self) -> None:
            if isinstance(self.socket, DeadlineSocket):  # else still connecting
                self.socket.expect_reply()

    class SafeClient(memcache.Client):
        unsafe = False

        def allow_unsafe(self, unsafe: bool) -> None:
            self.unsafe = unsafe

        def set_servers(self, servers: Any) -> None:
            super().set_servers(servers)
            for host in self.servers:  # built by the library, the same but bounded
                host.__class__ = BoundedHost

        def _recv_value(self, server: Any, flags: int, rlen: int) -> Any:
            # The bytes as stored (flags 0: the library's "bare bytes"), then cachectl's
            # codec: bounded inflation, the restricted unpickler (a StoredValue).
            data = super()._recv_value(server, 0, rlen)
            return decode_memcached_value(data, flags, self.unsafe)

        def _expectvalue(self, server: Any, line: Any = None, raise_exception: bool = False) -> Any:
            # python-memcached takes any reply that is not VALUE for a miss: a garbled one
            # (or another service on the port) is a failed server, never "not found".
            if not line:
                line = server.readline(raise_exception)
            if line and line[:5] != b"VALUE" and line != b"END":
                raise memcache._Error(f"unexpected reply from the server: {line[:60]!r}")
            return super()._expectvalue(server, line, raise_exception)

        def flush_all(self) -> None:
            # python-memcached ignores flush_all's reply; only OK means it was done.
            for server in self.servers:
                if not server.connect():
                    continue  # marked dead: the backend reports it
                server.send_cmd("flush_all")
                reply = server.readline()
                if reply != b"OK":
                    raise memcache._Error(f"{server}: flush_all answered {reply[:60]!r}, not OK")

    # The restricted unpickler too, should a path of the library load a pickle itself.
    return SafeClient(servers, socket_timeout=timeout, unpickler=RestrictedUnpickler)


def pylibmc_client(servers: list[str], timeout: float, **credentials: Any) -> Any:
    """A pylibmc client whose pickled values load restrictedly unless allowed.

    ``credentials`` (username, password) switch on SASL, which needs the binary
    protocol, as Flask-Caching's SASL backends use it.
    """
    import pylibmc

    class SafeClient(pylibmc.Client):
        unsafe = False

        def allow_unsafe(self, unsafe: bool) -> None:
            self.unsafe = unsafe

        def deserialize(self, data: bytes, flags: int) -> Any:
            # Inflated already, in C (only over SASL: cachectl reads the others itself).
            return decode_memcached_value(data, flags & ~MEMCACHED_ZLIB, self.unsafe)

    milliseconds = int(timeout * 1000)
    # _poll_timeout bounds the wait for a stalled server (libmemcached's default: 5 s).
    behaviors = {
        "connect_timeout": milliseconds,
        "receive_timeout": int(timeout * 1e6),
        "_poll_timeout": milliseconds,
    }
    if credentials.get("username"):
        return SafeClient(servers, binary=True, behaviors=behaviors, **credentials)
    return SafeClient(servers, behaviors=behaviors)
