-- Streams (docs/api.md, Streams; docs/guide.md): a large result row by row in flat memory,
-- and a stream closed early with <close>.
-- Run with MOMOKO_DSN set (e.g. "host=127.0.0.1 dbname=postgres").
local momoko = require "momoko"

local dsn = os.getenv("MOMOKO_DSN") or "host=127.0.0.1 dbname=postgres"
local N = 100000
local conn = momoko.connect(dsn):await()

local function kb() return collectgarbage("count") end

momoko.spawn(function()
  -- 100,000 generated rows; the library holds at most about `chunk` of them at a time.
  local s = conn:stream("SELECT i, repeat('x', 100) AS pad FROM generate_series(1, $1) AS i",
                        {N}, {chunk = 500})
  local sum, peak = 0, kb()
  for row in s:rows() do                 -- each step awaits the next row
    sum = sum + row[1]
    if s.rownumber % 10000 == 0 then peak = math.max(peak, kb()) end
  end
  print(string.format("streamed %d rows, sum(i) = %d (expected %d)", s.rownumber, sum, N * (N + 1) // 2))
  print(string.format("Lua memory: peak %.0f KB while streaming, %.0f KB now", peak, kb()))
  print("columns:", s.description[1].name, s.description[2].name, "closed:", s.closed)

  -- Stop early: leaving the block closes the stream, which cancels the rest of the query.
  do
    local early <close> = conn:stream("SELECT i FROM generate_series(1, 10000000) AS i",
                                      nil, {cursor_factory = momoko.cursors.dict})
    for row in early:rows() do
      if row.i == 5 then break end
    end
    print("took", early.rownumber, "rows of 10,000,000, then closed the stream")
  end -- <close> starts the cancel; the next request waits until the connection is free

  local cur = conn:execute("SELECT 'connection usable again'"):await()
  print(cur:fetchone()[1])
end):await()

conn:close()
