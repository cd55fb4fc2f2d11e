-- W4: BEGIN; UPDATE t100k ... WHERE id = $1; SELECT score ... WHERE id = $1; COMMIT as one
-- pool:transaction() on a Pool of 8, from 8 coroutines (one per connection), random ids.
-- Ops = committed transactions.
-- Usage: lua5.4 bench/w4_tx.lua SECONDS [COROUTINES] [POOL_SIZE]
-- BENCH_PIPELINE=1 makes it a Pool with pipeline = true (transaction() in one round trip).
local B = require "lib"
local momoko = require "momoko"

local ncor = tonumber(arg[2]) or 8
local size = tonumber(arg[3]) or 8
local m = B.meter("W4", "momoko")
local upd = "UPDATE t100k SET score = score + 1 WHERE id = $1"
local sel = "SELECT score FROM t100k WHERE id = $1"
momoko.spawn(function()
  local pool = momoko.Pool(B.options({dsn = B.dsn, size = size}))
  pool:connect():await()
  local function tx(id)
    local curs = pool:transaction({{upd, {id}}, {sel, {id}}}):await()
    if curs[2]:fetchone()[1] == nil then error("W4: no row " .. id) end
  end
  for _ = 1, 200 do tx(math.random(1, 100000)) end -- warm-up
  local n, deadline = 0, nil
  local function worker()
    while B.now() < deadline do
      for _ = 1, 20 do tx(math.random(1, 100000)) end
      n = n + 20
    end
  end
  m.start()
  deadline = B.now() + B.seconds
  local fs = {}
  for c = 1, ncor do fs[c] = momoko.spawn(worker) end
  momoko.all(fs):await()
  m.stop(n)
  pool:close()
end):await()
