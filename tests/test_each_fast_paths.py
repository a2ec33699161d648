"""The shortcuts ``delete-memoized --each`` takes for 100,000 lines give what the long way
gives: lines read a chunk at a time against the same lines read one at a time (the
refusals included, with their line and byte), a line of one plain word against the full
shell reading, a call of positional arguments against the general key derivation (whose
own keys the oracle tests check against Flask-Caching) and its arity against binding.
Pure and in-process: no server."""

from __future__ import annotations

import hashlib
import inspect
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cachectl import keys
from cachectl.app.functions import MemoizedFunction
from cachectl.cli import memoized_each as cli_each
from cachectl.errors import UsageError
from cachectl.operations import memoized_each as each_ops

SETTINGS = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def line_by_line(stream: io.BufferedReader, source: str, stopped: str) -> Any:
    """Lines read one at a time with ``readline``: how ``read_lines`` read them before it
    read chunks, kept here as the reference."""
    number = 0
    limit = each_ops.MAX_LINE_BYTES
    while True:
        raw = stream.readline(limit + 1)
        if not raw:
            return
        number += 1
        if len(raw) > limit:
            raise each_ops.refusal(source, number, f"longer than {limit:,} bytes", stopped)
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        nul = raw.find(b"\0")
        if nul >= 0:
            raise each_ops.refusal(source, number, f"a NUL byte (byte {nul + 1})", stopped)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8 text (byte {exc.start + 1})"
            raise each_ops.refusal(source, number, reason, stopped) from None
        stripped = text.lstrip(" \t")
        if stripped and not stripped.startswith("#"):
            yield number, text


def outcome(lines: Any) -> tuple[list[tuple[int, str]], str | None]:
    """What a reader yields, and the refusal it stops with (None: it read to the end)."""
    read: list[tuple[int, str]] = []
    try:
        for line in lines:
            read.append(line)
    except UsageError as exc:
        return read, exc.message
    return read, None


PIECES = [b"1", b"42", b"abc", b" ", b"\t", b"#", b"\n", b"\r", b"\r\n", b"\0", b"\xc3",
          b"\xa9", b"\xe2\x82\xac", b"\xff", b"'x y'", b"x" * 7]  # fmt: skip


@SETTINGS
@given(
    data=st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join),
    chunk=st.integers(1, 12),
    limit=st.integers(1, 16),
)
@example(data=b"1\n2" + b"9" * 20, chunk=4, limit=8)
@example(data=b"1234567\n", chunk=3, limit=8)
@example(data=b"12345678\n", chunk=3, limit=8)
@example(data=b"12345678", chunk=3, limit=8)
def test_chunks_read_as_lines_did(
    monkeypatch: pytest.MonkeyPatch, data: bytes, chunk: int, limit: int
) -> None:
    monkeypatch.setattr(each_ops, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(each_ops, "MAX_LINE_BYTES", limit)

    def stream() -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(data), buffer_size=max(chunk, 2))

    expected = outcome(line_by_line(stream(), "f", "nothing was deleted"))
    assert outcome(each_ops.read_lines(stream(), "f", "nothing was deleted")) == expected


def test_a_fault_after_a_bad_call_is_not_reached() -> None:
    """Lines are checked in order even within one chunk: a call that does not parse stops
    the run at its own line, before the NUL byte of a later line is looked at."""
    stream = io.BufferedReader(io.BytesIO(b"1\n'open\n3\n4\x00\n"))
    with pytest.raises(UsageError) as raised:
        list(cli_each.numbered_arguments(stream, "shell", "f", "nothing was deleted"))
    assert raised.value.message.startswith("f, line 2: cannot split it")


WORD_CHARACTERS = "0123456789abcxyzé_.-+@:/ \t'\"\\#$`;&|<>()[]{},=*?~!%^\x0c\r"


