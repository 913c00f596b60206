-- The seen-URL filter (queue/dedup/bloom.rs, redis/dedup.rs): a scalable, blocked Bloom
-- filter per time bucket, in one string bitmap per bucket (its layers one after the other)
-- and a counter of the URLs it holds (which says how many layers are in use). A URL sets k
-- bits of one 52-bit word per layer: the client sends its word hash (below 2^52; layer
-- {offset, bits} uses the word at offset + (hash % (bits / 52)) * 52) and its mask (the k
-- bits, below 2^52). Here words are only read (BITFIELD_RO GET u52), compared and written
-- (BITFIELD SET u52): two operations per new URL, whatever k is.
--
-- Every key is declared: KEYS[2] the geometry (JSON, written once, the same for every
-- client), KEYS[3], KEYS[4] the bitmap and counter of the bucket of URLs seen for ever, then
-- a bitmap and a counter per time bucket lo..hi. The dedup arguments follow the script's
-- own, from ARGV[s] where s = ARGV[#ARGV]: the geometry, lo, hi, the number of records, then
-- per job: the ARGV index of its 5 submit fields, revisit ms (0: for ever), word hash and
-- mask (hexadecimal).
local seen_filter = nil
resets[#resets + 1] = function() seen_filter = nil end
-- The geometry last decoded (a library keeps it between calls: it never changes).
local seen_geo_text, seen_geo = nil, nil
-- A word's 52 bits in two halves of 26 (the bit library works on 32-bit integers).
local HALF = 67108864

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
  if stored ~= seen_geo_text then
    local geo = cjson.decode(stored)
    geo.words = {}
    for i, layer in ipairs(geo.layers) do geo.words[i] = layer[2] / 52 end
    seen_geo_text, seen_geo = stored, geo
  end
  local geo = seen_geo
  local now = now_ms()
  local width = geo.bucket_ms
  local f = {geo = geo, width = width, now = now, cur = math.floor(now / width),
    lo = tonumber(ARGV[s + 1]), hi = tonumber(ARGV[s + 2]), rv = {}, hash = {}, mlo = {},
    mhi = {}, counts = {}, added = {}, expire = 0}
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
    -- Hexadecimal: read by strtoul (a decimal number of 16 digits costs strtod much more).
    local mask = tonumber(ARGV[p + 3], 16)
    local low = mask % HALF
    f.rv[a] = revisit
    f.hash[a] = tonumber(ARGV[p + 2], 16)
    f.mlo[a] = low
    f.mhi[a] = (mask - low) / HALF
    p = p + 4
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

-- URLs a bucket holds before layer l.
local function seen_layer_start(geo, l)
  return l > 1 and geo.layers[l - 1][3] or 0
end

-- Whether word v has every bit of the mask (mlo, mhi).
local function seen_has(v, mlo, mhi)
  local low = v % HALF
  return bit.band(low, mlo) == mlo and bit.band((v - low) / HALF, mhi) == mhi
end

-- Runs the BITFIELD operations `ops` (n arguments, `per` per operation) on key k in parts
-- small enough for one call; returns the answers in order.
local function seen_bitfield(command, k, ops, n, per)
  local out, c = {}, 0
  local step = per * 1000
  for i = 1, n, step do
    local part = redis.call(command, k, unpack(ops, i, math.min(i + step - 1, n)))
    for x = 1, #part do out[c + x] = part[x] end
    c = c + #part
  end
  return out
end

-- Which of the n jobs whose submit fields start at ARGV[first] are new: a table from their
-- ARGV index to true (new, and added to the filter) or false (seen), or nil when the filter
-- is off. A URL is seen when its mask is in its word of a layer in use of a bucket of its
-- window (the layers of older buckets, and of its own bucket those up to the one taking new
-- URLs), as written by this run (a URL twice in a batch is new once). A new URL's mask is
-- added to its word of the layer taking new URLs in its bucket (a layer is never overfilled:
-- when a batch fills one, the URLs after go to the next, and are looked up in every layer
-- the batch reached). One BITFIELD_RO per bucket reads the words (a word of a layer reached
-- during the batch is read when needed); one BITFIELD per bucket writes.
local function seen_check(first, n)
  local f = seen_filter
  if not f then return nil end
  local geo = f.geo
  local layers, words = geo.layers, geo.words
  local floor, format = math.floor, string.format
  local hash, mlo, mhi, rv = f.hash, f.mlo, f.mhi, f.rv
  -- The reads per bucket key ({ops, n}), and the probes in flat arrays: probe j reads the
  -- word at offset p_at[j] of key p_key[j], answer p_slot[j] of its key's reads; a job's
  -- probes are p_first[a] .. p_last[a].
  local reads = {}
  local p_key, p_at, p_slot, p_first, p_last, j = {}, {}, {}, {}, {}, 0
  -- Layers to read of bucket b: those holding URLs (up to the one taking new URLs, for a
  -- job's own bucket, read even when its count says it is empty: a word is only ever
  -- written as what was read OR the mask, so a count that fell behind its bitmap — an
  -- evicted counter — loses no bits), computed once per bucket.
  local upto = {}
  local function layers_of(b, own)
    local id = (b or 'all') .. (own and '+' or '')
    local l = upto[id]
    if l == nil then
      local count = seen_count(f, b)
      if own then
        l = seen_layer(geo, count)
      else
        l = count > 0 and seen_layer(geo, count - 1) or 0
      end
      upto[id] = l
    end
    return l
  end
  for i = 0, n - 1 do
    local a = first + i * 5
    local h = hash[a]
    if h then
      local revisit = rv[a]
      local from, to = 0, 0
      if revisit > 0 then from, to = floor((f.now - revisit) / f.width), f.cur end
      p_first[a] = j + 1
      for b = from, to do
        local bucket = revisit > 0 and b or nil
        local last = layers_of(bucket, b == to)
        if last > 0 then
          local bk = seen_keys(f, bucket)
          local r = reads[bk]
          if not r then
            r = {ops = {}, n = 0}
            reads[bk] = r
          end
          local ops, o = r.ops, r.n
          for l = 1, last do
            local at = layers[l][1] + h % words[l] * 52
            ops[o + 1] = 'GET'
            ops[o + 2] = 'u52'
            ops[o + 3] = format('%d', at)
            o = o + 3
            j = j + 1
            p_key[j], p_at[j], p_slot[j] = bk, at, o / 3
          end
          r.n = o
        end
      end
      p_last[a] = j
    end
  end
  -- The words as this run knows them (read, then as written), per key and offset.
  local known = {}
  for bk, r in pairs(reads) do
    known[bk] = {}
    local got = seen_bitfield('BITFIELD_RO', bk, r.ops, r.n, 3)
    r.got = got
  end
  for q = 1, j do
    known[p_key[q]][p_at[q]] = reads[p_key[q]].got[p_slot[q]]
  end
  -- A word not read above (of a layer a batch reached by filling the one before), read now.
  local function word(bk, at)
    local w = known[bk]
    if not w then
      w = {}
      known[bk] = w
    end
    local v = w[at]
    if v == nil then
      v = redis.call('BITFIELD_RO', bk, 'GET', 'u52', format('%d', at))[1]
      w[at] = v
    end
    return v
  end
  local writes, target = {}, {}
  local fresh = {}
  for i = 0, n - 1 do
    local a = first + i * 5
    local h = hash[a]
    if h then
      local ml, mh = mlo[a], mhi[a]
      local seen = false
      for q = p_first[a], p_last[a] do
        if seen_has(known[p_key[q]][p_at[q]], ml, mh) then
          seen = true
          break
        end
      end
      if not seen then
        local revisit = rv[a]
        local bucket = revisit > 0 and f.cur or nil
        local bid = bucket or 'all'
        local bk = seen_keys(f, bucket)
        local count = seen_count(f, bucket)
        -- The layer taking new URLs in the bucket, found again when a URL fills it.
        local t = target[bid]
        if not t or count >= t.stop then
          local l = seen_layer(geo, count)
          t = {l = l, stop = layers[l][3], start = seen_layer_start(geo, l)}
          if l == #layers then t.stop = math.huge end
          target[bid] = t
        end
        local l = t.l
        -- The layers this batch filled after the words were read (an earlier URL of the
        -- batch may be in one of them), then the one taking the URL.
        local v
        for m = upto[bid .. '+'] + 1, l do
          v = word(bk, layers[m][1] + h % words[m] * 52)
          if seen_has(v, ml, mh) then
            seen = true
            break
          end
        end
        local at = layers[l][1] + h % words[l] * 52
        if not seen then
          v = known[bk][at]
          if count == t.start then
            -- A layer's first URL: its bits are allocated at once (a bitmap created this way
            -- takes its exact size; grown word by word it would be over-allocated). Its last
            -- bit is written as it is (a count behind its bitmap must not clear it).
            local last = int(layers[l][1] + layers[l][2] - 1)
            redis.call('SETBIT', bk, last, redis.call('GETBIT', bk, last))
          end
          local low = v % HALF
          local nv = bit.bor((v - low) / HALF, mh) * HALF + bit.bor(low, ml)
          known[bk][at] = nv
          local list = writes[bk]
          if not list then
            list = {n = 0}
            writes[bk] = list
          end
          local o = list.n
          -- Integers formatted as such (a number argument is formatted as a double, slower).
          list[o + 1] = 'SET'
          list[o + 2] = 'u52'
          list[o + 3] = format('%d', at)
          list[o + 4] = format('%d', nv)
          list.n = o + 4
          f.counts[bid] = count + 1
          f.added[bid] = (f.added[bid] or 0) + 1
          if revisit > 0 then f.expire = math.max(f.expire, (f.cur + 1) * f.width + revisit) end
        end
      end
      fresh[a] = not seen
    end
  end
  for bk, list in pairs(writes) do seen_bitfield('BITFIELD', bk, list, list.n, 4) end
  return fresh
end

-- Whether the job at ARGV index a is new (seen_check said so, or it has no dedup record).
local function seen_take(fresh, a)
  if not seen_filter.hash[a] then return true end
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
