-- Brings a queue written by an earlier version up to date, once, when a client opens it:
-- the index of every pending job (`idx:pending`) is built from the shared queue.
if redis.call('EXISTS', key('idx', 'pending')) == 0 and redis.call('EXISTS', key('pending')) == 1 then
  redis.call('ZUNIONSTORE', key('idx', 'pending'), 1, key('pending'))
end
return 1
