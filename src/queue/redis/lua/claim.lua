-- Claims up to ARGV[3] runnable jobs for worker ARGV[2] with a lease of ARGV[4] ms, in one
-- atomic step: due retries are promoted first, then the best pending jobs are taken. ARGV[5]
-- is the status they get: 'running' when the worker starts them at once, else 'assigned'.
-- Every claim gets a new fencing token from the queue-wide counter `tokens`.
-- Returns the claimed jobs ({id, FIELDS...} each); nothing while the worker is draining.
local worker, limit, lease_ms = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local claimed_status = ARGV[5] == 'running' and 'running' or 'assigned'
local now = now_ms()
touch_worker(worker, now)
if redis.call('HGET', key('worker', worker), 'draining') == '1' or limit <= 0 then
  return {}
end
local due = redis.call('ZRANGEBYSCORE', key('delayed'), '-inf', int(now), 'LIMIT', 0,
  math.max(limit * 4, 100))
for _, id in ipairs(due) do move(id, 'retrying', 'pending') end
flush()  -- the promoted retries must be in `pending` before it is popped
local jobs, held = {}, {}
local popped = redis.call('ZPOPMIN', key('pending'), limit)
-- Tokens count up from the larger of the counter and the time (ms * 1024): if Redis comes
-- back from a snapshot older than tokens it handed out, it cannot hand them out again.
local token = 0
if #popped > 0 then
  token = math.max(tonumber(redis.call('GET', key('tokens')) or '0'), now * 1024)
  redis.call('SET', key('tokens'), int(token + #popped / 2))
end
local started, deadline = int(now), int(now + lease_ms)
for i = 1, #popped, 2 do
  local id = popped[i]
  local jk = job_key(id)
  local job = read_job(id)
  local status, attempt = job[3], tonumber(job[4] or '')
  count('pending', -1)  -- it left `pending` whatever its record says
  if status == 'pending' and attempt then
    attempt = int(attempt + 1)
    token = token + 1
    local fence = int(token)
    count(claimed_status, 1)
    redis.call('HSET', jk, 'status', claimed_status, 'attempt', attempt, 'token', fence,
      'assigned_worker', worker, 'started_at', started, 'lease_deadline', deadline)
    queue_zadd(key('leases'), deadline, id)
    held[#held + 1] = id
    job[3], job[4], job[7], job[9], job[11] = claimed_status, attempt, worker, started, deadline
    job[15] = fence
    jobs[#jobs + 1] = job
  elseif status == 'pending' then
    -- Edited by hand: the attempt is unreadable, so the job cannot be leased safely.
    count('failed', 1)
    redis.call('HSET', jk, 'status', 'failed', 'completed_at', started,
      'error', 'corrupt job record: field attempt is not a number')
    queue_zadd(key('idx', 'failed'), started, id)
  elseif status then
    count(status, 1)  -- a record whose status says it is elsewhere: count it there
  end
end
if #held > 0 then send('SADD', key('wjobs', worker), held) end
return jobs
