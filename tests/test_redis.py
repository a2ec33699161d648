"""cachectl against a real Redis, with a real Flask-Caching app as the judge."""

from __future__ import annotations

import datetime
import json
import pickle

import pytest
from cachelib.serializers import RedisSerializer

from cachectl.codec.rendering import to_jsonable
from tests.conftest import RedisTarget, oracle_app, run, run_console

#: cachelib's Redis serializer writes an integer as ASCII digits from 0.10 on; 0.9
#: pickles it as every other value (its docstring says otherwise).
CACHELIB_WRITES_DIGITS = RedisSerializer().dumps(7) == b"7"

VALUES = {
    "a-str": "héllo wörld",
    "an-int": 42,
    "a-bool": True,
    "a-none": None,
    "a-dict": {"user": "alice", "roles": ["admin", "dev"], "n": 3},
    "a-list": [1, "two", 3.5],
    "a-datetime": datetime.datetime(2026, 11, 24, 18, 30, 5, 123456),
    "some-bytes": b"\x00\x01binary\xff",
}


def redis_args(target: RedisTarget, prefix: str = "app_") -> list[str]:
    return ["--url", target.url, "--key-prefix", prefix]


def app_for(target: RedisTarget, prefix: str = "app_"):
    return oracle_app(
        {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": target.url, "CACHE_KEY_PREFIX": prefix}
    )


@pytest.mark.parametrize("key", sorted(VALUES))
def test_get_reads_what_the_app_wrote(redis_target: RedisTarget, key: str) -> None:
    app, cache = app_for(redis_target)
    with app.app_context():
        cache.set(key, VALUES[key])

    result = run(*redis_args(redis_target), "--json", "get", key)

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)["results"][0]
    assert document["found"] is True
    assert document["type"] == type(VALUES[key]).__name__
    assert document["value"] == to_jsonable(VALUES[key])


def test_get_prints_strings_plain_and_other_values_pretty(redis_target: RedisTarget) -> None:
    app, cache = app_for(redis_target)
    with app.app_context():
        cache.set("greeting", "hello")
        cache.set("user", {"name": "alice", "id": 7})

    assert run(*redis_args(redis_target), "get", "greeting").stdout == "hello\n"
    assert run(*redis_args(redis_target), "get", "user").stdout == "{'name': 'alice', 'id': 7}\n"


@pytest.mark.parametrize(
    ("key", "text", "as_type"),
    [
        ("a-str", "héllo wörld", "str"),
        ("an-int", "42", "int"),
        ("a-float", "2.5", "float"),
        ("a-json", '{"user": "alice", "roles": ["admin"]}', "json"),
        ("some-bytes", "raw bytes", "bytes"),
    ],
)
def test_the_app_reads_what_set_wrote(
    redis_target: RedisTarget, key: str, text: str, as_type: str
) -> None:
    result = run(*redis_args(redis_target), "set", key, text, "--as", as_type)
    assert result.exit_code == 0, result.output

    app, cache = app_for(redis_target)
    with app.app_context():
        value = cache.get(key)
    expected = {
        "str": text,
        "int": 42,
        "float": 2.5,
        "json": {"user": "alice", "roles": ["admin"]},
        "bytes": text.encode(),
    }[as_type]
    assert value == expected
    assert type(value) is type(expected)


