-- Serial round trips on one Connection: `SELECT $1` with a fresh integer each time,
-- awaited one after another from a coroutine. Prints queries per second.
-- Usage: lua5.4 bench/serial.lua SECONDS   (MOMOKO_DSN or MOMOKO_TEST_DSN gives the server)
local momoko = require "momoko"

local seconds = tonumber(arg[1]) or 5
local dsn = os.getenv("MOMOKO_DSN") or os.getenv("MOMOKO_TEST_DSN")

local function now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("a"))
  p:close()
  return t
end

local result = momoko.spawn(function()
  local conn = momoko.connect(dsn):await()
  for i = 1, 2000 do conn:execute("SELECT $1", {i}):await() end -- warm-up
  local n, t0 = 0, now()
  local deadline = t0 + seconds
  repeat
    for _ = 1, 1000 do
      n = n + 1
      local v = conn:execute("SELECT $1", {n}):await():fetchone()[1]
      assert(v == n)
    end
  until now() >= deadline
  local elapsed = now() - t0
  conn:close()
  return n / elapsed
end):await()
print(string.format("momoko Connection serial SELECT $1: %.0f queries/s", result))
