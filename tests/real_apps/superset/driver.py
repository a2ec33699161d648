"""Drive Apache Superset through its own code: its test client and REST API, logged in.

fill: the welcome page (Superset's memoized bootstrap data), a dashboard with two
native-filter states (Superset's filter-state cache, written by CreateFilterStateCommand
through ``POST /api/v1/dashboard/<pk>/filter_state``), and the deployment's memoized
DATASET_HEALTH_CHECK on two datasets. The invalidations are Superset's own:
``DELETE /api/v1/dashboard/<pk>/filter_state/<key>`` (DeleteFilterStateCommand, which
deletes the state and the session's contextual key) and the ``delete_memoized`` that
Superset's config.py tells a deployment to run when its health check changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from driver_protocol import claim_stdout, serve

replies = claim_stdout()  # before the app prints anything as it imports

from superset.app import create_app  # noqa: E402

app = create_app()
client = app.test_client()
state: dict[str, Any] = {}

FILTER_STATES = [{"region": "north"}, {"region": "south", "year": 2024}]


def fill() -> dict[str, Any]:
    import superset_config
    from superset.connectors.sqla.models import SqlaTable

    login = client.post("/login/", data={"username": "admin", "password": "admin"})
    assert login.status_code == 302, login.status_code
    assert client.get("/superset/welcome/").status_code == 200
    created = client.post("/api/v1/dashboard/", json={"dashboard_title": "Sales"})
    assert created.status_code == 201, created.json
    pk = created.json["id"]
    keys = []
    for tab_id, value in enumerate(FILTER_STATES, start=1):
        saved = client.post(
            f"/api/v1/dashboard/{pk}/filter_state?tab_id={tab_id}",
            json={"value": json.dumps(value)},
        )
        assert saved.status_code == 201, saved.json
        keys.append(saved.json["key"])
    with app.app_context():
        for table in (
            SqlaTable(table_name="orders"),
            SqlaTable(table_name="orders_north", sql="SELECT * FROM orders WHERE region = 'north'"),
        ):
            superset_config.DATASET_HEALTH_CHECK(table)
    state.update(pk=pk, keys=keys)
    return {"dashboard": pk, "filter_state_keys": keys}


def delete_filter_state(index: int) -> list[str]:
    """Superset's own deletion of a filter state; answers the cache keys its
    DeleteFilterStateCommand deletes, named by Superset's own cache_key(): the state, and
    the session's contextual key, which the delete endpoint forms without a tab id (its
    CommandParameters get none), so that one is never there."""
    from superset.temporary_cache.utils import cache_key

    pk, key, tab_id = state["pk"], state["keys"][index], index + 1
    with client.session_transaction() as session:
        session_id = session.get("_id")
    deleted = client.delete(f"/api/v1/dashboard/{pk}/filter_state/{key}?tab_id={tab_id}")
    assert deleted.status_code == 200, deleted.json
    return [cache_key(pk, key), cache_key(session_id, None, pk)]


def blow_health_check_cache() -> None:
    """What Superset's config.py documents for a changed DATASET_HEALTH_CHECK."""
    import superset_config
    from superset.extensions import cache_manager

    with app.app_context():
        cache_manager.cache.delete_memoized(superset_config.DATASET_HEALTH_CHECK)


serve(
    replies,
    {
        "fill": fill,
        "delete_filter_state": delete_filter_state,
        "blow_health_check_cache": blow_health_check_cache,
    },
)
