-- RSS across many pooled queries: 64 coroutines on a Pool of 8 run `SELECT $1` until TOTAL
-- queries are done; every TOTAL/10 queries prints the process's VmRSS (/proc/self/status)
-- and the Lua heap (collectgarbage "count"), as lines
--   RSS <queries> <vmrss_kB> <lua_heap_kB>
-- then one BENCH line (workload RSS). Usage: lua5.4 bench/rss.lua TOTAL
local B = require "lib"
local momoko = require "momoko"

local total = tonumber(arg[1]) or 1000000
local step = math.max(1, total // 10)

local function vmrss()
  local f = assert(io.open("/proc/self/status"))
  local kb
  for line in f:lines() do
    kb = kb or tonumber(line:match("^VmRSS:%s+(%d+)"))
  end
  f:close()
  return kb
end
local function sample(q)
  io.write(string.format("RSS %d %d %.0f\n", q, vmrss(), collectgarbage("count")))
  io.flush()
end

local m = B.meter("RSS", "momoko")
momoko.spawn(function()
  local pool = momoko.Pool({dsn = B.dsn, size = 8})
  pool:connect():await()
  for i = 1, 1000 do pool:execute("SELECT $1", {i}):await() end -- warm-up
  local done, next_sample = 0, step
  local function worker()
    while done < total do
      done = done + 1
      local k = done
      local v = pool:execute("SELECT $1", {k}):await():fetchone()[1]
      if v ~= k then error("rss: got " .. tostring(v) .. ", want " .. k) end
      if done >= next_sample then
        next_sample = next_sample + step
        sample(done)
      end
    end
  end
  sample(0)
  m.start()
  local fs = {}
  for c = 1, 64 do fs[c] = momoko.spawn(worker) end
  momoko.all(fs):await()
  m.stop(done)
  pool:close()
end):await()
