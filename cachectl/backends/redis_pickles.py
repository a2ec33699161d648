"""check-pickles inside Redis: each value's names read from its opcodes by a Lua script.

Reading every value on the client costs a reply per value and a walk in Python per
pickle: on a million entries, ten times what ``stats`` costs. Here a script SCANs and
reads every value where it lies, walks its opcodes as ``codec.pickle_refs`` does (the
same table of opcodes, generated from ``pickletools``; a test holds the two walks to
the same names), and returns only the entries that name something (their names, and
how they use each) and the counts of the others; for a census, only sums by label and
names. A call ends with the SCAN step under way once ``STEP_MICROSECONDS`` passed by
the server's clock, or (where that clock stands still inside a script) once it walked
``STEP_BYTES`` of pickles; the client sends the next call as soon as a reply arrives,
and counts while the server walks. A value longer than
``SCRIPT_VALUE_BYTES``, or met in a step that walked far past the budget, is left to the
client (read whole and walked there), so a planted value cannot hold the server long.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cachectl.backends.base import StoredEntry
from cachectl.backends.redis_census import LABEL_FUNCTION
from cachectl.backends.redis_clients import errors_named, is_error
from cachectl.backends.redis_sweep import refuses_scripts
from cachectl.backends.statistics import MAX_NAME_BYTES
from cachectl.codec import pickle_refs

#: How long one call walks, by the server's clock, before it ends with the SCAN step
#: under way: longer than a census step (4 ms), as a round trip per call costs more
#: beside a call that walks fewer keys; far inside the bound tests hold every step to.
STEP_MICROSECONDS = 6000
#: The bytes of pickles one call walks at most (the bound where the server's clock stands
#: still inside a script, as Valkey's does), after which it ends likewise.
STEP_BYTES = 32 * 1024
#: Longer values are read and walked on the client.
SCRIPT_VALUE_BYTES = 64 * 1024
#: Keys one SCAN step inside the script asks for, and the most steps one call takes.
SCAN_COUNT = 25
SCANS_PER_CALL = 80


def _opcode_table() -> str:
    """``pickle_refs``' table of opcodes as a Lua table literal."""
    rows = []
    for code, (kind, how, width, length, to_mark, pops, pushes, _) in sorted(
        pickle_refs.OPCODE_TABLE.items()
    ):
        signed = 1 if length is not None and length.format == "<i" else 0
        rows.append(f"[{code}]={{{kind},{how},{width},{int(to_mark)},{pops},{pushes},{signed}}}")
    return "local OPS = {" + ",".join(rows) + "}"


