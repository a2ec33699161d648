"""Valkey as a backend family of its own name, against a real valkey-server 9.1.

The judge is a real Flask app with Flask-Caching 2.5 and ``CACHE_TYPE =
"cachelib.ValkeyCache"`` (Flask-Caching 2.5.1 has no Valkey class, no Valkey sentinel
or cluster class and no CACHE_VALKEY_* setting of its own: cachelib's ValkeyCache is the
one Valkey name, called with CACHE_ARGS and CACHE_OPTIONS). Which client cachectl speaks
with is seen on the server: each client announces its library (``CLIENT SETINFO
LIB-NAME``), which the server's slow log records when it records every command.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cachelib
import pytest
import redis
from flask_caching import Cache

from tests.conftest import oracle_app, run, run_console
from tests.servers import ServerProcess, free_port, start_tls_redis, start_valkey

PASSWORD = "s3cret-valkey-pw"

pytestmark = pytest.mark.skipif(
    not hasattr(cachelib, "ValkeyCache"), reason="cachelib before 0.14 has no ValkeyCache"
)


@pytest.fixture(scope="module")
def valkey_server() -> Iterator[ServerProcess]:
    server = start_valkey()
    yield server
    server.stop()


@dataclass
class Target:
    port: int
    db: int
    client: redis.Redis

    @property
    def options(self) -> dict:
        """CACHE_OPTIONS of a cachelib.ValkeyCache on this database, prefix ``vk_``."""
        return {"host": "127.0.0.1", "port": self.port, "db": self.db, "key_prefix": "vk_"}

    def lib_names(self) -> set[bytes]:
        """The client libraries that announced themselves since ``watch()``."""
        found = set()
        for entry in self.client.slowlog_get(1000):
            words = entry["command"].split()
            if words[:3] == [b"CLIENT", b"SETINFO", b"LIB-NAME"]:
                found.add(words[3])
        return found

    def watch(self) -> None:
        self.client.config_set("slowlog-log-slower-than", 0)
        self.client.config_set("slowlog-max-len", 1000)
        self.client.slowlog_reset()


_databases = itertools.count()


@pytest.fixture
def target(valkey_server: ServerProcess) -> Target:
    db = next(_databases) % 16
    client = redis.Redis(port=valkey_server.port, db=db)
    client.flushdb()
    return Target(valkey_server.port, db, client)


def valkey_app(options: dict, args: list | None = None):
    config = {"CACHE_TYPE": "cachelib.ValkeyCache", "CACHE_OPTIONS": options}
    if args is not None:
        config["CACHE_ARGS"] = args
    return oracle_app(config, name="valkey_oracle")


def config_file(tmp_path: Path, options: dict, extra: str = "") -> str:
    inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
    path = tmp_path / "valkey.toml"
    path.write_text(f'CACHE_TYPE = "cachelib.ValkeyCache"\nCACHE_OPTIONS = {{ {inline} }}\n{extra}')
    return str(path)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_config_only_reads_deletes_and_clears_what_a_valkey_app_stored(
    tmp_path: Path, target: Target
) -> None:
    app, cache = valkey_app(target.options)

    @cache.memoize()
    def price(n: int) -> dict:
        return {"n": n}

    with app.app_context():
        cache.set("menu", ["soup", "bread"])
        cache.set("visits", 3)
        price(7)
    target.client.set("other_app:key", b"not ours")
    config = config_file(tmp_path, target.options)

    got = run("--config", config, "--json", "get", "menu", "visits")
    assert got.exit_code == 0, got.output
    assert [r["value"] for r in json.loads(got.stdout)["results"]] == [["soup", "bread"], 3]
    keys = json.loads(run("--config", config, "--json", "keys").stdout)["keys"]
    assert len(keys) == 4 and {"menu", "visits"} < set(keys)  # and memoize's version + entry

    assert run("--config", config, "set", "banner", "closed today").exit_code == 0
    assert run("--config", config, "delete", "visits").exit_code == 0
    with app.app_context():
        assert cache.get("banner") == "closed today"
        assert cache.get("visits") is None

    cleared = run("--config", config, "--json", "clear", "--yes")
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.stdout)["removed"] == 4
    with app.app_context():
        assert cache.get("menu") is None and cache.get("banner") is None
    assert target.client.get("other_app:key") == b"not ours"  # outside the prefix


def test_positional_cache_args_are_read_as_valkey_cache_takes_them(
    tmp_path: Path, target: Target
) -> None:
    app, cache = valkey_app({"key_prefix": "pos_"}, ["127.0.0.1", target.port, None, target.db])
    with app.app_context():
        cache.set("k", "positional")
    path = tmp_path / "args.toml"
    path.write_text(
        'CACHE_TYPE = "cachelib.ValkeyCache"\n'
        f'CACHE_ARGS = ["127.0.0.1", {target.port}]\n'
        f'CACHE_OPTIONS = {{ db = {target.db}, key_prefix = "pos_" }}\n'
    )
    result = run("--config", str(path), "get", "k")
    assert (result.exit_code, result.stdout) == (0, "positional\n"), result.output


def test_config_names_valkey_and_the_prefix_the_cache_really_uses(
    tmp_path: Path, target: Target
) -> None:
    config = config_file(tmp_path, target.options)
    document = json.loads(run("--config", config, "--json", "config").stdout)
    settings = document["settings"]
    assert settings["CACHE_TYPE"]["value"] == "cachelib.ValkeyCache"
    # Flask-Caching hands ValkeyCache no CACHE_KEY_PREFIX: not its default flask_cache_.
    assert settings["CACHE_KEY_PREFIX"]["value"] == "vk_"
    assert "ValkeyCache" in settings["CACHE_KEY_PREFIX"]["source"]

    text = run("--config", config, "config").stdout
    assert "cachelib.ValkeyCache" in text
    plan = run("--config", config, "clear", "--dry-run")
    assert f"valkey://127.0.0.1:{target.port}/{target.db}" in plan.stdout, plan.output


def test_no_key_prefix_means_none_and_clear_asks_for_flush_db(
    tmp_path: Path, target: Target
) -> None:
    options = {k: v for k, v in target.options.items() if k != "key_prefix"}
    app, cache = valkey_app(options)
    with app.app_context():
        cache.set("bare", 1)
    config = config_file(tmp_path, options)
    assert run("--config", config, "get", "bare").stdout == "1\n"
    refused = run("--config", config, "clear", "--yes")
    assert refused.exit_code == 2
    assert "--flush-db" in refused.stderr


def test_the_password_is_used_and_never_shown(tmp_path: Path) -> None:
    server = start_valkey("--requirepass", PASSWORD)
    try:
        options = {"host": "127.0.0.1", "port": server.port, "password": PASSWORD}
        app, cache = valkey_app({**options, "key_prefix": "pw_"})
        with app.app_context():
            cache.set("k", "guarded")
        config = config_file(tmp_path, {**options, "key_prefix": "pw_"})
        assert run("--config", config, "get", "k").stdout == "guarded\n"
        shown = run("--config", config, "--json", "config")
        assert PASSWORD not in shown.stdout and "****" in shown.stdout

        wrong = config_file(tmp_path, {**options, "password": "wrong", "key_prefix": "pw_"})
        refused = run_console("--config", wrong, "get", "k")
        assert refused.returncode == 3
        line = one_error_line(refused.stderr.decode())
        assert "valkey://" in line and "wrong" not in line
    finally:
        server.stop()


def test_a_password_given_in_cache_args_is_used_and_never_shown(tmp_path: Path) -> None:
    """ValkeyCache(host, port, password, ...): the third of CACHE_ARGS has no name saying
    it is a secret, and is masked all the same, in `config` and in an error line."""
    server = start_valkey("--requirepass", PASSWORD)
    try:
        args = ["127.0.0.1", server.port, PASSWORD]
        app, cache = valkey_app({"key_prefix": "pw_"}, args)
        with app.app_context():
            cache.set("k", "guarded")
        config = config_file(tmp_path, {"key_prefix": "pw_"}, f"CACHE_ARGS = {json.dumps(args)}\n")
        assert run("--config", config, "get", "k").stdout == "guarded\n"
        for listing in (["--json", "config"], ["config"]):
            shown = run("--config", config, *listing)
            assert shown.exit_code == 0, shown.output
            assert PASSWORD not in shown.output and "****" in shown.output
        server.stop()
        down = run_console("--config", config, "--debug", "get", "k")
        assert down.returncode == 3
        assert PASSWORD.encode() not in down.stderr + down.stdout
    finally:
        server.stop()


def test_the_valkey_client_is_used_where_installed(tmp_path: Path, target: Target) -> None:
    config = config_file(tmp_path, target.options)
    target.watch()
    assert run("--config", config, "keys").exit_code == 0
    assert target.lib_names() == {b"valkey-py"}


scripted_cache = Cache()


@scripted_cache.memoize()
def scripted_price(n: int) -> dict:
    return {"n": n}


def test_every_scripted_path_works_through_the_valkey_client(
    tmp_path: Path, target: Target
) -> None:
    """The census, show-memoized, clear --exclude and --dry-run send EVALSHA and fall back
    on NOSCRIPT: the valkey client raises its own NoScriptError, which must be caught as
    redis-py's is (it was not: each of these exited 3 with the valkey client)."""
    app, cache = valkey_app(target.options)
    scripted_cache.init_app(
        app, config={"CACHE_TYPE": "cachelib.ValkeyCache", "CACHE_OPTIONS": target.options}
    )
    with app.app_context():
        for n in range(5):
            scripted_price(n)
        cache.set("menu", "soup")
    config = config_file(tmp_path, target.options)
    target.client.script_flush()
    target.watch()
    name = "tests.test_valkey.scripted_price"
    shown = run("--config", config, "--json", "show-memoized", name, "3")
    assert shown.exit_code == 0, shown.output
    by_function = run("--config", config, "--json", "stats", "--by-function")
    assert by_function.exit_code == 0, by_function.output
    rows = json.loads(by_function.stdout)["functions"]
    assert [(row["function"], row["entries"]) for row in rows] == [(name, 5)]
    dry = run("--config", config, "--json", "clear", "--dry-run", "--exclude", "menu")
    assert dry.exit_code == 0, dry.output
    cleared = run("--config", config, "--json", "clear", "--yes", "--exclude", "menu")
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.stdout)["removed"] == 6
    assert target.client.keys("vk_*") == [b"vk_menu"]
    assert target.lib_names() == {b"valkey-py"}


