"""Usage errors that must teach: a misspelled command names the closest one, and a global
option written after the command says it goes before the command (never Click's guess
at the subcommand's nearest option). Each is exit 2 with one ``error:`` line, in plain
and JSON mode, and a value given to the misplaced option (a URL with a password) is
never echoed."""

from __future__ import annotations

import re

from tests.fuzz.corpus import SECRET, USAGE, Corpus


def add_cases(c: Corpus) -> None:
    misspelled: list[tuple[str, tuple[str, ...], str]] = [
        ("delte", ("delte", "k"), "delete"),
        ("stat", ("stat",), "stats"),
        ("memoised", ("delete-memoised", "shop.price"), "delete-memoized"),
        ("invalidat", ("invalidat", "prices"), "invalidate"),
        ("kyes", ("kyes", "--count"), "keys"),
    ]
    for name, argv, suggestion in misspelled:
        c.add(
            f"usage-misspelled-{name}",
            "(usage)",
            "none",
            USAGE,
            f"a typo of {suggestion}: name it",
            args=argv,
            must_match=(re.escape(f"did you mean {suggestion}?"),),
        )

    password_url = f"redis://:{SECRET}@127.0.0.1:{{dead_port}}/0"
    misplaced: list[tuple[str, tuple[str, ...], str]] = [
        ("url", ("get", "--url", "{redis_url}", "k"), "--url URL get"),
        ("url-password", ("get", "k", "--url", password_url), "--url URL get"),
        ("url-equals", ("delete", f"--url={password_url}", "k"), "--url URL delete"),
        ("key-prefix", ("keys", "--key-prefix", "shop_"), "--key-prefix PREFIX keys"),
        ("option", ("set", "k", "v", "-o", "CACHE_KEY_PREFIX=x"), "-o NAME=VALUE set"),
        ("dir", ("clear", "--yes", "--dir", "{tmp}/fscache"), "--dir DIR clear"),
        ("config", ("config", "--config", "{tmp}/none.toml"), "--config FILE config"),
        ("app", ("stats", "--app", "shop:create_app()"), "--app IMPORT stats"),
        ("cache", ("stats", "--cache", "all"), "--cache NAME stats"),
        ("env", ("get", "--env", "k"), "--env get"),
        ("timeout", ("ttl", "k", "--timeout", "2"), "--timeout SECONDS ttl"),
        ("audit", ("delete", "k", "--audit-required"), "--audit-required delete"),
    ]
    for name, argv, placed in misplaced:
        option = placed.split()[0]
        c.add(
            f"usage-global-after-command-{name}",
            "(usage)",
            "none",
            USAGE,
            f"{option} after the command: say that it goes before it",
            args=argv,
            must_match=(
                re.escape(f"{option} is a global option: put it before the command: ")
                + re.escape(f"cachectl {placed} ..."),
            ),
        )
