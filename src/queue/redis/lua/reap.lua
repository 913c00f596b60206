-- Expired leases back to pending (or failed after ARGV[4] expiries of the same job), at most
-- ARGV[2] of them; workers silent for ARGV[5] ms removed from the registry (their jobs given
-- back); finished jobs older than ARGV[3] ms deleted (at most ARGV[2] per status).
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
purged = purge_finished(now - retention_ms, true, limit)
return {requeued, failed, purged, gone}
