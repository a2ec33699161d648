"""stats --by-function and show-memoized's counts: what a real Flask-Caching app stored,
attributed to its memoized functions, view paths and fragment names, on real Redis and
memcached servers; and the server-side census labelling keys as the client does."""

from __future__ import annotations

import json
import pickle
from importlib.metadata import version
from typing import Any

import pytest
import redis
from flask import render_template_string
from flask_caching import Cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachectl.backends.base import Tally
from cachectl.backends.redis_census import CensusRequest, take_census
from cachectl.backends.redis_census import _census_from_client as census_from_client
from cachectl.backends.statistics import Census
from tests.conftest import RedisTarget, oracle_app, run
from tests.servers import ServerProcess, start_redis

cache = Cache()
MODULE = __name__
#: Flask-Caching before 2.5 (the 3.9 and 3.10 lanes run 2.3 and 2.4).
LEGACY = tuple(int(part) for part in version("flask-caching").split(".")[:2]) < (2, 5)


class Basket:
    def __init__(self, number: int) -> None:
        self.number = number

    def __repr__(self) -> str:
        return f"Basket({self.number})"

    @cache.memoize(600)
    def total(self, discount: int) -> int:
        return self.number * 100 - discount


@cache.memoize(3600)
def price(item: int, currency: str = "EUR") -> int:
    return item * 10


@cache.memoize(0)
def catalogue(page: int) -> list[int]:
    return list(range(page))


def populate(config: dict[str, Any]) -> None:
    """What a shop's workers leave in the cache, through the real library: a function
    invalidated once (its old results orphaned), a method with one instance
    invalidated, results that never expire, views (one with a query string),
    fragments with and without vary_on, a plain key."""
    app, _ = oracle_app(config)
    cache.init_app(app, config=config)

    @app.route("/user/<int:number>")
    @cache.cached(120)
    def user(number: int) -> str:
        return f"user {number}"

    @app.route("/search")
    @cache.cached(60, query_string=True)
    def search() -> str:
        return "found"

    @app.route("/page/<int:number>")
    def page(number: int) -> str:
        return render_template_string(
            '{% cache 300, "sidebar", n|string %}side {{ n }}{% endcache %}'
            '{% cache 300, "user_menu" %}menu{% endcache %}',
            n=number,
        )

    with app.app_context():
        for item in range(30):
            price(item)
        cache.delete_memoized(price)  # the 30 results now belong to no version
        for item in range(12):
            price(item, "USD")
        for number in range(3):
            for discount in range(4):
                Basket(number).total(discount)
        cache.delete_memoized(Basket(0).total)  # a new version for that instance only
        Basket(0).total(1)
        Basket(0).total(2)
        for page_number in range(3):
            catalogue(page_number)
        cache.delete_memoized(catalogue)  # before 2.5, the new version expires in 300 s
        for page_number in range(3):
            catalogue(page_number)
        cache.set("plain", 1)
    client = app.test_client()
    for number in range(5):
        client.get(f"/user/{number}")
    for query in ("a", "b", "c", "d"):
        client.get(f"/search?q={query}")
    for number in range(6):
        client.get(f"/page/{number}")


def by_function(*args: str) -> dict[str, Any]:
    result = run(*args, "--json", "stats", "--by-function", "--top", "0")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def rows(document: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {
        row["function"].removeprefix(MODULE + "."): (row["entries"], row["old_entries"])
        for row in document["functions"]
    }


def check_attribution(document: dict[str, Any]) -> None:
    assert rows(document) == {"price": (12, 0), "Basket.total": (10, 4), "catalogue": (3, 0)}
    assert document["unknown_function"]["entries"] == 33
    assert {view["path"]: view["entries"] for view in document["views"]} == {
        "/user": 5,
        "/search": 4,
    }
    assert {f["name"]: f["entries"] for f in document["fragments"]} == {
        "sidebar": 6,
        "user_menu": 1,
    }
    # price, catalogue, Basket.total and the instance versions of Basket(0), (1), (2)
    assert document["version_keys"] == 6
    assert document["other"]["entries"] == 1
    functions = {row["function"].removeprefix(MODULE + "."): row for row in document["functions"]}
    assert functions["Basket.total"]["instances"] == 3
    assert functions["catalogue"]["ttl"] == {"no expiry": 3}
    assert functions["price"]["ttl"] == {"< 1 hour": 12}  # stored for 3600 s
    if LEGACY:
        # Before 2.5 a version written by delete_memoized takes the default timeout
        # (300 s): the version of a function whose results never expire goes first,
        # and takes them all with it.
        assert functions["price"]["version_ttl"] <= 300
        assert functions["catalogue"]["version_ttl"] <= 300
        assert functions["catalogue"]["outliving_version_key"] == 3
        assert [row["function"] for row in document["versions_expiring_first"]] == [
            f"{MODULE}.catalogue"
        ]
    else:
        assert 3500 < functions["price"]["version_ttl"] <= 3600
        assert functions["catalogue"]["version_ttl"] is None
        assert functions["catalogue"]["outliving_version_key"] == 0
        assert document["versions_expiring_first"] == []


def test_redis_results_are_counted_by_function_view_and_fragment(
    redis_target: RedisTarget,
) -> None:
    config = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_target.url}
    populate({**config, "CACHE_KEY_PREFIX": "shop_"})
    redis_target.client.set("elsewhere", b"x")  # outside the prefix: never counted
    document = by_function("--url", redis_target.url, "--key-prefix", "shop_")
    check_attribution(document)
    assert document["examined"] == 12 + 14 + 3 + 33 + 9 + 7 + 6 + 1

    # Memory: every key of a small cache is measured, so each function's figure is the
    # sum of what the server says its results use.
    client = redis_target.client
    row = next(r for r in document["functions"] if r["function"] == f"{MODULE}.price")
    entries = list(client.scan_iter(f"shop_{'?' * 16}{row['version']}"))
    assert len(entries) == 12
    assert row["memory_bytes"] == sum(client.memory_usage(name, samples=0) for name in entries)
    assert document["memory"]["sampled_keys"] == document["examined"]


