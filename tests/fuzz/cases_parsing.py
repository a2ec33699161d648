"""Lines of text read as commands (batch files, invalidation groups) and key lists read
back (delete --from-file): what a shell would not read as words is refused with the line
named and nothing run, and an escape that means nothing is refused with its line."""

from __future__ import annotations

import re

from tests.fuzz.corpus import USAGE, Corpus


def add_cases(c: Corpus) -> None:
    refused_lines: list[tuple[str, bytes, str]] = [
        ("semicolon", b"delete a; clear --yes\n", "';'"),
        ("ampersand", b"delete a && clear --yes\n", "'&'"),
        ("pipe", b"keys | delete --from-file -\n", "'|'"),
        ("redirect", b"get a > out.txt\n", "'>'"),
        ("parenthesis", b"delete-memoized f 1 --signature (a)\n", "'\\('"),
        ("dollar", b"delete $KEY\n", "'\\$'"),
        ("dollar-in-double-quotes", b'delete "user:$ID"\n', "'\\$'"),
        ("backtick", b"delete `id`\n", "backtick"),
        ("continued", b"delete a \\\nb\n", "ends with a backslash"),
        ("unclosed-single", b"delete 'user#42\n", "no closing single quote"),
        ("unclosed-double", b'delete "user#42\n', "no closing double quote"),
    ]
    for name, text, says in refused_lines:
        c.add(
            f"parse-batch-{name}",
            "batch",
            "redis",
            USAGE,
            "a batch line a shell would not read as words: refused, nothing run",
            args=("batch", "deploy.txt"),
            files={"deploy.txt": b"set first 1\n" + text},
            must_match=(r"line 2: cannot split it as a shell would", says, "nothing was run"),
        )
    c.add(
        "parse-batch-stdin-semicolon",
        "batch",
        "redis",
        USAGE,
        "the same refusal for a batch read from standard input",
        args=("batch", "-"),
        stdin=b"set first 1\ndelete a;b\n",
        must_match=(r"standard input, line 2", "';'"),
    )
    c.add(
        "parse-group-semicolon",
        "invalidate",
        "none",
        USAGE,
        "a group entry a shell would not read as words: the file and group named",
        args=("invalidate", "prices", "--yes"),
        globals_=("--config", "{tmp}/cachectl.toml"),
        files={
            "cachectl.toml": b'CACHE_TYPE = "RedisCache"\n'
            b'CACHE_REDIS_URL = "{redis_url}"\n'
            b'[groups.prices]\nviews = ["/pricing; clear --yes"]\n'
        },
        must_match=(re.escape("group 'prices': views entry"), "';'"),
    )
    c.add(
        "parse-group-only-comment",
        "groups",
        "none",
        USAGE,
        "a group entry that is only a comment runs nothing: refused",
        args=("groups",),
        globals_=("--config", "{tmp}/cachectl.toml"),
        files={
            "cachectl.toml": b'CACHE_TYPE = "RedisCache"\n'
            b'CACHE_REDIS_URL = "{redis_url}"\n'
            b'[groups.prices]\nviews = ["# /pricing"]\n'
        },
        must_match=("is only a comment",),
    )
    bad_escapes: list[tuple[str, bytes]] = [
        ("unknown", b"user\\q\n"),
        ("short-hex", b"user\\x4\n"),
        ("trailing", b"user\\\n"),
    ]
    for name, text in bad_escapes:
        c.add(
            f"parse-from-file-escape-{name}",
            "delete",
            "redis",
            USAGE,
            "a key list with a backslash that starts no escape: the line named",
            args=("delete", "--from-file", "keys.txt"),
            files={"keys.txt": text},
            must_match=(r"--from-file, line 1: .* is no escape",),
        )
    c.add(
        "parse-null-without-from-file",
        "delete",
        "redis",
        USAGE,
        "--null reads --from-file; alone it means nothing",
        args=("delete", "--null", "k"),
        must_match=(re.escape("--null applies to --from-file"),),
    )