PICKLES_SCRIPT = (
    """
local most, budget, longest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cursor, match, count, steps = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local totals, start, name_bytes = ARGV[8] == '1', tonumber(ARGV[9]), tonumber(ARGV[10])
local spend = tonumber(ARGV[11])
local byte, sub, find, bor, char = string.byte, string.sub, string.find, bit.bor, string.char
"""
    + LABEL_FUNCTION
    + """
"""
    + _opcode_table()
    + """
local PUSH_FIXED = {[0x4B]=1, [0x4D]=2, [0x4A]=4, [0x47]=8, [0x7D]=0, [0x5D]=0, [0x29]=0,
  [0x4E]=0, [0x88]=0, [0x89]=0}
local NOARG, FIXED, LINE, TWO_LINES, SIZED = 0, 1, 2, 3, 4
local STRING, MEMOIZE, GET, PUT, MARK, STACK_GLOBAL, GLOBAL, EXT, STOP, USE, POP =
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11

local function le(data, at, width)
  local value = 0
  for k = width - 1, 0, -1 do
    local b = byte(data, at + k)
    if b == nil then return nil end
    value = value * 256 + b
  end
  return value
end

-- The names a pickle (data, from byte 2: byte 1 is cachelib's '!') refers to, as
-- 'p' or 'c' (cut short) then, per name, its role bits as one character and its
-- path, each ended by a NUL. One table of names per walk, the helpers made once (a
-- closure made per value cost as much as a tenth of the walk).
local found, order = {}, {}
local function note(item, role)
  if type(item) == 'table' then
    local path = item[1]
    local had = found[path]
    if had == nil then
      order[#order + 1] = path
      found[path] = role
    else
      found[path] = bor(had, role)
    end
  end
end
local function reply(status)
  local parts = {status}
  for _, path in ipairs(order) do parts[#parts + 1] = char(48 + found[path]) .. path .. '\\0' end
  return table.concat(parts)
end
-- A short string is kept as where it lies (start * SPAN + length), made a string only
-- when STACK_GLOBAL takes it: most strings of a pickle are field names and values.
local SPAN = 262144
local function text(item, data)
  if type(item) == 'number' then
    local start = math.floor(item / SPAN)
    return sub(data, start, start + item % SPAN - 1)
  end
  if type(item) == 'string' then return item end
  return nil
end
-- Whether a value (from byte 2) could name anything: STACK_GLOBAL, EXT1/2/4, or a 'c'
-- or 'i' (GLOBAL, INST) with two newlines after it. ``pickle_refs.may_name`` asks
-- the same; at C speed, so most values are never walked.
local function may_name(data)
  if find(data, '[\\130-\\132\\147]', 2) then return true end
  local first = find(data, '[ci]', 2)
  if first == nil then return false end
  local line = find(data, '\\n', first + 1, true)
  return line ~= nil and find(data, '\\n', line + 1, true) ~= nil
end
-- The stack, the marks and the memo are kept from one walk to the next (growing new
-- tables per value was a fifth of the walk): only the memo is ever read past what this
-- walk wrote, so what the last walk left in it is emptied first.
local stack, marks, memo, left = {}, {}, {}, 0
local function walk(data)
  found, order = {}, {}
  if left > 4096 then memo = {} else for i = 0, left - 1 do memo[i] = nil end end
  local top, nmarks, nmemo = 0, 0, 0
  local at, size, protocol = 2, #data, 0
  local status = 'c'
  -- Its bytes as a table: an index where string.byte is a call (a tenth of the walk);
  -- past what one call of string.byte may return, each byte read when asked for. The
  -- opcodes pickle memoizes most (short strings, globals, containers, tuples, calls)
  -- take the MEMOIZE right behind them in the same turn of the loop.
  local codes
  if size <= 7000 then
    codes = {byte(data, 1, size)}
  else
    codes = setmetatable({}, {__index = function(_, k) return byte(data, k) end})
  end
  while at <= size do
    if top + nmemo > most then break end
    local code = codes[at]
    at = at + 1
    if code == 0x94 then
      if top < 1 then break end
      memo[nmemo] = stack[top]; nmemo = nmemo + 1
    elseif code == 0x8C then
      local n = codes[at]
      if n == nil then break end
      top = top + 1; stack[top] = (at + 1) * SPAN + n; at = at + 1 + n
      if codes[at] == 0x94 then memo[nmemo] = stack[top]; nmemo = nmemo + 1; at = at + 1 end
    elseif code == 0x68 then
      local index = codes[at]
      if index == nil then break end
      local got = memo[index]; if got == nil then got = false end
      top = top + 1; stack[top] = got; at = at + 1
    elseif PUSH_FIXED[code] then
      top = top + 1; stack[top] = false; at = at + PUSH_FIXED[code]
      if codes[at] == 0x94 then memo[nmemo] = stack[top]; nmemo = nmemo + 1; at = at + 1 end
    elseif code == 0x28 then
      nmarks = nmarks + 1; marks[nmarks] = top
    elseif code == 0x75 or code == 0x65 then
      if nmarks < 1 then break end
      top = marks[nmarks]; nmarks = nmarks - 1
    elseif code == 0x62 or code == 0x61 or code == 0x86 then  -- BUILD, APPEND, TUPLE2
      if top < 2 then break end
      top = top - 1; stack[top] = false
    elseif code == 0x85 then  -- TUPLE1
      if top < 1 then break end
      stack[top] = false
      if codes[at] == 0x94 then memo[nmemo] = stack[top]; nmemo = nmemo + 1; at = at + 1 end
    elseif code == 0x87 or code == 0x73 then  -- TUPLE3, SETITEM
      if top < 3 then break end
      top = top - 2; stack[top] = false
    elseif code == 0x81 or code == 0x52 then
      if top < 2 then break end
      if code == 0x81 then note(stack[top - 1], 4) else note(stack[top - 1], 2) end
      top = top - 1; stack[top] = false
      if codes[at] == 0x94 then memo[nmemo] = stack[top]; nmemo = nmemo + 1; at = at + 1 end
    elseif code == 0x93 then
      if top < 2 then break end
      local module, qualname = text(stack[top - 1], data), text(stack[top], data)
      local path = '(a name built on the stack)'
      if module and qualname then path = module .. '.' .. qualname end
      top = top - 1; stack[top] = {path}; note(stack[top], 1)
      if codes[at] == 0x94 then memo[nmemo] = stack[top]; nmemo = nmemo + 1; at = at + 1 end
    elseif code == 0x43 or code == 0x8A then
      local n = codes[at]
      if n == nil then break end
      at = at + 1 + n; top = top + 1; stack[top] = false
      if codes[at] == 0x94 then memo[nmemo] = stack[top]; nmemo = nmemo + 1; at = at + 1 end
    elseif code == 0x95 then
      at = at + 8
    elseif code == 0x2E then
      status = 'p'; break
    else
      local op = OPS[code]
      if op == nil then break end
      local kind, how, width, to_mark, pops, pushes = op[1], op[2], op[3], op[4], op[5], op[6]
      local raw = ''
      if how == SIZED then
        local n = le(data, at, width)
        if n == nil then break end
        if op[7] == 1 and n >= 2147483648 then break end
        at = at + width
        if at + n - 1 > size then break end
        raw = sub(data, at, at + n - 1); at = at + n
      elseif how == FIXED then
        raw = sub(data, at, at + width - 1); at = at + width
        if code == 0x80 then protocol = byte(raw, 1) or 0 end
      elseif how == LINE or how == TWO_LINES then
        local stop = find(data, '\\n', at, true)
        if how == TWO_LINES and stop then stop = find(data, '\\n', stop + 1, true) end
        if stop == nil then break end
        raw = sub(data, at, stop - 1); at = stop + 1
      end
      if at > size + 1 then break end
      local value, done = false, false
      if kind == STRING then
        value = raw
      elseif kind == MEMOIZE then
        if top < 1 then break end
        memo[nmemo] = stack[top]; nmemo = nmemo + 1; done = true
      elseif kind == GET or kind == PUT then
        local index
        if how == LINE then index = tonumber(raw) else index = le(raw, 1, #raw) end
        if index == nil then break end
        if kind == GET then
          local got = memo[index]; if got == nil then got = false end
          top = top + 1; stack[top] = got
        else
          if top < 1 then break end
          memo[index] = stack[top]
          if index >= nmemo then nmemo = index + 1 end
        end
        done = true
      elseif kind == MARK then
        nmarks = nmarks + 1; marks[nmarks] = top; done = true
      elseif kind == STACK_GLOBAL then
        if top < 2 then break end
        local module, qualname = text(stack[top - 1], data), text(stack[top], data)
        local path = '(a name built on the stack)'
        if module and qualname then path = module .. '.' .. qualname end
        value = {path}; note(value, 1)
      elseif kind == GLOBAL then
        local form = '3'
        if protocol < 3 then form = '2' end
        value = {'\\1' .. form .. raw}
        if code == 0x69 then note(value, 4) else note(value, 1) end
      elseif kind == EXT then
        value = {'(extension code ' .. le(raw, 1, #raw) .. ')'}; note(value, 1)
      elseif kind == USE then
        if code == 0x81 then
          if top < 2 then break end
          note(stack[top - 1], 4)
        elseif code == 0x92 then
          if top < 3 then break end
          note(stack[top - 2], 4)
        elseif code == 0x52 then
          if top < 2 then break end
          note(stack[top - 1], 2)
        elseif nmarks > 0 and top > marks[nmarks] then
          note(stack[marks[nmarks] + 1], 4)
        end
      elseif kind == POP and top == 0 then
        to_mark, pops = 1, 0
      end
      if not done then
        if to_mark == 1 then
          if nmarks < 1 then break end
          top = marks[nmarks]; nmarks = nmarks - 1
        end
        if pops > 0 then
          if top < pops then break end
          top = top - pops
        end
        for _ = 1, pushes do top = top + 1; stack[top] = value end
      end
    end
  end
  left = nmemo
  return reply(status)
end

-- SCAN steps (at most ``steps``) until ``budget`` bytes were walked or ``spend``
-- microseconds passed by the server's clock (a step that walks
-- eight times that leaves the rest of its keys to the client). Per key listed,
-- packed: its name's length, its length (-1: no string, -2: gone), its status's length,
-- the name, the status: 'p' or 'c' and its names; 'b' not walked here (longer than this
-- script walks, or met once the budget was spent: the client reads it); 'v' and the
-- value of a short memoize version key. Pickles that name nothing and values that are
-- no pickle (most keys) are only counted. With ``totals``, the pickles that name
-- something are counted too, by their census label (``label_of``) and what they name,
-- so only the sums cross the wire: per label and names, packed, the entries, their
-- bytes, the length of the label and names, the label's length, the label, the names.
-- The reply: the cursor, the records, the counts, the sums.
local out, walked = {}, 0
local group_of, groups, entries, bytes = {}, {}, {}, {}
local plain, plain_bytes, other, other_bytes = 0, 0, 0, 0
local taken, started, spent = 0, redis.call('TIME'), 0
repeat
  local step = redis.call('SCAN', cursor, 'MATCH', match, 'COUNT', count)
  cursor = step[1]
  taken = taken + 1
  for _, name in ipairs(step[2]) do
    local data = redis.pcall('GET', name)
    local size, status = -2, 'x'
    if type(data) == 'table' then
      size = -1
    elseif data then
      size = #data
      if size > longest or walked > 8 * budget then
        status = 'b'
      elseif size <= 256 and byte(name, -1) == 114 and find(name, '_memver', -7, true) then
        status = 'v' .. data
      elseif byte(data, 1) ~= 33 then
        status = 'n'
      elseif not may_name(data) then
        status = 'p'
      else
        walked = walked + size
        status = walk(data)
        if totals and status ~= 'p' then
          local label = label_of(name, start, name_bytes)
          if label ~= 'v' then  -- a long version key's value: the client judges it
            local key = struct.pack('<I4', #label) .. label .. status
            local at = group_of[key]
            if at == nil then
              at = #groups + 1
              group_of[key], groups[at], entries[at], bytes[at] = at, key, 0, 0
            end
            entries[at], bytes[at] = entries[at] + 1, bytes[at] + size
            status = 'x'
          end
        end
      end
    end
    if status == 'p' then
      plain, plain_bytes = plain + 1, plain_bytes + size
    elseif status == 'n' then
      other, other_bytes = other + 1, other_bytes + size
    elseif status ~= 'x' or size == -1 then
      out[#out + 1] = struct.pack('<I4iI4', #name, size, #status) .. name .. status
    end
  end
  local now = redis.call('TIME')
  spent = (now[1] - started[1]) * 1000000 + (now[2] - started[2])
until cursor == '0' or walked > budget or taken >= steps or spent >= spend
for at, key in ipairs(groups) do
  groups[at] = struct.pack('<I4dI4', entries[at], bytes[at], #key) .. key
end
return {cursor, table.concat(out), plain, plain_bytes, other, other_bytes, table.concat(groups)}
"""
)
_SHA = hashlib.sha1(PICKLES_SCRIPT.encode()).hexdigest()
#: Each listed key's name's length, the value's length and its status's length.
_HEAD = struct.Struct("<IiI")
#: Sums kept on the client across calls before they are handed on (memory stays flat).
MAX_SUMS = 10_000
#: Each sum's entries, bytes and the length of its label and names; the label's length.
_SUM = struct.Struct("<IdI")
_LABEL = struct.Struct("<I")