def test_the_largest_come_first_and_top_cuts_each_list(redis_target: RedisTarget) -> None:
    populate({"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_target.url})
    result = run("--url", redis_target.url, "--json", "stats", "--by-function", "--top", "1")
    document = json.loads(result.stdout)
    assert [row["function"] for row in document["functions"]] == [f"{MODULE}.Basket.total"]
    assert (document["functions_listed"], document["functions_found"]) == (1, 3)
    assert len(document["views"]) == len(document["fragments"]) == 1
    text = run("--url", redis_target.url, "stats", "--by-function", "--top", "2").stdout
    assert "the 2 largest of 3 functions" in text
    assert "unknown function: 33 results" in text


def test_show_memoized_reports_memory_ttls_and_old_instance_results(
    redis_target: RedisTarget,
) -> None:
    populate({"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_target.url})
    args = ["--url", redis_target.url, "--json", "show-memoized"]
    method = json.loads(run(*args, f"{MODULE}.Basket.total").stdout)
    assert (method["current_entries"], method["old_entries"]) == (10, 4)
    assert method["current_memory_bytes"] > 0 and method["old_memory_bytes"] > 0
    assert method["current_ttl"] == {"< 1 hour": 10}
    one = json.loads(run(*args, f"{MODULE}.Basket.total", "--instance", "Basket(0)").stdout)
    assert one["current_entries"] == 2
    function = json.loads(run(*args, f"{MODULE}.price").stdout)
    assert (function["current_entries"], function["old_entries"]) == (12, 0)


def test_memcached_results_are_counted_by_function(memcached_address: str, library: str) -> None:
    config = {
        "CACHE_TYPE": "MemcachedCache",
        "CACHE_MEMCACHED_SERVERS": [memcached_address],
        "CACHE_KEY_PREFIX": "shop_",
    }
    populate(config)
    servers = json.dumps([memcached_address])
    document = by_function(
        "--type", "MemcachedCache", "-o", f"CACHE_MEMCACHED_SERVERS={servers}",
        "-o", 'CACHE_KEY_PREFIX="shop_"',
    )  # fmt: skip
    check_attribution(document)
    # the crawler reports every item's size: exact, nothing extrapolated
    assert all(row["memory_sampled_keys"] == row["entries"] for row in document["functions"])


def test_where_no_function_can_be_told_it_says_so(tmp_path: Any, redis_target: RedisTarget) -> None:
    refused = run("--dir", str(tmp_path), "stats", "--by-function")
    assert refused.exit_code == 2
    assert "cannot tell which function" in refused.stderr
    assert refused.stderr.count("\n") == 1
    for args, why in (
        (["stats", "--top", "3"], "--top applies to --by-function"),
        (["stats", "--by-function", "--sample", "9"], "--sample applies to plain stats"),
    ):
        result = run("--url", redis_target.url, *args)
        assert result.exit_code == 2 and why in result.stderr


# --- the census inside Redis labels keys as the client does ----------------------------

#: Key shapes near every rule's edges: versions, entries of one and two versions (and one
#: character off), views with and without query digests, fragments with vary_on values.
EDGE_NAMES = [
    b"mod.f_memver", b"_memver", b"memver", b"x_memve",
    b"AAAAAAAAAAAAAAAAbbbbbb", b"AAAAAAAAAAAAAAAAbbbbbbcccccc", b"AAAAAAAAAAAAAAAAbbbbb",
    b"AAAAAAAAAAAAAAA-bbbbbb", b"+/=AAAAAAAAAAAAAbbbbbb",
    b"view//", b"view//user/1", b"view//search" + b"ab" * 32, b"view//feed" + b"0" * 32,
    b"view//x" + b"f" * 40, b"view//y" + b"e" * 128, b"view//z" + b"a" * 31, b"view/",
    b"view/relative/path", b"/search" + b"a" * 32, b"/a/b" + b"c" * 40, b"/x" + b"1" * 31,
    b"/" + b"f" * 32, b"_template_fragment_cache_", b"_template_fragment_cache_sidebar",
    b"_template_fragment_cache_sidebar_42_en", b"_template_fragment_cache_user_menu",
    b"_template_fragment_cache_index.html12", b"\xff\xfe_memver", b"view//\xff/a", b"",
    b"view//" + b"p" * 70_000, b"_template_fragment_cache_" + b"n" * 70_000 + b"_1",
]  # fmt: skip


@pytest.fixture(scope="module")
def census_server() -> Any:
    server = start_redis()
    yield server
    server.stop()


def both_censuses(
    server: ServerProcess, names: list[bytes], detail: bool = True
) -> tuple[Census, Census, Census]:
    """The census of ``names`` (under a prefix) by the server's script, by the client's
    path, and as ``census_label`` makes it name by name."""
    client = redis.Redis(port=server.port)
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for number, name in enumerate(names):
        pipe.set(b"p:" + name, b"!" + pickle.dumps(number), ex=30 if number % 2 else None)
    pipe.execute()
    client.set(b"q:unrelated", b"x")
    request = CensusRequest("p:*", 2, 1, detail=detail)
    by_script = take_census(client, request, Tally())
    by_client = Census()
    census_from_client(client, request, by_client, Tally())
    expected = Census()
    for name in set(names):
        expected.add_key(name, 30 if names.index(name) % 2 else None, 0, detail)
    return by_script, by_client, expected


def tallies(census: Census) -> dict[bytes, tuple[int, list[int], int]]:
    return {
        label: (tally.count, tally.lifetimes, tally.memory_sampled)
        for label, tally in census.groups.items()
    }


def test_the_script_and_the_client_label_the_edge_cases_alike(
    census_server: ServerProcess,
) -> None:
    by_script, by_client, expected = both_censuses(census_server, EDGE_NAMES)
    assert tallies(by_script) == tallies(by_client) == tallies(expected)
    assert (
        by_script.versions.keys()
        == by_client.versions.keys()
        == {b"mod.f_memver", b"_memver", b"\xff\xfe_memver"}
    )
    labels = set(by_script.groups)
    assert {b"wview//search", b"w/search", b"w/feed", b"w/x", b"w/y", b"w/a"} & labels == {
        b"w/search",  # 2.5's view//search + digest, and before 2.5 /search + digest
        b"w/feed",
        b"w/x",
        b"w/y",
        b"w/a",
    }
    assert by_script.groups[b"w/search"].count == 2
    assert b"fsidebar" in labels and b"fuser_menu" in labels and b"eBBBBBB" not in labels

    # plain stats: the same keys by kind alone, no version values read
    by_script, by_client, expected = both_censuses(census_server, EDGE_NAMES, detail=False)
    assert tallies(by_script) == tallies(by_client) == tallies(expected)
    assert set(tallies(by_script)) == {b"v", b"e", b"w", b"f", b"o"}
    assert by_script.versions == by_client.versions == {}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(EDGE_NAMES).flatmap(
                lambda base: st.binary(max_size=4).map(lambda tail: base + tail)
            ),
            st.text(alphabet="AZaz09+/=_-", min_size=20, max_size=30).map(str.encode),
        ),
        min_size=1,
        max_size=60,
        unique=True,
    )
)
def test_the_script_and_the_client_label_any_name_alike(
    census_server: ServerProcess, names: list[bytes]
) -> None:
    by_script, by_client, expected = both_censuses(census_server, names)
    assert tallies(by_script) == tallies(by_client) == tallies(expected)


def test_a_user_who_may_not_run_scripts_gets_the_same_figures(
    census_server: ServerProcess,
) -> None:
    """Managed services often refuse EVAL: the census then runs from the client, and
    must say exactly what the server-side census says."""
    admin = redis.Redis(port=census_server.port)
    admin.flushall()
    admin.execute_command(
        "ACL", "SETUSER", "noscript", "on", ">noscript-pw", "~*", "+@all", "-@scripting"
    )
    url = f"redis://127.0.0.1:{census_server.port}/0"
    populate({"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url, "CACHE_KEY_PREFIX": "shop_"})
    by_script = by_function("--url", url, "--key-prefix", "shop_")
    limited = f"redis://noscript:noscript-pw@127.0.0.1:{census_server.port}/0"
    from_client = by_function("--url", limited, "--key-prefix", "shop_")
    assert by_script.pop("target") != from_client.pop("target")
    assert from_client == by_script
    check_attribution(from_client)
    debug = run("--url", limited, "--key-prefix", "shop_", "--debug", "stats", "--by-function")
    assert "counting from the client" in debug.stderr  # the path this test is about
    plain = run("--url", limited, "--key-prefix", "shop_", "--json", "stats")
    assert (
        json.loads(plain.stdout)["kinds"]
        == json.loads(run("--url", url, "--key-prefix", "shop_", "--json", "stats").stdout)["kinds"]
    )
