-- Submits jobs; ARGV[2] = number of jobs, then 4 fields per job:
-- id, spec (the immutable submission as JSON), max_retries, priority_rank
-- (PRIORITY_LIMIT - priority, >= 0). Returns 1 (created) or 0 (id already known: nothing
-- changes) per job.
local now = int(now_ms())
local created = {}
local n = tonumber(ARGV[2])
local seq = redis.call('INCRBY', key('seq'), n) - n
for i = 0, n - 1 do
  local a = 3 + i * 4
  local id = ARGV[a]
  if redis.call('EXISTS', job_key(id)) == 1 then
    created[#created + 1] = 0
  else
    seq = seq + 1
    -- Priority first, then submission order: rank * 2^32 + seq stays below 2^53 (exact).
    local pscore = int(tonumber(ARGV[a + 3]) * 4294967296 + (seq % 4294967296))
    move(id, nil, 'pending', pscore, {'spec', ARGV[a + 1], 'max_retries', ARGV[a + 2],
      'created_at', now, 'retry_count', '0', 'attempt', '0', 'pscore', pscore})
    created[#created + 1] = 1
  end
end
return created
