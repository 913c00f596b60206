end
local seen_error = seen_prepare()
if seen_error then return seen_error end
local result = main()
flush()
return result
