-- W5: memory of a large result. ROWS rows of 200 bytes each
--   SELECT g, repeat('x', 200) FROM generate_series(1, ROWS) g
-- read once on one Connection, either with conn:stream() (opts.chunk: the library's
-- default) or with execute() + fetchall(); one process per mode, so that neither sees the
-- other's heap. RSS is resident pages (/proc/self/statm, field 2) x the page size
-- (BENCH_PAGESIZE, bench/run sets it from `getconf PAGESIZE`), sampled every 5 ms by a
-- timer coroutine while the query runs, and after each step; growth = peak - start, start
-- taken after connect, a small warm-up and a full GC. Ops = rows. Prints
--   MEM W5 <mode> <rows> <start_bytes> <peak_bytes> <samples>
-- (also written to the file BENCH_MEM_OUT when set) and the BENCH line.
-- Mode w3 is W3's stream row instead: all rows of t100k, streamed again and again for
-- SECONDS (ops = rows), no MEM line.
-- Usage: lua5.4 bench/w5_stream.lua SECONDS stream|fetchall|w3   (BENCH_STREAM_ROWS: ROWS,
-- default 1,000,000)
local B = require "lib"
local momoko = require "momoko"

local mode = arg[2] or "stream"
if mode ~= "stream" and mode ~= "fetchall" and mode ~= "w3" then
  error("usage: lua5.4 bench/w5_stream.lua SECONDS stream|fetchall|w3")
end
local nrows = math.tointeger(tonumber(os.getenv("BENCH_STREAM_ROWS") or "1000000"))
assert(nrows and nrows > 0, "BENCH_STREAM_ROWS: a positive integer")

local function pagesize()
  local v = tonumber(os.getenv("BENCH_PAGESIZE") or "")
  if v then return v end
  local p = assert(io.popen("getconf PAGESIZE"))
  v = tonumber(p:read("a"))
  p:close()
  return assert(v, "getconf PAGESIZE")
end
local page = pagesize()

local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("a"):match("^(%d+)%s+(%d+)")
  f:close()
  return tonumber(resident) * page
end

if mode == "w3" then
  local m = B.meter("W3", "momoko-stream")
  local sql = "SELECT id, name, score, created FROM t100k"
  momoko.spawn(function()
    local conn = momoko.connect(B.options({dsn = B.dsn})):await()
    local function pass()
      local s <close> = conn:stream(sql)
      local k, last = 0, nil
      for row in s:rows() do k, last = k + 1, row end
      if k ~= 100000 or last[1] ~= 100000 then error("W3 stream: " .. k .. " rows") end
      return k
    end
    pass() -- warm-up
    local n = 0
    m.start()
    local deadline = B.now() + B.seconds
    repeat n = n + pass() until B.now() >= deadline
    m.stop(n)
    conn:close()
  end):await()
  return
end

local sql = "SELECT g, repeat('x', 200) FROM generate_series(1, $1::int) g"
local m = B.meter("W5", "momoko-" .. mode)
momoko.spawn(function()
  local conn = momoko.connect(B.options({dsn = B.dsn})):await()
  -- warm-up: the same query on 1000 rows, both ways
  assert(#conn:execute(sql, {1000}):await():fetchall() == 1000)
  do
    local s <close> = conn:stream(sql, {1000})
    local k = 0
    for _ in s:rows() do k = k + 1 end
    assert(k == 1000, "W5 warm-up stream: " .. k .. " rows")
  end
  collectgarbage("collect")
  collectgarbage("collect")

  local start = rss()
  local peak, samples, sampling = start, 1, true
  local function sample()
    local r = rss()
    samples = samples + 1
    if r > peak then peak = r end
  end
  local sampler = momoko.spawn(function()
    while sampling do
      sample()
      momoko.sleep(5):await()
    end
  end)

  local n, last = 0, nil
  m.start()
  if mode == "stream" then
    local s <close> = conn:stream(sql, {nrows})
    for row in s:rows() do
      n, last = n + 1, row
      if n % 10000 == 0 then sample() end
    end
  else
    local cur = conn:execute(sql, {nrows}):await()
    sample() -- the whole result is in libpq's PGresult
    local rows = cur:fetchall()
    sample() -- and in Lua tables as well
    n, last = #rows, rows[#rows]
  end
  m.stop(n)
  sample()
  sampling = false
  sampler:await()
  if n ~= nrows or last[1] ~= nrows or #last[2] ~= 200 then
    error("W5 " .. mode .. ": " .. n .. " rows, last " .. tostring(last and last[1]))
  end
  local line = string.format("MEM W5 %s %d %d %d %d\n", mode, n, start, peak, samples)
  io.write(line)
  local out = os.getenv("BENCH_MEM_OUT")
  if out and out ~= "" then
    local f = assert(io.open(out, "w"))
    f:write(line)
    f:close()
  end
  conn:close()
end):await()
