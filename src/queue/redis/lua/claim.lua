-- Claims up to ARGV[3] runnable jobs for worker ARGV[2] with a lease of ARGV[4] ms, in one
-- atomic step: due retries are promoted first, then the best pending jobs are taken.
-- Returns the claimed jobs as HGETALL arrays; nothing while the worker is draining.
local worker, limit, lease_ms = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
touch_worker(worker, now)
if redis.call('HGET', key('worker', worker), 'draining') == '1' or limit <= 0 then
  return {}
end
local due = redis.call('ZRANGEBYSCORE', key('delayed'), '-inf', int(now), 'LIMIT', 0,
  math.max(limit * 4, 100))
for _, id in ipairs(due) do move(id, 'retrying', 'pending') end
local jobs = {}
local popped = redis.call('ZPOPMIN', key('pending'), limit)
for i = 1, #popped, 2 do
  local id = popped[i]
  local jk = job_key(id)
  redis.call('HINCRBY', key('counts'), 'pending', -1)
  local attempt = tonumber(redis.call('HGET', jk, 'attempt') or '0')
  if redis.call('HGET', jk, 'status') == 'pending' and not attempt then
    -- Edited by hand: the fencing token is unreadable, so the job cannot be leased safely.
    redis.call('HSET', jk, 'status', 'failed', 'completed_at', int(now),
      'error', 'corrupt job record: field attempt is not a number')
    redis.call('HINCRBY', key('counts'), 'failed', 1)
    redis.call('ZADD', key('idx', 'failed'), int(now), id)
  elseif redis.call('HGET', jk, 'status') == 'pending' then
    redis.call('HSET', jk, 'attempt', int(attempt + 1))
    redis.call('HSET', jk, 'assigned_worker', worker, 'started_at', int(now),
      'lease_deadline', int(now + lease_ms))
    redis.call('HINCRBY', key('counts'), 'assigned', 1)
    redis.call('HSET', jk, 'status', 'assigned')
    redis.call('ZADD', key('idx', 'assigned'), int(now), id)
    redis.call('ZADD', key('leases'), int(now + lease_ms), id)
    redis.call('SADD', key('wjobs', worker), id)
    jobs[#jobs + 1] = redis.call('HGETALL', jk)
  elseif redis.call('EXISTS', jk) == 1 then
    -- A record edited by hand: its status says it is not pending. Count it where it says.
    local status = redis.call('HGET', jk, 'status') or 'corrupt'
    redis.call('HINCRBY', key('counts'), status, 1)
  end
end
return jobs
