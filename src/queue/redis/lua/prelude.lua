-- Shared by every queue script. The scripts are loaded as one Redis function library
-- (Redis >= 7: this prelude runs once, at FUNCTION LOAD) or, on older servers, each as its
-- own script with this prelude in front (see redis/scripts.rs). Either way a call starts
-- with begin(), which resets the per-call state below, and ends with flush().
-- ARGV[1] is the queue's key base, "<prefix>:{<name>}" (a final '!' when the client drives
-- it as a shard): the braces make every key of one queue hash to one Redis Cluster slot. All times come from this server's clock (TIME).
local KEYS, ARGV, base
local key_cache = {}
-- The key `<base>:<a>[:<b>]`, built once per call.
local function key(a, b)
  local name = b and (a .. ':' .. b) or a
  local k = key_cache[name]
  if not k then
    k = base .. ':' .. name
    key_cache[name] = k
  end
  return k
end
local function job_key(id) return base .. ':job:' .. id end

-- A job's hash holds the immutable submission as one JSON field (`spec`, written by the
-- client) and the fields that change as separate ones. Jobs are read as HMGET of FIELDS, in
-- this order (the Rust side decodes by position: keep `JOB_FIELDS` in redis/mod.rs in step).
local FIELDS = {'spec', 'status', 'attempt', 'max_retries', 'retry_count', 'assigned_worker',
  'created_at', 'started_at', 'completed_at', 'lease_deadline', 'not_before', 'error', 'result',
  'token', 'lease_expiries', 'pkey', 'ikey'}
-- The job as returned to the client: its id, then the FIELDS values, then for a job whose
-- config is stored by reference (its spec starts with {"config_ref":"<hash>") the spec that
-- carried it (queue/shared_config.rs).
local function read_job(id)
  local values = redis.call('HMGET', job_key(id), unpack(FIELDS))
  table.insert(values, 1, id)
  local spec = values[2]
  if spec and string.byte(spec, 4) == 111 and string.sub(spec, 1, 15) == '{"config_ref":"' then
    values[#FIELDS + 2] = redis.call('GET', key('config:' .. string.sub(spec, 16, 47)))
  end
  return values
end
local function int(x) return string.format('%.0f', x) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Writes to the shared structures (sorted sets, sets, counters) are collected and sent as
-- one command per key at the end: a batch of 100 jobs costs a few calls, not hundreds.
-- A script that reads a structure after changing it calls flush() first.
local zadds, zrems, srems, counts, totals = {}, {}, {}, {}, {}
local function queue_zadd(k, score, member)
  local list = zadds[k]
  if not list then list = {}; zadds[k] = list end
  list[#list + 1] = score
  list[#list + 1] = member
end
local function queue_member(pending, k, member)
  local list = pending[k]
  if not list then list = {}; pending[k] = list end
  list[#list + 1] = member
end
local function count(status, delta) counts[status] = (counts[status] or 0) + delta end
-- Monotonic totals (hash `totals`) for rates and durations: never decremented, never purged.
local function total(name, delta) totals[name] = (totals[name] or 0) + delta end
-- Upper bounds (ms) of the job duration histogram; keep DURATION_BUCKETS_MS in queue/job.rs
-- and the SQLite trigger in step. Field `d<i>` counts durations in bucket i (i = #bounds:
-- above the last bound).
local DURATION_BOUNDS = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
local function record_duration(ms)
  local bucket = #DURATION_BOUNDS
  for i, bound in ipairs(DURATION_BOUNDS) do
    if ms <= bound then bucket = i - 1; break end
  end
  total('duration_ms_sum', ms)
  total('duration_count', 1)
  total('d' .. bucket, 1)
end
local function send(command, k, args)
  -- unpack() has a stack limit: send in slices.
  for i = 1, #args, 4000 do
    redis.call(command, k, unpack(args, i, math.min(i + 3999, #args)))
  end
end
-- Adds `deltas` (field -> number) to the integer fields of hash `k`: one HINCRBY per field
-- for one or two, else one HMGET and one HSET (a completion changes four totals).
local function add_all(k, deltas)
  local fields = {}
  for field, delta in pairs(deltas) do
    if delta ~= 0 then fields[#fields + 1] = field end
  end
  if #fields <= 2 then
    for _, field in ipairs(fields) do redis.call('HINCRBY', k, field, deltas[field]) end
    return
  end
  local values = redis.call('HMGET', k, unpack(fields))
  local args = {}
  for i, field in ipairs(fields) do
    args[#args + 1] = field
    args[#args + 1] = int((tonumber(values[i] or '') or 0) + deltas[field])
  end
  redis.call('HSET', k, unpack(args))
end
-- Set by politeness.lua: files the politeness keys touched by this run (after the structure
-- writes below, so it sees the per-key queues as they are now).
local politeness_flush = nil
-- Per-call state of the other modules is reset by the functions they add here.
local resets = {}
local function begin(keys, args)
  KEYS, ARGV, base = keys, args, args[1]
  if string.byte(base, -1) == 33 then
    -- '!': the client drives this queue as a shard of a sharded queue (sharded/mod.rs).
    base = string.sub(base, 1, -2)
  elseif redis.call('EXISTS', base .. ':shards') == 1 then
    -- A client that opened the queue before it was given shards would work one shard as the
    -- whole queue: refused before anything is read or written.
    error({err = 'SHARDED this queue was given shards after this client opened it: open it again'})
  end
  key_cache = {}
  zadds, zrems, srems, counts, totals = {}, {}, {}, {}, {}
  for _, reset in ipairs(resets) do reset() end
end
-- On a Redis Cluster a call declares no keys (see redis/cluster.rs): ARGV[1] is the number
-- of keys that follow it, then the keys, then the arguments. Its first access is a key that
-- never exists: a node refuses it ("non local key") while the queue's slot migrates away and
-- once the slot has moved, before the call has written anything.
local function cluster_args(args)
  local n = tonumber(args[1])
  local keys, rest = {}, {}
  for i = 2, n + 1 do keys[#keys + 1] = args[i] end
  for i = n + 2, #args do rest[#rest + 1] = args[i] end
  redis.call('EXISTS', rest[1] .. ':guard')
  return keys, rest
end
local function flush()
  for k, members in pairs(zrems) do send('ZREM', k, members) end
  for k, members in pairs(srems) do send('SREM', k, members) end
  for k, pairs_ in pairs(zadds) do send('ZADD', k, pairs_) end
  add_all(key('counts'), counts)
  add_all(key('totals'), totals)
  zadds, zrems, srems, counts, totals = {}, {}, {}, {}, {}
  if politeness_flush then politeness_flush() end
end

