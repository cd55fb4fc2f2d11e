-- W1: serial `SELECT $1` on one momoko Connection, a fresh integer each time, each
-- awaited before the next is sent. Ops = queries.
-- Usage: lua5.4 bench/w1_serial.lua SECONDS   (MOMOKO_DSN or MOMOKO_TEST_DSN)
-- BENCH_STATEMENT_CACHE=0 runs it without the statement cache (default: the library's 100).
-- BENCH_TRACE=1 runs it with a trace function that does nothing (bench/run: the overhead).
local B = require "lib"
local momoko = require "momoko"

local m = B.meter("W1", "momoko")
momoko.spawn(function()
  local conn = momoko.connect(B.options({dsn = B.dsn})):await()
  for i = 1, 2000 do conn:execute("SELECT $1", {i}):await() end -- warm-up
  local n = 0
  m.start()
  local deadline = B.now() + B.seconds
  repeat
    for _ = 1, 500 do
      n = n + 1
      local v = conn:execute("SELECT $1", {n}):await():fetchone()[1]
      if v ~= n then error("W1: got " .. tostring(v) .. ", want " .. n) end
    end
  until B.now() >= deadline
  m.stop(n)
  conn:close()
end):await()
