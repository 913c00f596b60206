-- Deletes finished jobs that finished at least ARGV[2] ms ago. Returns how many.
local cutoff = now_ms() - tonumber(ARGV[2])
local purged = 0
for _, status in ipairs({'completed', 'failed', 'cancelled'}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('idx', status), '-inf', int(cutoff))) do
    queue_member(zrems, key('idx', status), id)
    count(status, -1)
    redis.call('DEL', job_key(id))
    purged = purged + 1
  end
end
return purged
