"""App mode on Sentinel, Cluster and TLS: the connection is read back from the live backend.

Each cache's settings reach Flask-Caching only through ``init_app(app, config)``,
so nothing in ``app.config`` says where it lives: a cachectl that guessed would
connect to the defaults (localhost:6379, sentinels on 26379) instead.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_console, run_python
from tests.servers import (
    start_redis_cluster,
    start_sentinel_set,
    start_tls_redis,
    stop_all,
    wait_for_cluster,
)

SENTINEL_PASSWORD = "watch-pw"

APP_SOURCE = """
import json
import os

from flask import Flask
from flask_caching import Cache

cache = Cache()


def create_app():
    app = Flask(__name__)
    cache.init_app(app, json.loads(os.environ["TOPOLOGY_CACHE_CONFIG"]))
    return app
"""


@pytest.fixture(scope="module")
def topologies() -> Iterator[dict[str, dict]]:
    """One cache config per topology, as the app would pass it to init_app."""
    cluster = start_redis_cluster(primaries=3)
    sentinels = start_sentinel_set(SENTINEL_PASSWORD, replicas=0)
    tls = start_tls_redis()
    try:
        wait_for_cluster(cluster)
        yield {
            "cluster": {
                "CACHE_TYPE": "RedisClusterCache",
                "CACHE_REDIS_CLUSTER": ",".join(f"127.0.0.1:{n.port}" for n in cluster),
                "CACHE_KEY_PREFIX": "topo_",
            },
            "sentinel": {
                "CACHE_TYPE": "RedisSentinelCache",
                "CACHE_REDIS_SENTINELS": [["127.0.0.1", s.port] for s in sentinels["sentinels"]],
                "CACHE_REDIS_SENTINEL_MASTER": "mymaster",
                "CACHE_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
                "CACHE_KEY_PREFIX": "topo_",
            },
            "tls": {
                "CACHE_TYPE": "RedisCache",
                "CACHE_REDIS_URL": f"rediss://127.0.0.1:{tls.port}/4",
                "CACHE_OPTIONS": {"ssl_ca_certs": tls.extra["ca"]},
                "CACHE_KEY_PREFIX": "topo_",
            },
        }
    finally:
        for node in cluster:
            node.stop()
        stop_all(sentinels)
        tls.stop()


@pytest.mark.parametrize("topology", ["cluster", "sentinel", "tls"])
def test_app_mode_connects_where_the_live_backend_does(
    tmp_path: Path, topologies: dict[str, dict], topology: str
) -> None:
    (tmp_path / "topoapp.py").write_text(textwrap.dedent(APP_SOURCE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env["TOPOLOGY_CACHE_CONFIG"] = json.dumps(topologies[topology])
    stored = run_python(
        "-c", "import topoapp\napp = topoapp.create_app()\n"
        "with app.app_context(): topoapp.cache.set('where', 'the app put it')",
        cwd=tmp_path, env=env, text=True,
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr

    app = "topoapp:create_app()"
    got = run_console("--app", app, "get", "where", cwd=tmp_path, env=env)
    assert got.stdout == b"the app put it\n", got.stderr

    shown = json.loads(run_console("--app", app, "--json", "config", cwd=tmp_path, env=env).stdout)
    settings = {name: entry["value"] for name, entry in shown["settings"].items()}
    assert settings["CACHE_TYPE"] == topologies[topology]["CACHE_TYPE"]
    # Read back from the client the app built, not from the settings it was given.
    location = {"cluster": "CACHE_REDIS_CLUSTER", "sentinel": "CACHE_REDIS_SENTINELS"}
    source = shown["settings"][location.get(topology, "CACHE_REDIS_PORT")]["source"]
    assert source.endswith("live backend")
    if topology == "sentinel":
        assert settings["CACHE_REDIS_SENTINEL_PASSWORD"] == "****"
        assert sorted(map(tuple, settings["CACHE_REDIS_SENTINELS"])) == sorted(
            map(tuple, topologies[topology]["CACHE_REDIS_SENTINELS"])
        )
    if topology == "tls":
        assert settings["CACHE_OPTIONS"]["ssl"] is True
        assert settings["CACHE_REDIS_DB"] == 4

    cleared = run_console("--app", app, "clear", "--yes", cwd=tmp_path, env=env)
    assert cleared.returncode == 0, cleared.stderr
    gone = run_console("--app", app, "get", "where", cwd=tmp_path, env=env)
    assert gone.returncode == 1
