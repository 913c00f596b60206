-- Politeness settings and state (see politeness.lua). ARGV[2] action:
-- list (ARGV[3] offset, ARGV[4] count): the keys with a record, most recently changed first;
-- get (ARGV[3] key); set (ARGV[3] key, ARGV[4] delay ms, ARGV[5] limit: a number sets, '-'
-- clears the override, '' keeps it); robots (ARGV[3] key, ARGV[4] crawl delay ms, ARGV[5]
-- for how long, ms): a robots.txt Crawl-delay for the whole fleet; policy (ARGV[3..7] delay,
-- limit, autothrottle, max_delay, max_pause: '' keeps a value) returns the policy after it.
-- A key is returned as {key, waiting, inflight, delay, limit, ready_at, throttled, errors,
-- last_throttled, last_error, parked, delay_o, limit_o, crawl_delay, pause_until, now}
-- as strings (-1 for an override that is not set).
local action = ARGV[2]
local now = now_ms()
-- Shared jobs looked at when a change parks keys (the rest are moved by claims).
local MIGRATE_SCAN = 50000
-- The same from a worker's robots.txt report (on its normal path: kept short).
local ROBOTS_SCAN = 2000

local function describe(k)
  local d = dom(k)
  local extra = redis.call('HMGET', key('dom', k), 'throttled', 'errors', 'last_throttled',
    'last_error')
  local n = function(v) return int(tonumber(v or '0') or 0) end
  return {k, int(redis.call('ZCARD', key('pk', k))), int(d.inflight), int(key_delay(d, now)),
    int(key_limit(d)), int(ready_at(d)), n(extra[1]), n(extra[2]), n(extra[3]), n(extra[4]),
    is_parked(k) and '1' or '0', int(d.delay_o or -1), int(d.limit_o or -1),
    d.crawl_until > now and int(d.crawl_delay) or '0', int(d.pause_until), int(now)}
end

local function override(k, field, value)
  if value == '-' then
    dset(k, field, nil)
  elseif value ~= '' then
    dset(k, field, tonumber(value))
  end
end

if action == 'list' then
  local out = {}
  local offset, n = tonumber(ARGV[3]), tonumber(ARGV[4])
  for _, k in ipairs(redis.call('ZREVRANGE', key('domains'), offset, offset + n - 1)) do
    out[#out + 1] = describe(k)
  end
  return out
elseif action == 'get' then
  if redis.call('EXISTS', key('dom', ARGV[3])) == 0 then return {} end
  return describe(ARGV[3])
elseif action == 'set' then
  local k = ARGV[3]
  local before = key_delay(dom(k), now)
  override(k, 'delay_o', ARGV[4])
  override(k, 'limit_o', ARGV[5])
  -- A shorter delay counts from the last claim: the next slot comes sooner (a key set to an
  -- hour by mistake and set back is not left waiting the hour).
  local after = key_delay(dom(k), now)
  if after < before and dom(k).next > now then
    dset(k, 'next', math.max(now, dom(k).next - (before - after)))
  end
  -- A key that needs its own queue now gets one (its jobs waiting in the shared queue are
  -- moved to it); one that no longer does is unparked when its queue is empty.
  if needs_parking(dom(k), now) then
    local newly = not is_parked(k)
    park(k)
    if newly then migrate_parked(now, MIGRATE_SCAN) end
  elseif is_parked(k) then
    touched[k] = true
  end
  if not dirty[k] then dset(k, 'next', dom(k).next) end  -- listed even with nothing set
  flush()
  return describe(k)
elseif action == 'robots' then
  local k, delay, ttl = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local d = dom(k)
  -- One key can cover several origins (a registrable domain's hosts): the longest
  -- Crawl-delay in force holds for the key.
  if d.crawl_until > now then delay = math.max(delay, d.crawl_delay) end
  dset(k, 'crawl_delay', delay)
  dset(k, 'crawl_until', now + ttl)
  if needs_parking(dom(k), now) then
    local newly = not is_parked(k)
    park(k)
    if newly then migrate_parked(now, ROBOTS_SCAN) end
  end
  flush()
  return describe(k)
elseif action == 'policy' then
  local names = {'delay', 'limit', 'autothrottle', 'max_delay', 'max_pause'}
  local paced_before = policy().all
  for i, name in ipairs(names) do
    local value = ARGV[2 + i]
    if value ~= '' then redis.call('HSET', key('politeness'), name, value) end
  end
  POLICY = nil
  -- Only a policy that starts pacing every key moves the shared queue's jobs (every client
  -- writes its policy when it opens the queue: that must stay cheap).
  if policy().all and not paced_before then
    migrate_parked(now, MIGRATE_SCAN)
    flush()
  end
  return redis.call('HMGET', key('politeness'), unpack(names))
end
return redis.error_reply('unknown action ' .. action)
