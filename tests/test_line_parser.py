"""The one line parser (cachectl.runtime.command_line): a batch line, a group's entry and an audit
line are split into words exactly as bash splits them, checked against bash itself."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachectl.runtime.audit import masked_line
from cachectl.runtime.command_line import LineSyntaxError, split_line

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def bash_words(line: str, cwd: Path) -> list[str]:
    """The words bash makes of ``line``, run in an empty directory (so that a glob
    matches nothing and stays as written) with no variables to expand."""
    assert BASH is not None
    done = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", 'printf "%s\\0" START ' + line],
        capture_output=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    words = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    assert words[0] == "START" and words[-1] == ""
    return words[1:-1]


TRICKY_LINES = [
    "delete user#42",
    "delete user #42",
    "delete user # the old one",
    "a#b c#d#",
    "'#'",
    '"#"',
    "\\#a",
    "a\\#b",
    '"a # b"',
    "'a # b'",
    "#at the start",
    "   # after blanks",
    "a\tb\t\tc",
    "a\t#tab before",
    "''",
    '""',
    "a '' b",
    'x ""#y',
    "''#y",
    "a'b'\"c\"d",
    "'it'\\''s'",
    '"a\\"b"',
    '"back\\\\slash"',
    '"\\q stays"',
    '"\\$ and \\`"',
    "back\\ slash\\ space",
    "--exclude LIMITER#*",
    "delete-view /tag/c#",
    "x*y? [z] a{b",
    "é ü \u2028 \x0c",
]


@needs_bash
@pytest.mark.parametrize("line", TRICKY_LINES)
def test_tricky_lines_split_as_bash_splits_them(line: str, tmp_path: Path) -> None:
    assert split_line(line) == bash_words(line, tmp_path)


def test_a_hash_inside_a_word_is_part_of_it() -> None:
    assert split_line("delete user#42") == ["delete", "user#42"]
    assert split_line("clear --exclude LIMITER#* --yes") == [
        "clear",
        "--exclude",
        "LIMITER#*",
        "--yes",
    ]
    assert split_line("delete user # user#42 stays") == ["delete", "user"]
    assert split_line("# only a comment") == []


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("delete 'open", "no closing single quote"),
        ('delete "open', "no closing double quote"),
        ("delete a; clear --yes", "';'"),
        ("delete a && clear", "'&'"),
        ("keys | delete", "'|'"),
        ("get a > out", "'>'"),
        ("delete-memoized f --signature (a)", "'('"),
        ("delete $KEY", "'$'"),
        ('delete "$KEY"', "'$'"),
        ("delete `whoami`", "backtick"),
        ("delete a\\", "ends with a backslash"),
        ("delete a\nclear", "line break"),
    ],
)
def test_what_a_shell_would_not_read_as_words_is_refused(line: str, says: str) -> None:
    with pytest.raises(LineSyntaxError, match=None) as caught:
        split_line(line)
    assert says in str(caught.value)


def test_what_is_quoted_is_taken_literally() -> None:
    assert split_line("delete 'a; b' \"c|d\" e\\&f '$HOME' \\$x") == [
        "delete",
        "a; b",
        "c|d",
        "e&f",
        "$HOME",
        "$x",
    ]


#: Characters a word may hold: plain ones, blanks, quotes, backslashes, '#', and those
#: a shell treats specially (quoted by shlex.quote, so taken literally).
WORD_CHARACTERS = st.sampled_from(list("abcXYZ019_-./:=@%+, \t#'\"\\;&|$`()<>*?[~{é\u2028\n"))
WORDS = st.lists(st.text(WORD_CHARACTERS, max_size=8), min_size=1, max_size=6)


@given(WORDS)
@settings(max_examples=300, deadline=None)
def test_words_quoted_by_shlex_join_come_back_unchanged(words: list[str]) -> None:
    """What cachectl writes (a batch line as shown, the audit log) reads back as it was."""
    assert split_line(shlex.join(words)) == words


def _quoted_three_ways(word: str) -> st.SearchStrategy[str]:
    """A word written as an operator might: in single quotes, in double quotes (with the
    backslashes bash needs there), or with each special character backslash-escaped."""
    double = '"' + "".join("\\" + c if c in '"\\$`' else c for c in word) + '"'
    escaped = "".join(c if c.isalnum() or c in "_-./:=@%+,é" else "\\" + c for c in word)
    forms = [shlex.quote(word), double]
    if "\n" not in word and word:  # an escaped line break continues the line
        forms.append(escaped)
    return st.sampled_from(forms)


@needs_bash
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_generated_lines_split_as_bash_splits_them(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    words = data.draw(st.lists(st.text(WORD_CHARACTERS, max_size=6), min_size=1, max_size=4))
    parts = [data.draw(_quoted_three_ways(word)) for word in words]
    blanks = [data.draw(st.sampled_from([" ", "\t", "  "])) for _ in parts]
    comment = data.draw(st.sampled_from(["", " # a comment", "\t#x y 'z"]))
    line = "".join(blank + part for blank, part in zip(blanks, parts)) + comment
    empty = tmp_path_factory.mktemp("bash")
    assert split_line(line) == bash_words(line, empty) == words


def test_the_audit_log_masks_a_set_value_after_a_hash_word() -> None:
    """The audit log reads a batch line with the same parser: the value of set is found
    even when the key holds a '#'."""
    assert masked_line(shlex.join(["set", "user#42", "secret value"])) == "set 'user#42' '<value>'"
    assert masked_line("delete 'open") == "<unreadable line>"
