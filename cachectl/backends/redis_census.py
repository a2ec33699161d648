"""One pass over a Redis keyspace that counts, inside the server, what ``stats`` reports.

Asking for each key's TTL and memory from the client costs a reply per key and the
client's time to parse it: on a million keys that was five times what a plain count
costs. Here a Lua script runs SCAN steps until about four milliseconds have passed or
a cap on its SCAN steps is reached (so other clients wait no longer than that, even on
a server whose clock stands still inside a script: ``WorkCap``), labels each key by
the shape Flask-Caching gives it (``statistics.census_label``, which this script
mirrors), and returns, per label, how many keys there were, how many in each TTL
bucket and the memory of the keys it sampled. Only those totals, and the few version
keys with their values, cross the wire; the client adds them up, so its memory depends
on how many labels there are, not on how many keys.

Where the server runs no script (scripting disabled, an ACL, managed services),
the same labels are made on the client from SCAN and pipelined PTTL / MEMORY
USAGE replies; a cluster is walked on every primary at once, one thread each.
"""

from __future__ import annotations

import struct
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from cachectl.backends.redis_clients import errors_named, is_cluster, is_error
from cachectl.backends.redis_scripts import WorkCap, server_time_us
from cachectl.backends.redis_sweep import (
    SCAN_COUNT,
    ScriptsRefused,
    is_refused_permission,
    log,
    on_each_primary,
    refuses_scripts,
)
from cachectl.backends.statistics import (
    LIFETIME_BUCKET_LIMITS,
    MAX_NAME_BYTES,
    Census,
    census_label,
)

if TYPE_CHECKING:
    from cachectl.backends.base import Tally
    from cachectl.backends.exclusions import Exclusions

#: How long one script call may hold the server, in microseconds. Each call also costs
#: a fixed share (a round trip, and totals per label to build and read: a few hundred
#: labels on a busy cache), about a tenth of a call this long; at two milliseconds it
#: was a fifth. Another client waits at most this and one SCAN step.
STEP_BUDGET_MICROSECONDS = 4000
#: Keys one SCAN step inside the script looks at: small enough that the step the
#: budget runs out in ends soon after (calls take 4.4 ms at the median, 4.8 ms at most
#: by the server's SLOWLOG on a census of 200,000 keys among 400,000).
CENSUS_SCAN_COUNT = 250
#: Inner SCAN steps of the first call, before the work cap is sized (``WorkCap``): a
#: few milliseconds of a census's labelling on the servers measured.
FIRST_CALL_SCANS = 6

#: A version key's value longer than this is not returned (Flask-Caching writes 6
#: characters, pickled in about 20 bytes): a foreign key named ``*_memver`` could be
#: large, and its value is not a version anyway.
VERSION_VALUE_LIMIT = 256

