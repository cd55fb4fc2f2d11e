-- W2: 64 coroutines sharing a Pool of 8 connections, each running `SELECT $1` in a loop
-- (each awaited before its next). Ops = queries, summed over the coroutines.
-- Usage: lua5.4 bench/w2_pool.lua SECONDS [COROUTINES] [POOL_SIZE]
-- BENCH_PIPELINE=1 makes it a Pool with pipeline = true (pipeline_depth: the default).
local B = require "lib"
local momoko = require "momoko"

local ncor = tonumber(arg[2]) or 64
local size = tonumber(arg[3]) or 8
local m = B.meter("W2", "momoko")
momoko.spawn(function()
  local pool = momoko.Pool(B.options({dsn = B.dsn, size = size}))
  pool:connect():await()
  for i = 1, 1000 do pool:execute("SELECT $1", {i}):await() end -- warm-up
  local n, deadline = 0, nil
  local function worker(id)
    local k = id * 10000000
    while B.now() < deadline do
      for _ = 1, 100 do
        k = k + 1
        local v = pool:execute("SELECT $1", {k}):await():fetchone()[1]
        if v ~= k then error("W2: got " .. tostring(v) .. ", want " .. k) end
      end
      n = n + 100
    end
  end
  m.start()
  deadline = B.now() + B.seconds
  local fs = {}
  for c = 1, ncor do fs[c] = momoko.spawn(worker, c) end
  momoko.all(fs):await()
  m.stop(n)
  pool:close()
end):await()
