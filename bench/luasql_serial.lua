-- W1 (and W2 when bench/run starts 8 of these processes) with Debian's lua-sql-postgres:
-- serial `SELECT <n>` on one blocking connection. LuaSQL has no parameters, so the integer
-- is formatted into the SQL text (simple query protocol); values come back as strings.
-- Usage: lua5.4 bench/luasql_serial.lua SECONDS [WORKLOAD]   (MOMOKO_DSN or MOMOKO_TEST_DSN)
local B = require "lib"
local driver = require "luasql.postgres"

local m = B.meter(arg[2] or "W1", "luasql")
local env = assert(driver.postgres())
local conn = assert(env:connect(B.dsn)) -- libpq takes a conninfo string as the database name
local function one(n)
  local cur = assert(conn:execute("SELECT " .. n))
  local v = cur:fetch()
  cur:close()
  if tonumber(v) ~= n then error("luasql W1: got " .. tostring(v) .. ", want " .. n) end
end
for i = 1, 2000 do one(i) end -- warm-up
local n = 0
m.start()
local deadline = B.now() + B.seconds
repeat
  for _ = 1, 500 do n = n + 1; one(n) end
until B.now() >= deadline
m.stop(n)
conn:close()
env:close()
