-- Deletes finished jobs that finished at least ARGV[2] ms ago. Returns how many.
return purge_finished(now_ms() - tonumber(ARGV[2]), false, nil)
