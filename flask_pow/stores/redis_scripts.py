"""The Lua scripts of the Redis store: each is atomic and touches one user's
hash tag only, so it runs on Redis Cluster. A session's key is its tag's
session key prefix plus the id from ``TAG_END``, the position after the tag.
Records are read in both of :meth:`~flask_pow.records.SessionRecord.parse`'s
forms: a compact key (``u``, ``t``, ``i`` or else ``c``, ``k``, ``l``), else
its long form.
"""

from __future__ import annotations

from . import TAG_LENGTH

# The server's TIME, a session, its user and whether its user's index vouches
# for it (ARGV: the user and index key prefixes, the session id), in one trip.
READ = """#!lua flags=no-writes
local t = redis.call('TIME')
local s = redis.call('GET', KEYS[1])
if not s then return {t[1], t[2]} end
local ok, rec = pcall(cjson.decode, s)
local user = ok and type(rec) == 'table' and (rec['u'] or rec['user'])
if type(user) ~= 'string' then return {t[1], t[2], s} end
local vouched = 0
if redis.call('ZSCORE', ARGV[2] .. user, ARGV[3]) then vouched = 1 end
local u = redis.call('GET', ARGV[1] .. user)
return {t[1], t[2], s, u or false, vouched}
"""

# Prune a sorted set scored by expiry; return the latest expiry left, or 0.
PRUNE = """
local function prune(index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  return tonumber(top[2]) or 0
end
local function ttl_ms(latest, now)
  return math.ceil((latest - now) * 1000) + 1000
end
"""

# Write a session, index it, refresh the user record (ARGV[5]): a login, or
# with ARGV[6] a rotation, compare-and-set on the token digest, which keeps the
# user record and writes ARGV[5] only if it is missing. Past ARGV[8] sessions
# (0: no cap) the least recently used are ended, as stores.least_recently_used
# orders them, never the one written nor ARGV[10]'s (ids split by spaces); ARGV[9]
# is the session key prefix. The reply: 'ok', the latest expiry, the ended ids.
WRITE = """
local now = tonumber(ARGV[4])
if ARGV[6] ~= '' then
  local s = redis.call('GET', KEYS[1])
  if not s then return {'gone'} end
  local ok, rec = pcall(cjson.decode, s)
  if not ok or type(rec) ~= 'table' then return {'gone'} end
  if (rec['t'] or rec['token']) ~= ARGV[6] then return {'changed', s} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[7])
local latest = prune(KEYS[2], now)
local reply = {'ok', tostring(latest)}
local cap = tonumber(ARGV[8])
local over = redis.call('ZCARD', KEYS[2]) - cap
if cap > 0 and over > 0 then
  local keep = {[ARGV[7]] = true}
  for sid in string.gmatch(ARGV[10] or '', '%S+') do keep[sid] = true end
  local issued, linked, ids = {}, {}, {}
  for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local s = redis.call('GET', ARGV[9] .. string.sub(sid, TAG_END))
    local ok, rec = false, nil
    if s then ok, rec = pcall(cjson.decode, s) end
    if ok and type(rec) == 'table' then
      local at = rec['i'] or rec['inserted_at'] or rec['c']
      local via = rec['l'] or rec['linked']
      if type(at) == 'number' then issued[sid] = at end
      if (rec['k'] or rec['kind']) == 'remember' and type(via) == 'string' then
        linked[sid] = via
      end
    end
    if not keep[sid] then table.insert(ids, sid) end
  end
  local used = {}
  for _, sid in ipairs(ids) do
    local via = linked[sid] and issued[linked[sid]] or -math.huge
    used[sid] = math.max(issued[sid] or -math.huge, via)
  end
  table.sort(ids, function(a, b)
    if used[a] ~= used[b] then return used[a] < used[b] end
    return a < b
  end)
  for i = 1, math.min(over, #ids) do
    local sid = ids[i]
    redis.call('DEL', ARGV[9] .. string.sub(sid, TAG_END))
    redis.call('ZREM', KEYS[2], sid)
    table.insert(reply, sid)
  end
end
local ttl = ttl_ms(latest, now)
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[6] == '' or redis.call('PEXPIRE', KEYS[3], ttl) == 0 then
  redis.call('SET', KEYS[3], ARGV[5], 'PX', ttl)
end
return reply
"""

# Delete a user's sessions (KEYS: index, user record; ARGV: the session key
# prefix, now, the ids); return the ids that were there.
DELETE = """
local now = tonumber(ARGV[2])
local ended = {}
for i = 3, #ARGV do
  local sid = ARGV[i]
  if redis.call('DEL', ARGV[1] .. string.sub(sid, TAG_END)) == 1 then
    table.insert(ended, sid)
  end
  redis.call('ZREM', KEYS[1], sid)
end
local latest = prune(KEYS[1], now)
if latest == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  local ttl = ttl_ms(latest, now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return ended
"""

# Replace a user's cached record if they have a live session.
UPDATE_USER = """
local now = tonumber(ARGV[2])
local latest = prune(KEYS[1], now)
if latest == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl_ms(latest, now))
return 1
"""

# The live sessions of one user: their records, from the index.
SESSIONS = """#!lua flags=no-writes
local found = {}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf')
for _, sid in ipairs(live) do
  local s = redis.call('GET', ARGV[1] .. string.sub(sid, TAG_END))
  if s then
    table.insert(found, sid)
    table.insert(found, s)
  end
end
return found
"""

# Raise a user's latest expiry in the users set, prune it, expire it with its last.
USERS = """
local now = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local latest = prune(KEYS[1], now)
if latest > 0 then redis.call('PEXPIRE', KEYS[1], ttl_ms(latest, now)) end
return 1
"""

# The writes share PRUNE; Lua has no constants from Python: the tag length goes in.
WRITE, DELETE, UPDATE_USER, USERS = (
    PRUNE + s for s in (WRITE, DELETE, UPDATE_USER, USERS)
)
WRITE, DELETE, SESSIONS = (
    s.replace("TAG_END", str(TAG_LENGTH + 1)) for s in (WRITE, DELETE, SESSIONS)
)
