"""Lines of ``delete-memoized --each`` and ``show-memoized --each`` from the outside world: a
line too long, a NUL byte, bytes that are not UTF-8, a line a shell would not split, JSON
that is not a call. Each is refused with its line named, one error line, exit 2, and
nothing deleted (the first line, a fine call, is read before the bad one)."""

from __future__ import annotations

import re

from tests.fuzz.corpus import USAGE, Corpus

#: A function not importable here, named with its signature, under a decided generation:
#: each line's key can be formed config-only.
CALL = ("nowhere.models.get_user", "--signature", "(user_id, role='member')")


def add_cases(c: Corpus) -> None:
    hostile: list[tuple[str, bytes, str]] = [
        ("huge-line", b"1\n" + b"9" * (1 << 20) + b"\n", "longer than 1,048,576 bytes"),
        ("no-line-break", b"1\n" + b"'" + b"x" * (3 << 20), "longer than 1,048,576 bytes"),
        ("nul", b"1\n2\x00\n", "a NUL byte"),
        ("not-utf8", b"1\n\xff\xfe\n", "not UTF-8 text"),
        ("lone-surrogate-bytes", b"1\n'\xed\xa0\x80'\n", "not UTF-8 text"),
        ("semicolon", b"1\n2; clear --yes\n", "';'"),
        ("dollar", b"1\n$ID\n", "'\\$'"),
        ("unclosed-quote", b"1\n'2\n", "no closing single quote"),
        ("no-arguments", b"1\n--\n", "no arguments"),
        ("unknown-option", b"1\n2 --purge\n", "No such option"),
        ("does-not-fit", b"1\n1 2 3\n", "the arguments do not fit"),
        ("not-a-literal", b"1\n'f(1)'\n", "neither a Python literal nor a bare word"),
    ]
    for command in ("delete-memoized", "show-memoized"):
        for name, data, says in hostile:
            c.add(
                f"each-{command}-{name}",
                command,
                "redis",
                USAGE,
                "an --each line that is not a call: refused with its line, nothing deleted",
                globals_=("--compat", "2.5"),
                args=(command, *CALL, "--each", "-"),
                stdin=data,
                must_match=(r"standard input, line 2: ", says),
            )
    json_lines: list[tuple[str, bytes, str]] = [
        ("not-json", b"[1]\n[1,\n", "not JSON"),
        ("scalar", b"[1]\n42\n", "not int"),
        ("deep", b"[1]\n" + b"[" * 200_000 + b"\n", "nested too deeply"),
        ("star-not-array", b'[1]\n{"*": 1}\n', re.escape('"*" holds the positional')),
        ("bad-name", b'[1]\n{"a b": 1}\n', "is not a parameter name"),
    ]
    for name, data, says in json_lines:
        c.add(
            f"each-json-{name}",
            "delete-memoized",
            "redis",
            USAGE,
            "an --each-format json line that is not a call: refused with its line",
            globals_=("--compat", "2.5"),
            args=("delete-memoized", *CALL, "--each", "calls.jsonl", "--each-format", "json"),
            files={"calls.jsonl": data},
            must_match=(r"calls.jsonl, line 2: ", says),
        )
    c.add(
        "each-with-args",
        "delete-memoized",
        "redis",
        USAGE,
        "ARGs beside --each: the calls are the file's lines",
        globals_=("--compat", "2.5"),
        args=("delete-memoized", *CALL, "7", "--each", "-"),
        stdin=b"1\n",
        must_match=("ARGs does not go with --each",),
    )
    c.add(
        "each-format-without-each",
        "show-memoized",
        "redis",
        USAGE,
        "--each-format alone means nothing",
        args=("show-memoized", *CALL, "--each-format", "json"),
        must_match=(re.escape("--each-format applies to --each"),),
    )
