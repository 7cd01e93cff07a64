"""The Lua scripts that make each :class:`~bastion.storage.RedisStore` operation atomic.

Redis runs a script to completion before any other command, so a script that
reads and writes is a transaction across every client and every replica of the
application: of concurrent ``take`` calls one gets the value, of concurrent
``swap`` calls from the same value one wins.

A record is a hash with the fields ``v`` (the value), ``e`` (the expiry in the
application's clock, ``""`` for none) and ``i`` (the secondary key, absent for
none); Redis also expires the hash itself (``PEXPIRE``), so nothing expired stays
behind. The members of a secondary key live in a set that expires no sooner
than its longest-lived member; members whose record has gone are dropped when
the set is next read.

Every script gets the record's key in ``KEYS[1]``; ``ARGV[1]`` is the time now,
``ARGV[2]`` the prefix of the namespace's index sets and ``ARGV[3]`` the record's
own key (the set member). Index set names are built inside the scripts, so these
scripts need a single Redis server (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

__all__ = ["ADD", "DELETE", "DELETE_INDEX", "PURGE", "PUT", "SCAN", "SWAP", "TAKE"]

# Shared functions, prepended to every script that needs them.
_COMMON = """
local function live(e, now)
  return e == false or e == '' or tonumber(e) > now
end
local function unindex(ixprefix, i, member)
  if i then redis.call('SREM', ixprefix .. i, member) end
end
-- An index set lives at least as long as its longest-lived member: ttl_ms 0 means forever.
local function index(ixprefix, i, member, ttl_ms)
  local ix = ixprefix .. i
  local before = redis.call('PTTL', ix)
  redis.call('SADD', ix, member)
  if ttl_ms == 0 then
    redis.call('PERSIST', ix)
  elseif before == -2 or (before >= 0 and before < ttl_ms) then
    redis.call('PEXPIRE', ix, ttl_ms)
  end
end
local function write(rec, ixprefix, member, value, e, ttl_ms, has_index, i)
  redis.call('DEL', rec)
  redis.call('HSET', rec, 'v', value, 'e', e)
  if has_index == '1' then
    redis.call('HSET', rec, 'i', i)
    index(ixprefix, i, member, ttl_ms)
  end
  if ttl_ms > 0 then redis.call('PEXPIRE', rec, ttl_ms) end
end
"""

# ARGV[4..8]: value, expiry, ttl in ms (0: none), "1" when indexed, the index.
PUT = (
    _COMMON
    + """
local now, ixprefix, member = tonumber(ARGV[1]), ARGV[2], ARGV[3]
unindex(ixprefix, redis.call('HGET', KEYS[1], 'i'), member)
write(KEYS[1], ixprefix, member, ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8])
return 1
"""
)

# As PUT, only when no live record is there: 1 when written.
ADD = (
    _COMMON
    + """
local now, ixprefix, member = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local old = redis.call('HMGET', KEYS[1], 'v', 'e', 'i')
if old[1] and live(old[2], now) then return 0 end
unindex(ixprefix, old[3], member)
write(KEYS[1], ixprefix, member, ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8])
return 1
"""
)

# The value when live, and the record deleted either way.
TAKE = (
    _COMMON
    + """
local now, ixprefix, member = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local old = redis.call('HMGET', KEYS[1], 'v', 'e', 'i')
if not old[1] then return false end
redis.call('DEL', KEYS[1])
unindex(ixprefix, old[3], member)
if live(old[2], now) then return old[1] end
return false
"""
)

# ARGV[4..7]: expected value, new value, new expiry, new ttl in ms (0: none). 1 when replaced.
SWAP = (
    _COMMON
    + """
local now, ixprefix, member = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local old = redis.call('HMGET', KEYS[1], 'v', 'e', 'i')
if not old[1] or not live(old[2], now) or old[1] ~= ARGV[4] then return 0 end
local ttl_ms = tonumber(ARGV[7])
redis.call('HSET', KEYS[1], 'v', ARGV[5], 'e', ARGV[6])
if ttl_ms > 0 then redis.call('PEXPIRE', KEYS[1], ttl_ms) else redis.call('PERSIST', KEYS[1]) end
if old[3] then index(ixprefix, old[3], member, ttl_ms) end
return 1
"""
)

# 1 when a live record was deleted.
DELETE = (
    _COMMON
    + """
local now, ixprefix, member = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local old = redis.call('HMGET', KEYS[1], 'e', 'i')
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
unindex(ixprefix, old[2], member)
if live(old[1], now) then return 1 end
return 0
"""
)

# KEYS[1]: the index set; ARGV[2]: the namespace's record key prefix; ARGV[3]: the index.
# A flat list of member, value pairs of the live records; members whose record is gone leave the set.
SCAN = (
    _COMMON
    + """
local now, recprefix, i = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local rec = redis.call('HMGET', recprefix .. member, 'v', 'e', 'i')
  if not rec[1] or rec[3] ~= i then
    redis.call('SREM', KEYS[1], member)
  elseif live(rec[2], now) then
    out[#out + 1] = member
    out[#out + 1] = rec[1]
  end
end
return out
"""
)

# As SCAN's arguments; deletes the set and its records, and answers how many were live.
DELETE_INDEX = (
    _COMMON
    + """
local now, recprefix, i = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local count = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local rec = recprefix .. member
  local old = redis.call('HMGET', rec, 'e', 'i')
  if old[2] == i and redis.call('DEL', rec) == 1 and live(old[1], now) then count = count + 1 end
end
redis.call('DEL', KEYS[1])
return count
"""
)

# KEYS: record keys; ARGV[1]: now; ARGV[2 + n]: the index set prefix and member of KEYS[n].
# Deletes those expired in the application's clock; how many.
PURGE = (
    _COMMON
    + """
local now = tonumber(ARGV[1])
local count = 0
for n, rec in ipairs(KEYS) do
  local old = redis.call('HMGET', rec, 'e', 'i')
  if old[1] and not live(old[1], now) then
    redis.call('DEL', rec)
    unindex(ARGV[2 * n], old[2], ARGV[2 * n + 1])
    count = count + 1
  end
end
return count
"""
)
