-- Worker ARGV[2] is alive: renew the leases (ARGV[3] ms) of the jobs it holds. ARGV[4] 'held':
-- the worker lists what it holds as (id, fencing token) pairs from ARGV[7]; exactly those are
-- renewed, listed claims that are no longer its own are reported lost (it must stop them), and
-- jobs still leased under its id that it did not list (a claim whose reply it never got, a
-- job whose task died) are given back to pending, counted as expired leases (after ARGV[6]
-- of them a job fails: a job that kills its task cannot loop for ever). ARGV[4] 'all': renew
-- every job leased under the worker's id (for clients that do not track what they hold).
-- ARGV[4] 'held_outage': as 'held', from a worker that could not reach the queue since its
-- last heartbeat: what it did not list is given back without counting an expiry.
-- ARGV[5]: the run's session ('' for none): when another run has registered the id since,
-- nothing is renewed or given back and the reply says superseded (that run owns the id).
-- Returns {renewed, draining, lost (id, token) pairs flattened, released, superseded}.
local worker, lease_ms, mode = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local session, max_expiries = ARGV[5], tonumber(ARGV[6])
local now = now_ms()
local wkey = key('worker', worker)
if session ~= '' then
  local current = redis.call('HGET', wkey, 'session')
  if current and current ~= '' and current ~= session then return {0, 0, {}, 0, 1} end
  if current ~= session then redis.call('HSET', wkey, 'session', session) end
end
touch_worker(worker, now)
local deadline = int(now + lease_ms)
local wjobs = key('wjobs', worker)
local renewed, released, lost = 0, 0, {}
local function renew(id)
  redis.call('HSET', job_key(id), 'lease_deadline', deadline)
  queue_zadd(key('leases'), deadline, id)
  renewed = renewed + 1
end
-- The jobs renewed: by id (a job the worker holds under one token only).
local kept = {}
local listing = mode == 'held' or mode == 'held_outage'
if listing then
  for i = 7, #ARGV, 2 do
    local id, token = ARGV[i], ARGV[i + 1]
    local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker', 'token')
    if is_leased(fields[1]) and fields[2] == worker and fields[3] == token then
      renew(id)
      kept[id] = true
    else
      lost[#lost + 1] = id
      lost[#lost + 1] = token
    end
  end
end
for _, id in ipairs(redis.call('SMEMBERS', wjobs)) do
  if not kept[id] then
    local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker')
    if not (is_leased(fields[1]) and fields[2] == worker) then
      queue_member(srems, wjobs, id)
    elseif mode == 'held' then
      expire_lease(id, fields[1], now, 'worker "' .. worker ..
        '" dropped the job without finishing it (its task died or the claim reply was lost)',
        max_expiries)
      released = released + 1
    elseif mode == 'held_outage' then
      return_lease(id, fields[1], now, 'worker "' .. worker ..
        '" could not reach the queue and gave the job back')
      released = released + 1
    else
      renew(id)
    end
  end
end
local draining = redis.call('HGET', wkey, 'draining') == '1' and 1 or 0
return {renewed, draining, lost, released, 0}
