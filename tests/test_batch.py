"""cachectl batch: many commands in one process, each line as it would run on its own."""

from __future__ import annotations

import json

from tests.conftest import RedisTarget, run


def test_make_fragment_key_delete_has_a_dry_run(redis_target: RedisTarget) -> None:
    """Fragment lines of a batch or a group have a dry run like the other invalidations."""
    target = ["--url", redis_target.url, "--key-prefix", "app_"]
    key = json.loads(run(*target, "--json", "make-fragment-key", "footer").stdout)["key"]
    redis_target.client.set("app_" + key, b"1")
    dry = run(*target, "--json", "make-fragment-key", "footer", "--delete", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout) == {
        "ok": True, "key": key, "stored_as": "app_" + key, "removed": None, "dry_run": True
    }  # fmt: skip
    assert redis_target.client.exists("app_" + key)
    assert run(*target, "make-fragment-key", "footer", "--dry-run").exit_code == 2
    gone = run(*target, "make-fragment-key", "footer", "--delete")
    assert gone.exit_code == 0 and not redis_target.client.exists("app_" + key)
