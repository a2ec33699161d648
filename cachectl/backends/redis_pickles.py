"""check-pickles on Redis: a Lua script reads every value where it lies and sends only
those that may name something.

Reading every value on the client costs a reply per value; walking every pickle inside the
server costs Lua 20 to 30 µs a value. Here a script SCANs and reads each value, counts
those that cannot name anything (no pickle, or a pickle without the opcodes that name:
``pickle_refs.may_name``, asked at C speed with ``string.find``), and packs the others
into one reply per call, each with its census label where a census asks; the client
reads their names in a batch per call through ``codec.pickle_names`` (pickle's C
unpickler, every name answered by an inert stand-in, in a worker process) while the
server runs the next call. For a census only sums by label and names are handed on. A
call ends with the SCAN step under way once ``STEP_MICROSECONDS`` passed by the server's
clock, or (where that clock stands still inside a script) once it packed ``STEP_BYTES``
of values. A value longer than ``SCRIPT_VALUE_BYTES``, or met in a step that packed far
past the budget, is left to the client (read with its own GET), so a planted value
cannot hold the server long.
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
from cachectl.codec import pickle_names, pickle_refs

#: How long one call reads, by the server's clock, before it ends with the SCAN step
#: under way: longer than a census step (4 ms), as a round trip per call costs more
#: beside a call that reads fewer keys; far inside the bound tests hold every step to.
STEP_MICROSECONDS = 6000
#: The bytes of values one call sends at most (the bound where the server's clock stands
#: still inside a script, as Valkey's does), after which it ends likewise.
STEP_BYTES = 96 * 1024
#: Longer values are read by the client with a GET of their own.
SCRIPT_VALUE_BYTES = pickle_names.FAST_VALUE_BYTES
#: Keys one SCAN step inside the script asks for, and the most steps one call takes: where
#: the server's clock stands still inside a script (Redis 7), a call reads at most this
#: many keys (about 6 µs each, half of them sent): about 4 ms, and four times as long
#: still inside the bound tests hold every step to on a machine that slows the server.
SCAN_COUNT = 25
SCANS_PER_CALL = 24


PICKLES_SCRIPT = (
    """
local budget, longest = tonumber(ARGV[1]), tonumber(ARGV[2])
local cursor, match, count, steps = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local totals, start, name_bytes = ARGV[7] == '1', tonumber(ARGV[8]), tonumber(ARGV[9])
local spend = tonumber(ARGV[10])
local byte, find = string.byte, string.find
"""
    + LABEL_FUNCTION
    + """
-- Whether a value (from byte 2) could name anything: STACK_GLOBAL, EXT1/2/4, or a 'c'
-- or 'i' (GLOBAL, INST) with two newlines after it. ``pickle_refs.may_name`` asks
-- the same; by plain finds (a byte search in C: a pattern with a class of bytes cost
-- two microseconds a value more), so most values never leave the server.
local function may_name(data)
  if find(data, '\\147', 2, true) or find(data, '\\130', 2, true)
    or find(data, '\\131', 2, true) or find(data, '\\132', 2, true) then
    return true
  end
  -- GLOBAL and INST take two lines: without two newlines (most pickles) neither is there
  local last = find(data, '\\n', 2, true)
  if last == nil or find(data, '\\n', last + 1, true) == nil then return false end
  local first, inst = find(data, 'c', 2, true), find(data, 'i', 2, true)
  if first == nil or (inst ~= nil and inst < first) then first = inst end
  if first == nil then return false end
  local line = find(data, '\\n', first + 1, true)
  return line ~= nil and find(data, '\\n', line + 1, true) ~= nil
end

