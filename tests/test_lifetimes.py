"""ttl, expire, persist and prune against real servers and real cache directories, with a
real Flask-Caching app (and Flask-Caching 1.10's own reads) as the judge of the values."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisTarget, oracle_app, run
from tests.servers import ServerProcess, free_port, start_redis_cluster

# --- Redis --------------------------------------------------------------------------------


def redis_args(target: RedisTarget) -> list[str]:
    return ["--url", target.url, "--key-prefix", "app_"]


def redis_app(target: RedisTarget):
    return oracle_app(
        {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": target.url, "CACHE_KEY_PREFIX": "app_"}
    )


def test_redis_ttl_reports_seconds_none_and_missing(redis_target: RedisTarget) -> None:
    app, cache = redis_app(redis_target)
    with app.app_context():
        cache.set("soon", "v", timeout=120)
        cache.set("forever", "v", timeout=0)
    redis_target.client.set("soon", b"outside the prefix")  # never looked at

    one = run(*redis_args(redis_target), "ttl", "soon")
    assert one.exit_code == 0 and one.stdout in ("120\n", "119\n"), one.output

    several = run(*redis_args(redis_target), "--json", "ttl", "soon", "forever", "sooon")
    assert several.exit_code == 1  # a mistyped key: as get of several keys
    results = json.loads(several.stdout)["results"]
    assert [(r["key"], r["found"], r["state"]) for r in results][1:] == [
        ("forever", True, "none"),
        ("sooon", False, "missing"),
    ]
    assert 110 < results[0]["ttl"] <= 120 and results[1]["ttl"] is None

    text = run(*redis_args(redis_target), "ttl", "forever", "sooon")
    assert text.exit_code == 1
    assert text.stdout.split("\n")[:2] == ["forever  none", "sooon    missing"]


def test_redis_expire_and_persist_change_the_ttl_on_the_server_only(
    redis_target: RedisTarget,
) -> None:
    app, cache = redis_app(redis_target)
    with app.app_context():
        cache.set("report", {"rows": [1, 2]}, timeout=0)
    redis_target.client.set("report", b"another app's key")

    expired = run(*redis_args(redis_target), "expire", "report", "300")
    assert expired.exit_code == 0, expired.output
    assert 290 < redis_target.client.ttl("app_report") <= 300
    assert redis_target.client.ttl("report") == -1  # the same name outside the prefix
    with app.app_context():
        assert cache.get("report") == {"rows": [1, 2]}  # the app still reads its value

    persisted = run(*redis_args(redis_target), "--json", "persist", "report")
    assert json.loads(persisted.stdout) == {"ok": True, "key": "report", "found": True, "ttl": None}
    assert redis_target.client.ttl("app_report") == -1
    # persist of a key that already never expires: found, nothing to change, exit 0
    assert run(*redis_args(redis_target), "persist", "report").exit_code == 0
    with app.app_context():
        assert cache.get("report") == {"rows": [1, 2]}


@pytest.mark.parametrize("command", [["expire", "reprot", "60"], ["persist", "reprot"]])
def test_a_missing_key_is_exit_1_with_one_line_and_nothing_created(
    redis_target: RedisTarget, command: list[str]
) -> None:
    result = run(*redis_args(redis_target), *command)
    assert result.exit_code == 1
    assert result.stderr == "not found: reprot (nothing changed)\n"
    assert redis_target.client.dbsize() == 0
    as_json = run(*redis_args(redis_target), "--json", *command)
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == {"ok": False, "key": "reprot", "found": False, "ttl": None}


def test_expire_refuses_zero_which_means_two_things(redis_target: RedisTarget) -> None:
    redis_target.client.set("app_k", b"1")
    result = run(*redis_args(redis_target), "expire", "k", "0")
    assert result.exit_code == 2 and "persist" in result.stderr and "delete" in result.stderr
    assert redis_target.client.get("app_k") == b"1"


def test_prune_refuses_redis_before_anything(redis_target: RedisTarget) -> None:
    result = run(*redis_args(redis_target), "prune", "--dry-run")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: prune is for FileSystemCache")


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[ServerProcess]]:
    nodes = start_redis_cluster(primaries=3, replicas=0)
    yield nodes
    for node in nodes:
        node.stop()


def test_cluster_ttl_expire_persist_reach_each_keys_node(cluster: list[ServerProcess]) -> None:
    args = ["--type", "RedisClusterCache", "--key-prefix", "shop_"]
    args += ["-o", "CACHE_REDIS_CLUSTER=" + ",".join(f"127.0.0.1:{n.port}" for n in cluster)]
    client = redis.RedisCluster(host="127.0.0.1", port=cluster[0].port)
    keys = [f"user:{n}" for n in range(6)]  # spread over the slots of all three primaries
    for key in keys:
        client.set(f"shop_{key}", b"1")
    for key in keys:
        assert run(*args, "expire", key, "500").exit_code == 0
    assert all(490 < client.ttl(f"shop_{key}") <= 500 for key in keys)
    assert run(*args, "persist", keys[0]).exit_code == 0
    document = json.loads(run(*args, "--json", "ttl", *keys[:2], "nobody").stdout)
    assert [r["state"] for r in document["results"]][::2] == ["none", "missing"]
    assert 490 < document["results"][1]["ttl"] <= 500
    client.close()


# --- memcached ----------------------------------------------------------------------------


@pytest.fixture(params=["pylibmc", "python-memcached"])
def client_library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python-memcached":
        monkeypatch.setitem(sys.modules, "pylibmc", None)  # as if it were not installed
    return request.param


def server_ttl(address: str, key: str) -> str:
    """The server's own word on a key's lifetime: the meta command ``mg KEY t``."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"mg {key} t\r\n".encode())
        return sock.recv(256).decode().strip()


