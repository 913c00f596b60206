-- Politeness: every job has a politeness key (`pkey`: its registrable domain by default,
-- computed by the client), and claims hand out only jobs whose key is ready — its next
-- allowed time has come (`next`: the last claim plus the key's delay; `pause_until`: a
-- Retry-After) and it has fewer jobs in flight than its limit.
--
-- Keys that need none of that (no delay, no limit, no penalty: "unthrottled") cost nothing:
-- their jobs wait in the shared `pending` zset. A key that needs it is **parked**: its new
-- jobs go to its own zset `pk:<key>`, and the key is filed where a claim finds it — in
-- `kready` (ready now, scored by its best job, so among ready keys the best work goes first),
-- in `kwait` (scored by the time it becomes ready), or nowhere while its in-flight limit is
-- reached ("blocked": a job of it leaving the lease files it again). Jobs of a key that was
-- parked while they sat in `pending` are moved to `pk:<key>` when a claim meets them, so a
-- throttled key never blocks the head of the queue. A parked key whose queue runs empty and
-- that needs nothing any more is unparked.
--
-- State per key, hash `dom:<key>`: next, inflight, delay (the adaptive part: raised by
-- throttling and errors, lowered by successes; AutoThrottle's target when enabled),
-- delay_o / limit_o (per-key overrides), crawl_delay + crawl_until (robots.txt), pause_until
-- (Retry-After), filed (r / w / b / ''), throttled and errors (counts), last_throttle.
-- Queue-wide settings, hash `politeness`: delay, limit (0: none), autothrottle (target
-- concurrency, 0: off), max_delay, max_pause (ms). Keys with a `dom` record are listed in
-- the zset `domains` (by last change).
local POLICY
local function policy()
  if not POLICY then
    local v = redis.call('HMGET', key('politeness'), 'delay', 'limit', 'autothrottle',
      'max_delay', 'max_pause')
    POLICY = {delay = tonumber(v[1] or '') or 0, limit = tonumber(v[2] or '') or 0,
      auto = tonumber(v[3] or '') or 0, max_delay = tonumber(v[4] or '') or 60000,
      max_pause = tonumber(v[5] or '') or 3600000}
    -- Every key needs tracking when the queue has a delay, a limit or AutoThrottle.
    POLICY.all = POLICY.delay > 0 or POLICY.limit > 0 or POLICY.auto > 0
  end
  return POLICY
end

local DOM_FIELDS = {'next', 'inflight', 'delay', 'delay_o', 'limit_o', 'crawl_delay',
  'crawl_until', 'pause_until', 'filed'}
local doms, dirty, touched = {}, {}, {}
local function dom(k)
  local d = doms[k]
  if not d then
    local v = redis.call('HMGET', key('dom', k), unpack(DOM_FIELDS))
    d = {next = tonumber(v[1] or '') or 0, inflight = tonumber(v[2] or '') or 0,
      delay = tonumber(v[3] or '') or 0, delay_o = tonumber(v[4] or ''),
      limit_o = tonumber(v[5] or ''), crawl_delay = tonumber(v[6] or '') or 0,
      crawl_until = tonumber(v[7] or '') or 0, pause_until = tonumber(v[8] or '') or 0,
      filed = v[9] or ''}
    doms[k] = d
  end
  return d
end
-- Changes field `f` of key `k`'s state (written back when the run flushes).
local function dset(k, f, value)
  dom(k)[f] = value
  local fields = dirty[k]
  if not fields then fields = {}; dirty[k] = fields end
  fields[f] = true
end

local function base_delay(d, now)
  local b = d.delay_o or policy().delay
  if d.crawl_delay > 0 and d.crawl_until > now then b = math.max(b, d.crawl_delay) end
  return b
end
local function key_delay(d, now) return math.max(base_delay(d, now), d.delay) end
local function key_limit(d) return d.limit_o or policy().limit end
local function has_slot(d)
  local limit = key_limit(d)
  return limit <= 0 or d.inflight < limit
end
local function ready_at(d) return math.max(d.next, d.pause_until) end
-- Whether the key needs its own queue now.
local function needs_parking(d, now)
  return policy().all or key_delay(d, now) > 0 or key_limit(d) > 0 or d.pause_until > now
    or d.inflight > 0
end

local parked_cache = {}
local any_parked = nil
resets[#resets + 1] = function()
  POLICY = nil
  doms, dirty, touched = {}, {}, {}
  parked_cache, any_parked = {}, nil
end
-- Whether key `k` is parked (cached per run; one lookup for a run with no parked key).
local function is_parked(k)
  local p = parked_cache[k]
  if p == nil then
    if any_parked == nil then any_parked = redis.call('HLEN', key('parked')) > 0 end
    p = any_parked and redis.call('HEXISTS', key('parked'), k) == 1
    parked_cache[k] = p
  end
  return p
end
-- Looks up many keys in one call.
local function prefetch_parked(keys)
  if any_parked == nil then any_parked = redis.call('HLEN', key('parked')) > 0 end
  local ask = {}
  for k in pairs(keys) do
    if parked_cache[k] == nil then
      if any_parked then ask[#ask + 1] = k else parked_cache[k] = false end
    end
  end
  if #ask > 0 then
    local answer = redis.call('HMGET', key('parked'), unpack(ask))
    for i, k in ipairs(ask) do parked_cache[k] = answer[i] ~= false end
  end
end
local function park(k)
  if not is_parked(k) then
    redis.call('HSET', key('parked'), k, '1')
    parked_cache[k], any_parked = true, true
  end
  touched[k] = true
end

-- The best job of a parked key: id and score, or nil.
local function head(k)
  local h = redis.call('ZRANGE', key('pk', k), 0, 0, 'WITHSCORES')
  if #h == 0 then return nil end
  return h[1], tonumber(h[2])
end

-- Files key `k` where a claim will find it, from its state now.
local function file(k, now)
  local d = dom(k)
  local _, score = head(k)
  local where, at = '', nil
  if not score then
    if not needs_parking(d, now) then
      -- Nothing waits and nothing is needed: unparked, its record dropped unless it holds
      -- settings or counts worth keeping.
      redis.call('HDEL', key('parked'), k)
      parked_cache[k] = false
      redis.call('ZREM', key('kready'), k)
      redis.call('ZREM', key('kwait'), k)
      if d.filed ~= '' then dset(k, 'filed', '') end
      return
    end
  elseif not has_slot(d) then
    where = 'b'
  elseif ready_at(d) > now then
    where, at = 'w', ready_at(d)
  else
    where, at = 'r', score
  end
  if where == 'r' then
    redis.call('ZADD', key('kready'), int(at), k)
    redis.call('ZREM', key('kwait'), k)
  elseif where == 'w' then
    redis.call('ZADD', key('kwait'), int(at), k)
    redis.call('ZREM', key('kready'), k)
  else
    redis.call('ZREM', key('kready'), k)
    redis.call('ZREM', key('kwait'), k)
  end
  if d.filed ~= where then dset(k, 'filed', where) end
end

politeness_flush = function()
  local now
  for k in pairs(touched) do
    now = now or now_ms()
    if is_parked(k) then file(k, now) end
  end
  touched = {}
  for k, fields in pairs(dirty) do
    now = now or now_ms()
    local d, set, del = doms[k], {'updated', int(now)}, {}
    for f in pairs(fields) do
      local v = d[f]
      if v == nil then
        del[#del + 1] = f
      else
        set[#set + 1] = f
        set[#set + 1] = type(v) == 'number' and int(v) or v
      end
    end
    redis.call('HSET', key('dom', k), unpack(set))
    if #del > 0 then redis.call('HDEL', key('dom', k), unpack(del)) end
    redis.call('ZADD', key('domains'), int(now), k)
  end
  dirty = {}
end

-- A job enters `pending` (submitted, released, retried, expired): into the shared queue, or
-- into its key's own queue when the key is parked (parked now if it needs it).
local function enqueue(id, score, k, now)
  queue_zadd(key('idx', 'pending'), score, id)
  if k and k ~= '' and (is_parked(k) or needs_parking(dom(k), now)) then
    park(k)
    queue_zadd(key('pk', k), score, id)
  else
    queue_zadd(key('pending'), score, id)
  end
end

-- Moves the jobs of parked keys that still wait in the shared queue (queued before their key
-- was parked) to their keys' own queues, looking at the best `scan` shared jobs at most: after
-- an admin change parks keys, `runnable` does not count their backlog as free to run. Claims
-- move such jobs anyway as they meet them; this does it at once.
local function migrate_parked(now, scan)
  if redis.call('HLEN', key('parked')) == 0 and not policy().all then return end
  local found = redis.call('ZRANGE', key('pending'), 0, scan - 1, 'WITHSCORES')
  for i = 1, #found, 2 do
    local id = found[i]
    local k = redis.call('HGET', job_key(id), 'pkey') or ''
    if k ~= '' and (is_parked(k) or needs_parking(dom(k), now)) then
      park(k)
      queue_member(zrems, key('pending'), id)
      queue_zadd(key('pk', k), found[i + 1], id)
    end
  end
end

-- A job of key `k` left its lease (finished, released, expired, cancelled): one less in
-- flight; a key that was blocked by its limit is filed again.
local function release_slot(k)
  local d = dom(k)
  dset(k, 'inflight', math.max(0, d.inflight - 1))
  touched[k] = true
end

-- The domain answered "too many requests" / "unavailable" (Retry-After `pause_ms`, 0 when
-- none), or the request failed (timeout, connection): the key's delay doubles (from at least
-- a second, at most max_delay) for the whole fleet — once per delay: the answers to requests
-- that were already in flight together are one signal, not one each — and a Retry-After
-- pauses it.
local function penalize(k, now, pause_ms, kind)
  local d, p = dom(k), policy()
  local last = redis.call('HMGET', key('dom', k), 'last_throttled', 'last_error')
  local since = now - math.max(tonumber(last[1] or '0') or 0, tonumber(last[2] or '0') or 0)
  local current = key_delay(d, now)
  if since >= current then
    local delay = math.min(p.max_delay, math.max(1000, current * 2))
    dset(k, 'delay', delay)
    dset(k, 'next', math.max(d.next, now + delay))
  end
  if pause_ms > 0 then
    dset(k, 'pause_until', math.max(d.pause_until, now + math.min(pause_ms, p.max_pause)))
  end
  redis.call('HINCRBY', key('dom', k), kind == 'throttled' and 'throttled' or 'errors', 1)
  redis.call('HSET', key('dom', k), 'last_' .. kind, int(now))
  park(k)
end

-- A job of key `k` succeeded after `latency_ms` (-1: unknown): the adaptive delay comes down
-- slowly (10 % per success) — or, with AutoThrottle, moves toward latency / target.
local function succeed(k, latency_ms)
  local d, p = dom(k), policy()
  local delay = d.delay
  if p.auto > 0 and latency_ms >= 0 then
    local target = latency_ms / p.auto
    if target > delay then delay = (delay + target) / 2 else delay = math.max(target, delay * 0.9) end
  else
    delay = delay * 0.9
  end
  delay = math.min(p.max_delay, math.floor(delay))
  if delay < 10 then delay = 0 end
  if delay ~= d.delay then dset(k, 'delay', delay) end
end
