-- Counts, all maintained as jobs move: {counts HGETALL, workers, active workers, runnable,
-- totals HGETALL}.
-- ARGV[2]: worker liveness window, ms.
local now = now_ms()
local live_since = now - tonumber(ARGV[2])
return {
  redis.call('HGETALL', key('counts')),
  redis.call('ZCARD', key('workers')),
  redis.call('ZCOUNT', key('workers'), int(live_since), '+inf'),
  redis.call('ZCARD', key('pending')) + redis.call('ZCOUNT', key('delayed'), '-inf', int(now)),
  redis.call('HGETALL', key('totals')),
}
