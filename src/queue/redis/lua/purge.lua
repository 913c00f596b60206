-- Deletes finished jobs that finished at least ARGV[2] ms ago. Returns how many.
local older_than = tonumber(ARGV[2])
local cutoff = now_ms() - older_than
local purged = 0
for _, status in ipairs({'completed', 'failed', 'cancelled'}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('idx', status), '-inf', int(cutoff))) do
    redis.call('ZREM', key('idx', status), id)
    redis.call('HINCRBY', key('counts'), status, -1)
    redis.call('DEL', job_key(id))
    purged = purged + 1
  end
end
return purged
