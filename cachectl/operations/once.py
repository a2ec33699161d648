"""``--once-per ID``: a change a whole fleet runs, done by one run only.

Every host of a fleet runs the same deploy hook (``cachectl --once-per "$RELEASE" clear``).
The first run with an ID claims it on the cache server the command targets (the backend's
``claim_once``: ``SET NX PX``, memcached ``add``, an exclusive create) and does the work;
every other run with that ID, on any host, changes nothing, exits 0 and says which run
claimed it and when. The claim holds a small JSON record of that run (host, pid, user,
time, the command line masked as the audit log masks it, when it expires) and lives
``--once-ttl`` seconds. A run that fails gives its claim back (``release``), only while the
marker still holds its own record, so a retry can run.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cachectl.backends import CacheBackend

#: ``--once-ttl``'s default: a week, longer than any rollout of one release.
DEFAULT_TTL = 7 * 24 * 3600
#: memcached reads a lifetime over 30 days as a date in 1970 (gone at once): the bound
#: for every server, so one ID behaves alike whatever the cache.
MAX_TTL = 30 * 24 * 3600
#: Characters in an ID: a release name, a commit, a ticket; not a document.
MAX_ID_LENGTH = 200


def id_problem(once_id: str) -> str | None:
    """Why ``once_id`` cannot name a claim (None when it can): empty, too long, or
    holding a control character or bytes that are not UTF-8, which no log line or
    terminal shows as they are."""
    if not once_id.strip():
        return "is empty: give the release or change this run must do once"
    if len(once_id) > MAX_ID_LENGTH:
        return f"is {len(once_id):,} characters; at most {MAX_ID_LENGTH}"
    if not once_id.isprintable():
        return f"holds a control character or bytes that are not UTF-8: {once_id!r}"[:300]
    return None


@dataclass
class OnceClaim:
    """One run's claim of an ID: ``claimed`` when this run holds it and does the work;
    else ``claimant`` is the record of the run that holds it."""

    once_id: str
    ttl: int
    record: dict[str, Any]
    claimed: bool
    claimant: dict[str, Any] = field(default_factory=dict)
    released: bool = False

    @property
    def value(self) -> str:
        """The record as the marker holds it (compared byte for byte on release)."""
        return json.dumps(self.record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    def document(self) -> dict[str, Any]:
        """What the audit line and ``--json`` say of the claim."""
        shown = {"id": self.once_id, "ttl": self.ttl, "claimed": self.claimed}
        if not self.claimed:
            shown["claimed_by"] = _public(self.claimant)
        if self.released:
            shown["released"] = True
        return shown

    def skipped_line(self) -> str:
        """The one line a run that did nothing prints."""
        return f"--once-per {self.once_id!r}: {claimant_text(self.claimant)}; nothing done"


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A claim's record without its token (which only tells our claim from another)."""
    return {name: value for name, value in record.items() if name != "token"}


def claimant_text(record: dict[str, Any]) -> str:
    """``claimed by alice@web-3 (pid 123) at 2026-... : clear --yes``."""
    if "unreadable" in record:
        return _one_line(
            f"claimed by a run whose record is not cachectl's: {record['unreadable']!r}"
        )
    who = f"{record.get('user', '?')}@{record.get('host', '?')} (pid {record.get('pid', '?')})"
    text = f"claimed by {who} at {record.get('time', '?')}"
    if record.get("command"):
        text += f": cachectl {record['command']}"
    return _one_line(text)


def _one_line(text: str) -> str:
    """A record read from the server, shown on one line: anything unprintable escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _parsed(held: str) -> dict[str, Any]:
    try:
        record = json.loads(held)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return {"unreadable": held[:200]}
    return {str(name): value for name, value in record.items()}


def claim(backend: CacheBackend, once_id: str, ttl: int, argv: Sequence[str]) -> OnceClaim:
    """Claim ``once_id`` on ``backend``'s server for ``ttl`` seconds, for the run whose
    command line, masked, is ``argv``."""
    import datetime

    from cachectl.runtime.audit import who_and_where

    now = time.time()
    moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    record = {
        **who_and_where(),
        "time": moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "expires": int(now) + ttl,
        "command": shlex.join(argv),
        "token": uuid.uuid4().hex,
    }
    attempt = OnceClaim(once_id, ttl, record, claimed=False)
    held = backend.claim_once(once_id, attempt.value, ttl)
    attempt.claimed = held is None
    if held is not None:
        attempt.claimant = _parsed(held)
    return attempt


def release(backend: CacheBackend, held: OnceClaim) -> bool:
    """Give back a claim this run holds, if the marker still holds its record."""
    if not held.claimed or held.released:
        return False
    held.released = backend.release_once(held.once_id, held.value)
    return held.released


def keep(backend: CacheBackend, held: OnceClaim) -> bool:
    """After the work: the marker is there again (for what is left of its lifetime) if
    the command removed it with the whole server's keys (``clear --flush-db``, ``clear
    --flush-all``), so the ID stays done; False when another run claimed it meanwhile."""
    left = max(1, int(held.record["expires"] - time.time()))
    again = backend.claim_once(held.once_id, held.value, left)
    return again is None or again == held.value
