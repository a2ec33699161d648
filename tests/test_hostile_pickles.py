"""Hostile values in the cache: ``get`` shows them without running anything, in bounded
time and memory.

Every case is a pickle an attacker who can write into the cache could plant, built here:
by hand from opcodes, or by ``pickle.dumps`` of objects whose ``__reduce__`` names what
to call. Each is stored as Flask-Caching's Redis backend stores a value (``b"!"`` +
pickle, under the app's prefix) and read back through the real CLI, as text and as
``--json``. Whatever the case, no payload may run, ``get`` must exit 0 (the value shown,
with placeholders and markers) or 2 with one ``error:`` line, never 4 and never with a
traceback, within 2 seconds and, for the bombs, 256 MB.

Each read is a console-script run of its own, forked from the tests' fork server
(``forked_or_started``): the kernel's peak resident set of that process, above what it shares
with the server, is the bomb's memory, measured in the read that is timed. The few cases
whose payload could show only inside the reading process (an environment variable, a global
of this module) or that need this process's copyreg registry are read in-process instead.
"""

from __future__ import annotations

import collections
import copyreg
import ctypes
import datetime
import functools
import importlib
import io
import json
import marshal
import operator
import os
import pickle
import pprint
import random
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cachectl.codec.limits import DecodeLimits
from tests.conftest import CONSOLE_SCRIPT, RedisTarget, forked_or_started, run

#: Set by payloads that reach this module (they must not).
PWNED = False
ENV_MARKER = "CACHECTL_HOSTILE_PICKLE_RAN"
MAX_SECONDS = 2.0
MAX_PEAK_BYTES = 256 * 1024 * 1024
LIMITS = DecodeLimits()


# --- building pickles ------------------------------------------------------------------------


class Reduce:
    """Pickles as ``func(*args)``: a call the unpickler is asked to make."""

    def __init__(self, func: object, *args: object) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args

    def __call__(self, *args: object) -> None:  # pickle wants the callable part callable
        raise AssertionError("never called")


def dumps(obj: object, protocol: int = 4) -> bytes:
    return pickle.dumps(obj, protocol)


def text_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def unicode(text: str | bytes) -> bytes:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def stack_global(module: str, name: str) -> bytes:
    return unicode(module) + unicode(name) + b"\x93"


