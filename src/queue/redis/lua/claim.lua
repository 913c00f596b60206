-- Claims up to ARGV[3] runnable jobs for worker ARGV[2] with a lease of ARGV[4] ms, in one
-- atomic step: due retries are promoted and parked keys whose time has come are filed as
-- ready, then jobs are taken best first from two sources — the shared `pending` queue
-- (unthrottled keys) and the ready parked keys (`kready`, each giving as many jobs as its
-- delay and in-flight limit allow: one when it has a delay). A job of a key that is parked
-- meanwhile is moved to its key's queue on the way. ARGV[5] is the status the jobs get:
-- 'running' when the worker starts them at once, else 'assigned'. Every claim gets a new
-- fencing token from the queue-wide counter `tokens`.
-- Returns {jobs ({id, FIELDS...} each), wake}: wake is in how many ms a parked key or a
-- retry becomes ready when fewer jobs than asked were given (-1: nothing scheduled).
-- Nothing while the worker is draining.
local worker, limit, lease_ms = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local claimed_status = ARGV[5] == 'running' and 'running' or 'assigned'
local now = now_ms()
touch_worker(worker, now)
if redis.call('HGET', key('worker', worker), 'draining') == '1' or limit <= 0 then
  return {{}, -1}
end
local batch = math.max(limit * 4, 100)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('delayed'), '-inf', int(now), 'LIMIT', 0,
    batch)) do
  move(id, 'retrying', 'pending')
end
for _, k in ipairs(redis.call('ZRANGEBYSCORE', key('kwait'), '-inf', int(now), 'LIMIT', 0,
    batch)) do
  touched[k] = true
end
flush()  -- promoted retries enqueued and woken keys filed before anything is taken

-- Ready parked keys, best first (a binary heap of {score, key}).
local heap = {}
local function push(score, k)
  local i = #heap + 1
  heap[i] = {score, k}
  while i > 1 do
    local parent = math.floor(i / 2)
    if heap[parent][1] <= heap[i][1] then break end
    heap[parent], heap[i] = heap[i], heap[parent]
    i = parent
  end
end
local function pop()
  local top = heap[1]
  local last = table.remove(heap)
  if #heap > 0 then
    heap[1] = last
    local i = 1
    while true do
      local l, r, m = i * 2, i * 2 + 1, i
      if heap[l] and heap[l][1] < heap[m][1] then m = l end
      if heap[r] and heap[r][1] < heap[m][1] then m = r end
      if m == i then break end
      heap[m], heap[i] = heap[i], heap[m]
      i = m
    end
  end
  return top[1], top[2]
end
local ready = redis.call('ZRANGE', key('kready'), 0, limit - 1, 'WITHSCORES')
for i = 1, #ready, 2 do push(tonumber(ready[i + 1]), ready[i]) end

