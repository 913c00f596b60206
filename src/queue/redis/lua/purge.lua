-- Deletes finished jobs that finished at least ARGV[2] ms ago, at most ARGV[3] per status (the
-- caller repeats until none is left). Returns how many.
return purge_finished(now_ms() - tonumber(ARGV[2]), false, tonumber(ARGV[3]))
