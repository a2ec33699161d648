"""The names a pickle refers to (``module.qualname``), read from its opcodes, never loaded.

``check-pickles`` reads every value of a cache; loading them, even restrictedly, would
cost tens of microseconds each and build every value only to throw it away. What it
needs is only which classes and functions a value names, and how it uses them: those
names are arguments of GLOBAL and INST, or the two strings STACK_GLOBAL takes off the
stack (often a memoized module name fetched again with BINGET). So this module walks
the opcodes as ``pickletools`` describes them, keeping a stack of placeholders whose
only contents are strings and names, and a memo of the same: nothing is imported,
called or built. Work is bounded like the restricted unpickler's (``DecodeLimits``:
opcodes, seconds); a pickle cut short or malformed keeps the names found before.

How a name is used decides what must still hold in the app's code for the value to
load: the class of NEWOBJ, NEWOBJ_EX, OBJ and INST must be a class; the callable of
REDUCE must be callable; a name only pushed (a class pickled by reference) must exist.
"""

from __future__ import annotations

import _compat_pickle
import pickletools
import struct
import time
from typing import Any, NamedTuple

from cachectl.codec.limits import DecodeLimits, current_limits

#: How a name is used, as bits: pushed (must exist), called (REDUCE: must be callable),
#: instantiated (NEWOBJ, NEWOBJ_EX, OBJ, INST: must be a class).
REFERENCED, CALLED, INSTANTIATED = 1, 2, 4
ROLE_WORDS = {REFERENCED: "referenced", CALLED: "called", INSTANTIATED: "instantiated"}

#: The bytes without which a pickle names nothing but GLOBAL and INST: STACK_GLOBAL is
#: 0x93, EXT1/2/4 are 0x82-0x84.
_NAMING_BYTES = (b"\x93", b"\x82", b"\x83", b"\x84")


def may_name(data: bytes) -> bool:
    """Whether ``data`` could name anything: it holds STACK_GLOBAL or EXT1/2/4, or a
    ``c`` or ``i`` (GLOBAL, INST) with two newlines after it (their two lines). Most
    cached values (plain dicts, lists, text, HTML with newlines but no such byte
    before its last two) fail this and are not walked; the script in
    ``backends.redis_pickles`` asks the same (a test holds the two to it)."""
    if any(marker in data for marker in _NAMING_BYTES):
        return True
    first = min((at for at in (data.find(b"c"), data.find(b"i")) if at >= 0), default=-1)
    if first < 0:
        return False
    line = data.find(b"\n", first + 1)
    return line >= 0 and data.find(b"\n", line + 1) >= 0


