-- Restart-under-load soak: 200 coroutines doing mixed work over one Pool (size 4,
-- max_size 16) while the server is restarted (once during warm-up, then 3 times) and
-- random backends are killed. Bounded in
-- time; prints its figures and exits non-zero when an invariant fails:
--   issued = succeeded + failed with a typed momoko error (nothing else, nothing lost)
--   no future still pending 5 s after the load stops
--   the pool back at size, no backend left after close
--   RSS at the end within 10% of RSS after warm-up
-- Usage (through scripts/soak, which starts the server): lua5.4 scripts/soak.lua [SECONDS]
local momoko = require "momoko"

local seconds = tonumber(arg[1]) or 30
local dsn = assert(os.getenv("MOMOKO_TEST_DSN"))
local pgctl = assert(os.getenv("MOMOKO_TEST_PGCTL"))
local app = "momoko_soak"
local WORKERS, RESTARTS = 200, 3

local function now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("a"))
  p:close()
  return t
end

local function rss_kib()
  local f = io.open("/proc/self/status")
  local kib
  for line in f:lines() do
    kib = kib or tonumber(line:match("^VmRSS:%s+(%d+)"))
  end
  f:close()
  return kib
end

-- Runs a shell command in the background; returns a function telling whether it ended.
local function background(cmd)
  local marker = os.tmpname()
  os.remove(marker)
  os.execute("((" .. cmd .. ") >/dev/null 2>&1; touch " .. marker .. ") >/dev/null 2>&1 &")
  return function()
    local f = io.open(marker)
    if f then f:close(); os.remove(marker); return true end
    return false
  end
end

local function psql(sql)
  local p = io.popen("env -u LD_PRELOAD psql -X -q -A -t -c \"" .. sql .. "\" 2>/dev/null")
  local out = p:read("a")
  p:close()
  return out
end

local pool = momoko.Pool{
  dsn = dsn .. " application_name=" .. app .. " connect_timeout=2",
  size = 4, max_size = 16, reconnect_interval = 100, acquire_timeout = 3000,
  raise_connect_errors = false, auto_shrink = true, shrink_delay = 1000, shrink_period = 250,
}
pool:connect():await()
pool:execute("CREATE TABLE IF NOT EXISTS soak (id bigserial PRIMARY KEY, v int)"):await()

local stats = { issued = 0, ok = 0, typed = 0, untyped = 0, kinds = {} }
local pending = setmetatable({}, { __mode = "k" }) -- futures not done yet
local running = true

-- Every future an operation makes is tracked until it is done.
local function track(f)
  pending[f] = true
  f:add_done_callback(function(d) pending[d] = nil end)
  return f
end

local function outcome(ok, err)
  if ok then
    stats.ok = stats.ok + 1
  elseif getmetatable(err) == momoko.Error then
    stats.typed = stats.typed + 1
    stats.kinds[err.kind] = (stats.kinds[err.kind] or 0) + 1
  else
    stats.untyped = stats.untyped + 1
    io.stderr:write("untyped failure: ", tostring(err), "\n")
  end
end

local ops = {
  function(i)
    local cur = track(pool:execute("SELECT $1::int", { i })):await()
    assert(cur:fetchone()[1] == i, "crosstalk")
  end,
  function(i)
    local rs = track(pool:transaction{ { "INSERT INTO soak (v) VALUES ($1)", { i } },
                                       { "SELECT count(*) FROM soak WHERE v = $1", { i } } }):await()
    assert(rs[2]:fetchone()[1] >= 1)
  end,
  function(i)
    local conn <close> = track(pool:getconn()):await()
    local cur = track(conn:execute("SELECT $1::int + 1", { i })):await()
    assert(cur:fetchone()[1] == i + 1, "crosstalk on getconn")
  end,
}