local jobs, held = {}, {}
-- Tokens count up from the larger of the counter and the time (ms * 1024): if Redis comes
-- back from a snapshot older than tokens it handed out, it cannot hand them out again.
local token = nil
local started, deadline = int(now), int(now + lease_ms)
-- Leases job `id` (`job` as read_job gives it; `ikey`: the politeness key whose in-flight
-- count it holds, or nil). The caller took it out of its queue. True when it was leased.
local function take(id, job, ikey)
  local jk = job_key(id)
  local status, attempt = job[3], tonumber(job[4] or '')
  count('pending', -1)  -- it left its queue whatever its record says
  if status == 'pending' and attempt then
    attempt = int(attempt + 1)
    if not token then
      token = math.max(tonumber(redis.call('GET', key('tokens')) or '0'), now * 1024)
    end
    token = token + 1
    local fence = int(token)
    count(claimed_status, 1)
    redis.call('HSET', jk, 'status', claimed_status, 'attempt', attempt, 'token', fence,
      'assigned_worker', worker, 'started_at', started, 'lease_deadline', deadline,
      'ikey', ikey or '')
    queue_zadd(key('leases'), deadline, id)
    held[#held + 1] = id
    job[3], job[4], job[7], job[9], job[11] = claimed_status, attempt, worker, started, deadline
    job[15] = fence
    job[18] = ikey or ''
    jobs[#jobs + 1] = job
    return true
  elseif status == 'pending' then
    -- Edited by hand: the attempt is unreadable, so the job cannot be leased safely.
    count('failed', 1)
    redis.call('HSET', jk, 'status', 'failed', 'completed_at', started,
      'error', 'corrupt job record: field attempt is not a number')
    queue_zadd(key('idx', 'failed'), started, id)
  elseif status then
    count(status, 1)  -- a record whose status says it is elsewhere: count it there
  end
  return false
end

-- The shared queue, read a page at a time from the best score not yet seen.
local page, at, last = {}, 1, nil
local more = true
local function refill()
  local from = last and ('(' .. last) or '-inf'
  page = redis.call('ZRANGEBYSCORE', key('pending'), from, '+inf', 'WITHSCORES', 'LIMIT', 0,
    limit)
  at = 1
  more = #page == limit * 2
end
refill()
-- Jobs of parked keys moved out of the shared queue per claim, at most (the rest next time).
local budget = batch + 1000

while #jobs < limit do
  if not page[at] and more and budget > 0 then refill() end
  local gid = budget > 0 and page[at] or nil
  local gscore = gid and tonumber(page[at + 1])
  local top = heap[1]
  if not gid and not top then break end
  if gid and (not top or gscore <= top[1]) then
    last = page[at + 1]
    at = at + 2
    local job = read_job(gid)
    local k = job[17] or ''
    queue_member(zrems, key('pending'), gid)
    if k ~= '' and (is_parked(k) or needs_parking(dom(k), now)) then
      -- Its key is parked (throttled since the job was queued): to the key's own queue, at
      -- once so that serving the key below sees it.
      park(k)
      redis.call('ZADD', key('pk', k), last, gid)
      budget = budget - 1
      local d = dom(k)
      if has_slot(d) and ready_at(d) <= now then push(gscore, k) end
    else
      queue_member(zrems, key('idx', 'pending'), gid)
      take(gid, job, nil)
    end
  else
    local _, k = pop()
    local d = dom(k)
    touched[k] = true
    if has_slot(d) and ready_at(d) <= now then
      local delay, cap = key_delay(d, now), key_limit(d)
      local n = limit - #jobs
      if delay > 0 then n = 1 end
      if cap > 0 then n = math.min(n, cap - d.inflight) end
      -- Several jobs of one key only while they are as good as the next best elsewhere.
      local bound = heap[1] and heap[1][1] or math.huge
      if gid then bound = math.min(bound, gscore) end
      local found = redis.call('ZRANGE', key('pk', k), 0, n - 1, 'WITHSCORES')
      local ids = {}
      for i = 1, #found, 2 do
        if #ids > 0 and tonumber(found[i + 1]) > bound then break end
        ids[#ids + 1] = found[i]
      end
      if #ids > 0 then
        send('ZREM', key('pk', k), ids)
        local inflight = d.inflight
        for _, id in ipairs(ids) do
          queue_member(zrems, key('idx', 'pending'), id)
          if take(id, read_job(id), k) then inflight = inflight + 1 end
        end
        dset(k, 'inflight', inflight)
        if delay > 0 then dset(k, 'next', now + delay) end
        if has_slot(d) and ready_at(d) <= now then
          local _, score = head(k)
          if score then push(score, k) end
        end
      end
    end
  end
end
if token then redis.call('SET', key('tokens'), int(token)) end
if #held > 0 then send('SADD', key('wjobs', worker), held) end
flush()  -- the keys served are filed again: the wake time below sees them
local wake = -1
if #jobs < limit then
  for _, z in ipairs({key('kwait'), key('delayed')}) do
    local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    if #first > 0 then
      local ms = math.max(0, tonumber(first[2]) - now)
      if wake < 0 or ms < wake then wake = ms end
    end
  end
end
return {jobs, int(wake)}
