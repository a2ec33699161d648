"""``--once-per ID`` and ``--once-ttl``: hostile IDs and lifetimes stop before anything is
sent (exit 2, one ``error:`` line, the ID's control characters never reaching the
terminal), on each backend; a read given ``--once-per`` refuses it; the option written
after the command says it goes before it."""

from __future__ import annotations

import re

from tests.fuzz.corpus import BACKENDS, USAGE, Arg, Corpus

#: IDs no claim may carry: empty, blank, control characters, not UTF-8, too long.
BAD_IDS: list[tuple[str, Arg]] = [
    ("empty", ""),
    ("blank", "   "),
    ("newline", "rel\n42"),
    ("escape", "rel\x1b[2J42"),
    ("tab", "rel\t42"),
    ("not-utf8", b"rel-\xff"),
    ("201-chars", "r" * 201),
    ("70000-chars", "r" * 70_000),
]

#: Lifetimes that are not a whole number of seconds from 1 to 30 days.
BAD_TTLS = ["0", "-1", "nan", "inf", "1e3", "2592001", "99999999999999999999", ""]


def add_cases(c: Corpus) -> None:
    for backend in BACKENDS:
        for name, value in BAD_IDS:
            c.add(
                f"once-per-id-{name}-{backend}",
                "--once-per",
                backend,
                USAGE,
                "an ID no claim can carry: refused before the server is asked",
                globals_=("--once-per", value),
                args=("set", "k", "v"),
                must_match=(re.escape("--once-per"),),
            )
    for value in BAD_TTLS:
        c.add(
            f"once-ttl-{value or 'empty'}",
            "--once-per",
            "redis",
            USAGE,
            "a claim's lifetime that is not 1 to 2592000 whole seconds",
            globals_=("--once-per", "rel-1", "--once-ttl", value),
            args=("clear", "--yes"),
            must_match=(re.escape("--once-ttl"),),
        )
    c.add(
        "once-per-id-from-env-escape",
        "--once-per",
        "redis",
        USAGE,
        "CACHECTL_ONCE_PER holding a control character",
        args=("delete", "k"),
        env={"CACHECTL_ONCE_PER": "rel\x1b]0;owned\x07"},
        must_match=(re.escape("--once-per"),),
    )
    c.add(
        "once-per-on-a-read",
        "--once-per",
        "redis",
        USAGE,
        "a command that changes nothing cannot run once per anything",
        globals_=("--once-per", "rel-1"),
        args=("get", "k"),
        must_match=(re.escape("changes nothing: leave --once-per out"),),
    )
    c.add(
        "usage-global-after-command-once-per",
        "(usage)",
        "none",
        USAGE,
        "--once-per after the command: say that it goes before it",
        args=("clear", "--yes", "--once-per", "rel-1"),
        must_match=(re.escape("--once-per is a global option: put it before the command"),),
    )