def test_memcached_expire_and_persist_touch_the_key(
    memcached_address: str, client_library: str
) -> None:
    args = ["--type", "MemcachedCache", "--key-prefix", "app_"]
    args += ["-o", f'CACHE_MEMCACHED_SERVERS=["{memcached_address}"]']
    app, cache = oracle_app(
        {
            "CACHE_TYPE": "MemcachedCache",
            "CACHE_MEMCACHED_SERVERS": [memcached_address],
            "CACHE_KEY_PREFIX": "app_",
        }
    )
    with app.app_context():
        cache.set("banner", "Back at 10:00", timeout=0)
    assert server_ttl(memcached_address, "app_banner") == "HD t-1"

    assert run(*args, "expire", "banner", "600").exit_code == 0
    seconds = int(server_ttl(memcached_address, "app_banner").split("t")[-1])
    assert 590 < seconds <= 601
    assert run(*args, "persist", "banner").exit_code == 0
    assert server_ttl(memcached_address, "app_banner") == "HD t-1"
    with app.app_context():
        assert cache.get("banner") == "Back at 10:00"

    # past 2038 memcached would drop the item while answering TOUCHED: refused
    too_late = run(*args, "expire", "banner", "2000000000")
    assert too_late.exit_code == 2 and "2038" in too_late.stderr
    assert server_ttl(memcached_address, "app_banner") == "HD t-1"

    missing = run(*args, "expire", "baner", "60")
    assert (missing.exit_code, missing.stderr) == (1, "not found: baner (nothing changed)\n")

    assert run(*args, "prune").exit_code == 2


def memcached_time(address: str) -> int:
    """The Unix time a memcached server believes it is (``stats`` ``time``)."""
    import memcache

    client = memcache.Client([address])
    try:
        return int(client.get_stats()[0][1]["time"])
    finally:
        client.disconnect_all()