@SETTINGS
@given(text=st.text(alphabet=WORD_CHARACTERS, min_size=1, max_size=12))
@example(text="0")
@example(text="007")
@example(text="1" * 32)
@example(text="True")
@example(text="  12\t")
@example(text="-5")
@example(text="1_000")
def test_one_word_lines_read_as_shell_words(text: str) -> None:
    """A line the one-word shortcut takes means what the full reading makes of it: the
    same arguments, of the same types, or the same refusal."""
    data = text.encode() + b"\n"
    read = list(each_ops.read_lines(io.BufferedReader(io.BytesIO(data)), "f", "s"))
    if not read or cli_each._ONE_WORD.fullmatch(read[0][1]) is None:
        return  # a blank line or a comment, or not one plain word: not the shortcut's
    try:
        expected: Any = cli_each._words_call(read[0][1])
    except UsageError as exc:
        expected = exc.message
    try:
        [(_, args, kwargs, instance)] = cli_each.numbered_arguments(
            io.BufferedReader(io.BytesIO(data)), "shell", "f", "s"
        )
        got: Any = (args, kwargs, instance)
    except UsageError as exc:
        got = exc.message.removeprefix("f, line 1: ").removesuffix("; s")
    assert got == expected
    if isinstance(got, tuple):
        assert [type(arg) for arg in got[0]] == [type(arg) for arg in expected[0]]


EMPTY = inspect.Parameter.empty
DEFAULTS = [EMPTY, None, 0, "", False, 5, "x", (1, 2), True]
names = st.sampled_from(["a", "b", "c", "d", "session", "user_id"])


@st.composite
def signatures(draw: Any) -> keys.CallSignature:
    first = draw(st.sampled_from([None, "self", "cls"]))
    rest = draw(st.lists(names, unique=True, max_size=4))
    parameters = ([first] if first else []) + rest
    defaults = [draw(st.sampled_from(DEFAULTS)) for _ in parameters]
    # No parameter without a default after one with (as Python has it).
    seen_default = False
    positional = []
    for name, default in zip(parameters, defaults):
        if name in ("self", "cls"):
            default = EMPTY
        seen_default = seen_default or default is not EMPTY
        positional.append((name, default if default is not EMPTY or not seen_default else 0))
    return keys.CallSignature(positional=tuple(positional), has_var_positional=draw(st.booleans()))


values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20), st.text(max_size=4),
                   st.tuples(st.integers(), st.text(max_size=2)))  # fmt: skip


@SETTINGS
@given(
    signature=signatures(),
    data=st.data(),
    generation=st.sampled_from(["2.5", "legacy"]),
    ignore=st.lists(st.sampled_from(["self", "cls", "a", "b", "session"]), max_size=2),
    source=st.sampled_from([None, "def f(a):\n    return a\n"]),
)
def test_positional_keys_are_the_general_keys(
    signature: keys.CallSignature,
    data: st.DataObject,
    generation: str,
    ignore: list[str],
    source: str | None,
) -> None:
    """Every call that binds, with either generation's rule for defaults, ignored
    parameters given or left out, an instance or class id first: the same key as
    ``memoize_key_arguments`` and ``memoize_entry_key`` form it."""
    first_id = "Person(7)" if signature.first in ("self", "cls") else None
    form = keys.PositionalKeys(
        signature, generation, "shop.get", "AbCdEfGhIjKl", hashlib.sha256,
        source=source, ignore=ignore, first_id=first_id,
    )  # fmt: skip
    function = MemoizedFunction("shop", "Person.get", signature)
    fewest, most = function.positional_arity()
    for _ in range(3):
        count = data.draw(st.integers(fewest, min(most, fewest + 3)))
        args = tuple(data.draw(values) for _ in range(count))
        arguments = keys.memoize_key_arguments(signature, args, {}, generation, ignore, first_id)
        expected = keys.memoize_entry_key(
            "shop.get", arguments, "AbCdEfGhIjKl", hashlib.sha256, source
        )
        assert form.key(args) == expected


@SETTINGS
@given(signature=signatures(), count=st.integers(0, 7))
def test_positional_arity_is_what_binding_allows(signature: keys.CallSignature, count: int) -> None:
    """Between the fewest and the most, a call of that many positional arguments binds;
    outside, it does not (``check_call`` then binds it, and refuses it)."""
    function = MemoizedFunction("shop", "Person.get", signature)
    fewest, most = function.positional_arity()
    leading = (None,) if signature.first in ("self", "cls") else ()
    try:
        function._binding_signature(signature).bind(*leading, *range(count))
        binds = True
    except TypeError:
        binds = False
    assert (fewest <= count <= most) == binds
    if not binds:
        with pytest.raises(UsageError):
            function.check_call(tuple(range(count)), {})
