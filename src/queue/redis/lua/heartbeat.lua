-- Worker ARGV[2] is alive: renew the leases (ARGV[3] ms) of the jobs it holds. ARGV[4] 'held':
-- the worker lists what it holds as (id, fencing token) pairs from ARGV[5]; exactly those are
-- renewed, listed jobs that are no longer its own are reported lost (it must stop them), and
-- jobs still leased under its id that it did not list (a claim whose reply it never got, a
-- job it dropped) are given back to pending. ARGV[4] 'all': renew every job leased under the
-- worker's id (for clients that do not track what they hold).
-- Returns {renewed, draining, lost (id, token) pairs flattened, released}.
local worker, lease_ms, mode = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
touch_worker(worker, now)
local deadline = int(now + lease_ms)
local wjobs = key('wjobs', worker)
local renewed, released, lost = 0, 0, {}
local function renew(id)
  redis.call('HSET', job_key(id), 'lease_deadline', deadline)
  queue_zadd(key('leases'), deadline, id)
  renewed = renewed + 1
end
local listed = {}
if mode == 'held' then
  for i = 5, #ARGV, 2 do
    local id, token = ARGV[i], ARGV[i + 1]
    listed[id] = true
    local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker', 'token')
    if is_leased(fields[1]) and fields[2] == worker and fields[3] == token then
      renew(id)
    else
      lost[#lost + 1] = id
      lost[#lost + 1] = token
    end
  end
end
for _, id in ipairs(redis.call('SMEMBERS', wjobs)) do
  if not listed[id] then
    local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker')
    if not (is_leased(fields[1]) and fields[2] == worker) then
      queue_member(srems, wjobs, id)
    elseif mode == 'held' then
      redis.call('HDEL', job_key(id), 'lease_deadline')
      move(id, fields[1], 'pending', nil, nil, worker)
      released = released + 1
    else
      renew(id)
    end
  end
end
local draining = redis.call('HGET', key('worker', worker), 'draining') == '1' and 1 or 0
return {renewed, draining, lost, released}
