-- Unfenced changes: ARGV[2] id, ARGV[3] action: cancel | retry | quarantine (ARGV[4]: the
-- reason; a record that cannot be read goes to failed so it stops being claimed).
-- Returns {code, status, attempt}: code 1 done, 0 not allowed in this status, -1 no job.
local id, action = ARGV[2], ARGV[3]
local jk = job_key(id)
local fields = redis.call('HMGET', jk, 'status', 'attempt')
local status, attempt = fields[1], fields[2] or '0'
if not status then return {-1, '', '0'} end
local now = now_ms()
local terminal = status == 'completed' or status == 'failed' or status == 'cancelled'
if action == 'cancel' then
  if terminal then return {0, status, attempt} end
  redis.call('HSET', jk, 'completed_at', int(now))
  redis.call('HDEL', jk, 'lease_deadline')
  move(id, status, 'cancelled', now)
  return {1, 'cancelled', attempt}
elseif action == 'retry' then
  if status ~= 'failed' and status ~= 'cancelled' then return {0, status, attempt} end
  redis.call('HSET', jk, 'retry_count', '0')
  redis.call('HDEL', jk, 'completed_at', 'not_before')
  move(id, status, 'pending')
  return {1, 'pending', attempt}
elseif action == 'quarantine' then
  local known = {pending = 1, assigned = 1, running = 1, completed = 1, failed = 1,
    retrying = 1, cancelled = 1}
  local old = known[status] and status or nil
  if old == 'failed' then return {1, 'failed', attempt} end
  if not old then
    -- Unknown status: it sits in no structure we can name; take it out of all of them.
    redis.call('ZREM', key('pending'), id)
    redis.call('ZREM', key('delayed'), id)
    redis.call('ZREM', key('leases'), id)
    redis.call('HINCRBY', key('counts'), status, -1)
  end
  redis.call('HSET', jk, 'error', ARGV[4], 'completed_at', int(now))
  move(id, old, 'failed', now)
  return {1, 'failed', attempt}
end
return redis.error_reply('unknown action ' .. action)
