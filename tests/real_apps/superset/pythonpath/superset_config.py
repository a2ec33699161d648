"""A Superset deployment's superset_config.py, as Superset's docs describe one.

On PYTHONPATH (as Superset's Docker image puts /app/pythonpath), so Superset reads it
with ``from superset_config import *`` and it is an importable module. The caches are
on Redis (the tests' private server, from REALAPP_REDIS_URL), the metadata database
is SQLite (REALAPP_SUPERSET_DB). DATASET_HEALTH_CHECK is the memoized health check
Superset's config.py documents, with its invalidation (``delete_memoized``) done by
the deployment when the check changes.
"""

import os

from superset.extensions import cache_manager

SECRET_KEY = "real-app-lane-not-a-secret-0123456789abcdef"
SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.environ["REALAPP_SUPERSET_DB"]
# The test client logs in with a form post.
WTF_CSRF_ENABLED = False

_REDIS_URL = os.environ["REALAPP_REDIS_URL"]


def _redis_cache(prefix: str) -> dict:
    return {
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": _REDIS_URL,
        "CACHE_KEY_PREFIX": prefix,
        "CACHE_DEFAULT_TIMEOUT": 86400,
    }


CACHE_CONFIG = _redis_cache("superset_")
DATA_CACHE_CONFIG = _redis_cache("superset_data_")
FILTER_STATE_CACHE_CONFIG = _redis_cache("superset_filter_state_")
EXPLORE_FORM_DATA_CACHE_CONFIG = _redis_cache("superset_explore_form_data_")


@cache_manager.cache.memoize(timeout=0)
def DATASET_HEALTH_CHECK(datasource):
    if datasource.sql:
        return "This virtual dataset could be replaced by querying the table directly."
    return None
