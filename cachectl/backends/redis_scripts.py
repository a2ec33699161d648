"""The Lua step of a Redis sweep (see redis_sweep): what the server runs per round trip.

Each call walks SCAN steps and unlinks their matches until its time budget is
spent, the keyspace is walked, or (for the first of a sweep's two lanes) the walk
reaches the second half of the hash table, where the other lane started.
"""

from __future__ import annotations

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
#: crosses over goes on a little past the middle, which the other lane walks too).
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
local deadline = clock() + tonumber(ARGV[5])
local cursor, pattern, count, dry = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local half = ARGV[6] == '1'

local function done()
  return cursor == '0' or (half and string.byte(cursor, -1) % 2 == 1) or clock() >= deadline
end

local function unlink(names)
  local removed = 0
  for i = 1, #names, 500 do
    removed = removed + redis.call('UNLINK', unpack(names, i, math.min(i + 499, #names)))
  end
  return removed
end
"""

#: Returns the cursor and the keys removed (or that would be).
STEP_SCRIPT = (
    STEP_PREAMBLE
    + """
local removed = 0
repeat
  local step = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', count)
  cursor = step[1]
  if dry then removed = removed + #step[2] else removed = removed + unlink(step[2]) end
until done()
return {cursor, removed}
"""
)

#: The step with exclusions: ARGV[7] is the prefix's length in bytes, ARGV[8] how
#: many of the globs are the operator's (the others keep nested caches' keys),
#: then each glob as exclusions.py hands it over (its number of segments, then
#: each segment's length and Lua pattern). Returns the cursor, the keys removed
#: (or that would be), the keys kept, those kept by an operator's glob, then how
#: many keys each glob matched.
EXCLUDE_STEP_SCRIPT = (
    STEP_PREAMBLE
    + """
local cut = tonumber(ARGV[7])
local own = tonumber(ARGV[8])
local globs, a = {}, 9
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

local removed, kept, kept_own, matched = 0, 0, 0, {}
for g = 1, #globs do matched[g] = 0 end
repeat
  local step = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', count)
  cursor = step[1]
  local doomed = {}
  for _, name in ipairs(step[2]) do
    local found, by_own = false, false
    for g = 1, #globs do
      if matches(globs[g], name) then
        matched[g] = matched[g] + 1
        found = true
        if g <= own then by_own = true end
      end
    end
    if found then kept = kept + 1 else doomed[#doomed + 1] = name end
    if by_own then kept_own = kept_own + 1 end
  end
  if dry then removed = removed + #doomed else removed = removed + unlink(doomed) end
until done()
return {cursor, removed, kept, kept_own, unpack(matched)}
"""
)
