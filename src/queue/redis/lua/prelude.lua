-- Shared by every queue script (prepended at build time). ARGV[1] is the queue's key base,
-- "<prefix>:{<name>}": the braces make every key of one queue hash to one Redis Cluster slot.
-- All times come from this server's clock (TIME), never from a client's.
local base = ARGV[1]
local function key(...) return base .. ':' .. table.concat({...}, ':') end
local function job_key(id) return base .. ':job:' .. id end
local function int(x) return string.format('%.0f', x) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Leaves the structures of `old` status and enters those of `new`, keeping the per-status
-- counters exact. `score` orders the job in its new structure.
local function move(id, old, new, score)
  local jk = job_key(id)
  if old == 'pending' then
    redis.call('ZREM', key('pending'), id)
  elseif old == 'retrying' then
    redis.call('ZREM', key('delayed'), id)
  elseif old == 'assigned' or old == 'running' then
    redis.call('ZREM', key('idx', old), id)
    if new ~= 'assigned' and new ~= 'running' then
      -- Leaving the leased states: the lease and the worker's hold end.
      redis.call('ZREM', key('leases'), id)
      local worker = redis.call('HGET', jk, 'assigned_worker')
      if worker then redis.call('SREM', key('wjobs', worker), id) end
    end
  elseif old then
    redis.call('ZREM', key('idx', old), id)
  end
  if new == 'pending' then
    redis.call('ZADD', key('pending'), redis.call('HGET', jk, 'pscore'), id)
  elseif new == 'retrying' then
    redis.call('ZADD', key('delayed'), int(score), id)
  elseif new then
    redis.call('ZADD', key('idx', new), int(score), id)
  end
  if old then redis.call('HINCRBY', key('counts'), old, -1) end
  if new then
    redis.call('HINCRBY', key('counts'), new, 1)
    redis.call('HSET', jk, 'status', new)
  end
end

-- After a failed attempt (backoff = {base_ms, cap_ms, jitter in [0, 1]}) or an expired lease
-- (backoff = nil: no delay): retry while retries remain, else fail for good. The delay of
-- retry k is min(base * 2^(k-1), cap), half fixed and half scaled by the client's jitter
-- (scripts must not draw random numbers themselves). Returns 'retrying', 'pending' or
-- 'failed', and the not-before time.
local function retry_or_fail(id, status, now, retryable, err, backoff)
  local jk = job_key(id)
  local retries = tonumber(redis.call('HGET', jk, 'retry_count') or '0')
  local max_retries = tonumber(redis.call('HGET', jk, 'max_retries') or '0')
  redis.call('HSET', jk, 'error', err)
  redis.call('HDEL', jk, 'lease_deadline')
  if retryable and retries < max_retries then
    redis.call('HINCRBY', jk, 'retry_count', 1)
    if backoff then
      local full = math.min(backoff[1] * math.pow(2, math.min(retries, 30)), backoff[2])
      local not_before = now + math.floor(full / 2 + backoff[3] * full / 2)
      redis.call('HSET', jk, 'not_before', int(not_before))
      move(id, status, 'retrying', not_before)
      return 'retrying', not_before
    end
    redis.call('HSET', jk, 'not_before', int(now))
    move(id, status, 'pending')
    return 'pending', now
  end
  redis.call('HSET', jk, 'completed_at', int(now))
  move(id, status, 'failed', now)
  return 'failed', now
end

local function touch_worker(worker, now)
  redis.call('ZADD', key('workers'), int(now), worker)
  redis.call('HSETNX', key('worker', worker), 'registered_at', int(now))
end