def test_memcached_ttl_asks_the_one_server_with_mg(
    memcached_address: str, client_library: str
) -> None:
    args = ["--type", "MemcachedCache", "--key-prefix", "app_"]
    args += ["-o", f'CACHE_MEMCACHED_SERVERS=["{memcached_address}"]']
    assert run(*args, "set", "soon", "v", "--ttl", "300").exit_code == 0
    assert run(*args, "set", "forever", "v", "--ttl", "0").exit_code == 0

    read = run(*args, "--json", "ttl", "soon", "forever", "sooon")
    assert read.exit_code == 1
    results = json.loads(read.stdout)["results"]
    # cachelib sends an absolute Unix time, which memcached turns into its own clock
    # (monotonic since it started): a wall clock stepped since then (a virtual
    # machine's often is) moves the TTL memcached reports by as much. Its "stats time"
    # shows that step.
    stepped = time.time() - memcached_time(memcached_address)
    assert 290 < results[0]["ttl"] - stepped <= 302  # memcached's clock ticks in seconds
    assert [r["state"] for r in results[1:]] == ["none", "missing"]

    # Two servers: which one holds a key is the client library's choice.
    two = f'CACHE_MEMCACHED_SERVERS=["{memcached_address}", "127.0.0.1:{free_port()}"]'
    refused = run("--type", "MemcachedCache", "-o", two, "ttl", "soon")
    assert refused.exit_code == 2 and len(refused.stderr.splitlines()) == 1
    assert refused.stderr.startswith("error: memcached cannot say how long a key has left")


def test_spread_memcached_touches_every_chunk_of_a_value(sasl_memcached_address: str) -> None:
    from tests.test_sasl_memcached import sasl_args, sasl_settings

    cache_type = "SpreadSASLMemcachedCache"
    app, cache = oracle_app(sasl_settings(sasl_memcached_address, cache_type))
    big = "x" * 3_000_000  # three chunks: big.0, big.1, big.2
    with app.app_context():
        cache.set("big", big, timeout=0)
    args = sasl_args(sasl_memcached_address, cache_type)

    assert run(*args, "expire", "big", "600").exit_code == 0
    assert run(*args, "persist", "big").exit_code == 0
    with app.app_context():
        assert cache.get("big") == big
    assert run(*args, "expire", "bgi", "600").exit_code == 1
    refused = run(*args, "ttl", "big")  # SASL: the binary protocol has no mg
    assert refused.exit_code == 2 and "SASL" in refused.stderr


# --- FileSystemCache ----------------------------------------------------------------------


def fs_app(directory: Path):
    return oracle_app({"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": str(directory)})


#: The Flask-Caching the oracle app runs (2.3 or 2.4 on Python 3.9 and 3.10): its release
#: names the files (sha256 from 2.5, md5 before) and is the --compat cachectl is given.
RELEASE = ".".join(importlib.metadata.version("flask-caching").split(".")[:2])
FILE_HASH = hashlib.sha256 if tuple(map(int, RELEASE.split("."))) >= (2, 5) else hashlib.md5


def file_of(directory: Path, key: str, hash_method=FILE_HASH) -> Path:
    return directory / hash_method(key.encode()).hexdigest()


def test_filesystem_expire_and_persist_rewrite_the_header_only(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    app, cache = fs_app(directory)
    with app.app_context():
        cache.set("report", {"rows": [1, 2]}, timeout=0)
    path = file_of(directory, "report")
    value_bytes = path.read_bytes()[4:]
    args = ["--dir", str(directory), "--compat", RELEASE]

    assert run(*args, "ttl", "report").stdout == "none\n"
    assert run(*args, "expire", "report", "3600").exit_code == 0
    data = path.read_bytes()
    assert data[4:] == value_bytes
    assert 3590 < struct.unpack("I", data[:4])[0] - time.time() <= 3600
    assert 3590 < int(run(*args, "ttl", "report").stdout) <= 3600
    with app.app_context():
        assert cache.get("report") == {"rows": [1, 2]}

    assert run(*args, "persist", "report").exit_code == 0
    assert path.read_bytes() == b"\0\0\0\0" + value_bytes
    with app.app_context():
        assert cache.get("report") == {"rows": [1, 2]}

    missing = run(*args, "expire", "reprot", "60")
    assert missing.exit_code == 1 and missing.stderr.startswith("not found: reprot")
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [path.name, file_of(directory, "__wz_cache_count").name]
    )


def pickled_file(value: object, expires: int) -> bytes:
    """As Flask-Caching <= 1.10 writes a file: ``pickle.dump(expiry, f, 1)``, then the value."""
    return pickle.dumps(expires, 1) + pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def read_as_flask_caching_110(path: Path) -> tuple[int, object]:
    """What Flask-Caching 1.10's FileSystemCache.get does with a file: two pickle loads."""
    with path.open("rb") as stream:
        return pickle.load(stream), pickle.load(stream)


