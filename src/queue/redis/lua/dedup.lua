-- The seen-URL filter (queue/dedup/mod.rs, redis/dedup.rs): a scalable Bloom filter per time
-- bucket, in one string bitmap per bucket (its layers one after the other) and a counter of
-- the URLs it holds (which says how many layers are in use). Hashing is the client's: each
-- job comes with k hash values below 2^52; layer {offset, bits} uses bit offset + value % bits
-- of each. Only the bits are read and set here.
--
-- Every key is declared: KEYS[2] the geometry (JSON, written once, the same for every
-- client), KEYS[3], KEYS[4] the bitmap and counter of the bucket of URLs seen for ever, then
-- a bitmap and a counter per time bucket lo..hi. The dedup arguments follow the script's
-- own, from ARGV[s] where s = ARGV[#ARGV]: the geometry, lo, hi, the number of records, then
-- per job (the ARGV index of its 5 submit fields, revisit ms (0: for ever), k values).
local seen_filter = nil
resets[#resets + 1] = function() seen_filter = nil end

-- Checks the declared keys against the server's clock and the stored geometry before the
-- script changes anything: returns an error reply, or nil.
local function seen_prepare()
  if #KEYS < 4 then return nil end
  local s = tonumber(ARGV[#ARGV])
  local stored = redis.call('GET', KEYS[2])
  if not stored then
    redis.call('SET', KEYS[2], ARGV[s])
    stored = ARGV[s]
  elseif stored ~= ARGV[s] then
    return redis.error_reply('SEENGEOMETRY the stored seen-URL filter has another geometry')
  end
  local geo = cjson.decode(stored)
  local now = now_ms()
  local width = geo.bucket_ms
  local f = {geo = geo, k = geo.k, width = width, now = now, cur = math.floor(now / width),
    lo = tonumber(ARGV[s + 1]), hi = tonumber(ARGV[s + 2]), at = {}, rv = {}, counts = {},
    added = {}, expire = 0}
  local p = s + 4
  for _ = 1, tonumber(ARGV[s + 3]) do
    local revisit = tonumber(ARGV[p + 1])
    if revisit > 0 then
      local first = math.floor((now - revisit) / width)
      if first < f.lo or f.cur > f.hi then
        return redis.error_reply('SEENCLOCK ' .. int(now))
      end
    end
    local a = tonumber(ARGV[p])
    f.at[a] = p + 2
    f.rv[a] = revisit
    p = p + 2 + geo.k
  end
  seen_filter = f
  return nil
end

-- The bitmap and counter keys of bucket b (nil: the bucket of URLs seen for ever).
local function seen_keys(f, b)
  if not b then return KEYS[3], KEYS[4] end
  local i = 5 + 2 * (b - f.lo)
  return KEYS[i], KEYS[i + 1]
end

-- URLs in bucket b, those added by this run included.
local function seen_count(f, b)
  local id = b or 'all'
  local c = f.counts[id]
  if c == nil then
    local _, ck = seen_keys(f, b)
    c = tonumber(redis.call('GET', ck) or '0')
    f.counts[id] = c
  end
  return c
end

-- The layer (1-based) that holds the URL numbered `count` (0-based) of a bucket.
local function seen_layer(geo, count)
  for i, layer in ipairs(geo.layers) do
    if count < layer[3] then return i end
  end
  return #geo.layers
end

-- Which of the n jobs whose submit fields start at ARGV[first] are new: a table from their
-- ARGV index to true (new, and added to the filter) or false (seen), or nil when the filter
-- is off. A URL is looked up in the older layers and buckets (BITFIELD_RO), then set in the
-- current layer of its bucket (BITFIELD SET, which answers the bits' old values): it is new
-- when one of them was 0. Setting bits that were all set changes nothing, so a URL is looked
-- up and added with one bit operation per hash value in the common case (one layer, no
-- recrawl). A URL twice in a batch is new once (the operations run in order).
local function seen_check(first, n)
  local f = seen_filter
  if not f then return nil end
  local k, layers, at, rv = f.k, f.geo.layers, f.at, f.rv
  local fmod = math.fmod
  local fresh, targets = {}, {}
  -- The layers to read (not set) in bucket b: all of an older bucket's, those before the
  -- one taking new URLs in the current bucket.
  local reads = {}
  local function to_read(b, current)
    local id = (b or 'all') .. (current and '+' or '')
    local r = reads[id]
    if r == nil then
      local count = seen_count(f, b)
      r = count > 0 and seen_layer(f.geo, count - 1) or 0
      if current then r = math.min(r, seen_layer(f.geo, count) - 1) end
      reads[id] = r
    end
    return r
  end
  local probes = {}
  for i = 0, n - 1 do
    local a = first + i * 5
    local v = at[a]
    if v then
      fresh[a] = true
      local revisit = rv[a]
      local from, to = 0, 0
      if revisit > 0 then from, to = math.floor((f.now - revisit) / f.width), f.cur end
      for b = from, to do
        local bucket = revisit > 0 and b or nil
        local count = to_read(bucket, b == to)
        if count > 0 then
          local bk = seen_keys(f, bucket)
          local probe = probes[bk]
          if not probe then
            probe = {ops = {}, jobs = {}, n = 0}
            probes[bk] = probe
          end
          local ops, o = probe.ops, probe.n
          for l = 1, count do
            local layer = layers[l]
            local offset, bits = layer[1], layer[2]
            for j = 0, k - 1 do
              ops[o + 1] = 'GET'
              ops[o + 2] = 'u1'
              ops[o + 3] = offset + fmod(ARGV[v + j], bits)
              o = o + 3
            end
            probe.jobs[#probe.jobs + 1] = a
          end
          probe.n = o
        end
      end
    end
  end
  for bk, probe in pairs(probes) do
    local bits, c = {}, 0
    for i = 1, probe.n, 3000 do
      local part = redis.call('BITFIELD_RO', bk, unpack(probe.ops, i, math.min(i + 2999, probe.n)))
      for x = 1, #part do bits[c + x] = part[x] end
      c = c + #part
    end
    for p, a in ipairs(probe.jobs) do
      local all = true
      for j = (p - 1) * k + 1, p * k do
        if bits[j] == 0 then all = false; break end
      end
      if all then fresh[a] = false end
    end
  end
  -- The URLs not seen before, per bucket they go to.
  for i = 0, n - 1 do
    local a = first + i * 5
    if at[a] and fresh[a] then
      local revisit = rv[a]
      local bid = revisit > 0 and f.cur or 'all'
      local list = targets[bid]
      if not list then
        list = {}
        targets[bid] = list
      end
      list[#list + 1] = a
      if revisit > 0 then f.expire = math.max(f.expire, (f.cur + 1) * f.width + revisit) end
    end
  end
  for bid, list in pairs(targets) do
    local bucket = bid ~= 'all' and bid or nil
    local bk = seen_keys(f, bucket)
    local i, filled = 1, nil
    while i <= #list do
      -- As many URLs as the current layer has room for (a layer is never overfilled).
      local count = seen_count(f, bucket)
      local l = seen_layer(f.geo, count)
      local layer = layers[l]
      if filled and filled < l then
        -- The layer this batch filled was not looked at for the URLs still to go.
        local rest, ops, o = {}, {}, 0
        local offset, bits = layers[filled][1], layers[filled][2]
        for x = i, #list do
          local v = at[list[x]]
          for y = 0, k - 1 do
            ops[o + 1] = 'GET'
            ops[o + 2] = 'u1'
            ops[o + 3] = offset + fmod(ARGV[v + y], bits)
            o = o + 3
          end
        end
        local got, c = {}, 0
        for q = 1, o, 3000 do
          local part = redis.call('BITFIELD_RO', bk, unpack(ops, q, math.min(q + 2999, o)))
          for x = 1, #part do got[c + x] = part[x] end
          c = c + #part
        end
        for x = i, #list do
          local all = true
          for y = (x - i) * k + 1, (x - i + 1) * k do
            if got[y] == 0 then all = false; break end
          end
          if all then fresh[list[x]] = false else rest[#rest + 1] = list[x] end
        end
        list, i = rest, 1
      end
      filled = l
      if i > #list then break end
      local j = #list
      if l < #layers then j = math.min(j, i + layer[3] - count - 1) end
      if count == (l > 1 and layers[l - 1][3] or 0) then
        -- A layer's first URL: its bits are allocated at once (a bitmap created this way
        -- takes its exact size; grown bit by bit it would be over-allocated).
        redis.call('SETBIT', bk, int(layer[1] + layer[2] - 1), 0)
      end
      local ops, o = {}, 0
      local offset, bits = layer[1], layer[2]
      for x = i, j do
        local v = at[list[x]]
        for y = 0, k - 1 do
          ops[o + 1] = 'SET'
          ops[o + 2] = 'u1'
          ops[o + 3] = offset + fmod(ARGV[v + y], bits)
          ops[o + 4] = '1'
          o = o + 4
        end
      end
      local old, c = {}, 0
      for q = 1, o, 4000 do
        local part = redis.call('BITFIELD', bk, unpack(ops, q, math.min(q + 3999, o)))
        for x = 1, #part do old[c + x] = part[x] end
        c = c + #part
      end
      local added = 0
      for x = i, j do
        local new = false
        for y = (x - i) * k + 1, (x - i + 1) * k do
          if old[y] == 0 then new = true; break end
        end
        fresh[list[x]] = new
        if new then added = added + 1 end
      end
      f.counts[bid] = count + added
      f.added[bid] = (f.added[bid] or 0) + added
      i = j + 1
    end
  end
  return fresh
end

-- Whether the job at ARGV index a is new (seen_check said so, or it has no dedup record).
local function seen_take(fresh, a)
  if not seen_filter.at[a] then return true end
  return fresh[a]
end

-- Writes the counters of the URLs added since the last call; a time bucket lives until the
-- longest revisit interval of its URLs has passed after it.
local function seen_commit()
  local f = seen_filter
  for bid, added in pairs(f.added) do
    local bucket = bid ~= 'all' and bid or nil
    local bk, ck = seen_keys(f, bucket)
    if added > 0 then redis.call('INCRBY', ck, added) end
    if bucket then
      -- Expires at the latest time any of its URLs needs it (PEXPIREAT NX / GT would say
      -- this in one call each, but need Redis 7: on Redis 6 they fail at the end of a
      -- submit whose jobs are written, leaving them in no queue).
      for _, key in ipairs({bk, ck}) do
        local left = redis.call('PTTL', key)
        if left < 0 or f.now + left < f.expire then
          redis.call('PEXPIREAT', key, int(f.expire))
        end
      end
    end
  end
  f.added = {}
end