def binint(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def long1(value: int) -> bytes:
    data = pickle.encode_long(value)  # type: ignore[attr-defined]
    return b"\x8a" + bytes([len(data)]) + data


def tuple_of(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` by REDUCE."""
    return func + tuple_of(*args) + b"R"


P2 = b"\x80\x02"
P4 = b"\x80\x04"
STOP = b"."


def memo_bomb(levels: int, fan: int, protocol: bytes = P2) -> bytes:
    """A "billion laughs": each level a list holding the previous one ``fan`` times,
    by memo reference, so a few bytes a level describe ``fan ** levels`` elements."""
    out = bytearray(protocol + b"]q\x00")
    for level in range(1, levels + 1):
        out += b"(" + (b"h" + bytes([level - 1])) * fan + b"lq" + bytes([level])
    return bytes(out + STOP)


def colliding_ints(count: int) -> list[int]:
    """Integers with one and the same hash: each dict insertion compares with all."""
    modulus = sys.hash_info.modulus
    return [k * modulus for k in range(1, count + 1)]


# --- the corpus -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], bytes]
    #: Built to exhaust time or memory: the read's peak memory is measured too.
    bomb: bool = False


CASES: dict[str, Case] = {}


def case(name: str, *, bomb: bool = False) -> Callable[[Callable[[Path], bytes]], None]:
    def register(build: Callable[[Path], bytes]) -> None:
        assert name not in CASES, name
        CASES[name] = Case(build, bomb)

    return register


def touch(tmp: Path) -> str:
    return f"touch {tmp / 'pwned'}"


def create_file_code(tmp: Path) -> str:
    return f"open({str(tmp / 'pwned')!r}, 'w').close()"


def add(name: str, build: Callable[[Path], bytes], bomb: bool = False) -> None:
    case(name, bomb=bomb)(build)


# Code execution through REDUCE, every protocol.
for _protocol in range(pickle.HIGHEST_PROTOCOL + 1):
    add(f"os.system-p{_protocol}", lambda t, p=_protocol: dumps(Reduce(os.system, touch(t)), p))
    add(
        f"subprocess.Popen-p{_protocol}",
        lambda t, p=_protocol: dumps(Reduce(subprocess.Popen, ["touch", str(t / "pwned")]), p),
    )
    add(f"eval-p{_protocol}", lambda t, p=_protocol: dumps(Reduce(eval, create_file_code(t)), p))
    add(f"exec-p{_protocol}", lambda t, p=_protocol: dumps(Reduce(exec, create_file_code(t)), p))

add("subprocess.run-shell", lambda t: dumps(Reduce(subprocess.run, touch(t), None, None, None)))
add(
    "subprocess.check_call",
    lambda t: dumps(Reduce(subprocess.check_call, ["touch", str(t / "pwned")])),
)
add("subprocess.getoutput", lambda t: dumps(Reduce(subprocess.getoutput, touch(t))))
add("builtins.open-write", lambda t: dumps(Reduce(open, str(t / "pwned"), "w")))
add("io.open-write", lambda t: dumps(Reduce(io.open, str(t / "pwned"), "w")))
add(
    "pathlib-touch",
    lambda t: dumps(Reduce(Reduce(getattr, Path(t / "pwned"), "touch"))),
)
add("shutil.rmtree", lambda t: dumps(Reduce(shutil.rmtree, str(t / "keep"))))
add("shutil.rmtree-p0", lambda t: dumps(Reduce(shutil.rmtree, str(t / "keep")), 0))
add("os.remove", lambda t: dumps(Reduce(os.remove, str(t / "keep" / "file"))))
add(
    "posix.system-text-global",
    lambda t: P2 + call(text_global("posix", "system"), unicode(touch(t))) + STOP,
)
add("nt.system", lambda t: P2 + call(text_global("nt", "system"), unicode(touch(t))) + STOP)
add(
    "posix.system-stack-global",
    lambda t: P4 + call(stack_global("posix", "system"), unicode(touch(t))) + STOP,
)
add(
    "builtins.eval-stack-global-framed",
    lambda t: (
        P4
        + b"\x95"
        + struct.pack("<Q", 0)
        + call(stack_global("builtins", "eval"), unicode(create_file_code(t)))
        + STOP
    ),
)
add(
    "py2-__builtin__.eval-p0",
    lambda t: b"c__builtin__\neval\n(V" + create_file_code(t).encode() + b"\ntR.",
)
add("classic-p0-os.system", lambda t: b"cos\nsystem\n(S'" + touch(t).encode() + b"'\ntR.")
add(
    "getattr-__import__-chain",
    lambda t: dumps(Reduce(Reduce(getattr, Reduce(__import__, "os"), "system"), touch(t))),
)
add(
    "getattr-__import__-chain-p0",
    lambda t: dumps(Reduce(Reduce(getattr, Reduce(__import__, "os"), "system"), touch(t)), 0),
)
add(
    "getattr-sys.modules",
    lambda t: dumps(
        Reduce(
            Reduce(
                getattr,
                Reduce(
                    Reduce(getattr, Reduce(getattr, Reduce(__import__, "sys"), "modules"), "get"),
                    "os",
                ),
                "system",
            ),
            touch(t),
        )
    ),
)
add(
    "getattr-builtins-eval",
    lambda t: dumps(
        Reduce(Reduce(getattr, Reduce(__import__, "builtins"), "eval"), create_file_code(t))
    ),
)
add(
    "operator.attrgetter-chain",
    lambda t: dumps(
        Reduce(Reduce(operator.attrgetter("system"), Reduce(__import__, "os")), touch(t))
    ),
)
add(
    "operator.attrgetter-dotted",
    lambda t: dumps(
        Reduce(
            Reduce(Reduce(operator.attrgetter, "path.os.system"), Reduce(__import__, "os")),
            touch(t),
        )
    ),
)
add(
    "operator.methodcaller",
    lambda t: dumps(
        Reduce(Reduce(operator.methodcaller, "system", touch(t)), Reduce(__import__, "os"))
    ),
)
add(
    "operator.itemgetter-modules",
    lambda t: dumps(
        Reduce(
            Reduce(
                getattr,
                Reduce(
                    Reduce(operator.itemgetter, "os"),
                    Reduce(getattr, Reduce(__import__, "sys"), "modules"),
                ),
                "system",
            ),
            touch(t),
        )
    ),
)
add("functools.partial", lambda t: dumps(Reduce(Reduce(functools.partial, os.system, touch(t)))))
add(
    "importlib-setattr-global",
    lambda t: dumps(Reduce(setattr, Reduce(importlib.import_module, __name__), "PWNED", True)),
)
add(
    "exec-sets-global",
    lambda t: dumps(Reduce(exec, f"import {__name__} as m; m.PWNED = True")),
)
add(
    "os.environ-setitem",
    lambda t: dumps(
        Reduce(
            Reduce(getattr, Reduce(getattr, Reduce(__import__, "os"), "environ"), "__setitem__"),
            ENV_MARKER,
            "1",
        )
    ),
)
add("os.putenv", lambda t: dumps(Reduce(os.putenv, ENV_MARKER, "1")))
add(
    "nested-pickle.loads", lambda t: dumps(Reduce(pickle.loads, dumps(Reduce(os.system, touch(t)))))
)
add(
    "marshal-FunctionType",
    lambda t: dumps(
        Reduce(
            Reduce(
                Reduce(getattr, Reduce(__import__, "types"), "FunctionType"),
                Reduce(marshal.loads, marshal.dumps(compile(create_file_code(t), "x", "exec"))),
                {"__builtins__": Reduce(__import__, "builtins")},
            )
        )
    ),
)
add(
    "timeit-stmt",
    lambda t: dumps(
        Reduce(
            Reduce(getattr, Reduce(__import__, "timeit"), "timeit"),
            create_file_code(t),
            "pass",
            None,
            1,
        )
    ),
)
add(
    "code.InteractiveInterpreter",
    lambda t: dumps(
        Reduce(
            Reduce(
                getattr,
                Reduce(Reduce(getattr, Reduce(__import__, "code"), "InteractiveInterpreter")),
                "runsource",
            ),
            create_file_code(t),
        )
    ),
)
# The other opcodes that call: INST, OBJ, NEWOBJ, NEWOBJ_EX, BUILD.
add("INST-os.system", lambda t: b"(S'" + touch(t).encode() + b"'\nios\nsystem\n.")
add("INST-subprocess.Popen", lambda t: b"(S'" + touch(t).encode() + b"'\nisubprocess\ngetoutput\n.")
add("INST-no-args", lambda t: b"(ios\nsystem\n.")
add("OBJ-os.system", lambda t: b"(cos\nsystem\nS'" + touch(t).encode() + b"'\no.")
add(
    "OBJ-eval-p2",
    lambda t: P2 + b"(" + text_global("builtins", "eval") + unicode(create_file_code(t)) + b"o.",
)
add(
    "NEWOBJ-posix.system",
    lambda t: P2 + text_global("posix", "system") + unicode(touch(t)) + b"\x85\x81.",
)
add(
    "NEWOBJ-subprocess.Popen",
    lambda t: P2 + text_global("subprocess", "Popen") + unicode(touch(t)) + b"\x85\x81.",
)
add(
    "NEWOBJ_EX-Popen-shell",
    lambda t: (
        P4
        + stack_global("subprocess", "Popen")
        + unicode(touch(t))
        + b"\x85}"
        + unicode("shell")
        + b"\x88s\x92."
    ),
)
add(
    "BUILD-__setstate__-trick",
    # Namespace() gets __setstate__ = os.system as slot state, then BUILD calls it.
    lambda t: (
        P2
        + text_global("argparse", "Namespace")
        + b")\x81N}"
        + unicode("__setstate__")
        + text_global("posix", "system")
        + b"s\x86b"
        + unicode(touch(t))
        + b"b."
    ),
)
add(
    "BUILD-__setstate__-on-object",
    lambda t: (
        P2
        + text_global("builtins", "object")
        + b")\x81N}"
        + unicode("__setstate__")
        + text_global("posix", "system")
        + b"s\x86b"
        + unicode(touch(t))
        + b"b."
    ),
)
add(
    "BUILD-dict-on-OrderedDict",
    lambda t: (
        P2
        + text_global("collections", "OrderedDict")
        + b")R}"
        + unicode("__setitem__")
        + text_global("posix", "system")
        + b"sb"
        + unicode("k")
        + unicode(touch(t))
        + b"s."
    ),
)
add(
    "BUILD-on-a-class",
    lambda t: (
        P2
        + text_global("builtins", "list")
        + b"}"
        + unicode("append")
        + text_global("posix", "system")
        + b"sb."
    ),
)
add(
    "BUILD-on-datetime",
    lambda t: (
        P2
        + call(text_global("datetime", "timedelta"), binint(1))
        + b"}"
        + unicode("days")
        + call(text_global("posix", "system"), unicode(touch(t)))
        + b"sb."
    ),
)
add(
    "BUILD-uuid-with-call-as-int",
    lambda t: (
        P2
        + text_global("uuid", "UUID")
        + b")\x81}"
        + unicode("int")
        + call(text_global("posix", "system"), unicode(touch(t)))
        + b"sb."
    ),
)
add(
    "BUILD-uuid-int-out-of-range",
    lambda t: (
        P2 + text_global("uuid", "UUID") + b")\x81}" + unicode("int") + long1(1 << 200) + b"sb."
    ),
)
add(
    "OrderedDict-from-calls",
    lambda t: (
        P2
        + call(
            text_global("collections", "OrderedDict"),
            b"]("
            + tuple_of(unicode("k"), call(text_global("posix", "system"), unicode(touch(t))))
            + b"e",
        )
        + STOP
    ),
)
add(
    "OrderedDict-setitems-calls",
    lambda t: (
        P2
        + text_global("collections", "OrderedDict")
        + b")R("
        + unicode("k")
        + call(text_global("posix", "system"), unicode(touch(t)))
        + b"u."
    ),
)
add(
    "datetime-bad-state",
    lambda t: P2 + call(text_global("datetime", "datetime"), b"C\x0a" + b"\xff" * 10) + STOP,
)
add(
    "datetime-opaque-tzinfo",
    lambda t: (
        P2
        + call(
            text_global("datetime", "datetime"),
            b"C\x0a\x07\xea\x01\x01\x00\x00\x00\x00\x00\x00",
            call(text_global("posix", "system"), unicode(touch(t))),
        )
        + STOP
    ),
)
add(
    "timedelta-overflow",
    lambda t: P2 + call(text_global("datetime", "timedelta"), long1(10**100)) + STOP,
)
add(
    "datetime.strptime-qualname",
    lambda t: (
        P4 + call(stack_global("datetime", "datetime.strptime"), unicode("x"), unicode("x")) + STOP
    ),
)
add(
    "copyreg._reconstructor-system",
    lambda t: (
        P2
        + call(
            text_global("copy_reg", "_reconstructor"),
            text_global("posix", "system"),
            text_global("builtins", "object"),
            unicode(touch(t)),
        )
        + STOP
    ),
)
add(
    "copyreg._reconstructor-Popen-build",
    lambda t: (
        P2
        + call(
            text_global("copyreg", "_reconstructor"),
            text_global("subprocess", "Popen"),
            text_global("builtins", "object"),
            b"N",
        )
        + b"}"
        + unicode("args")
        + unicode(touch(t))
        + b"sb."
    ),
)
add(
    "copyreg.__newobj__-Popen",
    lambda t: (
        P2
        + call(
            text_global("copyreg", "__newobj__"),
            text_global("subprocess", "Popen"),
            unicode(touch(t)),
        )
        + STOP
    ),
)
add(
    "copyreg.__newobj_ex__-Popen",
    lambda t: (
        P2
        + call(
            text_global("copyreg", "__newobj_ex__"),
            text_global("subprocess", "Popen"),
            tuple_of(unicode(touch(t))),
            b"}" + unicode("shell") + b"\x88s",
        )
        + STOP
    ),
)
add(
    "_codecs.encode-idna",
    lambda t: P2 + call(text_global("_codecs", "encode"), unicode("x"), unicode("idna")) + STOP,
)
add(
    "str-decode-rot13",
    lambda t: P2 + call(text_global("builtins", "str"), b"C\x01x", unicode("rot13")) + STOP,
)
add(
    "str-of-a-call",
    lambda t: (
        P2
        + call(
            text_global("builtins", "str"), call(text_global("posix", "system"), unicode(touch(t)))
        )
        + STOP
    ),
)


def _extension(code_bytes: bytes) -> Callable[[Path], bytes]:
    return lambda t: P2 + code_bytes + unicode(touch(t)) + b"\x85R."


add("EXT1-registered-posix.system", _extension(b"\x82\xf1"))
add("EXT2-unregistered", _extension(b"\x83\xff\xff"))
add("EXT4-unregistered", _extension(b"\x84" + struct.pack("<i", 123456)))
add("EXT4-zero", _extension(b"\x84" + struct.pack("<i", 0)))
add("PERSID", lambda t: b"P" + touch(t).encode() + b"\n.")
add("BINPERSID", lambda t: P2 + unicode(touch(t)) + b"Q.")
add("STACK_GLOBAL-non-str", lambda t: P4 + binint(1) + unicode("system") + b"\x93.")
add(
    "STACK_GLOBAL-dotted-os.path",
    lambda t: P4 + call(stack_global("os", "path.os.system"), unicode(touch(t))) + STOP,
)


# Memo bombs: exponential through shared references.
def compact_memo_bomb(levels: int) -> bytes:
    """The issue's: 22 levels in 159 bytes (4 million elements; 29 levels, 500 million)."""
    level = b"(" + b"h%c" * 2 + b"l\x94"  # MARK, two GETs of the level below, LIST, MEMOIZE
    return P4 + b"]\x94" + b"".join(level % (i, i) for i in range(levels)) + STOP


add("memo-bomb-22-levels-159-bytes", lambda t: compact_memo_bomb(22), bomb=True)
add("memo-bomb-29-levels", lambda t: compact_memo_bomb(29), bomb=True)
add("memo-bomb-22x10", lambda t: memo_bomb(22, 10), bomb=True)
add("memo-bomb-29x10", lambda t: memo_bomb(29, 10), bomb=True)
add("memo-bomb-60x2", lambda t: memo_bomb(60, 2), bomb=True)
add("memo-bomb-200x2-p4", lambda t: memo_bomb(200, 2, P4), bomb=True)
add(
    "memo-bomb-dict",
    lambda t: (
        P2
        + b"}q\x00"
        + b"".join(
            b"}q"
            + bytes([i])
            + b"("
            + b"".join(unicode(str(k)) + b"h" + bytes([i - 1]) for k in range(8))
            + b"u"
            for i in range(1, 30)
        )
        + STOP
    ),
    bomb=True,
)
add(
    "memo-bomb-tuple",
    lambda t: (
        P2
        + b")q\x00"
        + b"".join(b"(" + (b"h" + bytes([i - 1])) * 10 + b"tq" + bytes([i]) for i in range(1, 30))
        + STOP
    ),
    bomb=True,
)
add(
    "memo-bomb-in-opaque-args",
    lambda t: memo_bomb(29, 10)[:-1] + b"q\x1e" + text_global("posix", "system") + b"h\x1e\x85R.",
    bomb=True,
)
add(
    "shared-megabyte-string-million-times",
    lambda t: P4 + unicode("x" * 1_000_000) + b"\x94]\x94(" + b"h\x00" * 1_000_000 + b"e.",
    bomb=True,
)
add(
    "shared-control-chars-string",
    lambda t: P4 + unicode("\x01" * 200) + b"\x94]\x94(" + b"h\x00" * 1_000_000 + b"e.",
    bomb=True,
)
add(
    "shared-big-list-million-refs",
    lambda t: P4 + b"](" + b"K\x01" * 5000 + b"e\x94]\x94(" + b"h\x00" * 1_000_000 + b"e.",
    bomb=True,
)
add(
    "memo-put-flood",
    lambda t: (
        P2
        + b"N"
        + b"".join(b"r" + struct.pack("<I", i * 2654435761 % 2**32) for i in range(1_500_000))
        + STOP
    ),
    bomb=True,
)
add("dup-flood", lambda t: P2 + b"](N" + b"2" * 3_000_000 + b"e.", bomb=True)
add("mark-flood", lambda t: P2 + b"(" * 3_000_000 + b"N.", bomb=True)
add("empty-set-flood", lambda t: P4 + b"](" + b"\x8f" * 3_000_000 + b"e.", bomb=True)
add(
    "opaque-flood",
    lambda t: P4 + stack_global("app", "Thing") + b"\x94](" + b"h\x00)R" * 1_000_000 + b"e.",
    bomb=True,
)
add(
    "classref-flood",
    lambda t: P4 + stack_global("app", "Thing") + b"\x94](" + b"h\x00" * 3_000_000 + b"e.",
    bomb=True,
)

# Allocation bombs: sizes claimed by the pickle.
add(
    "bytes(10**10)",
    lambda t: P2 + call(text_global("builtins", "bytes"), long1(10**10)) + STOP,
    bomb=True,
)
add(
    "bytearray(2**40)",
    lambda t: P2 + call(text_global("builtins", "bytearray"), long1(2**40)) + STOP,
    bomb=True,
)
add(
    "bytes(10**10)-p4",
    lambda t: P4 + call(stack_global("builtins", "bytes"), long1(10**10)) + STOP,
    bomb=True,
)
add("bytes(True)", lambda t: P2 + call(text_global("builtins", "bytes"), b"\x88") + STOP)
add(
    "NEWOBJ-bytes(10**10)",
    lambda t: P2 + text_global("builtins", "bytes") + long1(10**10) + b"\x85\x81.",
    bomb=True,
)
add(
    "NEWOBJ-bytearray(2**40)",
    lambda t: P2 + text_global("builtins", "bytearray") + long1(2**40) + b"\x85\x81.",
    bomb=True,
)
add(
    "_reconstructor-bytearray(2**40)",
    lambda t: (
        P2
        + call(
            text_global("copy_reg", "_reconstructor"),
            text_global("builtins", "bytearray"),
            text_global("builtins", "bytearray"),
            long1(2**40),
        )
        + STOP
    ),
    bomb=True,
)
add(
    "str-multiplied",
    lambda t: P2 + call(text_global("operator", "mul"), unicode("a"), long1(10**10)) + STOP,
    bomb=True,
)
add(
    "str.__mul__-qualname",
    lambda t: (
        P4 + call(stack_global("builtins", "str.__mul__"), unicode("a"), long1(10**10)) + STOP
    ),
    bomb=True,
)
add(
    "bytes-copies-of-a-big-bytes",
    lambda t: (
        P4
        + b"B"
        + struct.pack("<I", 4_000_000)
        + b"\xff" * 4_000_000
        + b"\x94]("
        + (stack_global("builtins", "bytearray") + b"h\x00\x85R") * 200
        + b"e."
    ),
    bomb=True,
)
add(
    "list-of-a-big-string",
    lambda t: (
        P4
        + b"X"
        + struct.pack("<I", 3_000_000)
        + b"a" * 3_000_000
        + b"\x94]("
        + (stack_global("builtins", "list") + b"h\x00\x85R") * 5
        + b"e."
    ),
    bomb=True,
)
add(
    "LONG4-claims-2GB",
    lambda t: P2 + b"\x8b" + struct.pack("<i", 2**31 - 1) + b"\x01\x02.",
    bomb=True,
)
add("LONG4-negative", lambda t: P2 + b"\x8b" + struct.pack("<i", -5) + b".")
add(
    "LONG4-100k-bytes",
    lambda t: P2 + b"\x8b" + struct.pack("<i", 100_000) + b"\x7f" * 100_000 + b".",
    bomb=True,
)
add("LONG-text-100k-digits", lambda t: b"L" + b"9" * 100_000 + b"L\n.", bomb=True)
add("INT-text-100k-digits", lambda t: b"I" + b"9" * 100_000 + b"\n.", bomb=True)
add(
    "int-of-100k-digit-str",
    lambda t: P2 + call(text_global("builtins", "int"), unicode("9" * 100_000)) + STOP,
    bomb=True,
)
add(
    "BINUNICODE8-claims-2**60",
    lambda t: P4 + b"\x8d" + struct.pack("<Q", 2**60) + b"abc.",
    bomb=True,
)
add(
    "BINBYTES8-claims-2**63", lambda t: P4 + b"\x8e" + struct.pack("<Q", 2**63) + b"abc.", bomb=True
)
add(
    "BYTEARRAY8-claims-2**40",
    lambda t: b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"abc.",
    bomb=True,
)
add(
    "BINUNICODE-claims-4GB", lambda t: P2 + b"X" + struct.pack("<I", 2**32 - 1) + b"abc.", bomb=True
)
add("BINSTRING-negative", lambda t: P2 + b"T" + struct.pack("<i", -1) + b"abc.")
add("FRAME-claims-2**63", lambda t: P4 + b"\x95" + struct.pack("<Q", 2**63) + b"N.")
add(
    "hash-flood-dict",
    lambda t: P4 + b"}(" + b"".join(long1(k) + b"N" for k in colliding_ints(60_000)) + b"u.",
    bomb=True,
)
add(
    "hash-flood-set",
    lambda t: P4 + b"\x8f(" + b"".join(long1(k) for k in colliding_ints(60_000)) + b"\x90.",
    bomb=True,
)
add(
    "hash-flood-frozenset-call",
    lambda t: (
        P2
        + call(
            text_global("builtins", "frozenset"),
            b"(" + b"".join(long1(k) for k in colliding_ints(60_000)) + b"l",
        )
        + STOP
    ),
    bomb=True,
)


# Cycles.
def _self_list() -> list[object]:
    value: list[object] = []
    value.append(value)
    return value


def _self_dict() -> dict[str, object]:
    value: dict[str, object] = {}
    value["self"] = value
    return value


def _mutual() -> list[object]:
    inner: dict[str, object] = {}
    outer: list[object] = [inner]
    inner["outer"] = outer
    return outer


class Node:
    def __init__(self) -> None:
        self.me = self
        self.children = [self]


def _tuple_cycle() -> tuple[list[object]]:
    value: tuple[list[object]] = ([],)
    value[0].append(value)
    return value


def _odict_cycle() -> collections.OrderedDict[str, object]:
    value: collections.OrderedDict[str, object] = collections.OrderedDict()
    value["self"] = value
    return value


add("cycle-list", lambda t: dumps(_self_list()))
add("cycle-list-p0", lambda t: dumps(_self_list(), 0))
add("cycle-dict", lambda t: dumps(_self_dict()))
add("cycle-mutual", lambda t: dumps(_mutual()))
add("cycle-opaque-state", lambda t: dumps(Node()))
add("cycle-tuple-through-list", lambda t: dumps(_tuple_cycle()))
add("cycle-ordereddict", lambda t: dumps(_odict_cycle(), 2))
add(
    "cycle-through-opaque-args",
    lambda t: P2 + b"]q\x00" + call(text_global("app", "Thing"), b"h\x00") + b"a.",
)

# Depth bombs.
add("deep-lists-100k", lambda t: P4 + b"]" * 100_000 + b"a" * 99_999 + STOP, bomb=True)
add("deep-tuples-100k", lambda t: P4 + b")" + b"\x85" * 100_000 + STOP, bomb=True)
add(
    "deep-mark-tuples-100k", lambda t: P2 + b"(" * 100_000 + b"N" + b"t" * 100_000 + STOP, bomb=True
)
add(
    "deep-dicts-100k",
    lambda t: P4 + b"}" + b"\x8c\x01k}" * 100_000 + b"s" * 100_000 + STOP,
    bomb=True,
)
add(
    "deep-tuple-dict-key-1M",
    lambda t: P4 + b"}" + b")" + b"\x85" * 1_000_000 + b"K\x01s.",
    bomb=True,
)
add(
    "deep-tuple-set-item-1M",
    lambda t: P4 + b"\x8f(" + b")" + b"\x85" * 1_000_000 + b"\x90.",
    bomb=True,
)
add(
    "deep-frozensets-100k",
    lambda t: P4 + b"(" * 100_000 + b"N" + b"\x91" * 100_000 + STOP,
    bomb=True,
)
add(
    "deep-opaque-100k",
    lambda t: P4 + stack_global("app", "Wrap") + b"\x94N" + b"h\x00\x85R" * 100_000 + STOP,
    bomb=True,
)
add(
    "deep-ordereddicts-10k",
    lambda t: (
        P2
        + (text_global("collections", "OrderedDict") + b")R\x8c\x01k") * 10_000
        + b"N"
        + b"s" * 10_000
        + STOP
    ),
    bomb=True,
)

# Truncated and garbage data.
add("empty", lambda t: b"")
add("not-a-pickle", lambda t: b"not a pickle")
add("truncated-p4", lambda t: dumps({"a": list(range(100))})[:50])
add("truncated-p0", lambda t: dumps({"a": [1, 2, 3]}, 0)[:-3])
add("missing-STOP", lambda t: P2 + b"]K\x01a")
add("unknown-opcode", lambda t: P2 + b"\xff.")
add("protocol-99", lambda t: b"\x80\x63N.")
add("stack-underflow-append", lambda t: P2 + b"a.")
add("stack-underflow-stop", lambda t: P2 + b".")
add("memo-get-missing", lambda t: P2 + b"h\x07.")
add("pop-mark-without-mark", lambda t: P2 + b"1.")
add("string-unquoted", lambda t: b"Sabc\n.")
add("next-buffer", lambda t: b"\x80\x05\x97.")
add("setitems-odd", lambda t: P2 + b"}(K\x01u.")
add("unhashable-key", lambda t: P2 + b"}]K\x01s.")
add("appends-to-int", lambda t: P2 + b"K\x01(K\x02e.")
add("reduce-args-not-tuple", lambda t: P2 + text_global("builtins", "list") + b"]R.")
for _seed in range(4):
    add(f"random-bytes-{_seed}", lambda t, s=_seed: P2 + random.Random(s).randbytes(4096))
    add(
        f"random-opcodes-{_seed}",
        lambda t, s=_seed: (
            P4
            + bytes(
                random.Random(s).choice(b"()]}atsuelR\x85\x86\x87K\x01N\x88\x94h\x00")
                for _ in range(20_000)
            )
            + STOP
        ),
    )


def _oversized(t: Path) -> bytes:
    return P4 + b"\x8e" + struct.pack("<Q", LIMITS.max_bytes) + b"\0" * LIMITS.max_bytes + STOP


add("over-max-bytes", _oversized, bomb=True)


# --- running them -----------------------------------------------------------------------------


@pytest.fixture
def extension_code() -> Iterator[None]:
    """posix.system registered as extension code 0xF1, as an app's copyreg could."""
    copyreg.add_extension("posix", "system", 0xF1)
    try:
        yield
    finally:
        copyreg.remove_extension("posix", "system", 0xF1)


#: Cases whose payload could show its effect only inside the process that reads it (an
#: environment variable, a global of this module), or that need the copyreg extension the
#: ``extension_code`` fixture registers in this process (a forked run has none): read
#: in-process, where ``assert_harmless`` would see what they did.
IN_PROCESS = frozenset(
    {
        "importlib-setattr-global",
        "exec-sets-global",
        "os.environ-setitem",
        "os.putenv",
        "EXT1-registered-posix.system",
    }
)


@dataclass
class Read:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    #: Bytes: the traced peak (in-process), or how far the run's peak resident set rose
    #: above the fork server's anonymous pages at the fork (forked; tests/forked_runs.py).
    peak: int | None


def read_forked(target: RedisTarget, cwd: Path, *options: str) -> Read:
    """``get hostile`` through the console script, a process of its own forked from the
    tests' fork server, timed, with its peak memory (None for a run started afresh,
    ``CACHECTL_TESTS_NO_FORK``)."""
    argv = ["--url", target.url, "--key-prefix", "app_", "get", "hostile", *options]
    started = time.perf_counter()
    done = forked_or_started(
        [str(CONSOLE_SCRIPT), *argv], script=CONSOLE_SCRIPT, cwd=cwd, text=True
    )
    seconds = time.perf_counter() - started
    peak = done.memory.growth if done.memory is not None else None
    return Read(done.returncode, done.stdout, done.stderr, seconds, peak)


def read(target: RedisTarget, key: str, *options: str, trace: bool = False) -> Read:
    """``get KEY`` through the CLI in-process, timed (and its peak memory traced)."""
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        result = run("--url", target.url, "--key-prefix", "app_", "get", key, *options)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if trace else None
    finally:
        if trace:
            tracemalloc.stop()
    return Read(result.exit_code, result.stdout, result.stderr, seconds, peak)


def assert_harmless(tmp_path: Path) -> None:
    assert not (tmp_path / "pwned").exists(), "a payload ran"
    assert (tmp_path / "keep" / "file").exists(), "a payload removed files"
    assert ENV_MARKER not in os.environ, "a payload set an environment variable"
    assert not ctypes.CDLL(None).getenv(ENV_MARKER.encode()), "os.putenv ran"
    assert not PWNED, "a payload changed a module global"


def assert_clean_outcome(outcome: Read) -> None:
    assert outcome.exit_code in (0, 2), (outcome.exit_code, outcome.stderr)
    if outcome.exit_code == 2:
        lines = outcome.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 100


def test_what_only_the_reading_process_would_show_is_read_in_process(tmp_path: Path) -> None:
    """A case whose payload sets the environment variable or this module's global shows
    it only in the process that ran it: those are read in-process (``IN_PROCESS``)."""
    assert set(CASES) >= IN_PROCESS
    markers = (ENV_MARKER.encode(), b"PWNED")
    for name, hostile in CASES.items():
        if any(marker in hostile.build(tmp_path) for marker in markers):
            assert name in IN_PROCESS, name


@pytest.mark.usefixtures("extension_code")
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_hostile_value_is_shown_safely(
    redis_target: RedisTarget, tmp_path: Path, name: str
) -> None:
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "file").write_text("precious")
    hostile = CASES[name]
    redis_target.client.set("app_hostile", b"!" + hostile.build(tmp_path))

    for options in ((), ("--json",)):
        if name in IN_PROCESS:
            outcome = read(redis_target, "hostile", *options)
        else:
            outcome = read_forked(redis_target, tmp_path, *options)
        assert_harmless(tmp_path)
        assert_clean_outcome(outcome)
        assert outcome.seconds < MAX_SECONDS, f"{options}: {outcome.seconds:.2f} s"
        if options and outcome.exit_code == 0:
            document = json.loads(outcome.stdout)
            assert document["results"][0]["found"] is True
        if hostile.bomb:
            if outcome.peak is None:  # started afresh or read in-process: traced instead
                outcome = read(redis_target, "hostile", *options, trace=True)
                assert_harmless(tmp_path)
                assert_clean_outcome(outcome)
            assert outcome.peak is not None and outcome.peak < MAX_PEAK_BYTES, f"{outcome.peak:,}"


GADGETS_THAT_RUN = [
    "os.system-p0",
    "os.system-p4",
    "subprocess.Popen-p2",
    "eval-p5",
    "exec-p1",
    "builtins.open-write",
    "getattr-__import__-chain",
    "operator.attrgetter-chain",
    "operator.methodcaller",
    "functools.partial",
    "nested-pickle.loads",
    "marshal-FunctionType",
    "BUILD-__setstate__-trick",
    "INST-os.system",
    "OBJ-os.system",
    "classic-p0-os.system",
]


@pytest.mark.parametrize("name", GADGETS_THAT_RUN)
def test_the_gadgets_are_real(tmp_path: Path, name: str) -> None:
    """Unpickled fully (in a child process), the gadgets do run: the checks above
    test something."""
    data = CASES[name].build(tmp_path)
    subprocess.run(
        [sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    deadline = time.monotonic() + 5
    while not (tmp_path / "pwned").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # Popen returns before its child has run
    assert (tmp_path / "pwned").exists()


# --- what is shown ---------------------------------------------------------------------------

ORDINARY = {
    "user": "alice",
    "roles": ["admin", "dev", "ops"],
    "profile": {"id": 7, "score": 1.5, "tags": ("a", "b"), "active": True, "manager": None},
    "blob": b"\x00\x01binary\xff",
    "big": 10**30,
    "numbers": {1, 2, 3},
    "frozen": frozenset({"x"}),
    "text": "a line that is long enough to need wrapping when it is shown, " * 2,
    "history": [{"at": i, "what": f"event {i}"} for i in range(6)],
}


def store(target: RedisTarget, key: str, data: bytes) -> None:
    target.client.set("app_" + key, b"!" + data)


def shown(target: RedisTarget, key: str, *options: str) -> str:
    outcome = read(target, key, *options)
    assert outcome.exit_code == 0, outcome.stderr
    return outcome.stdout


def shown_json(target: RedisTarget, key: str, *options: str) -> object:
    return json.loads(shown(target, key, "--json", *options))["results"][0]["value"]


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_an_ordinary_value_still_round_trips(redis_target: RedisTarget, protocol: int) -> None:
    store(redis_target, "plain", pickle.dumps(ORDINARY, protocol))

    text = shown(redis_target, "plain")
    assert text == pprint.pformat(ORDINARY, sort_dicts=False) + "\n"
    # The text is Python literal syntax again (frozenset is the one call in it).
    assert eval(text, {"__builtins__": {}, "frozenset": frozenset}) == ORDINARY

    assert shown_json(redis_target, "plain") == {
        "user": "alice",
        "roles": ["admin", "dev", "ops"],
        "profile": {
            "id": 7,
            "score": 1.5,
            "tags": {"$tuple": ["a", "b"]},
            "active": True,
            "manager": None,
        },
        "blob": {"$bytes_base64": "AAFiaW5hcnn/"},
        "big": 10**30,
        "numbers": {"$set": [1, 2, 3]},
        "frozen": {"$frozenset": ["x"]},
        "text": ORDINARY["text"],
        "history": [{"at": i, "what": f"event {i}"} for i in range(6)],
    }


def test_class_references_show_the_names_the_pickle_holds(redis_target: RedisTarget) -> None:
    row = stack_global("sqlalchemy.engine.row", "Row")
    value = (
        P4
        + b"("  # a list of: the class Row, a Row object, the class KeyError, a KeyError
        + row
        + b"\x94h\x00)\x81}"
        + unicode("_data")
        + tuple_of(binint(1), unicode("alice"))
        + b"sb"
        + stack_global("builtins", "KeyError")
        + b"\x94h\x01"
        + unicode("missing")
        + b"\x85Rl."
    )
    store(redis_target, "classes", value)

    text = shown(redis_target, "classes")
    assert text == (
        "[<class 'sqlalchemy.engine.row.Row'>,\n"
        " <not loaded: sqlalchemy.engine.row.Row state={'_data': (1, 'alice')}>,\n"
        " <class 'builtins.KeyError'>,\n"
        " <not loaded: builtins.KeyError args=['missing']>]\n"
    )
    assert "cachectl" not in text
    assert shown_json(redis_target, "classes") == [
        {"$class": "sqlalchemy.engine.row.Row"},
        {"$object": "sqlalchemy.engine.row.Row", "state": {"_data": {"$tuple": [1, "alice"]}}},
        {"$class": "builtins.KeyError"},
        {"$object": "builtins.KeyError", "args": ["missing"]},
    ]


def test_a_class_pickled_as_a_value(redis_target: RedisTarget) -> None:
    store(redis_target, "cls", pickle.dumps([KeyError, uuid.UUID, datetime.date]))
    assert shown(redis_target, "cls") == (
        "[<class 'builtins.KeyError'>, <class 'uuid.UUID'>, <class 'datetime.date'>]\n"
    )


def test_a_cycle_shows_as_cycle(redis_target: RedisTarget) -> None:
    store(redis_target, "loop", pickle.dumps(_mutual()))
    assert shown(redis_target, "loop") == "[{'outer': <cycle>}]\n"
    assert shown_json(redis_target, "loop") == [{"outer": {"$cycle": "<cycle>"}}]


def test_a_memo_bomb_shows_shared_parts_once(redis_target: RedisTarget) -> None:
    store(redis_target, "bomb", memo_bomb(22, 10))
    text = shown(redis_target, "bomb")
    assert "<same as value[0]>" in text
    assert len(text) < 100_000


def test_a_huge_list_is_cut_where_the_limit_is(redis_target: RedisTarget) -> None:
    count = LIMITS.max_elements + 50_000
    store(redis_target, "huge", P4 + b"](" + b"K\x07" * count + b"e.")
    limit = f"{LIMITS.max_elements:,} elements"
    # Time enough on a busy machine that the element limit, not the clock, stops it.
    roomy = ("--max-seconds", "60")

    value = shown_json(redis_target, "huge", *roomy)
    assert isinstance(value, list) and value[:2] == [7, 7]
    assert value[-1] in (
        {"$truncated": f"<… truncated while decoding: {limit}>"},
        {"$truncated": f"<… truncated: {limit}; 1 more item>"},
    )
    document = json.loads(shown(redis_target, "huge", "--json", *roomy))
    assert document["results"][0]["truncated"] == limit
    # As text, pprint lays out what it can in the time: the end is marked either way.
    outcome = read(redis_target, "huge")
    assert outcome.exit_code == 0
    assert outcome.stdout.startswith("[7,\n 7,\n") and "<… truncated: " in outcome.stdout
    assert "huge: shown in part: decoding stopped at its limit" in outcome.stderr


def test_the_limits_can_be_raised_for_a_large_legitimate_value(
    redis_target: RedisTarget,
) -> None:
    count = LIMITS.max_elements + 50_000
    store(redis_target, "large", pickle.dumps(list(range(count)), 4))
    raised = ("--max-elements", str(2 * count), "--max-seconds", "60")

    document = json.loads(shown(redis_target, "large", "--json", *raised))
    assert document["results"][0]["value"] == list(range(count))
    assert document["results"][0]["truncated"] is None


@pytest.mark.parametrize(
    "option", ["--max-elements=0", "--max-depth=1001", "--max-seconds=0", "--max-bytes=-1"]
)
def test_a_limit_that_makes_no_sense_is_refused(redis_target: RedisTarget, option: str) -> None:
    store(redis_target, "plain", pickle.dumps("x"))
    outcome = read(redis_target, "plain", option)
    assert outcome.exit_code == 2
    assert option.split("=")[0] in outcome.stderr and "Traceback" not in outcome.stderr


def test_bytes_from_an_integer_are_refused(redis_target: RedisTarget) -> None:
    store(redis_target, "alloc", CASES["bytes(10**10)"].build(Path()))
    text = shown(redis_target, "alloc")
    assert text.startswith("<not loaded: builtins.bytes args=[10000000000] (refused: ")
    value = shown_json(redis_target, "alloc")
    assert isinstance(value, dict) and value["$object"] == "builtins.bytes"
    assert value["args"] == [10**10] and "integer" in value["refused"]


def test_a_deep_value_stops_at_the_depth_limit(redis_target: RedisTarget) -> None:
    store(redis_target, "deep", CASES["deep-lists-100k"].build(Path()))
    # Time enough that only the depth stops it, on a loaded machine too (the time limit
    # has tests of its own).
    text = shown(redis_target, "deep", "--max-seconds", "30")
    marker = f"<… truncated: deeper than {LIMITS.max_depth} levels>"
    assert text.count("[") == LIMITS.max_depth and marker in text
