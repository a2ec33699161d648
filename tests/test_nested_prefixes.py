"""Caches whose prefixes nest: the main cache under ``pkg_`` and siblings under
``pkg_data_`` and ``pkg_thumbnail_`` on the same Redis database. clear, keys, stats
and delete --pattern of the main cache leave the siblings' keys out by default,
counted per sibling, and take them with --include-nested; a cache under
``pkg_other_`` on another database is no sibling. Named caches of a config file,
and a real Flask app (--app) holding several Cache objects; a server without
scripting for the client-side path; the same-server rule on its own.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from click.testing import Result

from cachectl.backends.targets import DIFFERENT, POSSIBLY, SAME, Location, compare
from tests.conftest import RedisTarget, run, run_console

MAIN = [b"pkg_a", b"pkg_b", b"pkg_other_x", b"pkg_view//about"]
DATA = [b"pkg_data_1", b"pkg_data_2", b"pkg_data_3"]
THUMBNAIL = [b"pkg_thumbnail_1"]
OUTSIDE = [b"zzz", b"pk_a"]


@dataclass
class Nest:
    config: Path
    main: redis.Redis
    other_db: redis.Redis
    url: str
    other_url: str

    def left(self) -> set[bytes]:
        return set(self.main.keys("*"))

    def run(self, *args: str) -> Result:
        """cachectl in-process with this file's caches."""
        return run("--config", str(self.config), *args)


