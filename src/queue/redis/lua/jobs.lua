local function is_leased(status) return status == 'assigned' or status == 'running' end

-- Moves job `id` from status `old` to `new`: leaves the old status's structures, enters the
-- new one's (ordered by `score`), keeps the per-status counters exact, and writes the status
-- plus `fields` (a flat list of field, value) in one HSET. `worker` is the holder when known;
-- `ikey` the politeness key whose in-flight count the lease holds ('' none, nil: look it up).
local function move(id, old, new, score, fields, worker, ikey)
  local jk = job_key(id)
  fields = fields or {}
  if old == 'pending' then
    queue_member(zrems, key('pending'), id)
    queue_member(zrems, key('idx', 'pending'), id)
    local k = redis.call('HGET', jk, 'pkey')
    if k and k ~= '' then
      queue_member(zrems, key('pk', k), id)
      touched[k] = true
    end
  elseif old == 'retrying' then
    queue_member(zrems, key('delayed'), id)
  elseif old and not is_leased(old) then
    queue_member(zrems, key('idx', old), id)
  end
  if is_leased(old) and not is_leased(new) then
    queue_member(zrems, key('leases'), id)
    worker = worker or redis.call('HGET', jk, 'assigned_worker')
    if worker then queue_member(srems, key('wjobs', worker), id) end
    if ikey == nil then ikey = redis.call('HGET', jk, 'ikey') or '' end
    if ikey ~= '' then
      release_slot(ikey)
      fields[#fields + 1] = 'ikey'
      fields[#fields + 1] = ''
    end
  end
  -- Leased jobs are found through `leases` (in-flight jobs are few): no index of their own.
  if new == 'pending' then
    local v = redis.call('HMGET', jk, 'pscore', 'pkey')
    enqueue(id, score or v[1], v[2], now_ms())
  elseif new == 'retrying' then
    queue_zadd(key('delayed'), int(score), id)
  elseif not is_leased(new) then
    queue_zadd(key('idx', new), int(score), id)
  end
  if old then count(old, -1) end
  count(new, 1)
  if old ~= new and (new == 'completed' or new == 'failed' or new == 'cancelled') then
    total(new, 1)
  end
  fields[#fields + 1] = 'status'
  fields[#fields + 1] = new
  redis.call('HSET', jk, unpack(fields))
end

-- After a failed attempt (backoff = {base_ms, cap_ms, jitter in [0, 1]}): retry while retries
-- remain, else fail for good. The delay of retry k is min(base * 2^(k-1), cap), half fixed
-- and half scaled by the client's jitter (scripts must not draw random numbers themselves).
-- Returns 'retrying' or 'failed', and the not-before time.
local function retry_or_fail(id, status, now, retryable, err, backoff)
  local jk = job_key(id)
  local fields = redis.call('HMGET', jk, 'retry_count', 'max_retries')
  local retries, max_retries = tonumber(fields[1] or '0') or 0, tonumber(fields[2] or '0') or 0
  redis.call('HDEL', jk, 'lease_deadline')
  if retryable and retries < max_retries then
    total('retried', 1)
    local full = math.min(backoff[1] * math.pow(2, math.min(retries, 30)), backoff[2])
    local not_before = now + math.floor(full / 2 + backoff[3] * full / 2)
    move(id, status, 'retrying', not_before, {'error', err, 'retry_count', int(retries + 1),
      'not_before', int(not_before)})
    return 'retrying', not_before
  end
  move(id, status, 'failed', now, {'error', err, 'completed_at', int(now)})
  return 'failed', now
end

-- An expired lease (the holder died, hung, was cut off — or the server's clock jumped): the
-- job goes back to pending at once, counted in its own `lease_expiries` (not its retries, so
-- a clock step cannot fail a healthy job on its last retry); after `max_expiries` of them it
-- fails for good. Returns 'pending' or 'failed'.
local function expire_lease(id, status, now, err, max_expiries)
  local jk = job_key(id)
  local expiries = redis.call('HINCRBY', jk, 'lease_expiries', 1)
  redis.call('HDEL', jk, 'lease_deadline')
  total('expired', 1)
  if expiries >= max_expiries then
    move(id, status, 'failed', now, {'error', err .. '; ' .. expiries ..
      ' leases of this job expired: it may be crashing or hanging its workers',
      'completed_at', int(now)})
    return 'failed'
  end
  move(id, status, 'pending', nil, {'error', err, 'not_before', int(now)})
  return 'pending'
end

-- A lease given back by its holder after the queue was unreachable (not the job's fault):
-- back to pending at once, no expiry counted.
local function return_lease(id, status, now, err)
  redis.call('HDEL', job_key(id), 'lease_deadline')
  total('expired', 1)
  move(id, status, 'pending', nil, {'error', err, 'not_before', int(now)})
end

-- Fenced completion: {code, status, token, generation} with code 1 done, 0 stale, -1 no such
-- job. `token` is the caller's fencing token; `now` the time as a string of milliseconds;
-- `latency_ms` how long the page took (-1: unknown), for the key's adaptive delay.
local function complete_job(id, token, result, now, latency_ms)
  local jk = job_key(id)
  local fields = redis.call('HMGET', jk, 'status', 'token', 'assigned_worker', 'started_at',
    'gen', 'ikey')
  local status, current = fields[1], fields[2]
  if not status then return {-1, '', '0', '0'} end
  if not is_leased(status) or current ~= token then
    return {0, status, current or '0', fields[5] or '0'}
  end
  local started = tonumber(fields[4] or '')
  if started then record_duration(math.max(tonumber(now) - started, 0)) end
  local ikey = fields[6] or ''
  if ikey ~= '' then succeed(ikey, latency_ms or -1) end
  -- An empty lease_deadline reads as "no lease" and saves an HDEL per job.
  local done = {'completed_at', now, 'lease_deadline', ''}
  if result ~= '' then
    done[5] = 'result'
    done[6] = result
  end
  move(id, status, 'completed', now, done, fields[3], ikey)
  return {1, 'completed', current, fields[5] or '0'}
end

-- The generation of a job discovered in the crawl whose root incarnation is `root`: the same
-- for the same (root, id), whichever page found the job and however often the discovery is
-- replayed (a finish lost by a failover and done again), so the results of the job are
-- recognised as the same incarnation. 2^52 + 52 bits of SHA-1: never a sequence number.
local function derived_gen(root, id)
  return int(4503599627370496 + tonumber(string.sub(redis.sha1hex(root .. ':' .. id), 1, 13), 16))
end

-- Submits the jobs whose 5 arguments (id, spec, max_retries, priority_rank, politeness key)
-- start at ARGV[first]; an id the queue already has is left alone. `root`: the root
-- generation of the crawl the jobs were discovered in (nil for jobs submitted by a client).
-- Returns 1 (created) or 0 per job.
local function submit_jobs(first, n, now, root)
  local created = {}
  if n == 0 then return created end
  local keys = {}
  for i = 0, n - 1 do
    local k = ARGV[first + i * 5 + 4]
    if k ~= '' then keys[k] = true end
  end
  prefetch_parked(keys)
  local seq = redis.call('INCRBY', key('seq'), n) - n
  local at = tonumber(now)
  -- Configs shared by reference (queue/shared_config.rs): each carrier's spec is stored
  -- under its hash before any job is created, whether its own job is created or not.
  for i = 0, n - 1 do
    local spec = ARGV[first + i * 5 + 1]
    if string.byte(spec, 4) == 111 and string.sub(spec, 1, 19) == '{"config_carrier":"' then
      redis.call('SET', key('config:' .. string.sub(spec, 20, 51)), spec, 'NX')
    end
  end
  -- With the seen-URL filter on (dedup.lua), a URL it has seen is not queued again either.
  local fresh = seen_check(first, n)
  for i = 0, n - 1 do
    local a = first + i * 5
    local id = ARGV[a]
    if redis.call('EXISTS', job_key(id)) == 1 then
      created[#created + 1] = 0
    elseif fresh and not seen_take(fresh, a) then
      created[#created + 1] = 0
    else
      seq = seq + 1
      -- Priority first, then submission order: rank * 2^32 + seq stays below 2^53 (exact).
      local pscore = int(tonumber(ARGV[a + 3]) * 4294967296 + (seq % 4294967296))
      -- `gen`: this incarnation of the job (ids can come back after a purge); `rgen`: the
      -- root generation of its crawl, handed down to the jobs it discovers.
      local gen = root and derived_gen(root, id) or int(seq)
      local k = ARGV[a + 4]
      redis.call('HSET', job_key(id), 'spec', ARGV[a + 1], 'max_retries', ARGV[a + 2],
        'created_at', now, 'retry_count', '0', 'attempt', '0', 'pscore', pscore,
        'gen', gen, 'rgen', root or gen, 'pkey', k, 'status', 'pending')
      count('pending', 1)
      enqueue(id, pscore, k, at)
      created[#created + 1] = 1
    end
  end
  if fresh then seen_commit() end
  return created
end

-- Deletes finished jobs that finished before `cutoff` (at most `limit` per status; nil: all).
local function purge_finished(cutoff, exclusive, limit)
  local purged = 0
  local max = (exclusive and '(' or '') .. int(cutoff)
  for _, status in ipairs({'completed', 'failed', 'cancelled'}) do
    local old = limit
      and redis.call('ZRANGEBYSCORE', key('idx', status), '-inf', max, 'LIMIT', 0, limit)
      or redis.call('ZRANGEBYSCORE', key('idx', status), '-inf', max)
    for _, id in ipairs(old) do
      queue_member(zrems, key('idx', status), id)
      count(status, -1)
      redis.call('DEL', job_key(id))
      purged = purged + 1
    end
  end
  return purged
end

local function touch_worker(worker, now)
  -- A worker seen for the first time gets its record (the hash and the zset entry are
  -- always deleted together).
  if redis.call('ZADD', key('workers'), int(now), worker) == 1 then
    redis.call('HSETNX', key('worker', worker), 'registered_at', int(now))
  end
end