class _Name:
    """A name on the emulated stack (what GLOBAL would have pushed)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class Refs(NamedTuple):
    """What one pickle names: each ``module.qualname`` and how it is used (role bits),
    and why the walk stopped early, if it did (the names before are kept)."""

    names: dict[str, int]
    stopped: str | None = None


NONE = Refs({})

# --- the opcode table, from pickletools' own descriptions ------------------------------
_NOARG, _FIXED, _LINE, _TWO_LINES, _SIZED = range(5)
_SIZES = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, "<B"),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, "<i"),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, "<I"),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, "<Q"),
}
_MARK_OBJECTS = (pickletools.markobject, pickletools.stackslice)


#: What the walk does with an opcode beyond its stack effect.
_PLAIN, _STRING, _MEMOIZE, _GET, _PUT, _MARK, _STACK_GLOBAL, _GLOBAL, _EXT, _STOP = range(10)
_USE, _POP = 10, 11
_KINDS = {"MEMOIZE": _MEMOIZE, "MARK": _MARK, "STACK_GLOBAL": _STACK_GLOBAL, "STOP": _STOP}
_KINDS |= dict.fromkeys(("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"), _STRING)
_KINDS |= dict.fromkeys(("SHORT_BINSTRING", "BINSTRING", "STRING"), _STRING)  # protocols 0-2
_KINDS |= dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), _GET)
_KINDS |= dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT"), _PUT)
_KINDS |= dict.fromkeys(("GLOBAL", "INST"), _GLOBAL)
_KINDS |= dict.fromkeys(("EXT1", "EXT2", "EXT4"), _EXT)
_KINDS |= dict.fromkeys(("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"), _USE)
_KINDS["POP"] = _POP
#: Where the name an opcode uses sits on the stack, and how it is used.
_USED = {"REDUCE": (2, CALLED), "NEWOBJ": (2, INSTANTIATED), "NEWOBJ_EX": (3, INSTANTIATED)}

#: Per opcode byte: kind, argument layout, its width, the length prefix's struct, pops to
#: the mark, items popped besides, items pushed, the opcode's name.
_Op = tuple[int, int, int, Any, bool, int, int, str]


def _table() -> dict[int, _Op]:
    ops: dict[int, _Op] = {}
    for op in pickletools.opcodes:
        arg, width, length, how = op.arg, 0, None, _NOARG
        if arg is not None and op.name in ("GLOBAL", "INST"):
            how = _TWO_LINES
        elif arg is not None and arg.n == pickletools.UP_TO_NEWLINE:
            how = _LINE
        elif arg is not None and arg.n >= 0:
            how, width = _FIXED, arg.n
        elif arg is not None:
            how = _SIZED
            width, form = _SIZES[arg.n]
            length = struct.Struct(form)
        before = op.stack_before
        pops = len([s for s in before if s not in _MARK_OBJECTS])
        if op.name == "OBJ":  # [mark, cls, args...]: the class is above the mark
            pops = 0
        pushes = len([s for s in op.stack_after if s is not pickletools.markobject])
        kind = _KINDS.get(op.name, _PLAIN)
        to_mark = pickletools.markobject in before
        entry = (kind, how, width, length, to_mark, pops, pushes, op.name)
        ops[op.code.encode("latin-1")[0]] = entry
    return ops


_OPS = _table()
#: The table, for the script that walks pickles inside Redis (``redis_pickles``).
OPCODE_TABLE = _OPS
_POP_MARK = _OPS[ord("1")]


def _text(raw: bytes, opname: str) -> str:
    if opname == "UNICODE":
        return raw.decode("raw-unicode-escape")
    if opname == "STRING":
        return raw.strip(b"'\"").decode("latin-1")
    return raw.decode("utf-8", "backslashreplace")


def references(data: bytes | memoryview, limits: DecodeLimits | None = None) -> Refs:
    """The names ``data`` (one pickle) refers to, and how; never loaded."""
    data = bytes(data)
    if not may_name(data):
        return NONE
    return _walk(data, limits or current_limits())


def _walk(data: bytes, limits: DecodeLimits) -> Refs:
    """The walk: the opcodes protocols 2-5 write most inline, in order of frequency (a
    pickle of model instances is mostly MEMOIZE, short strings and BINGET), the others
    through the table. A string is kept as its bytes until STACK_GLOBAL needs it."""
    names: dict[str, int] = {}
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}
    end, at, protocol = len(data), 0, 0
    most, deadline = limits.max_elements, time.monotonic() + limits.max_seconds
    try:
        while at < end:  # a window of the pickle at a time, the limits checked between
            if len(stack) + len(memo) > most:
                return Refs(names, f"{most:,} elements")
            if at and time.monotonic() > deadline:
                return Refs(names, f"{limits.max_seconds:g} s")
            window = min(end, at + _WINDOW)
            while at < window:
                code = data[at]
                at += 1
                if code == 0x94:  # MEMOIZE
                    memo[len(memo)] = stack[-1]
                elif code == 0x8C:  # SHORT_BINUNICODE
                    size = data[at]
                    stack.append(data[at + 1 : at + 1 + size])
                    at += 1 + size
                elif code == 0x68:  # BINGET
                    stack.append(memo.get(data[at]))
                    at += 1
                elif code in _PUSH_FIXED:  # BININT1/2, BININT, BINFLOAT, {}, [], (), None, bools
                    stack.append(None)
                    at += _PUSH_FIXED[code]
                elif code == 0x28:  # MARK
                    marks.append(len(stack))
                elif code == 0x75 or code == 0x65:  # SETITEMS, APPENDS: the container stays
                    del stack[marks.pop() :]
                elif code == 0x62:  # BUILD
                    del stack[-1]
                    stack[-1] = None
                elif code == 0x81 or code == 0x52:  # NEWOBJ, REDUCE
                    used = stack[-2]
                    if type(used) is _Name:
                        role = INSTANTIATED if code == 0x81 else CALLED
                        names[used.path] = names.get(used.path, 0) | role
                    del stack[-1]
                    stack[-1] = None
                elif code == 0x93:  # STACK_GLOBAL
                    path = _stack_name(stack[-2], stack[-1])
                    del stack[-1]
                    stack[-1] = _Name(path)
                    names[path] = names.get(path, 0) | REFERENCED
                elif code == 0x43 or code == 0x8A:  # SHORT_BINBYTES, LONG1
                    at += 1 + data[at]
                    stack.append(None)
                elif code == 0x95:  # FRAME
                    at += 8
                elif code == 0x2E:  # STOP
                    return Refs(names)
                else:
                    at, protocol = _other(code, data, at, protocol, stack, marks, memo, names)
        return Refs(names, "truncated pickle")
    except _Stopped as stopped:
        return Refs(names, str(stopped))
    except (IndexError, ValueError, struct.error):
        return Refs(names, "malformed pickle")


#: Bytes walked between two checks of the limits: an opcode takes one byte at least, so
#: the stack and the memo grow by at most this much in between.
_WINDOW = 16 * 1024
#: Opcodes that push one value of no interest, by the bytes of argument they take.
_PUSH_FIXED = {0x4B: 1, 0x4D: 2, 0x4A: 4, 0x47: 8, 0x7D: 0, 0x5D: 0, 0x29: 0, 0x4E: 0}
_PUSH_FIXED |= {0x88: 0, 0x89: 0}


class _Stopped(Exception):
    """The walk cannot go on: the pickle is cut short, or names an unknown opcode."""


def _stack_name(module: Any, qualname: Any) -> str:
    """STACK_GLOBAL's name from the two strings below it (kept as bytes until now)."""
    if type(module) is bytes:
        module = module.decode("utf-8", "backslashreplace")
    if type(qualname) is bytes:
        qualname = qualname.decode("utf-8", "backslashreplace")
    if type(module) is str and type(qualname) is str:
        return f"{module}.{qualname}"
    return "(a name built on the stack)"


