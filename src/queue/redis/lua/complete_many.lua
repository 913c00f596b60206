-- Fenced completion of many jobs in one step: ARGV[2] = count, then (id, token, result)
-- triples. Returns one {code, status, token} per job (see complete_job).
local now = int(now_ms())
local n = tonumber(ARGV[2])
local out = {}
for i = 0, n - 1 do
  local a = 3 + i * 3
  local answer = complete_job(ARGV[a], ARGV[a + 1], ARGV[a + 2], now, -1)
  out[#out + 1] = {answer[1], answer[2], answer[3]}
end
return out