def test_redis_py_speaks_to_valkey_where_the_valkey_client_is_missing(
    tmp_path: Path, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, cache = valkey_app(target.options)
    with app.app_context():
        cache.set("menu", "soup")
    for name in [m for m in sys.modules if m == "valkey" or m.startswith("valkey.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "valkey", None)  # import valkey: ImportError
    config = config_file(tmp_path, target.options)
    target.watch()
    got = run("--config", config, "get", "menu")
    assert (got.exit_code, got.stdout) == (0, "soup\n"), got.output
    assert target.lib_names() == {b"redis-py"}
    plan = run("--config", config, "clear", "--dry-run")
    assert f"valkey://127.0.0.1:{target.port}/{target.db}" in plan.stdout  # still named so


def test_valkey_urls_reach_the_server_and_name_it(target: Target) -> None:
    url = f"valkey://127.0.0.1:{target.port}/{target.db}"
    assert run("--url", url, "--key-prefix", "u_", "set", "k", "by url").exit_code == 0
    assert target.client.get("u_k") is not None
    got = run("--url", url, "--key-prefix", "u_", "get", "k")
    assert got.stdout == "by url\n"
    plan = json.loads(
        run("--url", url, "--key-prefix", "u_", "--json", "clear", "--dry-run").stdout
    )
    assert url in json.dumps(plan)
    shown = json.loads(run("--url", url, "--json", "config").stdout)["settings"]
    assert shown["CACHE_REDIS_URL"]["value"] == url


def test_valkeys_reaches_a_tls_server_through_the_valkey_client(tmp_path: Path) -> None:
    """valkeys:// is TLS: against a server speaking only TLS (Debian's redis-server: the
    valkey-server of the PyPI wheel has no TLS built in; the protocol is the same), the
    valkey client connects with the CA the options name, and refuses without it."""
    server = start_tls_redis("redis-7.0")
    try:
        ca = server.extra["ca"]
        options = {"host": "127.0.0.1", "port": server.port, "ssl": True, "ssl_ca_certs": ca}
        app, cache = valkey_app({**options, "key_prefix": "tls_"})
        with app.app_context():
            cache.set("secure", "over TLS")
        url = f"valkeys://127.0.0.1:{server.port}/0"
        trust = ["-o", f'CACHE_OPTIONS={{"ssl_ca_certs": "{ca}"}}', "--key-prefix", "tls_"]
        got = run_console("--url", url, *trust, "get", "secure")
        assert (got.returncode, got.stdout) == (0, b"over TLS\n"), got.stderr
        untrusted = run_console("--url", url, "--key-prefix", "tls_", "get", "secure")
        assert untrusted.returncode == 3
        assert "certificate verify failed" in untrusted.stderr.decode()
        assert "valkeys://" in untrusted.stderr.decode()
    finally:
        server.stop()


@pytest.mark.parametrize("scheme", ["valkey", "valkeys"])
def test_a_dead_server_is_exit_3_with_one_line(scheme: str) -> None:
    dead = f"{scheme}://127.0.0.1:{free_port()}/0"
    result = run_console("--url", dead, "--key-prefix", "x_", "get", "k")
    assert result.returncode == 3
    line = one_error_line(result.stderr.decode())
    assert dead in line and "refused" in line.lower()
    as_json = run_console("--url", dead, "--key-prefix", "x_", "--json", "get", "k")
    assert as_json.returncode == 3
    document = json.loads(as_json.stdout)
    assert (document["ok"], document["exit_code"]) == (False, 3)


@pytest.mark.parametrize("hide_valkey", [False, True], ids=["valkey-client", "redis-py"])
def test_a_valkey_cache_whose_server_is_down_is_exit_3(tmp_path: Path, hide_valkey: bool) -> None:
    port = free_port()
    config = config_file(tmp_path, {"host": "127.0.0.1", "port": port, "key_prefix": "d_"})
    env = dict(os.environ)
    if hide_valkey:  # a directory first on the path whose valkey cannot be imported
        blocker = tmp_path / "blocker"
        (blocker / "valkey").mkdir(parents=True)
        (blocker / "valkey" / "__init__.py").write_text("raise ImportError('hidden')\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocker), env.get("PYTHONPATH")]))
    result = run_console("--config", config, "--timeout", "2", "get", "k", env=env)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result.stderr.decode())
    assert f"valkey://127.0.0.1:{port}/0" in line and "internal error" not in line


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("valkeys://", "names no server"),
        ("valkey://127.0.0.1:6390/zero", "the database must be a number"),
        ("vallkey://127.0.0.1:6390/0", "valkey://"),
    ],
)
def test_a_bad_valkey_url_is_a_usage_error(url: str, words: str) -> None:
    result = run_console("--url", url, "get", "k")
    assert result.returncode == 2
    assert words in one_error_line(result.stderr.decode())


APP_SOURCE = """
import os

from flask import Flask
from flask_caching import Cache

cache = Cache()


def create_app():
    app = Flask(__name__)
    # Given only to init_app: stored nowhere but in the live ValkeyCache object.
    cache.init_app(app, config={
        "CACHE_TYPE": "cachelib.ValkeyCache",
        "CACHE_OPTIONS": {
            "host": "127.0.0.1",
            "port": int(os.environ["SHOP_VALKEY_PORT"]),
            "db": int(os.environ["SHOP_VALKEY_DB"]),
            "key_prefix": "shop_",
        },
    })
    return app
"""


def test_app_mode_reads_the_live_valkey_backend(tmp_path: Path, target: Target) -> None:
    package = tmp_path / "shopapp"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(APP_SOURCE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env.update(SHOP_VALKEY_PORT=str(target.port), SHOP_VALKEY_DB=str(target.db))
    app, cache = valkey_app({**target.options, "key_prefix": "shop_"})
    with app.app_context():
        cache.set("menu", ["soup"])
        cache.set("visits", 3)

    def cachectl(*args: str):
        return run_console("--app", "shopapp:create_app()", *args, cwd=tmp_path, env=env)

    shown = json.loads(cachectl("--json", "config").stdout)["settings"]
    assert shown["CACHE_TYPE"]["value"] == "cachelib.ValkeyCache"
    assert "live backend" in shown["CACHE_TYPE"]["source"]
    assert shown["CACHE_OPTIONS"]["value"]["port"] == target.port
    assert shown["CACHE_KEY_PREFIX"]["value"] == "shop_"

    target.watch()
    got = cachectl("get", "menu")
    assert (got.returncode, got.stdout) == (0, b"['soup']\n"), got.stderr
    assert b"valkey-py" in target.lib_names()
    cleared = cachectl("clear", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert f"valkey://127.0.0.1:{target.port}/{target.db}".encode() in cleared.stdout
    with app.app_context():
        assert cache.get("menu") is None and cache.get("visits") is None

    target.client.connection_pool.disconnect()
    down = run_console(
        "--app", "shopapp:create_app()", "get", "menu", cwd=tmp_path,
        env={**env, "SHOP_VALKEY_PORT": str(free_port())},
    )  # fmt: skip
    assert down.returncode == 3
    assert "valkey://" in one_error_line(down.stderr.decode())
