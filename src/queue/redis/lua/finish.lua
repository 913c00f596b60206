-- A worker's finished jobs in one atomic step: ARGV[2] = count, then per job: id, fencing
-- token, result, records (a JSON array of item records, or ''), the page's latency in ms (-1:
-- unknown; it feeds the politeness key's adaptive delay), the number of discovered jobs k, and
-- k times the 5 submit fields (see submit_jobs), then the number m of discovered jobs that
-- belong to other shards of a sharded queue and m times (shard, the 5 submit fields). A job
-- whose token is current is completed, its records are appended to the results stream (with
-- the job's generation), its discovered jobs submitted (with generations derived from the
-- job's root generation, see derived_gen) and the other shards' appended to the `outbox`
-- stream, from which the client forwards them; for a stale token nothing at all happens, so a
-- worker that lost its lease can neither record items nor add jobs. Returns one
-- {code, status, token} per job, followed for an accepted job with jobs for other shards by
-- its root generation and the ids of their outbox entries (its client forwards them).
local now = int(now_ms())
local n = tonumber(ARGV[2])
local out = {}
local a = 3
for _ = 1, n do
  local id, token, result, records = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local latency, children = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local others = a + 6 + children * 5
  local foreign = tonumber(ARGV[others])
  local answer = complete_job(id, token, result, now, latency)
  local reply = {answer[1], answer[2], answer[3]}
  if answer[1] == 1 then
    if records ~= '' then
      redis.call('XADD', key('results'), '*', 'job', id, 'gen', answer[4], 'records', records)
    end
    if children > 0 or foreign > 0 then
      local fields = redis.call('HMGET', job_key(id), 'rgen', 'gen')
      local root = fields[1] or fields[2] or '0'
      if children > 0 then submit_jobs(a + 6, children, now, root) end
      if foreign > 0 then reply[4] = root end
      for i = 0, foreign - 1 do
        local b = others + 1 + i * 6
        reply[5 + i] = redis.call('XADD', key('outbox'), '*', 'to', ARGV[b], 'root', root,
          'id', ARGV[b + 1], 'spec', ARGV[b + 2], 'retries', ARGV[b + 3], 'rank', ARGV[b + 4],
          'key', ARGV[b + 5])
      end
    end
  end
  out[#out + 1] = reply
  a = others + 1 + foreign * 6
end
return out