def _other(
    code: int,
    data: bytes,
    at: int,
    protocol: int,
    stack: list[Any],
    marks: list[int],
    memo: dict[int, Any],
    names: dict[str, int],
) -> tuple[int, int]:
    """One opcode the walk does not inline: its argument read, its stack effect made;
    where the walk goes on, and the protocol (PROTO sets it)."""
    op = _OPS.get(code)
    if op is None:
        raise _Stopped(f"unknown opcode 0x{code:02x} at byte {at - 1}")
    kind, how, width, length, to_mark, pops, pushes, opname = op
    end = len(data)
    if how == _NOARG:
        raw = b""
    elif how == _SIZED:
        size = length.unpack_from(data, at)[0]
        at += width
        if size < 0 or at + size > end:
            raise _Stopped("truncated pickle")
        raw = data[at : at + size]
        at += size
    elif how == _FIXED:
        raw = data[at : at + width]
        at += width
        if opname == "PROTO":
            protocol = raw[0]
    else:
        stop = data.find(b"\n", at)
        if how == _TWO_LINES and stop >= 0:
            stop = data.find(b"\n", stop + 1)
        if stop < 0:
            raise _Stopped("truncated pickle")
        raw = data[at:stop]
        at = stop + 1
    if at > end:
        raise _Stopped("truncated pickle")
    value: Any = None
    if kind == _STRING:
        value = _text(raw, opname)
    elif kind == _MEMOIZE:
        memo[len(memo)] = stack[-1]
        return at, protocol
    elif kind == _GET:
        stack.append(memo.get(int(raw) if how == _LINE else int.from_bytes(raw, "little")))
        return at, protocol
    elif kind == _PUT:
        memo[int(raw) if how == _LINE else int.from_bytes(raw, "little")] = stack[-1]
        return at, protocol
    elif kind == _MARK:
        marks.append(len(stack))
        return at, protocol
    elif kind == _STACK_GLOBAL:
        value = _Name(_stack_name(stack[-2], stack[-1]))
        names[value.path] = names.get(value.path, 0) | REFERENCED
    elif kind == _GLOBAL:
        value = _Name(global_name(raw, protocol))
        role = INSTANTIATED if opname == "INST" else REFERENCED
        names[value.path] = names.get(value.path, 0) | role
    elif kind == _EXT:
        value = _Name(f"(extension code {int.from_bytes(raw, 'little')})")
        names[value.path] = names.get(value.path, 0) | REFERENCED
    elif kind == _STOP:
        raise _Stopped("")  # never: STOP is inlined
    elif kind == _USE:
        depth, role = _USED.get(opname, (0, INSTANTIATED))
        above = stack[marks[-1] :] if not depth else []  # OBJ: the class is above the mark
        used = stack[-depth] if depth else above[0] if above else None
        if type(used) is _Name:
            names[used.path] = names.get(used.path, 0) | role
    elif kind == _POP and not stack:  # a bare mark: POP pops it, as pickle does
        kind, how, width, length, to_mark, pops, pushes, opname = _POP_MARK
    if to_mark:
        del stack[marks.pop() :]
    if pops:
        if len(stack) < pops:
            raise IndexError
        del stack[len(stack) - pops :]
    if pushes == 1:
        stack.append(value)
    elif pushes:
        stack.extend([value] * pushes)
    return at, protocol


def global_name(raw: bytes, protocol: int) -> str:
    """GLOBAL's and INST's two lines as one name; Python 2's names (protocols 0-2)
    mapped as pickle maps them when it loads."""
    module, _, qualname = raw.decode("utf-8", "backslashreplace").partition("\n")
    if protocol < 3:
        module, qualname = _compat_pickle.NAME_MAPPING.get((module, qualname), (module, qualname))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{qualname}"
