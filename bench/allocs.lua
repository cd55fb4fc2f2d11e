-- Heap allocations per query, to be run under valgrind by bench/run: connects, runs N
-- `SELECT $1` on one Connection (conn) or through a Pool of 1 (pool), each awaited, and
-- exits. bench/run runs it for two values of N: the difference in valgrind's "total heap
-- usage" divided by the difference in N is the allocations of one query (C mallocs and
-- Lua's own allocator together, start-up cancelled out).
-- Usage: lua5.4 bench/allocs.lua N [conn|pool]
local B = require "lib"
local momoko = require "momoko"

local n = tonumber(arg[1]) or 100
local mode = arg[2] or "conn"
momoko.spawn(function()
  local db
  if mode == "pool" then
    db = momoko.Pool({dsn = B.dsn, size = 1})
    db:connect():await()
  else
    db = momoko.connect(B.dsn):await()
  end
  for i = 1, n do
    local v = db:execute("SELECT $1", {i}):await():fetchone()[1]
    if v ~= i then error("allocs: got " .. tostring(v) .. ", want " .. i) end
  end
  db:close()
end):await()
print("ALLOCS " .. mode .. " " .. n .. " done")