#: ARGV: cursor, SCAN MATCH pattern, COUNT, prefix length in bytes, sample every Nth
#: key's memory (0: none), how many keys were walked before this call (so sampling
#: stays even across calls), the TTL bucket limits in milliseconds, the version
#: value limit, the time budget in microseconds, the most keys to walk (0: all),
#: '1' for labels in detail (by function version, view path, fragment name; and the
#: version keys' values) or '0' for kinds only (plain ``stats``: cheaper), the
#: longest view path or fragment name kept (``statistics.MAX_NAME_BYTES``), and the
#: work cap: the most SCAN steps the call may take (0: none).
#: Returns: cursor, keys walked, whether MEMORY was refused, the SCAN steps taken,
#: the microseconds they took by the script's clock (0 where it stands still inside
#: a script, as on Valkey: the work cap then bounds the call), the time the call
#: started in microseconds (``WorkCap``), the totals as three
#: strings, packed little-endian: per label eight 8-byte counts (keys, one per TTL
#: bucket with no expiry first, keys sampled, bytes sampled); per label its length in
#: two bytes; the labels one after the other. Then per version key: name, value (''
#: when too long or not a string), PTTL. Packed numbers cost the server and the client
#: far less than text or a reply element per count: with hundreds of labels, making
#: and reading the totals was a fifth of a two-millisecond call.
CENSUS_SCRIPT = """
local cut = tonumber(ARGV[4])
local every = tonumber(ARGV[5])
local walked = tonumber(ARGV[6])
local minute, hour, day = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local value_limit = tonumber(ARGV[10])
local budget = tonumber(ARGV[11])
local most = tonumber(ARGV[12])
local detail = ARGV[13] == '1'
local longest = tonumber(ARGV[14])
local most_scans = tonumber(ARGV[15])
local scans, spent = 0, 0
local byte, find, sub, call = string.byte, string.find, string.sub, redis.call
-- The totals of label i are counts[base + 1] to counts[base + 8], base = 8 * (i - 1):
-- keys, the five TTL buckets, keys measured, bytes measured. One flat array and an
-- index by kind and name: no table per label, and a few packs per call.
local counts, labels, lengths = {}, {}, {}
local index = {e = {}, w = {}, f = {}, v = {}, o = {}}
local versions = {}
local memory_refused = 0
local started = call('TIME')
local cursor = ARGV[1]
local start = cut + 1

local function view_segment(path)
  local segment = string.match(path, '^/[^/]*') or path
  if #segment == #path then
    local digest = string.match(segment, '%x+$')
    if digest then
      local strip = 0
      for _, size in ipairs({32, 40, 64, 128}) do
        if #digest >= size then strip = size end
      end
      segment = sub(segment, 1, #segment - strip)
    end
  end
  return segment
end

repeat
  local step = call('SCAN', cursor, 'MATCH', ARGV[2], 'COUNT', tonumber(ARGV[3]))
  cursor = step[1]
  local found = step[2]
  for i = 1, #found do
    local name = found[i]
    local ttl = -2
    if most == 0 or walked < most then ttl = call('PTTL', name) end
    if ttl ~= -2 then
      walked = walked + 1
      local size = #name
      local n = size - cut
      local first = byte(name, start)
      local kind, label = 'o', ''
      if n >= 7 and byte(name, size) == 114 and find(name, '_memver', size - 6, true) then
        kind = 'v'
      elseif first == 95 and find(name, '_template_fragment_cache_', start, true) == start then
        kind = 'f'
        if detail then
          label = sub(name, start + 25)
          local vary = find(label, '_%d')
          if vary then label = sub(label, 1, vary - 1) end
          label = sub(label, 1, longest)
        end
      elseif first == 118 and find(name, 'view/', start, true) == start then
        kind = 'w'
        if detail then label = sub(view_segment(sub(name, start + 5)), 1, longest) end
      elseif first == 47 and #(string.match(name, '%x*$')) >= 32 then
        kind = 'w'  -- before 2.5, a query_string=True view: the path, then the digest
        if detail then label = sub(view_segment(sub(name, start)), 1, longest) end
      elseif (n == 22 or n == 28) and not find(name, '[^%w%+/=]', start) then
        kind = 'e'
        if detail then label = sub(name, start + 16) end
      end
      local of_kind = index[kind]
      local base = of_kind[label]
      if base == nil then
        base = #counts
        of_kind[label] = base
        for k = base + 1, base + 8 do counts[k] = 0 end
        local whole = kind .. label
        labels[#labels + 1] = whole
        lengths[#lengths + 1] = #whole
      end
      counts[base + 1] = counts[base + 1] + 1
      local bucket = base + 6
      if ttl == -1 then bucket = base + 2
      elseif ttl < minute then bucket = base + 3
      elseif ttl < hour then bucket = base + 4
      elseif ttl < day then bucket = base + 5
      end
      counts[bucket] = counts[bucket] + 1
      if every > 0 and memory_refused == 0 and walked % every == 0 then
        local used = redis.pcall('MEMORY', 'USAGE', name, 'SAMPLES', 0)
        if type(used) == 'table' and used.err then
          memory_refused = 1
        elseif used then
          counts[base + 7] = counts[base + 7] + 1
          counts[base + 8] = counts[base + 8] + used
        end
      end
      if kind == 'v' and detail then
        local value = ''
        if call('TYPE', name).ok == 'string' and call('STRLEN', name) <= value_limit then
          value = call('GET', name) or ''
        end
        versions[#versions + 1] = {sub(name, start), value, ttl}
      end
    end
  end
  local now = call('TIME')
  spent = (now[1] - started[1]) * 1000000 + (now[2] - started[2])
  scans = scans + 1
until cursor == '0' or spent >= budget or (most > 0 and walked >= most)
  or (most_scans > 0 and scans >= most_scans)

-- Packed 128 numbers a call (unpack has a limit on how many values it spreads).
local function packed(numbers, format, width)
  local parts, each = {}, string.rep(format, 128)
  for first = 1, #numbers, 128 do
    local last = math.min(first + 127, #numbers)
    local chunk = each
    if last - first < 127 then chunk = string.rep(format, last - first + 1) end
    parts[#parts + 1] = struct.pack('<' .. chunk, unpack(numbers, first, last))
  end
  return table.concat(parts)
end

local reply = {
  cursor, walked, memory_refused, scans, spent, started[1] * 1000000 + started[2],
  packed(counts, 'i8'), packed(lengths, 'I2'), table.concat(labels),
}
for _, version in ipairs(versions) do
  reply[#reply + 1] = version[1]
  reply[#reply + 1] = version[2]
  reply[#reply + 1] = version[3]
end
return reply
"""

