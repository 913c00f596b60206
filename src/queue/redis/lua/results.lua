-- Trims the results stream (redis/results.rs). ARGV[2] action:
-- bound (ARGV[3] entries to keep): `XTRIM MAXLEN ~` (whole stream nodes, so about that many);
-- trim (ARGV[3] the first id to keep): `XTRIM MINID`, after an export.
-- Either way `results:trimmed` then holds an id every entry before which is gone: the trim's
-- own (an export that trimmed what it read learns nothing wrong), or after the bound the
-- first entry left (Redis does not say which entry it deleted last; a reader stopped exactly
-- there is told it may have lost entries between it and the first one left).
-- Returns the entries removed.
local action, arg = ARGV[2], ARGV[3]
local results = key('results')
local removed
if action == 'bound' then
  removed = redis.call('XTRIM', results, 'MAXLEN', '~', arg)
else
  removed = redis.call('XTRIM', results, 'MINID', arg)
end
if removed > 0 then
  local first_kept = arg
  if action == 'bound' then
    local first = redis.call('XRANGE', results, '-', '+', 'COUNT', 1)
    first_kept = first[1] and first[1][1]
  end
  if first_kept then redis.call('SET', key('results', 'trimmed'), first_kept) end
end
return removed
