-- Worker registry: ARGV[2] action: register | unregister | drain | list; ARGV[3] worker id;
-- ARGV[4] drain flag (1/0).
local action, worker = ARGV[2], ARGV[3]
local now = now_ms()
if action == 'register' then
  redis.call('ZADD', key('workers'), int(now), worker)
  redis.call('HSET', key('worker', worker), 'registered_at', int(now), 'draining', '0')
  return 1
elseif action == 'unregister' then
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
  redis.call('DEL', key('wjobs', worker), key('worker', worker))
  redis.call('ZREM', key('workers'), worker)
  return released
elseif action == 'drain' then
  if not redis.call('ZSCORE', key('workers'), worker) then return 0 end
  redis.call('HSET', key('worker', worker), 'draining', ARGV[4])
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
