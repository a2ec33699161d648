"""Drive udata through its own code: its WSGI app (udata.wsgi, as deployed) and test client.

fill: identicons from udata's avatar API (``GET /api/1/avatars/<id>/<size>/``, a
flask-restx resource whose generate_pydenticon is memoized). The invalidations are
udata's own ``udata cache flush`` command (its function, run as the command runs it:
``cache.clear()``), and the ``delete_memoized`` an operator would run for one avatar,
done with udata's cache object.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from driver_protocol import claim_stdout, serve

replies = claim_stdout()  # before the app prints anything as it imports

from udata.wsgi import app  # noqa: E402

client = app.test_client()

AVATARS = [("alice", 32), ("alice", 64), ("bob", 32)]


def fill() -> list[int]:
    return [client.get(f"/api/1/avatars/{name}/{size}/").status_code for name, size in AVATARS]


def flush() -> None:
    """udata's `udata cache flush`: its own command, run by Flask's CLI runner on this app."""
    from udata.commands.cache import flush as flush_command

    ran = app.test_cli_runner().invoke(flush_command)
    assert ran.exit_code == 0, ran.output


def forget_avatar(name: str, size: int) -> None:
    from udata.app import cache
    from udata.core.avatars.api import generate_pydenticon

    with app.app_context():
        cache.delete_memoized(generate_pydenticon, name, size)


serve(replies, {"fill": fill, "flush": flush, "forget_avatar": forget_avatar})
