-- Jobs with status ARGV[2], page ARGV[3] (offset) / ARGV[4] (count), as HGETALL arrays.
local status, offset, count = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local stop = offset + count - 1
local ids
if status == 'pending' then
  ids = redis.call('ZRANGE', key('pending'), offset, stop)
elseif status == 'retrying' then
  ids = redis.call('ZRANGE', key('delayed'), offset, stop)
elseif status == 'assigned' or status == 'running' then
  ids = redis.call('ZRANGE', key('idx', status), offset, stop)
else
  ids = redis.call('ZREVRANGE', key('idx', status), offset, stop)
end
local out = {}
for _, id in ipairs(ids) do
  local fields = redis.call('HGETALL', job_key(id))
  if #fields == 0 then fields = {'id', id} end
  out[#out + 1] = fields
end
return out