def test_set_stores_bytes_identical_to_the_app(redis_target: RedisTarget) -> None:
    app, cache = app_for(redis_target)
    with app.app_context():
        cache.set("by-app", {"a": [1, 2]})
        cache.set("int-by-app", 7)
    run(*redis_args(redis_target), "set", "by-cachectl", '{"a": [1, 2]}', "--as", "json")
    run(*redis_args(redis_target), "set", "int-by-cachectl", "7", "--as", "int")

    client = redis_target.client
    # Digits, whatever the cachelib: every version reads them, and INCRBY works on them.
    assert client.get("app_int-by-cachectl") == b"7"
    if CACHELIB_WRITES_DIGITS:  # cachelib 0.9-0.15.3 pickle the app's own integers
        assert client.get("app_int-by-app") == b"7"
    # The app's format, with pickle protocol 4 (readable by an app on any Python 3), where
    # the app on this Python writes 5: the same opcodes, another protocol byte.
    by_app, by_cachectl = client.get("app_by-app"), client.get("app_by-cachectl")
    assert by_app == b"!" + pickle.dumps({"a": [1, 2]}, pickle.HIGHEST_PROTOCOL)
    assert by_cachectl == b"!" + pickle.dumps({"a": [1, 2]}, 4)
    assert by_cachectl[3:] == by_app[3:]
    with app.app_context():
        assert cache.get("by-cachectl") == {"a": [1, 2]}
        assert cache.get("int-by-cachectl") == 7
        assert cache.cache.inc("int-by-cachectl") == 8  # INCRBY on the digits


def test_set_timeout_defaults_to_the_config_and_zero_never_expires(
    redis_target: RedisTarget,
) -> None:
    run(*redis_args(redis_target), "-o", "CACHE_DEFAULT_TIMEOUT=120", "set", "k1", "v")
    run(*redis_args(redis_target), "set", "k2", "v", "--timeout", "30")
    run(*redis_args(redis_target), "set", "k3", "v", "--timeout", "0")

    client = redis_target.client
    assert 110 < client.ttl("app_k1") <= 120
    assert 20 < client.ttl("app_k2") <= 30
    assert client.ttl("app_k3") == -1


def test_set_reads_standard_input(redis_target: RedisTarget) -> None:
    assert (
        run(*redis_args(redis_target), "set", "banner", "-", input="Back at ten\n").exit_code == 0
    )
    assert (
        run(*redis_args(redis_target), "set", "blob", "-", "--as", "bytes", input="x\n").exit_code
        == 0
    )
    app, cache = app_for(redis_target)
    with app.app_context():
        assert cache.get("banner") == "Back at ten"
        assert cache.get("blob") == b"x\n"


def test_get_missing_key_exits_1_and_still_shows_the_others(redis_target: RedisTarget) -> None:
    app, cache = app_for(redis_target)
    with app.app_context():
        cache.set("present", "yes")

    result = run(*redis_args(redis_target), "get", "present", "absent")

    assert result.exit_code == 1
    assert "present: yes" in result.stdout
    assert "not found: absent" in result.stderr


def test_delete_is_seen_by_the_app_and_counts_what_existed(redis_target: RedisTarget) -> None:
    app, cache = app_for(redis_target)
    with app.app_context():
        cache.set("one", 1)
        cache.set("two", 2)
        cache.set("keep", 3)

    result = run(*redis_args(redis_target), "--json", "delete", "one", "two", "never-there")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "requested": 3, "removed": 2}
    with app.app_context():
        assert cache.get("one") is None and cache.get("two") is None
        assert cache.get("keep") == 3


def test_delete_of_nothing_that_exists_still_exits_0(redis_target: RedisTarget) -> None:
    result = run(*redis_args(redis_target), "delete", "ghost")
    assert result.exit_code == 0
    assert result.stdout == "deleted 0 of 1 key (1 did not exist)\n"


def test_delete_from_file_handles_ten_thousand_keys(redis_target: RedisTarget, tmp_path) -> None:
    client = redis_target.client
    pipe = client.pipeline()
    for n in range(10_000):
        pipe.set(f"app_item:{n}", b"!" + pickle.dumps(n))
    pipe.set("app_survivor", b"1")
    pipe.execute()
    listing = tmp_path / "keys.txt"
    listing.write_text("".join(f"item:{n}\n" for n in range(10_000)) + "\n" + "item:missing\n")

    result = run(*redis_args(redis_target), "--json", "delete", "--from-file", str(listing))

    assert json.loads(result.stdout) == {"ok": True, "requested": 10_001, "removed": 10_000}
    assert client.keys("app_item:*") == []
    assert client.exists("app_survivor")


