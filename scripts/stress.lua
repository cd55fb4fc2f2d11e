-- Stress: a fixed number of seeded random operations on connections and pools, meant to
-- run under valgrind memcheck or AddressSanitizer (scripts/stress): execute, cancel,
-- timeouts, close mid-flight, dropped references with collectgarbage, pool close with
-- waiters, pipelined bursts with a cancel and a timeout inside, streams dropped to the
-- GC mid-result or closed early, COPY FROM with sources that raise or give bad items,
-- COPY TO with sinks that raise, listeners added and removed, putconn from done
-- callbacks, requests refused by a full pool, and child processes that end their Lua
-- state (os.exit(0, true): lua_close) at a random point with all of that in flight.
-- Asserts that every future ends exactly once (counted per future), with a value or a
-- momoko.Error; that everything raised at a call is a momoko.Error; that nothing reaches
-- momoko.on_error; and that every child exited 0. Prints its counts.
-- Usage: lua5.4 scripts/stress.lua [OPERATIONS]        (needs MOMOKO_TEST_DSN)
--        lua5.4 scripts/stress.lua --child SEED OPERATIONS   (a child: run by the parent)
-- MOMOKO_STRESS_LUA: the command that runs a child's lua5.4 (valgrind ... lua5.4, or
-- env LD_PRELOAD=... lua5.4); default lua5.4. MOMOKO_STRESS_SEED: another seed.
local momoko = require "momoko"

local child = arg[1] == "--child"
local seed, total
if child then
  seed, total = assert(tonumber(arg[2])), assert(tonumber(arg[3]))
else
  seed, total = tonumber(os.getenv("MOMOKO_STRESS_SEED")) or 20261121, tonumber(arg[1]) or 10000
end
local dsn = assert(os.getenv("MOMOKO_TEST_DSN")) .. " application_name=momoko_stress"
math.randomseed(seed)

local counts = { ops = 0, ends = 0, ok = 0, typed = 0, raised = 0, notified = 0, children = 0 }
local kinds = {}       -- error kind -> count (futures and raised calls)
local first = {}       -- error kind -> the first message of that kind (printed at the end)
local ended = {}       -- ended[id]: how many times future id ended
local issued = 0
local failures = {}    -- what went wrong (checked at the end)

