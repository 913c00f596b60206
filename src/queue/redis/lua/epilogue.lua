end
local result = main()
flush()
return result