-- SCAN steps (at most ``steps``) until ``budget`` bytes of values that may name something
-- are packed or ``spend`` microseconds passed by the server's clock (a step that packs
-- eight times that leaves the rest of its keys to the client). Per key listed, packed:
-- its name's length, its length (-1: no string, -2: gone), its status's length, the name,
-- the status: 'b' not sent (longer than ``longest``, or met once the budget was spent:
-- the client reads it); 'v' and the value of a short memoize version key. Pickles that
-- cannot name anything and values that are no pickle (most keys) are only counted. The
-- values that may name something go as records of ``pickle_names.RECORD``: the tag's
-- length, the value's, the tag ('L' and the census label with ``totals``, else 'N' and
-- the key's name), the value; the client hands them on as they are.
-- The reply: the cursor, the listed keys, the counts, the records.
local out, records, sent = {}, {}, 0
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
      if size > longest or sent > 8 * budget then
        status = 'b'
      elseif size <= 256 and byte(name, -1) == 114 and find(name, '_memver', -7, true) then
        status = 'v' .. data
      elseif byte(data, 1) ~= 33 then
        status = 'n'
      elseif not may_name(data) then
        status = 'p'
      else
        sent = sent + size
        local label = totals and label_of(name, start, name_bytes)
        local tag
        if label and label ~= 'v' then
          tag = 'L' .. label
        else  -- one by one; or a long version key's value: the client judges it by its name
          tag = 'N' .. name
        end
        records[#records + 1] = struct.pack('<I4I4', #tag, size)  -- the value not copied
        records[#records + 1] = tag
        records[#records + 1] = data
        status = 'x'
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
until cursor == '0' or sent > budget or taken >= steps or spent >= spend
return {cursor, table.concat(out), plain, plain_bytes, other, other_bytes, table.concat(records)}
"""
)
_SHA = hashlib.sha1(PICKLES_SCRIPT.encode()).hexdigest()
#: Each listed key's name's length, the value's length and its status's length.
_HEAD = struct.Struct("<IiI")
#: Sums kept on the client across calls before they are handed on (memory stays flat).
MAX_SUMS = 10_000


def _call(client: Any, cursor: Any, match: str, limits: tuple[int, ...]) -> list[Any]:
    args = [*limits[:2], cursor, match, *limits[2:]]
    try:
        return list(client.evalsha(_SHA, 0, *args))
    except Exception as exc:
        if not is_error(exc, "NoScriptError"):
            raise
    return list(client.eval(PICKLES_SCRIPT, 0, *args))


def walked_entries(
    client: Any, match: str, cut: int, limit: int, totals: bool = False
) -> Iterator[StoredEntry] | None:
    """The entries under ``match`` with the names each pickle refers to (``refs`` set;
    the values that may name something read by ``pickle_names``, a long value read here,
    ``payload`` set instead), or None where the server runs no script (before any entry
    was read). With ``totals``, the entries that name something come summed by census
    label and names (``label`` set, ``name`` empty), as a census needs them; else one by
    one."""
    limits: tuple[int, ...] = (STEP_BYTES, SCRIPT_VALUE_BYTES, SCAN_COUNT, SCANS_PER_CALL)
    limits += (int(totals), cut + 1, MAX_NAME_BYTES, STEP_MICROSECONDS)
    try:
        reply = _call(client, 0, match, limits)
    except errors_named("ResponseError") as exc:
        if refuses_scripts(exc, True):
            return None
        raise

    def entries() -> Iterator[StoredEntry]:
        # The next call goes out before this one's reply is read, and this call's records
        # go to the name reader before the last call's sums are taken: the server scans,
        # the reader's worker reads names and this process counts, all at once (redis-py
        # lends each thread its own connection).
        sums: dict[tuple[bytes, Any, Any], list[int]] = {}
        waiting = False
        with ThreadPoolExecutor(1, "pickles") as caller, pickle_names.NameReader() as reader:
            answer = reply
            while True:
                cursor = answer[0]
                following = None
                if int(cursor) != 0:
                    following = caller.submit(_call, client, cursor, match, limits)
                plain, plain_bytes, other, other_bytes = (int(n) for n in answer[2:6])
                if other:
                    yield StoredEntry(b"", None, other_bytes, entries=other)
                if plain:
                    yield StoredEntry(b"", b"", plain_bytes, refs=pickle_refs.NONE, entries=plain)
                yield from _listed(client, bytes(answer[1]), cut, limit)
                reader.send(bytes(answer[6]), 1)  # each value after cachelib's "!"
                if waiting:
                    yield from _named(reader.take(), cut, sums)
                waiting = True
                if following is None:
                    yield from _named(reader.take(), cut, sums)
                    yield from _summed(sums)
                    return
                if len(sums) >= MAX_SUMS:
                    yield from _summed(sums)
                    sums = {}
                answer = following.result()

    return entries()


def _listed(client: Any, packed: bytes, cut: int, limit: int) -> Iterator[StoredEntry]:
    """The keys a call lists (not a string, gone, long, a version key's value)."""
    at = 0
    while at < len(packed):
        named, size, length = _HEAD.unpack_from(packed, at)
        at += _HEAD.size + named + length
        name = packed[at - length - named : at - length]
        yield _entry(client, name[cut:], name, size, packed[at - length : at], limit)


def _named(
    summary: pickle_names.Summary, cut: int, sums: dict[tuple[bytes, Any, Any], list[int]]
) -> Iterator[StoredEntry]:
    """A batch's names: an entry per key named ('N'), census labels added to ``sums``."""
    if summary.plain:
        refs = pickle_refs.NONE
        yield StoredEntry(b"", b"", summary.plain_bytes, refs=refs, entries=summary.plain)
    for tag, names, stopped, count, size in summary.sums:
        if tag[:1] == b"N":
            refs = pickle_refs.Refs(dict(names), stopped)
            yield StoredEntry(tag[1 + cut :], b"", size, refs=refs, entries=count)
            continue
        key = (tag[1:], names, stopped)
        known = sums.get(key)
        if known is None:
            sums[key] = [count, size]
        else:
            known[0] += count
            known[1] += size


def _summed(sums: dict[tuple[bytes, Any, Any], list[int]]) -> Iterator[StoredEntry]:
    """The sums as entries: alike entries (one label, the same names) as one."""
    for (label, names, stopped), (count, size) in sums.items():
        refs = pickle_refs.Refs(dict(names), stopped)
        yield StoredEntry(b"", b"", size, refs=refs, entries=count, label=label)


def _entry(
    client: Any, rest: bytes, name: Any, size: int, status: bytes, limit: int
) -> StoredEntry:
    kind = status[:1]
    if kind == b"x":
        return StoredEntry(rest, None, 0, "not a string" if size == -1 else "gone")
    if kind == b"v":
        value = status[1:]
        return StoredEntry(rest, value[1:] if value[:1] == b"!" else None, size)
    # "b": longer than the script sends, or met once a call's budget was spent
    if size > limit:
        return StoredEntry(rest, None, size, f"not read: over {limit:,} bytes")
    value = client.get(name) or b""
    return StoredEntry(rest, value[1:] if value[:1] == b"!" else None, len(value))
