"""The Lua step of a Redis sweep (see redis_sweep): what the server runs per round trip.

Each call walks SCAN steps and unlinks their matches until its time budget is
spent, its work cap is reached, the keyspace is walked, or (for the first of a
sweep's two lanes) the walk reaches the second half of the hash table, where the
other lane started.

The time budget alone is not a bound on every server: Valkey returns the same
``TIME`` all through a script (the time the script started), so a loop waiting for
the clock to move walks the whole keyspace in one call. The work cap (``WorkCap``:
how many inner SCAN steps a call may take, sized per run from what the first call
did in how long) bounds a call whatever the clock does; where the clock moves, the
cap is twice what the budget takes, so the budget decides as before.
"""

from __future__ import annotations

from typing import Any

#: How long one call of the Lua step keeps the server, in microseconds. The
#: script loops SCAN steps until this much time has passed (or the keyspace is
#: walked), so a call does as much as the server manages in that time whatever
#: the keys cost, where a fixed COUNT would be sized for the worst case. A
#: removal keeps a call of each of its two lanes at the server, so another
#: client waits at most about two calls: a millisecond each keeps that near the
#: two milliseconds of one lane's two-millisecond step. (Measured on 1,000,000
#: keys among 2,000,000: 2 ms steps in two lanes were no faster, and their
#: worst PING went past 10 ms once in three runs.)
STEP_BUDGET_US = 1000

#: Keys each inner SCAN of the Lua step looks at: small enough that the budget
#: is overrun by little, large enough that the per-call cost of SCAN is noise.
SCRIPT_SCAN_COUNT = 250

#: What both Lua steps start with. ARGV: the cursor, the SCAN pattern, the COUNT
#: of each inner SCAN, '1' for a dry run, the time budget in microseconds, '1' to
#: stop once the walk is in the hash table's second half, where the other lane of
#: a removal started: SCAN walks the buckets in reversed-bit order, so the second
#: half's cursors are exactly the odd ones, at any table size (the inner SCAN that
#: crosses over goes on a little past the middle, which the other lane walks too);
#: then the work cap, the most inner SCAN steps the call may take (0: none).
#: ``scans`` counts them and ``started`` is the clock at the start: both go back
#: to the client, which sizes the cap from them (``WorkCap``).
#: Redis 3.2 to 4 replicate a script by its text unless told otherwise, and then
#: refuse a write after TIME (its result differs on a replica); effects
#: replication, the only way from Redis 7 (where the call is a no-op) and the
#: default from 5, replicates the UNLINKs themselves. ``clock`` is the server's
#: time in microseconds (a Lua number holds it exactly).
STEP_PREAMBLE = """
if redis.replicate_commands then redis.replicate_commands() end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local started = clock()
local deadline = started + tonumber(ARGV[5])
local cursor, pattern, count, dry = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local half = ARGV[6] == '1'
local most = tonumber(ARGV[7])
local scans = 0

local function done()
  scans = scans + 1
  return cursor == '0' or (half and string.byte(cursor, -1) % 2 == 1) or clock() >= deadline
    or (most > 0 and scans >= most)
end

local function unlink(names)
  local removed = 0
  for i = 1, #names, 500 do
    removed = removed + redis.call('UNLINK', unpack(names, i, math.min(i + 499, #names)))
  end
  return removed
end
"""

#: Returns the cursor, the keys removed (or that would be), the inner SCAN steps
#: taken, the microseconds they took by the script's clock (0 where it stands still)
#: and the time the call started, in microseconds.
STEP_SCRIPT = (
    STEP_PREAMBLE
    + """
local removed = 0
repeat
  local step = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', count)
  cursor = step[1]
  if dry then removed = removed + #step[2] else removed = removed + unlink(step[2]) end
until done()
return {cursor, removed, scans, clock() - started, started}
"""
)

