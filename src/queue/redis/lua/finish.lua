-- A worker's finished jobs in one atomic step: ARGV[2] = count, then per job: id, fencing
-- token, result, records (a JSON array of item records, or ''), the page's latency in ms (-1:
-- unknown; it feeds the politeness key's adaptive delay), the number of discovered jobs k, and
-- k times the 5 submit fields (see submit_jobs). A job whose token is current is completed,
-- its records are appended to the results stream (with the job's generation) and its
-- discovered jobs submitted (with generations derived from the job's root generation, see
-- derived_gen); for a stale token nothing at all happens, so a worker that lost its lease can
-- neither record items nor add jobs. Returns one {code, status, token} per job.
local now = int(now_ms())
local n = tonumber(ARGV[2])
local out = {}
local a = 3
for _ = 1, n do
  local id, token, result, records = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local latency, children = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local answer = complete_job(id, token, result, now, latency)
  if answer[1] == 1 then
    if records ~= '' then
      redis.call('XADD', key('results'), '*', 'job', id, 'gen', answer[4], 'records', records)
    end
    if children > 0 then
      local fields = redis.call('HMGET', job_key(id), 'rgen', 'gen')
      submit_jobs(a + 6, children, now, fields[1] or fields[2] or '0')
    end
  end
  out[#out + 1] = {answer[1], answer[2], answer[3]}
  a = a + 6 + children * 5
end
return out