def write_config(path: Path, url: str, other_url: str, extra: str = "") -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            CACHE_TYPE = "RedisCache"
            CACHE_REDIS_URL = "{url}"
            CACHE_KEY_PREFIX = "pkg_"
            [caches.data]
            CACHE_KEY_PREFIX = "pkg_data_"
            [caches.thumbnail]
            CACHE_KEY_PREFIX = "pkg_thumbnail_"
            [caches.elsewhere]
            CACHE_KEY_PREFIX = "pkg_other_"
            CACHE_REDIS_URL = "{other_url}"
            """
        )
        + textwrap.dedent(extra)
    )
    return path


def fill(main: redis.Redis, other_db: redis.Redis) -> None:
    for name in MAIN + DATA + THUMBNAIL + OUTSIDE:
        main.set(name, b"1")
    other_db.set(b"pkg_other_1", b"1")


@pytest.fixture
def nest(redis_target: RedisTarget, tmp_path: Path) -> Nest:
    return make_nest(redis_target, tmp_path)


def make_nest(redis_target: RedisTarget, tmp_path: Path) -> Nest:
    """The config file's caches on a database of the private server, filled; the cache
    under pkg_other_ on the next database."""
    other = redis.Redis(port=redis_target.port, db=(redis_target.db + 1) % 16)
    other.flushdb()
    fill(redis_target.client, other)
    other_url = f"redis://127.0.0.1:{redis_target.port}/{(redis_target.db + 1) % 16}"
    config = write_config(tmp_path / "cachectl.toml", redis_target.url, other_url)
    return Nest(config, redis_target.client, other, redis_target.url, other_url)


def nested_counts(document: dict) -> dict[str, int]:
    return {entry["cache"]: entry["left_out"] for entry in document.get("nested", [])}


def test_clear_leaves_nested_caches_out_and_counts_each(nest: Nest) -> None:
    before = nest.left()
    dry = nest.run("--json", "clear", "--dry-run")
    assert dry.exit_code == 0, dry.output
    document = json.loads(dry.stdout)
    assert document["removed"] == len(MAIN)
    assert nested_counts(document) == {"data": 3, "thumbnail": 1}
    assert "elsewhere" not in dry.stdout  # on another database: not a sibling
    assert nest.left() == before  # the dry run changed nothing

    text = nest.run("clear", "--dry-run")
    assert "would leave out 4 keys of nested caches (data 'pkg_data_' 3, thumbnail" in text.stdout

    done = nest.run("clear", "--yes")
    assert done.exit_code == 0, done.output
    assert "left out 4 keys of nested caches" in done.stdout
    assert nest.left() == set(DATA + THUMBNAIL + OUTSIDE)
    assert nest.other_db.exists("pkg_other_1")


def test_include_nested_takes_them_too(nest: Nest) -> None:
    done = nest.run("--json", "clear", "--yes", "--include-nested")
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert document["removed"] == len(MAIN + DATA + THUMBNAIL)
    assert "nested" not in document
    assert nest.left() == set(OUTSIDE)


def test_keys_and_stats_leave_nested_caches_out(nest: Nest) -> None:
    listed = nest.run("keys")
    assert sorted(listed.stdout.split()) == ["a", "b", "other_x", "view//about"]
    assert "left out 4 keys of nested caches" in listed.stderr
    everything = nest.run("keys", "--include-nested")
    assert len(everything.stdout.split()) == len(MAIN + DATA + THUMBNAIL)

    counted = json.loads(nest.run("--json", "keys", "--count").stdout)
    assert counted["count"] == len(MAIN)
    assert nested_counts(counted) == {"data": 3, "thumbnail": 1}
    listed_json = json.loads(nest.run("--json", "keys", "data_*").stdout)
    assert listed_json["keys"] == [] and nested_counts(listed_json)["data"] == 3

    stats = json.loads(nest.run("--json", "stats").stdout)
    assert stats["total"] == len(MAIN) and stats["kinds"]["views"] == 1
    assert nested_counts(stats) == {"data": 3, "thumbnail": 1}
    sampled = json.loads(nest.run("--json", "stats", "--sample", "1").stdout)
    assert sampled["total"] == len(MAIN) and nested_counts(sampled) == {"data": 3, "thumbnail": 1}
    whole = json.loads(nest.run("--json", "stats", "--include-nested").stdout)
    assert whole["total"] == len(MAIN + DATA + THUMBNAIL)
    text = nest.run("stats")
    assert "4 keys under the prefix 'pkg_'" in text.stdout
    assert "left out 4 keys of nested caches" in text.stdout


def test_delete_pattern_and_exclude_with_nested_caches(nest: Nest) -> None:
    dry = json.loads(nest.run("--json", "delete", "--pattern", "*", "--dry-run").stdout)
    assert dry["removed"] == len(MAIN) and nested_counts(dry) == {"data": 3, "thumbnail": 1}
    # pkg_other_x is the main cache's: the cache under pkg_other_ lives on another db.
    gone = nest.run("delete", "--pattern", "other*", "--yes")
    assert gone.exit_code == 0, gone.output
    assert not nest.main.exists("pkg_other_x") and nest.other_db.exists("pkg_other_1")

    both = json.loads(nest.run("--json", "clear", "--dry-run", "--exclude", "a*").stdout)
    assert both["excluded"] == 1 and both["exclude"] == [{"glob": "a*", "matched": 1}]
    assert both["removed"] == 2 and nested_counts(both) == {"data": 3, "thumbnail": 1}
    assert both["warnings"] == []
    gone = nest.run("clear", "--yes", "--include-nested", "--pattern", "data_*")
    assert gone.exit_code == 0 and not nest.main.exists("pkg_data_1")


def test_a_server_without_scripting_keeps_the_same_keys(nest: Nest) -> None:
    """The client-side step (no EVAL for this user) keeps and counts as the Lua step."""
    nest.main.acl_setuser(
        "noscript",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=["+@all", "-@scripting"],
    )
    url = nest.url.replace("redis://", "redis://noscript:pw@")
    dry = nest.run("--json", "--url", url, "clear", "--dry-run", "--exclude", "b")
    assert dry.exit_code == 0, dry.output
    document = json.loads(dry.stdout)
    assert document["removed"] == 2 and document["excluded"] == 1  # a, view//about
    # --url applies to every named cache, so elsewhere is now on this db too
    assert nested_counts(document) == {"data": 3, "thumbnail": 1, "elsewhere": 1}
    done = nest.run("--url", url, "clear", "--yes")
    assert done.exit_code == 0, done.output
    assert nest.left() == set(DATA + THUMBNAIL + OUTSIDE + [b"pkg_other_x"])


def test_a_sibling_possibly_on_the_same_server_is_kept_and_said(nest: Nest) -> None:
    port = nest.url.split(":")[2].split("/")[0]
    db = nest.url.rsplit("/", 1)[1]
    write_config(
        nest.config,
        nest.url,
        nest.other_url,
        f"""\
        [caches.maybe]
        CACHE_KEY_PREFIX = "pkg_vi"
        CACHE_REDIS_URL = "redis://no-such-host.invalid:{port}/{db}"
        """,
    )
    # the installed command, as an operator runs it
    done = run_console("--config", str(nest.config), "--json", "clear", "--dry-run")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    maybe = next(entry for entry in document["nested"] if entry["cache"] == "maybe")
    assert maybe["same_server"] == "possibly" and maybe["left_out"] == 1
    text = run_console("--config", str(nest.config), "clear", "--dry-run")
    assert b"maybe 'pkg_vi' 1 (possibly the same server)" in text.stdout


def test_flush_db_with_nested_caches_needs_include_nested(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_URL = "{redis_target.url}"\n'
        'CACHE_KEY_PREFIX = ""\n[caches.data]\nCACHE_KEY_PREFIX = "data_"\n'
    )
    redis_target.client.set("data_1", b"1")
    refused = run("--config", str(config), "clear", "--flush-db", "--yes")
    assert refused.exit_code == 2 and "--include-nested" in refused.stderr
    assert redis_target.client.exists("data_1")


APP_SOURCE = """\
from flask import Flask
from flask_caching import Cache

cache = Cache()
data_cache = Cache()
thumbnail_cache = Cache()
other_db_cache = Cache()


def create_app():
    app = Flask(__name__)
    base = {{"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": "{url}"}}
    cache.init_app(app, {{**base, "CACHE_KEY_PREFIX": "pkg_"}})
    data_cache.init_app(app, {{**base, "CACHE_KEY_PREFIX": "pkg_data_"}})
    thumbnail_cache.init_app(app, {{**base, "CACHE_KEY_PREFIX": "pkg_thumbnail_"}})
    other = {{**base, "CACHE_REDIS_URL": "{other_url}", "CACHE_KEY_PREFIX": "pkg_other_"}}
    other_db_cache.init_app(app, other)
    return app
