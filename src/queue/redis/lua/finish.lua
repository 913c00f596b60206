-- A worker's finished jobs in one atomic step: ARGV[2] = count, then per job: id, fencing
-- token, result, records (a JSON array of item records, or ''), the number of discovered jobs
-- k, and k times the 4 submit fields (see submit_jobs). A job whose token is current is
-- completed, its records are appended to the results stream (with the job's generation) and
-- its discovered jobs submitted (with generations derived from the job's root generation,
-- see derived_gen); for a stale token nothing at all happens, so a worker that
-- lost its lease can neither record items nor add jobs. Returns one {code, status, token}
-- per job.
local now = int(now_ms())
local n = tonumber(ARGV[2])
local out = {}
local a = 3
for _ = 1, n do
  local id, token, result, records = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local children = tonumber(ARGV[a + 4])
  local answer = complete_job(id, token, result, now)
  if answer[1] == 1 then
    if records ~= '' then
      redis.call('XADD', key('results'), '*', 'job', id, 'gen', answer[4], 'records', records)
    end
    if children > 0 then
      local fields = redis.call('HMGET', job_key(id), 'rgen', 'gen')
      submit_jobs(a + 5, children, now, fields[1] or fields[2] or '0')
    end
  end
  out[#out + 1] = {answer[1], answer[2], answer[3]}
  a = a + 5 + children * 4
end
return out
