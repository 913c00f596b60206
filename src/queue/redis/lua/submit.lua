-- Submits jobs; ARGV[2] = number of jobs, then 4 fields per job:
-- id, spec (the immutable submission as JSON), max_retries, priority_rank
-- (PRIORITY_LIMIT - priority, >= 0). Returns 1 (created) or 0 (id already known: nothing
-- changes) per job.
return submit_jobs(3, tonumber(ARGV[2]), int(now_ms()))