def _decoded(path: bytes) -> str:
    if path[:1] == b"\x01":  # GLOBAL or INST: protocol form, then the two lines
        return pickle_refs.global_name(path[2:], 2 if path[1:2] == b"2" else 3)
    return path.decode("utf-8", "backslashreplace")


def _refs(status: bytes) -> pickle_refs.Refs:
    if status == b"p":  # a pickle that names nothing: most values
        return pickle_refs.NONE
    names: dict[str, int] = {}
    for part in status[1:].split(b"\0")[:-1]:
        path = _decoded(part[1:])
        names[path] = names.get(path, 0) | (part[0] - 48)
    return pickle_refs.Refs(names, "cut short" if status[:1] == b"c" else None)


def _call(client: Any, cursor: Any, match: str, limits: tuple[int, ...]) -> list[Any]:
    args = [*limits[:3], cursor, match, *limits[3:]]
    try:
        return list(client.evalsha(_SHA, 0, *args))
    except Exception as exc:
        if not is_error(exc, "NoScriptError"):
            raise
    return list(client.eval(PICKLES_SCRIPT, 0, *args))


def walked_entries(
    client: Any, match: str, cut: int, limit: int, most: int, totals: bool = False
) -> Iterator[StoredEntry] | None:
    """The entries under ``match`` with the names each pickle refers to, walked inside
    the server (``refs`` set; a long value is read here, ``payload`` set instead), or
    None where the server runs no script (before any entry was read). With ``totals``,
    the entries that name something come summed by census label and names (``label``
    set, ``name`` empty), as a census needs them; else one by one."""
    limits: tuple[int, ...] = (most, STEP_BYTES, SCRIPT_VALUE_BYTES, SCAN_COUNT, SCANS_PER_CALL)
    limits += (int(totals), cut + 1, MAX_NAME_BYTES, STEP_MICROSECONDS)
    try:
        reply = _call(client, 0, match, limits)
    except errors_named("ResponseError") as exc:
        if refuses_scripts(exc, True):
            return None
        raise

    def entries() -> Iterator[StoredEntry]:
        # The next call goes out before this one's entries are handed on: the server
        # walks while the client counts (redis-py lends each thread its own connection).
        sums: dict[bytes, list[int]] = {}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pickles") as caller:
            answer = reply
            while True:
                cursor, packed = answer[0], bytes(answer[1])
                last = int(cursor) == 0
                following = None if last else caller.submit(_call, client, cursor, match, limits)
                plain, plain_bytes, other, other_bytes = (int(n) for n in answer[2:6])
                if plain:
                    yield StoredEntry(b"", b"", plain_bytes, refs=pickle_refs.NONE, entries=plain)
                if other:
                    yield StoredEntry(b"", None, other_bytes, entries=other)
                _add_sums(sums, bytes(answer[6]))
                if len(sums) >= MAX_SUMS or following is None:
                    yield from _summed(sums)
                    sums = {}
                at = 0
                while at < len(packed):
                    named, size, length = _HEAD.unpack_from(packed, at)
                    at += _HEAD.size + named + length
                    name = packed[at - length - named : at - length]
                    status = packed[at - length : at]
                    yield _entry(client, name[cut:], name, size, status, limit)
                if following is None:
                    return
                answer = following.result()

    return entries()