def test_flask_caching_110_files_keep_their_value_and_format(tmp_path: Path) -> None:
    directory = tmp_path / "fc110"
    directory.mkdir()
    forever = file_of(directory, "forever", hashlib.md5)
    soon = file_of(directory, "soon", hashlib.md5)
    forever.write_bytes(pickled_file([1, 2], 0))  # "K\0.": the expiry is one byte wide
    soon.write_bytes(pickled_file("text", int(time.time()) + 300))  # "J" and 4 bytes
    os.chmod(forever, 0o640)
    value_of = {path: read_as_flask_caching_110(path)[1] for path in (forever, soon)}
    args = ["--dir", str(directory), "--compat", "1.10"]

    # 0 fits in soon's 4-byte BININT: rewritten in place, same length
    before = soon.read_bytes()
    assert run(*args, "persist", "soon").exit_code == 0
    assert soon.read_bytes() == b"J\0\0\0\0" + before[5:]
    assert read_as_flask_caching_110(soon) == (0, "text")
    # a time does not fit in forever's one byte: the file is written anew, value bytes copied
    assert run(*args, "expire", "forever", "900").exit_code == 0
    expires, value = read_as_flask_caching_110(forever)
    assert 890 < expires - time.time() <= 900 and value == [1, 2]
    assert forever.read_bytes().endswith(pickle.dumps([1, 2], pickle.HIGHEST_PROTOCOL))
    assert os.stat(forever).st_mode & 0o777 == 0o640
    assert {path: read_as_flask_caching_110(path)[1] for path in value_of} == value_of
    document = json.loads(run(*args, "--json", "ttl", "soon", "forever").stdout)
    states = [r["state"] for r in document["results"]]
    assert states[0] == "none" and 890 < int(states[1]) <= 900
    assert not any(p.name.endswith(".__wz_cache") for p in directory.iterdir())


def test_an_expired_file_is_missing_and_is_not_revived(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    app, cache = fs_app(directory)
    with app.app_context():
        cache.set("old", "v", timeout=60)
    path = file_of(directory, "old")
    data = path.read_bytes()
    path.write_bytes(struct.pack("I", int(time.time()) - 5) + data[4:])
    args = ["--dir", str(directory), "--compat", RELEASE]

    assert run(*args, "ttl", "old").stdout == "missing\n"
    assert run(*args, "persist", "old").exit_code == 1
    assert struct.unpack("I", path.read_bytes()[:4])[0] < time.time()


def test_prune_removes_expired_cache_files_and_nothing_else(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    app, cache = fs_app(directory)
    with app.app_context():
        for n in range(5):
            cache.set(f"k{n}", n, timeout=0 if n == 4 else 600)
    past = struct.pack("I", int(time.time()) - 60)
    expired = [file_of(directory, f"k{n}") for n in range(3)]
    for path in expired:
        path.write_bytes(past + path.read_bytes()[4:])
    # Other files, some whose first bytes read like an expired cachelib header.
    foreign = {"notes.txt": past + b"notes", "data.csv": past + b"a,b", "ABCDEF": past}
    for name, data in foreign.items():
        (directory / name).write_bytes(data)
    (directory / ("0" * 64 + ".bak")).write_bytes(past)
    args = ["--dir", str(directory), "--compat", RELEASE]

    dry = run(*args, "--json", "prune", "--dry-run")
    assert json.loads(dry.stdout)["removed"] == 3 and all(p.exists() for p in expired)

    done = run(*args, "prune")
    assert done.exit_code == 0
    assert done.stdout == f"removed 3 expired cache files from directory {directory}\n"
    assert not any(p.exists() for p in expired)
    assert all((directory / name).read_bytes() == data for name, data in foreign.items())
    assert (directory / ("0" * 64 + ".bak")).exists()
    with app.app_context():
        assert [cache.get(f"k{n}") for n in range(5)] == [None, None, None, 3, 4]
        # the item count the app prunes by went down with the files
        assert cache.cache._file_count == 2
    assert json.loads(run(*args, "--json", "prune").stdout)["removed"] == 0
