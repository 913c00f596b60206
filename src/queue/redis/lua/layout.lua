-- Gives a queue that was never used its shard layout (ARGV[2], JSON; see redis/shards.rs), in
-- one step with the check: no job was ever submitted (`seq`, `tokens`, counts), no worker is
-- registered, no results log, no seen-URL filter, no politeness record. A queue used before
-- keeps one shard: its jobs' generations would be handed out again by the other shards'
-- counters (an export would take their records for duplicates), its sites' records and seen
-- URLs would stay on the first shard while their jobs go elsewhere. A plain client's call
-- after this one is refused by begin() (SHARDED); a layout another client stored first makes
-- begin() refuse this call, and the client opens the queue again. Returns the layout, or an
-- error reply `INUSE <what>`.
local function used(what) return redis.error_reply('INUSE ' .. what) end
if redis.call('EXISTS', key('seq'), key('tokens')) > 0 then return used('jobs were submitted') end
for _, n in ipairs(redis.call('HVALS', key('counts'))) do
  if tonumber(n) > 0 then return used('it holds jobs') end
end
if redis.call('ZCARD', key('workers')) > 0 then return used('workers are registered') end
if redis.call('EXISTS', key('results'), key('results:trimmed')) > 0 then
  return used('it has a results log')
end
if redis.call('EXISTS', key('seen:geometry')) > 0 then return used('it has a seen-URL filter') end
if redis.call('ZCARD', key('domains')) > 0 or redis.call('HLEN', key('parked')) > 0 then
  return used('it has politeness records')
end
redis.call('SET', key('shards'), ARGV[2])
return ARGV[2]
