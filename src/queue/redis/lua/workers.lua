-- Worker registry: ARGV[2] action: register | unregister | drain | list; ARGV[3] worker id.
-- register: ARGV[4] session ('' for none), ARGV[5] max lease expiries. A run that registers
--   with a session takes the id over: jobs still leased under it (a killed or superseded
--   earlier run's) go back to pending, counted as expired leases (a job that kills its
--   worker fails after max expiries instead of killing every restart), and that earlier
--   run's heartbeats report it superseded from now on. Returns the jobs given back.
-- unregister: ARGV[4] session: when the id is registered under another session (a newer
--   run took it over), nothing is done and -1 returned.
-- drain: ARGV[4] the flag (1/0).
local action, worker = ARGV[2], ARGV[3]
local now = now_ms()
local wkey = key('worker', worker)
if action == 'register' then
  local session, max_expiries = ARGV[4], tonumber(ARGV[5])
  local released = 0
  if session ~= '' then
    for _, id in ipairs(redis.call('SMEMBERS', key('wjobs', worker))) do
      local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker')
      if is_leased(fields[1]) and fields[2] == worker then
        expire_lease(id, fields[1], now, 'worker "' .. worker ..
          '" restarted before finishing the job (its earlier run crashed or was replaced)',
          max_expiries)
        released = released + 1
      end
    end
    flush()
    redis.call('DEL', key('wjobs', worker))
  end
  redis.call('ZADD', key('workers'), int(now), worker)
  redis.call('HSET', wkey, 'registered_at', int(now), 'draining', '0')
  if session ~= '' then redis.call('HSET', wkey, 'session', session) end
  return released
elseif action == 'unregister' then
  local session = ARGV[4]
  if session ~= '' then
    local current = redis.call('HGET', wkey, 'session')
    if current and current ~= '' and current ~= session then return -1 end
  end
  -- Jobs still held go back to pending at once (the worker will not finish them).
  local released = 0
  for _, id in ipairs(redis.call('SMEMBERS', key('wjobs', worker))) do
    local fields = redis.call('HMGET', job_key(id), 'status', 'assigned_worker')
    if is_leased(fields[1]) and fields[2] == worker then
      redis.call('HDEL', job_key(id), 'lease_deadline')
      move(id, fields[1], 'pending', nil, nil, worker)
      released = released + 1
    end
  end
  flush()
  redis.call('DEL', key('wjobs', worker), wkey)
  redis.call('ZREM', key('workers'), worker)
  return released
elseif action == 'drain' then
  if not redis.call('ZSCORE', key('workers'), worker) then return 0 end
  redis.call('HSET', wkey, 'draining', ARGV[4])
  return 1
elseif action == 'list' then
  local out = {}
  local all = redis.call('ZRANGE', key('workers'), 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local id = all[i]
    local info = redis.call('HMGET', key('worker', id), 'registered_at', 'draining')
    local held = {}
    for _, job in ipairs(redis.call('SMEMBERS', key('wjobs', id))) do
      local fields = redis.call('HMGET', job_key(job), 'status', 'assigned_worker')
      if is_leased(fields[1]) and fields[2] == id then held[#held + 1] = job end
    end
    table.sort(held)
    out[#out + 1] = {id, info[1] or all[i + 1], all[i + 1], info[2] or '0', held}
  end
  return {int(now), out}  -- the server's time, to judge liveness without a second call
end
return redis.error_reply('unknown action ' .. action)
