-- Fenced change of a leased job: ARGV[2] id, ARGV[3] the caller's fencing token, ARGV[4]
-- action: running | complete | fail | release; ARGV[5] result or error text; ARGV[6] retryable
-- (1/0); ARGV[7..9] retry backoff base ms, cap ms, jitter (0..1); for fail, ARGV[10] what the
-- failure says about the job's politeness key ('' nothing, 'throttled': 429/503, 'error': a
-- timeout or connection failure) and ARGV[11] its Retry-After in ms (0: none) — the key is
-- slowed down for the whole fleet (see penalize).
-- Returns {code, status, token, outcome, not_before}: code 1 accepted, 0 stale, -1 no job.
local id, token, action = ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
if action == 'complete' then
  local answer = complete_job(id, token, ARGV[5], int(now), -1)
  return {answer[1], answer[2], answer[3], '', '0'}
end
local jk = job_key(id)
local fields = redis.call('HMGET', jk, 'status', 'token')
local status, current = fields[1], fields[2]
if not status then return {-1, '', '0', '', '0'} end
if not is_leased(status) or current ~= token then
  return {0, status, current or '0', '', '0'}
end
if action == 'running' then
  if status == 'assigned' then move(id, 'assigned', 'running', now) end
  return {1, 'running', current, '', '0'}
elseif action == 'fail' then
  local kind = ARGV[10] or ''
  if kind ~= '' then
    local k = redis.call('HGET', jk, 'pkey') or ''
    if k ~= '' then penalize(k, now, tonumber(ARGV[11] or '0') or 0, kind) end
  end
  local outcome, not_before = retry_or_fail(id, status, now, ARGV[6] == '1', ARGV[5],
    {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])})
  return {1, outcome, current, outcome, int(not_before)}
elseif action == 'release' then
  redis.call('HDEL', jk, 'lease_deadline')
  move(id, status, 'pending')
  return {1, 'pending', current, '', '0'}
end
return redis.error_reply('unknown action ' .. action)
