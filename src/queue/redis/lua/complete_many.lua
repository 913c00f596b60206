-- Fenced completion of many jobs in one step: ARGV[2] = count, then (id, attempt, result)
-- triples. Returns one {code, status, attempt} per job (see complete_job).
local now = int(now_ms())
local n = tonumber(ARGV[2])
local out = {}
for i = 0, n - 1 do
  local a = 3 + i * 3
  out[#out + 1] = complete_job(ARGV[a], ARGV[a + 1], ARGV[a + 2], now)
end
return out
