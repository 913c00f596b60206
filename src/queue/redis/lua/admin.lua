-- Unfenced changes: ARGV[2] id, ARGV[3] action: cancel | retry | quarantine (ARGV[4]: the
-- reason; a record that cannot be read goes to failed so it stops being claimed).
-- Returns {code, status, token}: code 1 done, 0 not allowed in this status, -1 no job.
local id, action = ARGV[2], ARGV[3]
local jk = job_key(id)
local fields = redis.call('HMGET', jk, 'status', 'token')
local status, token = fields[1], fields[2] or '0'
if not status then return {-1, '', '0'} end
local now = now_ms()
local terminal = status == 'completed' or status == 'failed' or status == 'cancelled'
if action == 'cancel' then
  if terminal then return {0, status, token} end
  redis.call('HDEL', jk, 'lease_deadline')
  move(id, status, 'cancelled', now, {'completed_at', int(now)})
  return {1, 'cancelled', token}
elseif action == 'retry' then
  if status ~= 'failed' and status ~= 'cancelled' then return {0, status, token} end
  redis.call('HDEL', jk, 'completed_at', 'not_before')
  total('replayed', 1)
  move(id, status, 'pending', nil, {'retry_count', '0', 'lease_expiries', '0'})
  return {1, 'pending', token}
elseif action == 'quarantine' then
  local known = {pending = 1, assigned = 1, running = 1, completed = 1, failed = 1,
    retrying = 1, cancelled = 1}
  local old = known[status] and status or nil
  if old == 'failed' then return {1, 'failed', token} end
  if not old then
    -- Unknown status: it sits in no structure we can name; take it out of all of them.
    queue_member(zrems, key('pending'), id)
    queue_member(zrems, key('idx', 'pending'), id)
    local k = redis.call('HGET', jk, 'pkey')
    if k and k ~= '' then queue_member(zrems, key('pk', k), id) end
    queue_member(zrems, key('delayed'), id)
    queue_member(zrems, key('leases'), id)
    count(status, -1)
  end
  move(id, old, 'failed', now, {'error', ARGV[4], 'completed_at', int(now)})
  return {1, 'failed', token}
end
return redis.error_reply('unknown action ' .. action)
