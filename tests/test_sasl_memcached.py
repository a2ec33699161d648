"""SASLMemcachedCache and SpreadSASLMemcachedCache against a real memcached with SASL."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SASL_PASSWORD, SASL_USER, oracle_app, run


def sasl_settings(address: str, cache_type: str, password: str = SASL_PASSWORD) -> dict:
    return {
        "CACHE_TYPE": cache_type,
        "CACHE_MEMCACHED_SERVERS": [address],
        "CACHE_MEMCACHED_USERNAME": SASL_USER,
        "CACHE_MEMCACHED_PASSWORD": password,
    }


def sasl_args(address: str, cache_type: str, password: str = SASL_PASSWORD) -> list[str]:
    return [
        "--type", cache_type,
        "-o", f'CACHE_MEMCACHED_SERVERS=["{address}"]',
        "-o", f"CACHE_MEMCACHED_USERNAME={SASL_USER}",
        "-o", f"CACHE_MEMCACHED_PASSWORD={password}",
    ]  # fmt: skip


@pytest.mark.parametrize("cache_type", ["SASLMemcachedCache", "SpreadSASLMemcachedCache"])
def test_values_cross_between_app_and_cachectl(
    sasl_memcached_address: str, cache_type: str
) -> None:
    app, cache = oracle_app(sasl_settings(sasl_memcached_address, cache_type))
    big = "x" * 3_000_000  # spread over several chunks by SpreadSASLMemcachedCache
    with app.app_context():
        cache.set("profile", {"name": "alice", "roles": ["admin"]})
        if cache_type == "SpreadSASLMemcachedCache":
            cache.set("big", big)

    args = sasl_args(sasl_memcached_address, cache_type)
    result = run(*args, "--json", "get", "profile")
    assert json.loads(result.stdout)["results"][0]["value"] == {"name": "alice", "roles": ["admin"]}
    if cache_type == "SpreadSASLMemcachedCache":
        assert len(
            json.loads(run(*args, "--json", "get", "big").stdout)["results"][0]["value"]
        ) == len(big)

    assert run(*args, "set", "flags", '{"beta": true}', "--as", "json").exit_code == 0
    with app.app_context():
        assert cache.get("flags") == {"beta": True}

    assert run(*args, "delete", "profile").exit_code == 0
    with app.app_context():
        assert cache.get("profile") is None
        assert cache.get("flags") == {"beta": True}

    assert run(*args, "clear", "--flush-all", "--yes").exit_code == 0
    with app.app_context():
        assert cache.get("flags") is None


def test_wrong_password_exits_3(sasl_memcached_address: str) -> None:
    result = run(*sasl_args(sasl_memcached_address, "SASLMemcachedCache", "wrong"), "get", "k")
    assert result.exit_code == 3
    assert "wrong" not in result.stderr


def test_planted_pickles_do_not_run_on_spread_values(sasl_memcached_address: str, tmp_path) -> None:
    from tests.test_safety import Planted

    marker = tmp_path / "pwned"
    app, cache = oracle_app(sasl_settings(sasl_memcached_address, "SpreadSASLMemcachedCache"))
    with app.app_context():
        cache.set("evil", Planted(marker))
    result = run(*sasl_args(sasl_memcached_address, "SpreadSASLMemcachedCache"), "get", "evil")
    assert "<not loaded: posix.system" in result.stdout
    assert not marker.exists()