#: The step with exclusions: ARGV[8] is the prefix's length in bytes, ARGV[9] how
#: many of the globs are the operator's (the script keeps by every glob alike; the
#: client tells them apart when it counts),
#: then each glob as exclusions.py hands it over (its number of segments, then
#: each segment's length and Lua pattern). Returns what STEP_SCRIPT returns, then
#: the name of each key kept, without the prefix: the client counts them, each once
#: (``Exclusions.count_kept``: a SCAN may return a key twice).
EXCLUDE_STEP_SCRIPT = (
    STEP_PREAMBLE
    + """
local cut = tonumber(ARGV[8])
local globs, a = {}, 10
while a <= #ARGV do
  local lengths, anchored, floating = {}, {}, {}
  for s = 1, tonumber(ARGV[a]) do
    lengths[s] = tonumber(ARGV[a + 2 * s - 1])
    floating[s] = ARGV[a + 2 * s]
    anchored[s] = '^' .. floating[s]
  end
  a = a + 1 + 2 * #lengths
  globs[#globs + 1] = {lengths, anchored, floating}
end

local function matches(glob, name)
  local lengths, anchored, floating = glob[1], glob[2], glob[3]
  local k, n, at = #lengths, #name, cut + 1
  if k == 0 then return false end
  if k == 1 then
    return n - cut == lengths[1] and string.find(name, anchored[1], at) ~= nil
  end
  if lengths[1] > 0 then
    if string.find(name, anchored[1], at) == nil then return false end
    at = at + lengths[1]
  end
  for s = 2, k - 1 do
    if lengths[s] > 0 then
      local _, stop = string.find(name, floating[s], at)
      if stop == nil then return false end
      at = stop + 1
    end
  end
  if lengths[k] > 0 then
    local start = n - lengths[k] + 1
    return start >= at and string.find(name, anchored[k], start) ~= nil
  end
  return true
end

local removed, kept = 0, {}
repeat
  local step = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', count)
  cursor = step[1]
  local doomed = {}
  for _, name in ipairs(step[2]) do
    local found = false
    for g = 1, #globs do
      if matches(globs[g], name) then found = true break end
    end
    if found then kept[#kept + 1] = string.sub(name, cut + 1) else doomed[#doomed + 1] = name end
  end
  if dry then removed = removed + #doomed else removed = removed + unlink(doomed) end
until done()
local reply = {cursor, removed, scans, clock() - started, started}
for _, rest in ipairs(kept) do reply[#reply + 1] = rest end
return reply
"""
)


#: Inner SCAN steps the first call of a sweep may take, before anything is measured:
#: about a millisecond on the servers measured (SCAN of 250 keys and UNLINK of the
#: matches took 0.1 to 0.35 ms by SLOWLOG on Redis 6.2 and 7.0 and Valkey 9.1).
FIRST_CALL_SCANS = 4
#: Where the server's clock moves inside a script, the cap is this many times what
#: fits in the budget: the budget decides, the cap only catches a clock that stops.
CLOCK_MOVES_SLACK = 2


def server_time_us(reply: Any) -> int:
    """A ``TIME`` reply in microseconds."""
    return int(reply[0]) * 1_000_000 + int(reply[1])


class WorkCap:
    """How many inner SCAN steps one call of a Lua step (sweep or census) may take: the
    bound that holds whatever the server's clock does inside a script, sized per server
    from what the calls before did in how long.

    Each call goes with a ``TIME`` right behind it on the same connection: the server
    runs that as soon as the call ends (one client's pipelined commands run in a row;
    were another's to come between, the measure would only err long, the cap small),
    outside any script, where its clock is right everywhere. The call's length is that
    time less the time the call started at, which its script returns (where the clock
    stands still, that is the one value it has): the server's own clock, with no round
    trip in it. Where the script's clock moved, the cap is ``CLOCK_MOVES_SLACK``
    budgets' worth of steps, so the time budget still ends each call; where it stood
    still (Valkey), the cap is what fits in one budget. It follows the keys' cost as
    the walk goes, shrinking at once and at most doubling from one call to the next
    (a call slowed by the machine costs a few short calls, never a long one)."""

    def __init__(self, budget_us: int, first: int = FIRST_CALL_SCANS) -> None:
        self.budget_us = budget_us
        #: The cap for the next call: ARGV of the script.
        self.scans = first
        #: Whether the last call found the server's clock standing still (None: no
        #: call measured yet).
        self.clock_stands_still: bool | None = None

    def observe(self, scans: int, inside_us: int, started_us: int, ended_us: int | None) -> None:
        """A call took ``scans`` inner SCAN steps, its script saw ``inside_us`` pass on
        the clock (0: it stood still), it started at ``started_us`` and the TIME behind
        it read ``ended_us`` (None: not read)."""
        if scans <= 0 or ended_us is None:
            return
        per_scan = max(ended_us - started_us, 1) / scans
        self.clock_stands_still = inside_us <= 0
        slack = 1 if self.clock_stands_still else CLOCK_MOVES_SLACK
        fits = int(slack * self.budget_us / per_scan)
        self.scans = max(1, min(fits, 2 * self.scans))
