-- Counts, all maintained as jobs move: {counts HGETALL, workers, active workers, runnable,
-- totals HGETALL, parked keys, throttled keys}.
-- ARGV[2]: worker liveness window, ms; ARGV[3]: the horizon of `runnable`, ms.
-- `runnable` counts what workers could start within the horizon: the shared queue, due
-- retries, and per parked key what its delay and in-flight limit let through in that time
-- (a key limited to one request a second with 10,000 jobs adds about horizon / 1 s). Keys
-- are summed exactly up to 2,000 of them; past that the sum is extrapolated from them.
local now = now_ms()
local live_since = now - tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local runnable = redis.call('ZCARD', key('pending')) +
  redis.call('ZCOUNT', key('delayed'), '-inf', int(now))
local SAMPLE = 2000
local function slots(k)
  local d = dom(k)
  local n = redis.call('ZCARD', key('pk', k))
  local cap = key_limit(d)
  if cap > 0 then n = math.min(n, math.max(0, cap - d.inflight)) end
  local delay = key_delay(d, now)
  if delay > 0 then
    local wait = math.max(0, ready_at(d) - now)
    -- Requests at wait, wait + delay, ... within [now, now + horizon): a key limited to one
    -- a second adds horizon / 1 s, not one more.
    n = math.min(n, math.max(0, math.ceil((horizon - wait) / delay)))
  elseif ready_at(d) >= now + horizon then
    n = 0
  end
  return n
end
for _, z in ipairs({{key('kready'), '-inf', '+inf'}, {key('kwait'), '-inf', int(now + horizon)}}) do
  local total_keys = redis.call('ZCOUNT', z[1], z[2], z[3])
  local keys = redis.call('ZRANGEBYSCORE', z[1], z[2], z[3], 'LIMIT', 0, SAMPLE)
  local sum = 0
  for _, k in ipairs(keys) do sum = sum + slots(k) end
  if #keys > 0 and total_keys > #keys then sum = math.floor(sum * total_keys / #keys) end
  runnable = runnable + sum
end
return {
  redis.call('HGETALL', key('counts')),
  redis.call('ZCARD', key('workers')),
  redis.call('ZCOUNT', key('workers'), int(live_since), '+inf'),
  runnable,
  redis.call('HGETALL', key('totals')),
  redis.call('HLEN', key('parked')),
  redis.call('ZCARD', key('kwait')),
}