local function worker(w)
  local n = 0
  while running do
    n = n + 1
    local op = ops[(w + n) % #ops + 1]
    stats.issued = stats.issued + 1 -- one user request: one outcome
    local ok, err = pcall(op, w * 100000 + n)
    outcome(ok, err)
    if not ok then momoko.sleep(20):await() end
  end
end

local t0 = now()
local warm_rss
local done_workers = {}
for w = 1, WORKERS do done_workers[w] = momoko.spawn(worker, w) end

-- Restarts the server in the background and waits (bounded) until pg_ctl is done.
local function restart(label)
  local ended = background(pgctl .. " restart -m fast")
  local waited = 0
  repeat
    momoko.sleep(50):await()
    waited = waited + 50
  until ended() or waited >= 60000
  assert(waited < 60000, "pg_ctl restart did not end within 60 s")
  print(string.format("%s done at %.1f s", label, now() - t0))
end

-- ms of load with, every 250 ms, a 30% chance that a random backend of the pool is killed.
local function kill_backends_for(ms)
  for _ = 1, ms // 250 do
    momoko.sleep(250):await()
    if math.random() < 0.3 then
      background("env -u LD_PRELOAD psql -X -q -c \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity " ..
                 "WHERE application_name = '" .. app .. "' ORDER BY random() LIMIT 1\"")
    end
  end
end

-- The chaos. Warm-up: 2 s of load, one restart (a reconnect storm: 200 waiting workers
-- and every connection reopened), then 8 s of load with backend kills (replays, pool
-- growth to max_size, shrinking), so that the allocator has met every kind of work at
-- its peak before RSS is taken; then RESTARTS restarts spread over the rest of the run,
-- with backend kills in between.
local chaos = momoko.spawn(function()
  momoko.sleep(2000):await()
  restart("warm-up restart")
  kill_backends_for(8000)
  collectgarbage()
  warm_rss = rss_kib()
  print(string.format("RSS after warm-up: %d KiB, Lua heap %.0f KiB", warm_rss, collectgarbage("count")))
  local restart_every = math.floor((seconds - (now() - t0)) * 1000 / (RESTARTS + 1))
  for r = 1, RESTARTS do
    kill_backends_for(restart_every)
    restart("restart " .. r)
  end
  while now() - t0 < seconds do momoko.sleep(100):await() end
  running = false
end)

chaos:await()
local stop = now()
-- load stopped: every worker finishes its current operation
momoko.all(done_workers):await()
momoko.sleep(5000):await()
local still_pending = 0
for _ in pairs(pending) do still_pending = still_pending + 1 end
local back_at_size = false
for _ = 1, 100 do
  local s = pool:stats()
  if s.size == 4 and s.connecting == 0 then back_at_size = true break end
  momoko.sleep(100):await()
end
local s = pool:stats()
collectgarbage()
collectgarbage()
local end_rss = rss_kib()
pool:close()
local leaked
for _ = 1, 50 do
  leaked = tonumber(psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app .. "'"))
  if leaked == 0 then break end
  momoko.sleep(100):await()
end

local kinds = {}
for k, n in pairs(stats.kinds) do kinds[#kinds + 1] = k .. "=" .. n end
table.sort(kinds)
print(string.format("soak: %d s load, %d workers, %d restarts after a warm-up restart",
  math.floor(stop - t0 + 0.5), WORKERS, RESTARTS))
print(string.format("requests issued=%d succeeded=%d failed_typed=%d failed_untyped=%d (%s)",
  stats.issued, stats.ok, stats.typed, stats.untyped, table.concat(kinds, " ")))
print(string.format("pending futures 5 s after the load: %d", still_pending))
print(string.format("pool after: size=%d free=%d busy=%d connecting=%d reconnects=%d retries=%d timeouts=%d",
  s.size, s.free, s.busy, s.connecting, s.reconnects, s.retries, s.timeouts))
print(string.format("leaked backends after close: %d", leaked))
print(string.format("RSS after warm-up %d KiB, at the end %d KiB (%+.1f%%)", warm_rss, end_rss,
  (end_rss - warm_rss) * 100 / warm_rss))

local failures = {}
local function check(cond, what) if not cond then failures[#failures + 1] = what end end
check(stats.issued == stats.ok + stats.typed and stats.untyped == 0, "issued = succeeded + failed typed")
check(still_pending == 0, "no pending future")
check(back_at_size, "pool back at size")
check(leaked == 0, "no leaked backend")
check(end_rss <= warm_rss * 1.10, "RSS within 10% of warm-up")
check(stats.ok > 0 and stats.typed > 0, "both successes and typed failures happened")
if #failures > 0 then
  print("soak FAILED: " .. table.concat(failures, "; "))
  os.exit(1)
end
print("soak passed")
