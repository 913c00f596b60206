-- Expired leases back to pending (or failed after ARGV[4] expiries of the same job), at most
-- ARGV[2] of them; workers silent for ARGV[5] ms removed from the registry (their jobs given
-- back); finished jobs older than ARGV[3] ms deleted (at most ARGV[2] per status); idle
-- politeness records dropped (ARGV[6]: idle time, ms).
-- Returns {requeued, failed, purged, workers removed}.
local limit, retention_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_expiries, worker_expiry_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local requeued, failed, purged, gone = 0, 0, 0, 0
local function expire(id, status, holder)
  local err = 'lease expired: worker "' .. (holder or '') ..
    '" stopped renewing it (crashed, hung or cut off)'
  if expire_lease(id, status, now, err, max_expiries) == 'failed' then
    failed = failed + 1
  else
    requeued = requeued + 1
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('leases'), '-inf', '(' .. int(now),
    'LIMIT', 0, limit)) do
  local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker')
  if is_leased(fields[1]) then
    expire(id, fields[1], fields[2])
  else
    queue_member(zrems, key('leases'), id)
  end
end
for _, worker in ipairs(redis.call('ZRANGEBYSCORE', key('workers'), '-inf',
    '(' .. int(now - worker_expiry_ms), 'LIMIT', 0, limit)) do
  for _, id in ipairs(redis.call('SMEMBERS', key('wjobs', worker))) do
    local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker')
    if is_leased(fields[1]) and fields[2] == worker then expire(id, fields[1], worker) end
  end
  flush()
  redis.call('DEL', key('wjobs', worker), key('worker', worker))
  redis.call('ZREM', key('workers'), worker)
  gone = gone + 1
end
flush()
-- Politeness records of keys idle for ARGV[6] ms that hold nothing worth keeping (no job
-- waiting or in flight, no override, no pause or robots delay in force) are dropped.
for _, k in ipairs(redis.call('ZRANGEBYSCORE', key('domains'), '-inf',
    '(' .. int(now - tonumber(ARGV[6])), 'LIMIT', 0, limit)) do
  local d = dom(k)
  if d.inflight == 0 and not d.delay_o and not d.limit_o and d.pause_until <= now
      and d.crawl_until <= now and redis.call('ZCARD', key('pk', k)) == 0 then
    redis.call('DEL', key('dom', k))
    redis.call('HDEL', key('parked'), k)
    redis.call('ZREM', key('kready'), k)
    redis.call('ZREM', key('kwait'), k)
    redis.call('ZREM', key('domains'), k)
    doms[k], dirty[k], touched[k] = nil, nil, nil
  else
    redis.call('ZADD', key('domains'), int(now), k)
  end
end
purged = purge_finished(now - retention_ms, true, limit)
return {requeued, failed, purged, gone}
