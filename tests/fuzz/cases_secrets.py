"""Credentials of the wrong type, for each family of commands: a TOML list or table where a
password goes, bytes in a ``.py`` config (UTF-8 or not), a JSON list given with ``-o``, a
list inside CACHE_OPTIONS that only the client library meets. (A batch, whose failing
line adds a second error line, is checked in tests/test_secret_types.py.) A type no password can
have is exit 2 naming the setting, never its value; bytes that are UTF-8 are the password
they spell (the server is then out of reach: exit 3, or 0 for ``config``); the value of
the library's own refusal is not quoted either. Every secret carries the corpus's SECRET
marker, which no output may hold."""

from __future__ import annotations

from tests.fuzz.corpus import OK, SECRET, UNREACHABLE, USAGE, Corpus, slug

#: Where the (dead) server is, as a config file says it.
_TOML_HOST = b'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_HOST = "127.0.0.1"\n'
_TOML_REDIS = _TOML_HOST + b"CACHE_REDIS_PORT = {dead_port}\n"
_PY_REDIS = (
    b"CACHE_TYPE = 'RedisCache'\nCACHE_REDIS_HOST = '127.0.0.1'\nCACHE_REDIS_PORT = {dead_port}\n"
)
_MARK = SECRET.encode()

#: One invocation of each command family, as the cases run it after ``--config FILE``.
_COMMANDS: dict[str, tuple[str, ...]] = {
    "get": ("get", "k"),
    "set": ("set", "k", "v"),
    "delete": ("delete", "k"),
    "clear": ("clear", "--yes"),
    "keys": ("keys",),
    "stats": ("stats",),
    "delete-memoized": ("delete-memoized", "shop.models.get_user"),
    "config": ("config",),
}


def add_cases(c: Corpus) -> None:
    # (name, config file, its contents, outcome on a command that connects, for config)
    forms: list[tuple[str, str, bytes, frozenset[int], frozenset[int]]] = [
        (
            "toml-list",
            "cache.toml",
            _TOML_REDIS + b'CACHE_REDIS_PASSWORD = ["' + _MARK + b't1", 80417723]\n',
            USAGE,
            USAGE,
        ),
        (
            "toml-table-sentinel",
            "cache.toml",
            b'CACHE_TYPE = "RedisSentinelCache"\n'
            b'CACHE_REDIS_SENTINELS = [["127.0.0.1", {dead_port}]]\n'
            b'CACHE_REDIS_SENTINEL_PASSWORD = { pw = "' + _MARK + b't2" }\n',
            USAGE,
            USAGE,
        ),
        (
            "py-bytes-not-utf8",
            "cache.py",
            _PY_REDIS + b"CACHE_REDIS_PASSWORD = b'" + _MARK + b"t3\\xff'\n",
            USAGE,
            USAGE,
        ),
        (
            "py-bytes",
            "cache.py",
            _PY_REDIS + b"CACHE_REDIS_PASSWORD = b'" + _MARK + b"t4'\n",
            UNREACHABLE,
            OK,
        ),
        (
            "py-memcached-set",
            "cache.py",
            b"CACHE_TYPE = 'SASLMemcachedCache'\n"
            b"CACHE_MEMCACHED_SERVERS = ['127.0.0.1:{dead_port}']\n"
            b"CACHE_MEMCACHED_USERNAME = 'ops'\n"
            b"CACHE_MEMCACHED_PASSWORD = {'" + _MARK + b"t5'}\n",
            USAGE,
            USAGE,
        ),
        (
            "toml-options-list",
            "cache.toml",
            # CACHE_REDIS_PASSWORD's None meets it: the client refuses a second password.
            _TOML_REDIS + b'CACHE_OPTIONS = { password = ["' + _MARK + b't6"] }\n',
            USAGE,
            OK,
        ),
    ]
    for form, name, content, connecting, showing in forms:
        for command, args in _COMMANDS.items():
            c.add(
                f"secret-type-{form}-{slug(command)}",
                command,
                "redis",
                showing if command == "config" else connecting,
                "a secret of the wrong type is refused by name, never quoted",
                globals_=("--config", name),
                args=args,
                family=(),
                files={name: content},
                # Names the setting (or the server), never the value.
                must_match=(r"CACHE_\w*PASSWORD|127\.0\.0\.1",) if command != "config" else (),
            )
    # -o reads VALUE as JSON: a list where a password goes, given on the command line.
    for command in ("delete", "config"):
        c.add(
            f"secret-type-option-list-{command}",
            command,
            "redis",
            USAGE,
            "-o CACHE_REDIS_PASSWORD=[...] is refused by name, never quoted",
            globals_=("-o", 'CACHE_REDIS_PASSWORD=["' + SECRET + 't7"]'),
            args=_COMMANDS[command],
            family=("--type", "RedisCache", "-o", "CACHE_REDIS_PORT={dead_port}"),
            must_match=(r"CACHE_REDIS_PASSWORD \(from -o CACHE_REDIS_PASSWORD\) must be a string",),
        )