#: The census's label of one key (``census_label``'s rules) as a Lua function
#: ``label_of(name, start, longest)`` (``start``: the first byte after the prefix), for
#: a script that labels only some of its keys: ``redis_pickles`` labels the entries
#: that name a class. ``CENSUS_SCRIPT`` labels every key inline, where a call per key
#: would cost it; tests hold both to ``census_label``.
LABEL_FUNCTION = """
local function view_segment(path)
  local segment = string.match(path, '^/[^/]*') or path
  if #segment == #path then
    local digest = string.match(segment, '%x+$')
    if digest then
      local strip = 0
      for _, size in ipairs({32, 40, 64, 128}) do
        if #digest >= size then strip = size end
      end
      segment = string.sub(segment, 1, #segment - strip)
    end
  end
  return segment
end
local function label_of(name, start, longest)
  local size, sub, find = #name, string.sub, string.find
  local n, first = size - start + 1, string.byte(name, start)
  if n >= 7 and string.byte(name, size) == 114 and find(name, '_memver', size - 6, true) then
    return 'v'
  elseif first == 95 and find(name, '_template_fragment_cache_', start, true) == start then
    local label = sub(name, start + 25)
    local vary = find(label, '_%d')
    if vary then label = sub(label, 1, vary - 1) end
    return 'f' .. sub(label, 1, longest)
  elseif first == 118 and find(name, 'view/', start, true) == start then
    return 'w' .. sub(view_segment(sub(name, start + 5)), 1, longest)
  elseif first == 47 and #(string.match(name, '%x*$')) >= 32 then
    return 'w' .. sub(view_segment(sub(name, start)), 1, longest)
  elseif (n == 22 or n == 28) and not find(name, '[^%w%+/=]', start) then
    return 'e' .. sub(name, start + 16)
  end
  return 'o'
end
"""


#: How the script packs each label's totals, and each label's length.
_COUNTS = struct.Struct("<8q")
_LENGTH = struct.Struct("<H")


