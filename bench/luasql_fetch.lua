-- W3 with Debian's lua-sql-postgres: all rows of t100k into Lua tables, one fresh table per
-- row ("n": array rows, "a": dict rows); LuaSQL gives every value as a string.
-- Usage: lua5.4 bench/luasql_fetch.lua SECONDS [array|dict]
local B = require "lib"
local driver = require "luasql.postgres"

local shape = arg[2] or "array"
local mode = shape == "dict" and "a" or "n"
local m = B.meter("W3", "luasql-" .. shape)
local env = assert(driver.postgres())
local conn = assert(env:connect(B.dsn))
local sql = "SELECT id, name, score, created FROM t100k"
local function all()
  local cur = assert(conn:execute(sql))
  local rows, k = {}, 0
  local row = cur:fetch({}, mode)
  while row do
    k = k + 1
    rows[k] = row
    row = cur:fetch({}, mode)
  end
  cur:close()
  return k
end
assert(all() == 100000) -- warm-up
local n = 0
m.start()
local deadline = B.now() + B.seconds
repeat n = n + all() until B.now() >= deadline
m.stop(n)
conn:close()
env:close()
