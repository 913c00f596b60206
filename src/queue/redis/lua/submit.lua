-- Submits jobs; ARGV[2] = number of jobs, then 11 fields per job:
-- id, name, template_id, target_url, config, priority, max_retries, crawl_id, depth,
-- parent_id, priority_rank (PRIORITY_LIMIT - priority, >= 0).
-- Returns 1 (created) or 0 (id already known: nothing changes) per job.
local now = now_ms()
local created = {}
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  local a = 3 + i * 11
  local id = ARGV[a]
  local jk = job_key(id)
  if redis.call('EXISTS', jk) == 1 then
    created[#created + 1] = 0
  else
    local seq = redis.call('INCR', key('seq'))
    -- Priority first, then submission order: rank * 2^32 + seq stays below 2^53 (exact).
    local pscore = tonumber(ARGV[a + 10]) * 4294967296 + (seq % 4294967296)
    redis.call('HSET', jk,
      'id', id, 'name', ARGV[a + 1], 'template_id', ARGV[a + 2], 'target_url', ARGV[a + 3],
      'config', ARGV[a + 4], 'priority', ARGV[a + 5], 'max_retries', ARGV[a + 6],
      'depth', ARGV[a + 8], 'created_at', int(now), 'retry_count', '0', 'attempt', '0',
      'pscore', int(pscore))
    if ARGV[a + 7] ~= '' then redis.call('HSET', jk, 'crawl_id', ARGV[a + 7]) end
    if ARGV[a + 9] ~= '' then redis.call('HSET', jk, 'parent_id', ARGV[a + 9]) end
    move(id, nil, 'pending')
    created[#created + 1] = 1
  end
end
return created
