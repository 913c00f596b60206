-- Submits jobs; ARGV[2] = number of jobs, ARGV[3] = the root generation of the crawl the
-- jobs were discovered in ('' for jobs a client submits; see derived_gen: a sharded queue
-- forwards the links a page of another shard discovered), then 5 fields per job: id, spec
-- (the immutable submission as JSON), max_retries, priority_rank (PRIORITY_LIMIT - priority,
-- >= 0), politeness key. Returns 1 (created) or 0 (id already known, or URL seen: nothing
-- changes) per job.
local root = ARGV[3]
if root == '' then root = nil end
return submit_jobs(4, tonumber(ARGV[2]), int(now_ms()), root)
