-- W4 with Debian's lua-sql-postgres (bench/run starts 8 of these processes): BEGIN,
-- UPDATE, SELECT, COMMIT as four blocking round trips, random ids, ids formatted into SQL.
-- Usage: lua5.4 bench/luasql_tx.lua SECONDS
local B = require "lib"
local driver = require "luasql.postgres"

local m = B.meter("W4", "luasql")
local env = assert(driver.postgres())
local conn = assert(env:connect(B.dsn))
local function tx(id)
  assert(conn:execute("BEGIN"))
  assert(conn:execute("UPDATE t100k SET score = score + 1 WHERE id = " .. id) == 1)
  local cur = assert(conn:execute("SELECT score FROM t100k WHERE id = " .. id))
  local v = cur:fetch()
  cur:close()
  if v == nil then error("luasql W4: no row " .. id) end
  assert(conn:execute("COMMIT"))
end
for _ = 1, 200 do tx(math.random(1, 100000)) end -- warm-up
local n = 0
m.start()
local deadline = B.now() + B.seconds
repeat
  for _ = 1, 20 do tx(math.random(1, 100000)) end
  n = n + 20
until B.now() >= deadline
m.stop(n)
conn:close()
env:close()