local function fail(what)
  failures[#failures + 1] = what
  io.stderr:write("stress: ", what, "\n")
end
momoko.on_error(function(err) fail("on_error: " .. tostring(err)) end)

local function typed(err) return getmetatable(err) == momoko.Error end

-- The child's exit: os.exit(0, true) closes the Lua state wherever it is called. at is
-- the operation where it happens, armed: in which kind of callback it then happens
-- ("op": at once, in the operation loop).
local exit_at, exit_where, armed
local function die(where)
  if #failures > 0 then
    io.stdout:write("child FAILED: ", failures[1], "\n")
    io.stdout:flush()
    os.exit(1, true)
  end
  io.stdout:write(string.format("child %d: lua_close at operation %d, in %s, %d futures issued, %d ended\n",
    seed, counts.ops, where, issued, counts.ends))
  io.stdout:flush()
  os.exit(0, true)
end
local function maybe_die(where)
  if armed == where then die(where) end
end

-- Every future is counted when it ends: once, with a value or a typed error.
local function watch(f)
  issued = issued + 1
  local id = issued
  ended[id] = 0
  f:add_done_callback(function(d)
    ended[id] = ended[id] + 1
    if ended[id] > 1 then return fail("future " .. id .. " ended " .. ended[id] .. " times") end
    if not d:done() then fail("future " .. id .. " called back while pending") end
    counts.ends = counts.ends + 1
    local err = d:error()
    if err == nil then
      counts.ok = counts.ok + 1
    elseif typed(err) then
      counts.typed = counts.typed + 1
      kinds[err.kind] = (kinds[err.kind] or 0) + 1
      first[err.kind] = first[err.kind] or err.message
    else
      fail("untyped failure of future " .. id .. ": " .. tostring(err))
    end
    maybe_die("a done callback")
  end)
  return f
end

-- Calls fn(...) that may raise at the call (a closed connection, a given-back one, a
-- refused putconn): the error must be a momoko.Error. Returns true and fn's first value,
-- or false and the error.
local function call(fn, ...)
  local ok, v = pcall(fn, ...)
  if ok then return true, v end
  if not typed(v) then
    fail("untyped raise: " .. tostring(v))
  else
    counts.raised = counts.raised + 1
    kinds[v.kind] = (kinds[v.kind] or 0) + 1
    first[v.kind] = first[v.kind] or v.message
  end
  return false, v
end

-- A method call that may raise; its future (if any) watched.
local function request(target, method, ...)
  local ok, f = call(target[method], target, ...)
  if ok and momoko.is_future(f) then return watch(f) end
  return nil
end

local conns, pipes, pools, ppools, tight = {}, {}, {}, {}, {}

-- Puts a new connection or pool in list; past max entries it takes the place of a random
-- one, which is dropped with whatever it has in flight (the GC closes it), so that the
-- run stays well under the server's max_connections.
local function keep(list, max, v)
  if #list < max then list[#list + 1] = v else list[math.random(#list)] = v end
  return v
end

local function a_conn()
  if #conns < 4 or math.random() < 0.05 then
    -- half of them pipelined; caches of 0, 2 (evicting all the time) and 100 entries
    watch(keep(conns, 8, momoko.Connection(dsn, { pipeline = math.random() < 0.5,
                                                  statement_cache_size = ({ 0, 2, 100 })[math.random(3)] })):connect())
  end
  return conns[math.random(#conns)]
end

local function a_pipe() -- a pipelined connection
  if #pipes < 2 or math.random() < 0.03 then
    watch(keep(pipes, 4, momoko.Connection(dsn, { pipeline = true,
                                                  statement_cache_size = ({ 0, 2, 100 })[math.random(3)] })):connect())
  end
  return pipes[math.random(#pipes)]
end

local function a_pool()
  if #pools < 2 or math.random() < 0.02 then
    local p = momoko.Pool{ dsn = dsn, size = 1, max_size = 3, max_waiting = 200, acquire_timeout = 2000,
                           pipeline = math.random() < 0.5, pipeline_depth = math.random(2, 8),
                           statement_cache_size = ({ 0, 2, 100 })[math.random(3)] }
    watch(keep(pools, 6, p):connect())
  end
  return pools[math.random(#pools)]
end

local function a_pipe_pool() -- a pipelined pool
  if #ppools < 1 or math.random() < 0.03 then
    watch(keep(ppools, 3, momoko.Pool{ dsn = dsn, size = 1, max_size = 2, pipeline = true,
                                       pipeline_depth = math.random(2, 8) }):connect())
  end
  return ppools[math.random(#ppools)]
end

local function a_tight_pool() -- one connection, one waiter: the rest is refused
  if #tight < 1 or math.random() < 0.05 then
    local p = momoko.Pool{ dsn = dsn, size = 1, max_size = 1, max_waiting = 1, pipeline = math.random() < 0.5 }
    watch(keep(tight, 3, p):connect())
  end
  return tight[math.random(#tight)]
end

local function drop(list, p)
  for i, q in ipairs(list) do if q == p then table.remove(list, i) return end end
end

local function query(target)
  if target.closed then return nil end
  local r = math.random()
  if r < 0.4 then -- five statement texts: caches of 2 keep evicting
    return request(target, "execute", "SELECT $1::int + " .. math.random(0, 4), { math.random(1000) })
  elseif r < 0.5 then -- a cached statement that fails now and then
    return request(target, "execute", "SELECT 10 / $1::int", { math.random(0, 3) })
  elseif r < 0.7 then
    return request(target, "execute", "SELECT pg_sleep(0.005)", nil, { timeout = math.random(1, 20) })
  elseif r < 0.85 then
    return request(target, "transaction", { "SELECT 1", { "SELECT $1::text", { "x" } } })
  else
    return request(target, "execute", "SELEKT broken")
  end
end

-- COPY FROM sources: good rows, a function that raises mid-way, a function that gives a
-- bad item, a row with a value that cannot be encoded, data the server rejects.
local function a_source()
  local n, r = math.random(0, 20), math.random(7)
  if r == 1 then
    local rows = {}
    for i = 1, n do rows[i] = { i, i % 3 == 0 and momoko.null or "row\t" .. i } end
    return rows
  elseif r == 2 then
    local i = 0
    return function()
      i = i + 1
      maybe_die("a COPY source")
      if i > n then error("source failed at item " .. i) end
      return { i, "s" }
    end
  elseif r == 3 then
    local i = 0
    return function()
      i = i + 1
      if i > n then return ({ true, 42, print })[math.random(3)] end
      return i .. "\tf\n"
    end
  elseif r == 4 then
    return { { 1, "a" }, { 2, {} } }
  elseif r == 5 then
    return "1\ta\nnot a number\tb\n"
  elseif r == 6 then
    local i = 0
    return function()
      i = i + 1
      maybe_die("a COPY source")
      if i <= n then return { i, string.rep("x", math.random(0, 200)) } end
    end
  end
  return string.rep("7\tstring\n", n)
end

-- COPY TO sinks: none, counting, raising after a few rows.
local function a_sink()
  local r = math.random(3)
  if r == 1 then return nil end
  local k, i = math.random(0, 10), 0
  return function()
    i = i + 1
    maybe_die("a COPY sink")
    if r == 3 and i > k then error("sink failed at row " .. i) end
  end
end

local function handler(_, payload)
  counts.notified = counts.notified + 1
  maybe_die("a notification handler")
  if payload == "drop" then collectgarbage() end
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
    if math.random() < 0.2 and #pipes > 0 then table.remove(pipes, math.random(#pipes)) end
    if math.random() < 0.2 and #pools > 0 then table.remove(pools, math.random(#pools)) end
    if math.random() < 0.2 and #tight > 0 then table.remove(tight, math.random(#tight)) end
    if math.random() < 0.2 and #ppools > 0 then table.remove(ppools, math.random(#ppools)) end
    collectgarbage()
  end,
  function()                                                       -- pool close with waiters
    local p = a_pool()
    if p.closed then return end
    for _ = 1, 5 do query(p) end
    if math.random() < 0.2 then
      p:close()
      drop(pools, p)
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
          counts.notified = counts.notified + 1
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
  function()                                                       -- a pipelined burst
    local target = math.random() < 0.6 and a_pipe() or a_pipe_pool()
    if target.closed then return end
    local n, fs = math.random(3, 8), {}
    local slow = math.random(n)
    for i = 1, n do
      if i == slow then -- a timeout inside the pipeline
        fs[i] = request(target, "execute", "SELECT pg_sleep(0.01)", nil, { timeout = math.random(1, 15) })
      else
        fs[i] = request(target, "execute", "SELECT $1::int * 2", { i })
      end
    end
    local mid = fs[(n + 1) // 2] -- cancelled while queued behind the others, or running
    if mid then
      if math.random() < 0.5 then mid:cancel()
      else momoko.sleep(math.random(0, 2)):add_done_callback(function() mid:cancel() end) end
    end
    if math.random() < 0.1 then target:close() end
  end,
  function()                                                       -- a stream, left early
    local target = math.random() < 0.5 and a_conn() or a_pool()
    local n, k, how = math.random(1, 400), math.random(0, 20), math.random(5)
    local ok, s = call(target.stream, target, "SELECT g, repeat('r', g % 50) FROM generate_series(1, $1) g",
                       { n }, { chunk = math.random(1, 100) })
    if not ok then return end
    momoko.spawn(function()
      for _ = 1, k do
        local got, row = pcall(function() return watch(s:next()):await() end)
        if not got or row == nil then break end
      end
      if how == 1 then      -- dropped to the GC mid-result
        s = nil
        collectgarbage()
      elseif how == 2 then  -- dropped with a next() pending
        watch(s:next())
        s = nil
        collectgarbage()
      elseif how == 3 then  -- closed early
        watch(s:close())
      elseif how == 4 then  -- to the end
        pcall(function() while watch(s:next()):await() do end end)
      else                  -- closed twice, then next()
        watch(s:close())
        watch(s:close())
        watch(s:next())
      end
    end)
  end,
  function()                                                       -- a stream failing mid-result
    local target = math.random() < 0.5 and a_conn() or a_pool()
    local ok, s = call(target.stream, target, "SELECT 1 / (g - $1) FROM generate_series(1, 50) g",
                       { math.random(1, 60) }, { chunk = math.random(1, 10) })
    if not ok then return end
    momoko.spawn(function()
      pcall(function() while watch(s:next()):await() do end end)
      if math.random() < 0.5 then watch(s:next()) end
    end)
  end,
  function()                                                       -- COPY FROM
    local target = math.random() < 0.5 and a_conn() or a_pool()
    local opts = math.random() < 0.2 and { timeout = math.random(1, 30) } or nil
    local f = request(target, "copy_from", "COPY stress_copy (a, b) FROM STDIN", a_source(), opts)
    if f and math.random() < 0.1 then f:cancel() end
  end,
  function()                                                       -- COPY TO
    local target = math.random() < 0.5 and a_conn() or a_pool()
    local f = request(target, "copy_to", "COPY (SELECT g, 'c' FROM generate_series(1, " .. math.random(0, 300)
                      .. ") g) TO STDOUT", a_sink())
    if f and math.random() < 0.1 then f:cancel() end
  end,
  function()                                                       -- listeners added and removed
    local target = math.random() < 0.5 and a_conn() or a_pool()
    local ch = "stress " .. math.random(3)
    request(target, "listen", ch, handler)
    if math.random() < 0.3 then request(target, "listen", ch, handler) end -- replaces the handler
    if math.random() < 0.5 then request(target, "unlisten", ch) end        -- not awaited
    if math.random() < 0.5 then
      request(a_pool(), "notify", ch, ({ "1", "drop", string.rep("p", 100) })[math.random(3)])
    end
  end,
  function()                                                       -- putconn from done callbacks
    local p = a_pool()
    if p.closed then return end
    local g = request(p, "getconn")
    if not g then return end
    g:add_done_callback(function(d)
      if d:error() then return end
      local conn = d:result()
      if math.random() < 0.3 then call(p.putconn, p, conn) return end -- from getconn's callback
      local f = request(conn, "execute", "SELECT pg_sleep(0.002)")
      if not f then call(p.putconn, p, conn) return end
      if math.random() < 0.3 then -- given back while running: its callback's putconn is refused
        f:add_done_callback(function()
          local ok, err = pcall(p.putconn, p, conn)
          if ok or not momoko.is(err, "PoolError") then fail("putconn twice: " .. tostring(err)) end
        end)
        call(p.putconn, p, conn)
      else
        f:add_done_callback(function() call(p.putconn, p, conn) end)
      end
    end)
  end,
  function()                                                       -- a full pool refuses
    local p = a_tight_pool()
    if p.closed then return end
    for _ = 1, math.random(2, 5) do
      local r = math.random(4)
      if r == 1 then query(p)
      elseif r == 2 then request(p, "copy_from", "COPY stress_copy (a, b) FROM STDIN", a_source())
      elseif r == 3 then request(p, "copy_to", "COPY (SELECT 1) TO STDOUT", a_sink())
      else
        local ok, s = call(p.stream, p, "SELECT 1")
        if ok then watch(s:next()) end
      end
    end
    if math.random() < 0.1 then
      p:close()
      drop(tight, p)
    end
  end,
}

local children = {} -- the children's pipes, read at the end
local child_lua = os.getenv("MOMOKO_STRESS_LUA") or "lua5.4"
local function start_child()
  local cseed, cops = math.random(1, 1e6), math.random(100, 400)
  local cmd = string.format("%s scripts/stress.lua --child %d %d 2>&1", child_lua, cseed, cops)
  children[#children + 1] = { seed = cseed, pipe = assert(io.popen(cmd)) }
end

local function setup() -- the parent's: the children use its table
  local conn = momoko.connect(dsn):await()
  conn:execute("CREATE TABLE IF NOT EXISTS stress_copy (a int, b text)"):await()
  conn:close()
end

if child then -- a random mix, then lua_close at a random point
  exit_at = math.random(1, total)
  exit_where = ({ "op", "op", "a done callback", "a COPY source", "a COPY sink", "a notification handler" })[math.random(6)]
end

momoko.spawn(function()
  if not child then setup() end
  local every = math.min(2000, total // 5) -- a child every 2,000 operations, at least 5
  -- a child goes on past its operations (up to 200 more) until the armed exit came
  for i = 1, child and total + 200 or total do
    counts.ops = counts.ops + 1
    ops[math.random(#ops)]()
    if child and i == exit_at then
      if exit_where == "op" then die("the operation loop") end
      armed = exit_where
    end
    if not child and every > 0 and i % every == every // 2 then start_child() end
    if i % 50 == 0 then momoko.sleep(1):await() end -- let the loop work
  end
  if child then -- whatever was armed did not come: close here, things still in flight
    armed = nil
    die("the operation loop, at the end")
  end
end)
momoko.run()
for _, list in ipairs{ pools, ppools, tight } do for _, p in ipairs(list) do p:close() end end
for _, list in ipairs{ conns, pipes } do for _, c in ipairs(list) do c:close() end end
momoko.run()
conns, pipes, pools, ppools, tight = nil, nil, nil, nil, nil
collectgarbage()
collectgarbage()

for _, c in ipairs(children) do
  local out = c.pipe:read("a")
  local ok, how, code = c.pipe:close()
  counts.children = counts.children + 1
  for line in out:gmatch("[^\n]+") do
    if line:match("^child") or line:match("ERROR SUMMARY") or line:match("definitely lost")
        or line:match("Sanitizer") or line:match("runtime error") then
      print("  " .. line)
    end
  end
  if not ok then
    fail(string.format("child %d: %s %s; its output:\n%s", c.seed, how, tostring(code), out))
  elseif not out:match("child %d+: lua_close at") or out:match("ERROR: %a+Sanitizer") or out:match("runtime error:") then
    fail(string.format("child %d: no clean lua_close; its output:\n%s", c.seed, out))
  end
end

local missing = 0
for id = 1, issued do
  if ended[id] == 0 then
    missing = missing + 1
    if missing <= 10 then fail("future " .. id .. " never ended") end
  end
end

local list = {}
for k, v in pairs(kinds) do list[#list + 1] = k .. "=" .. v end
table.sort(list)
for _, k in ipairs(list) do
  local kind = k:match("^[^=]+")
  print(string.format("  first %s: %s", kind, first[kind]))
end
print(string.format("stress: %d operations, %d futures, %d ended (%d ok, %d typed errors), %d raised at the call, "
  .. "by kind: %s; %d notifications, %d children run", counts.ops, issued, counts.ends, counts.ok, counts.typed,
  counts.raised, table.concat(list, " "), counts.notified, counts.children))
if #failures > 0 or counts.ends ~= issued or counts.ok + counts.typed ~= issued then
  print(string.format("stress FAILED: %d failures (%d futures never ended); every future must end exactly once, typed",
    #failures, missing))
  os.exit(1)
end
print("stress passed")
