-- Jobs with status ARGV[2], page ARGV[3] (offset) / ARGV[4] (count), as {id, FIELDS...}.
local status, offset, count = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local stop = offset + count - 1
local ids
if status == 'pending' then
  ids = redis.call('ZRANGE', key('idx', 'pending'), offset, stop)
elseif status == 'retrying' then
  ids = redis.call('ZRANGE', key('delayed'), offset, stop)
elseif status == 'assigned' or status == 'running' then
  -- In-flight jobs are few (bounded by the workers' concurrency): filter the leases.
  ids = {}
  local seen = 0
  for _, id in ipairs(redis.call('ZRANGE', key('leases'), 0, -1)) do
    if redis.call('HGET', job_key(id), 'status') == status then
      if seen >= offset and #ids < count then ids[#ids + 1] = id end
      seen = seen + 1
    end
  end
else
  ids = redis.call('ZREVRANGE', key('idx', status), offset, stop)
end
local out = {}
for _, id in ipairs(ids) do out[#out + 1] = read_job(id) end
return out