def _read_reply(reply: list[Any], census: Census) -> None:
    """Add one script call's totals to ``census``."""
    memory_refused, counts, lengths, labels = reply[2], reply[6], reply[7], reply[8]
    if int(memory_refused):
        census.memory_unavailable = "the server's user may not run MEMORY USAGE"
    at = 0
    for totals, (size,) in zip(_COUNTS.iter_unpack(counts), _LENGTH.iter_unpack(lengths)):
        census.add_totals(labels[at : at + size], totals)
        at += size
    at = 9
    while at < len(reply):
        name, value, ttl = reply[at], reply[at + 1], int(reply[at + 2])
        census.add_version(bytes(name), bytes(value) or None, None if ttl < 0 else ttl / 1000)
        at += 3


class CensusRequest(NamedTuple):
    """What one census walks and how closely it looks."""

    #: The SCAN MATCH pattern: the app's prefix, escaped, then a glob.
    match: str
    #: The prefix's length in bytes.
    cut: int
    #: Measure the memory of every ``every``-th key (0: none).
    every: int
    #: Stop once that many keys were walked (None: walk them all).
    limit: int | None = None
    #: Labels by function version, view path and fragment name, and the version keys'
    #: values; without, only by kind (what plain ``stats`` shows, for less work).
    detail: bool = True
    #: Keys their globs keep are left out (counted there).
    exclusions: Exclusions | None = None


def _call(client: Any, sha: str, args: list[Any]) -> tuple[list[Any], int | None]:
    """One call of the census script with a TIME right behind it (``WorkCap``): its
    reply and what the TIME read. By digest; by text (which caches it) where the
    server does not have it, so SCRIPT LOAD, which some servers refuse, is never needed."""
    for command, script in (("EVALSHA", sha), ("EVAL", CENSUS_SCRIPT)):
        pipe = client.pipeline(transaction=False)
        pipe.execute_command(command, script, 0, *args)
        pipe.time()
        reply, ended = pipe.execute(raise_on_error=False)
        if is_error(reply, "NoScriptError") and command == "EVALSHA":
            continue
        if isinstance(reply, Exception):
            raise reply
        return list(reply), None if isinstance(ended, Exception) else server_time_us(ended)
    raise AssertionError("unreachable: EVAL never answers NOSCRIPT")


def _census_with_script(client: Any, request: CensusRequest, census: Census, tally: Tally) -> None:
    """Call the script until the cursor comes full circle. Each reply is added up by a
    second thread while the server runs the next call, so the client's share of the
    time hides behind the server's."""
    import hashlib  # here, not at import: `get` and the other light commands need none

    sha = hashlib.sha1(CENSUS_SCRIPT.encode()).hexdigest()
    limits = [str(seconds * 1000) for seconds in LIFETIME_BUCKET_LIMITS]
    head = [request.match, CENSUS_SCAN_COUNT, request.cut, request.every]
    tail = [*limits, VERSION_VALUE_LIMIT, STEP_BUDGET_MICROSECONDS, request.limit or 0]
    tail += ["1" if request.detail else "0", MAX_NAME_BYTES]
    cap = WorkCap(STEP_BUDGET_MICROSECONDS, FIRST_CALL_SCANS)
    cursor: Any = 0
    walked = 0
    first = True
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="census") as adder:
        added: Future | None = None
        while True:
            try:
                reply, ended_us = _call(client, sha, [cursor, *head, walked, *tail, cap.scans])
            except errors_named("ResponseError") as exc:
                if not refuses_scripts(exc, first):
                    raise
                # The client goes on from the cursor of the refused call (the whole
                # keyspace when it was the first), the keys walked so far counted.
                raise ScriptsRefused(str(exc), [(cursor, False)], walked) from exc
            first = False
            before = walked
            cursor, walked = reply[0], int(reply[1])
            cap.observe(int(reply[3]), int(reply[4]), int(reply[5]), ended_us)
            if added is not None:
                added.result()  # one reply at a time: the census has one writer
            added = adder.submit(_read_reply, reply, census)
            tally.add(walked - before)
            if int(cursor) == 0 or (request.limit is not None and walked >= request.limit):
                added.result()
                return


