-- Expired leases back to pending (or failed when out of retries), at most ARGV[2] of them;
-- finished jobs older than ARGV[3] ms deleted (at most ARGV[2] per status).
-- Returns {requeued, failed, purged}.
local limit, retention_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local requeued, failed, purged = 0, 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('leases'), '-inf', '(' .. int(now),
    'LIMIT', 0, limit)) do
  local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker')
  local status = fields[1]
  if is_leased(status) then
    local err = 'lease expired: worker "' .. (fields[2] or '') ..
      '" stopped renewing it (crashed, hung or cut off)'
    local outcome = retry_or_fail(id, status, now, true, err, nil)
    if outcome == 'failed' then failed = failed + 1 else requeued = requeued + 1 end
  else
    queue_member(zrems, key('leases'), id)
  end
end
flush()
purged = purge_finished(now - retention_ms, true, limit)
return {requeued, failed, purged}