"""


def write_app(directory: Path, url: str, other_url: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "nestapp.py").write_text(APP_SOURCE.format(url=url, other_url=other_url))
    return directory


def test_an_apps_caches_are_its_siblings(nest: Nest, tmp_path: Path) -> None:
    # localhost for the other db: another spelling of the same server, still another db
    other_url = nest.other_url.replace("127.0.0.1", "localhost")
    root = write_app(tmp_path / "app", nest.url, other_url)
    args = ["--app", "nestapp:create_app()", "--cache", "nestapp:cache"]
    dry = run_console(*args, "--json", "clear", "--dry-run", cwd=root)
    assert dry.returncode == 0, dry.stderr
    document = json.loads(dry.stdout)
    assert document["removed"] == len(MAIN)
    assert nested_counts(document) == {"nestapp:data_cache": 3, "nestapp:thumbnail_cache": 1}
    keys = run_console(*args, "keys", "--include-nested", cwd=root)
    assert len(keys.stdout.split()) == len(MAIN + DATA + THUMBNAIL)
    done = run_console(*args, "clear", "--yes", cwd=root)
    assert done.returncode == 0, done.stderr
    assert nest.left() == set(DATA + THUMBNAIL + OUTSIDE)


def test_the_same_server_rule() -> None:
    def tcp(host: str, port: int = 6380, db: int = 0) -> Location:
        return Location("tcp", frozenset({(host, port)}), db)

    assert compare(tcp("127.0.0.1"), tcp("127.0.0.1")).outcome == SAME
    assert compare(tcp("localhost"), tcp("127.0.0.1")).outcome == SAME  # resolves alike
    assert compare(tcp("127.0.0.1"), tcp("127.0.0.1", db=1)).outcome == DIFFERENT
    assert compare(tcp("127.0.0.1"), tcp("127.0.0.1", 6381)).outcome == DIFFERENT
    assert compare(tcp("no-such-host.invalid"), tcp("127.0.0.1")).outcome == POSSIBLY
    unix = Location("unix", frozenset(), 0, "/run/redis.sock")
    assert compare(unix, tcp("127.0.0.1")).outcome == POSSIBLY
    assert compare(unix, unix).outcome == SAME
    one = Location("cluster", frozenset({("10.0.0.1", 7000), ("10.0.0.2", 7000)}), 0)
    two = Location("cluster", frozenset({("10.0.0.2", 7000), ("10.0.0.3", 7000)}), 0)
    assert compare(one, two).outcome == SAME
    assert compare(one, tcp("10.0.0.1", 7000)).outcome == DIFFERENT
    master = Location("sentinel", frozenset({("10.0.0.9", 26379)}), 0, "mymaster")
    assert compare(master, master._replace(name="other")).outcome == DIFFERENT
    assert compare(master, tcp("10.0.0.1")).outcome == POSSIBLY
    assert compare(None, tcp("127.0.0.1")).outcome == DIFFERENT


def test_the_question_names_every_sibling(nest: Nest) -> None:
    from tests.test_console import _run_on_terminal

    code, screen = _run_on_terminal(["--config", str(nest.config), "clear"], b"n\n")
    assert code == 1
    assert "leaving out the nested caches data ('pkg_data_')" in " ".join(screen.split())
    assert "thumbnail ('pkg_thumbnail_')" in screen
    assert nest.main.exists("pkg_a")


def test_a_cluster_named_by_another_node_is_the_same_keyspace(tmp_path: Path) -> None:
    """Each primary swept client-side (per key); the sibling's cache names another node
    of the same cluster, which its node list shows to be one keyspace."""
    from tests.servers import start_redis_cluster

    nodes = start_redis_cluster(primaries=3, replicas=0)
    try:
        client = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        for n in range(30):
            client.set(f"pkg_k{n}", b"1")
            client.set(f"pkg_data_{n}", b"1")
        config = tmp_path / "cluster.toml"
        config.write_text(
            f'CACHE_TYPE = "RedisClusterCache"\nCACHE_REDIS_CLUSTER = "127.0.0.1:{nodes[0].port}"\n'
            f'CACHE_KEY_PREFIX = "pkg_"\n[caches.data]\nCACHE_KEY_PREFIX = "pkg_data_"\n'
            f'CACHE_REDIS_CLUSTER = "127.0.0.1:{nodes[1].port}"\n'
        )
        done = run("--config", str(config), "--json", "clear", "--yes")
        document = json.loads(done.stdout)
        assert document["removed"] == 30, done.output
        assert nested_counts(document) == {"data": 30}
        left = client.keys("*", target_nodes=redis.RedisCluster.PRIMARIES)
        assert sorted(left) == sorted(f"pkg_data_{n}".encode() for n in range(30))
        client.close()
    finally:
        for node in nodes:
            node.stop()
