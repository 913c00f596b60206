-- Worker ARGV[2] is alive: renew the lease (ARGV[3] ms) of every job it still holds.
-- Returns {renewed, draining}.
local worker, lease_ms = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
touch_worker(worker, now)
local deadline = int(now + lease_ms)
local renewed = 0
for _, id in ipairs(redis.call('SMEMBERS', key('wjobs', worker))) do
  local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker')
  if is_leased(fields[1]) and fields[2] == worker then
    redis.call('HSET', job_key(id), 'lease_deadline', deadline)
    queue_zadd(key('leases'), deadline, id)
    renewed = renewed + 1
  else
    queue_member(srems, key('wjobs', worker), id)
  end
end
local draining = redis.call('HGET', key('worker', worker), 'draining') == '1' and 1 or 0
return {renewed, draining}