def _add_sums(sums: dict[bytes, list[int]], packed: bytes) -> None:
    """One call's sums added to those of the calls before (a call sees a few hundred
    entries, and a cache has as many labels: most sums of a call are of one entry)."""
    at = 0
    while at < len(packed):
        count, size, length = _SUM.unpack_from(packed, at)
        at += _SUM.size + length
        key = packed[at - length : at]
        known = sums.get(key)
        if known is None:
            sums[key] = [count, int(size)]
        else:
            known[0] += count
            known[1] += int(size)


def _summed(sums: dict[bytes, list[int]]) -> Iterator[StoredEntry]:
    """The sums as entries: alike entries (one label, the same names) as one."""
    for key, (count, size) in sums.items():
        (labelled,) = _LABEL.unpack_from(key)
        label, status = key[_LABEL.size : _LABEL.size + labelled], key[_LABEL.size + labelled :]
        yield StoredEntry(b"", b"", size, refs=_refs(status), entries=count, label=label)


def _entry(
    client: Any, rest: bytes, name: Any, size: int, status: bytes, limit: int
) -> StoredEntry:
    kind = status[:1]
    if kind == b"x":
        return StoredEntry(rest, None, 0, "not a string" if size == -1 else "gone")
    if kind == b"n":
        return StoredEntry(rest, None, size)
    if kind == b"v":
        value = status[1:]
        return StoredEntry(rest, value[1:] if value[:1] == b"!" else None, size)
    if kind == b"b":
        if size > limit:
            return StoredEntry(rest, None, size, f"not read: over {limit:,} bytes")
        value = client.get(name) or b""
        return StoredEntry(rest, value[1:] if value[:1] == b"!" else None, len(value))
    return StoredEntry(rest, b"", size, refs=_refs(status))
