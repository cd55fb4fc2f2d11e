-- Stress: a fixed number of random operations on connections and pools (execute,
-- cancel, timeouts, close mid-flight, dropped references with collectgarbage, pool
-- close with waiters, listen/notify with handlers that close their connection), meant
-- to run under valgrind memcheck. Deterministic (seeded).
-- Asserts every request ends exactly once and typed; prints its counts.
-- Usage: lua5.4 scripts/stress.lua [OPERATIONS] (needs MOMOKO_TEST_DSN)
local momoko = require "momoko"

local total = tonumber(arg[1]) or 10000
local dsn = assert(os.getenv("MOMOKO_TEST_DSN")) .. " application_name=momoko_stress"
math.randomseed(20261121)

local counts = { ops = 0, ends = 0, ok = 0, typed = 0 }
local issued = 0

-- Every future is counted once when it ends; an untyped error is a bug.
local function watch(f)
  issued = issued + 1
  f:add_done_callback(function(d)
    counts.ends = counts.ends + 1
    local err = d:error()
    if err == nil then
      counts.ok = counts.ok + 1
    elseif getmetatable(err) == momoko.Error then
      counts.typed = counts.typed + 1
      counts[err.kind] = (counts[err.kind] or 0) + 1
    else
      error("untyped failure: " .. tostring(err))
    end
  end)
  return f
end

local conns, pools = {}, {}

local function a_conn()
  if #conns < 4 or math.random() < 0.05 then
    -- half of them pipelined; caches of 0, 2 (evicting all the time) and 100 entries
    conns[#conns + 1] = momoko.Connection(dsn, { pipeline = math.random() < 0.5,
                                                 statement_cache_size = ({ 0, 2, 100 })[math.random(3)] })
    watch(conns[#conns]:connect())
  end
  return conns[math.random(#conns)]
end

local function a_pool()
  if #pools < 2 or math.random() < 0.02 then
    local p = momoko.Pool{ dsn = dsn, size = 1, max_size = 3, max_waiting = 200, acquire_timeout = 2000,
                           pipeline = math.random() < 0.5, statement_cache_size = ({ 0, 2, 100 })[math.random(3)] }
    watch(p:connect())
    pools[#pools + 1] = p
  end
  return pools[math.random(#pools)]
end

local function query(target)
  if target.closed then return nil end
  local r = math.random()
  if r < 0.4 then -- five statement texts: caches of 2 keep evicting
    return watch(target:execute("SELECT $1::int + " .. math.random(0, 4), { math.random(1000) }))
  elseif r < 0.5 then -- a cached statement that fails now and then
    return watch(target:execute("SELECT 10 / $1::int", { math.random(0, 3) }))
  elseif r < 0.7 then
    return watch(target:execute("SELECT pg_sleep(0.005)", nil, { timeout = math.random(1, 20) }))
  elseif r < 0.85 then
    return watch(target:transaction{ "SELECT 1", { "SELECT $1::text", { "x" } } })
  else
    return watch(target:execute("SELEKT broken"))
  end
end

local ops = {
  function() query(a_conn()) end,                                  -- execute on a connection
  function() query(a_pool()) end,                                  -- execute on a pool
  function() local f = query(a_pool()); if f then f:cancel() end end, -- cancel at once
  function()                                                       -- cancel a bit later
    local f = query(a_conn())
    if f then momoko.sleep(math.random(0, 3)):add_done_callback(function() f:cancel() end) end
  end,
  function()                                                       -- close mid-flight
    local c = a_conn()
    query(c)
    if math.random() < 0.3 then c:close() end
  end,
  function()                                                       -- drop references
    if #conns > 0 then table.remove(conns, math.random(#conns)) end
    if math.random() < 0.2 and #pools > 0 then table.remove(pools, math.random(#pools)) end
    collectgarbage()
  end,
  function()                                                       -- pool close with waiters
    local p = a_pool()
    if p.closed then return end
    for _ = 1, 5 do query(p) end
    if math.random() < 0.2 then
      p:close()
      for i, q in ipairs(pools) do if q == p then table.remove(pools, i) break end end
    end
  end,
  function()                                                       -- listen, notify, unlisten
    local own = math.random() < 0.5
    local target = own and a_conn() or a_pool()
    local ch = "stress " .. math.random(3)
    local payload, unlisten = tostring(math.random(3)), math.random() < 0.3
    momoko.spawn(function()
      pcall(function() -- listen raises on a closed connection
        if own then watch(target:connect()):await() end
        watch(target:listen(ch, function(_, p)
          counts.notified = (counts.notified or 0) + 1
          if p == "3" and math.random() < 0.3 then target:close() end
        end)):await()
        watch(target:notify(ch, payload)):await()
        if unlisten then watch(target:unlisten(ch)) end
      end)
    end)
  end,
  function()                                                       -- getconn, use, give back
    local p = a_pool()
    if p.closed then return end
    momoko.spawn(function()
      local ok, conn = pcall(function() return watch(p:getconn()):await() end)
      if ok then
        local g <close> = conn
        if not conn.closed then pcall(function() watch(conn:execute("SELECT 1")):await() end) end
      end
    end)
  end,
}

momoko.spawn(function()
  for i = 1, total do
    counts.ops = counts.ops + 1
    ops[math.random(#ops)]()
    if i % 50 == 0 then momoko.sleep(1):await() end -- let the loop work
  end
end)
momoko.run()
for _, p in ipairs(pools) do p:close() end
for _, c in ipairs(conns) do c:close() end
momoko.run()
conns, pools = nil, nil
collectgarbage()
collectgarbage()

local kinds = {}
for k, v in pairs(counts) do
  if k:match("Error$") or k == "DatabaseNotAvailable" then kinds[#kinds + 1] = k .. "=" .. v end
end
table.sort(kinds)
print(string.format("stress: %d operations, %d futures, %d ended (%d ok, %d typed errors: %s), %d notifications",
  counts.ops, issued, counts.ends, counts.ok, counts.typed, table.concat(kinds, " "), counts.notified or 0))
if counts.ends ~= issued or counts.ok + counts.typed ~= issued then
  print("stress FAILED: every future must end exactly once, typed")
  os.exit(1)
end
print("stress passed")