def test_delete_reads_keys_from_standard_input(redis_target: RedisTarget) -> None:
    redis_target.client.set("app_a", b"1")
    redis_target.client.set("app_b", b"1")
    result = run(*redis_args(redis_target), "delete", "--from-file", "-", input="a\nb\n")
    assert result.exit_code == 0
    assert redis_target.client.dbsize() == 0


def test_clear_removes_the_apps_keys_and_the_app_sees_it(redis_target: RedisTarget) -> None:
    app, cache = app_for(redis_target)
    with app.app_context():
        for n in range(2500):
            cache.set(f"k{n}", n)

    result = run(*redis_args(redis_target), "--json", "clear", "--yes")

    assert json.loads(result.stdout)["removed"] == 2500
    with app.app_context():
        assert cache.get("k1") is None


def test_clear_touches_nothing_outside_the_prefix(redis_target: RedisTarget) -> None:
    client = redis_target.client
    for n in range(1500):
        client.set(f"app_{n}", b"1")
    # Unprefixed keys, another app's prefix, and keys that only look similar.
    others = ["session:1", "other_app_1", "ap_x", "APP_upper", "xapp_1", "app", "queue"]
    for key in others:
        client.set(key, b"keep")
    # A prefix with glob characters must match itself only.
    for key in ["app[1]_a", "app1_b"]:
        client.set(key, b"x")

    result = run(*redis_args(redis_target), "clear", "--yes")

    assert result.exit_code == 0
    assert "removed 1,500 keys under the prefix 'app_'" in result.stdout
    assert sorted(k.decode() for k in client.keys("*")) == sorted([*others, "app[1]_a", "app1_b"])

    result = run(*redis_args(redis_target, prefix="app[1]_"), "clear", "--yes")
    assert "removed 1 key under" in result.stdout
    assert client.exists("app1_b")


def test_clear_dry_run_counts_and_removes_nothing(redis_target: RedisTarget) -> None:
    for n in range(30):
        redis_target.client.set(f"app_{n}", b"1")
    result = run(*redis_args(redis_target), "clear", "--dry-run")
    assert "would remove 30 keys" in result.stdout
    assert redis_target.client.dbsize() == 30


def test_clear_without_a_terminal_needs_yes(redis_target: RedisTarget) -> None:
    redis_target.client.set("app_1", b"1")
    result = run(*redis_args(redis_target), "clear")
    assert result.exit_code == 2
    assert "pass --yes" in result.stderr
    assert redis_target.client.exists("app_1")


def test_clear_without_a_prefix_refuses_unless_flush_db(redis_target: RedisTarget) -> None:
    client = redis_target.client
    client.set("anything", b"1")

    refused = run("--url", redis_target.url, "--key-prefix", "", "clear", "--yes")
    assert refused.exit_code == 2
    assert "--flush-db" in refused.stderr
    assert client.exists("anything")

    flushed = run("--url", redis_target.url, "--key-prefix", "", "clear", "--yes", "--flush-db")
    assert flushed.exit_code == 0, flushed.output
    assert client.dbsize() == 0


def test_flush_db_is_refused_when_a_prefix_is_configured(redis_target: RedisTarget) -> None:
    redis_target.client.set("unrelated", b"1")
    result = run(*redis_args(redis_target), "clear", "--yes", "--flush-db")
    assert result.exit_code == 2
    assert redis_target.client.exists("unrelated")