def _census_from_client(
    client: Any,
    request: CensusRequest,
    census: Census,
    tally: Tally,
    cursor: Any = 0,
    walked: int = 0,
) -> None:
    """The same totals, labelled here: SCAN, then PTTL of each key and MEMORY USAGE of
    every ``every``-th (and GET of version keys) in one pipelined round trip; from
    ``cursor``, ``walked`` keys already counted (where a refused script left off)."""
    cut, limit, exclusions = request.cut, request.limit, request.exclusions
    measure = request.every > 0
    while True:
        cursor, found = client.scan(cursor, match=request.match, count=SCAN_COUNT)
        if exclusions is not None:
            found = [n for n in found if not exclusions.keeps(n[cut:])]
        if limit is not None:
            found = found[: max(0, limit - walked)]
        pipe = client.pipeline(transaction=False)
        sampled: set[int] = set()
        versions: set[int] = set()
        for position, name in enumerate(found):
            pipe.pttl(name)
            if measure and (walked + position + 1) % request.every == 0:
                pipe.memory_usage(name, samples=0)
                sampled.add(position)
            if request.detail and census_label(name[cut:]) == b"v":
                pipe.get(name)
                versions.add(position)
        replies = iter(pipe.execute(raise_on_error=False))
        for position, name in enumerate(found):
            ttl = next(replies)
            if isinstance(ttl, Exception):
                raise ttl
            used = next(replies) if position in sampled else None
            value = next(replies) if position in versions else None
            if ttl == -2:
                continue  # gone between SCAN and PTTL
            walked += 1
            if isinstance(used, Exception):
                if not is_refused_permission(used):
                    raise used
                census.memory_unavailable = str(used)
                measure, used = False, None
            if isinstance(value, Exception):
                value = None  # not a string: not a version Flask-Caching wrote
            rest = name[cut:]
            seconds = None if ttl < 0 else ttl / 1000
            census.add_key(rest, seconds, used, request.detail)
            if position in versions:
                census.add_version(rest, value if value else None, seconds)
        tally.add(len(found))
        if int(cursor) == 0 or (limit is not None and walked >= limit):
            return


def _census_node(client: Any, request: CensusRequest, census: Census, tally: Tally) -> None:
    """One server (a cluster's primary: its script reads only the keys SCAN found on
    it). The nested caches' globs are matched on the client (few apps nest caches)."""
    cursor: Any = 0
    walked = 0
    if request.exclusions is None:
        try:
            _census_with_script(client, request, census, tally)
            return
        except ScriptsRefused as refused:
            log.debug("the server runs no script (%s): counting from the client", refused)
            ((cursor, _half),), walked = refused.left, refused.walked
    _census_from_client(client, request, census, tally, cursor, walked)


def take_census(client: Any, request: CensusRequest, tally: Tally) -> Census:
    """Totals by label of every key ``request`` matches, every primary of a cluster at
    once (``request.limit`` then shared out between them)."""
    census = Census()
    if not is_cluster(client):
        _census_node(client, request, census, tally)
        return census
    parts = [Census() for _ in client.get_primaries()]
    if request.limit is not None:
        request = request._replace(limit=-(-request.limit // len(parts)))
    on_each_primary(
        client,
        tally,
        "census",
        lambda node, index: _census_node(node, request, parts[index], tally),
    )
    for part in parts:
        census.merge(part)
    return census


#: About how many keys' memory one census measures: every key of a smaller cache
#: (exact), an even spread of a larger one (MEMORY USAGE is most of a key's cost).
MEMORY_SAMPLES = 20_000


def memory_every(keys_in_database: int, limit: int | None) -> int:
    """Measure every how-many-th key, so that about ``MEMORY_SAMPLES`` are."""
    walked = keys_in_database if limit is None else min(limit, keys_in_database)
    return max(1, -(-walked // MEMORY_SAMPLES))
