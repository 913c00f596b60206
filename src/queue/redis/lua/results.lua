-- Trims the results stream (redis/results.rs). ARGV[2] action:
-- bound (ARGV[3] entries to keep): `XTRIM MAXLEN ~` (whole stream nodes, so about that many);
-- trim (ARGV[3] the first id to keep): `XTRIM MINID`, after an export.
-- Either way `results:trimmed` then holds the first id kept (every entry before it is gone),
-- so an export that fell behind learns that it lost entries. Returns the entries removed.
local action, arg = ARGV[2], ARGV[3]
local results = key('results')
local removed
if action == 'bound' then
  removed = redis.call('XTRIM', results, 'MAXLEN', '~', arg)
else
  removed = redis.call('XTRIM', results, 'MINID', arg)
end
if removed > 0 then
  local first = redis.call('XRANGE', results, '-', '+', 'COUNT', 1)
  -- An empty stream after a trim: everything before the trim's id is gone.
  redis.call('SET', key('results', 'trimmed'), first[1] and first[1][1] or arg)
end
return removed