def test_the_default_prefix_is_flask_cachings(redis_target: RedisTarget) -> None:
    app, cache = oracle_app({"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_target.url})
    with app.app_context():
        cache.set("k", "from the app")
    assert run("--url", redis_target.url, "get", "k").stdout == "from the app\n"


def test_values_from_before_cachelib_0_8_are_shown_raw(redis_target: RedisTarget) -> None:
    redis_target.client.set("app_legacy", b"plain text")
    result = run(*redis_args(redis_target), "--json", "get", "legacy")
    assert json.loads(result.stdout)["results"][0]["value"] == {"$bytes": "plain text"}


def test_raw_writes_the_stored_bytes(redis_target: RedisTarget) -> None:
    app, cache = app_for(redis_target)
    with app.app_context():
        cache.set("obj", {"a": 1})
    result = run_console(*redis_args(redis_target), "get", "--raw", "obj")
    assert result.stdout == redis_target.client.get("app_obj")


def test_unreachable_server_exits_3_without_traceback() -> None:
    from tests.servers import free_port

    result = run_console(
        "--url", f"redis://127.0.0.1:{free_port()}/0", "--timeout", "1", "get", "k"
    )
    assert result.returncode == 3
    assert b"Traceback" not in result.stderr
    assert result.stderr.startswith(b"error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_password_protected_server_refusing_us_exits_3(redis_target: RedisTarget) -> None:
    from tests.servers import start_redis

    server = start_redis("--requirepass", "s3cret")
    try:
        wrong = run_console("--url", f"redis://:nope@127.0.0.1:{server.port}/0", "get", "k")
        assert wrong.returncode == 3
        assert b"nope" not in wrong.stderr
        right = run_console(
            "--type",
            "RedisCache",
            "-o",
            f"CACHE_REDIS_PORT={server.port}",
            "-o",
            "CACHE_REDIS_HOST=127.0.0.1",
            "-o",
            "CACHE_REDIS_PASSWORD=s3cret",
            "set",
            "k",
            "v",
        )
        assert right.returncode == 0, right.stderr
    finally:
        server.stop()


def test_tls_with_a_rediss_url_and_cache_options() -> None:
    from tests.servers import start_tls_redis

    server = start_tls_redis()
    try:
        url = f"rediss://127.0.0.1:{server.port}/0"
        trust = ["-o", f'CACHE_OPTIONS={{"ssl_ca_certs": "{server.extra["ca"]}"}}']
        app, cache = oracle_app(
            {
                "CACHE_TYPE": "RedisCache",
                "CACHE_REDIS_URL": url,
                "CACHE_OPTIONS": {"ssl_ca_certs": server.extra["ca"]},
            }
        )
        with app.app_context():
            cache.set("secure", "over TLS")
        assert run("--url", url, *trust, "get", "secure").stdout == "over TLS\n"

        untrusted = run("--url", url, "get", "secure")
        assert untrusted.exit_code == 3
        assert "certificate verify failed" in untrusted.stderr
    finally:
        server.stop()


def test_custom_backend_classes_and_cachelib_types(
    redis_target: RedisTarget, tmp_path, monkeypatch
) -> None:
    """A dotted CACHE_TYPE is imported and built as Flask-Caching builds it."""
    (tmp_path / "shopcache.py").write_text(
        "from flask_caching.backends import RedisCache\n\n"
        "class AuditedRedis(RedisCache):\n"
        "    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    app, cache = oracle_app(
        {
            "CACHE_TYPE": "shopcache.AuditedRedis",
            "CACHE_REDIS_URL": redis_target.url,
            "CACHE_KEY_PREFIX": "audited_",
        }
    )
    with app.app_context():
        cache.set("k", {"via": "custom class"})
    custom = run(
        "--type", "shopcache.AuditedRedis", "--url", redis_target.url, "--key-prefix", "audited_",
        "--json", "get", "k",
    )  # fmt: skip
    assert json.loads(custom.stdout)["results"][0]["value"] == {"via": "custom class"}

    # cachelib.X gets CACHE_ARGS and CACHE_OPTIONS only, as in Flask-Caching.
    options = {"host": "127.0.0.1", "port": redis_target.port, "db": redis_target.db}
    options["key_prefix"] = "raw_"
    settings = ["--type", "cachelib.RedisCache", "-o", f"CACHE_OPTIONS={json.dumps(options)}"]
    assert run(*settings, "set", "n", "5", "--as", "int").exit_code == 0
    # Digits whatever the cachelib (0.9-0.15.3 would pickle an int it writes itself), and
    # every cachelib reads them back as the int.
    assert redis_target.client.get("raw_n") == b"5"
    assert RedisSerializer().loads(b"5") == 5
