-- The soak: 200 coroutines doing every kind of work the library offers, on a primary
-- behind tcproxy and a streaming standby (spec/support/cluster.lua, asynchronous),
-- while the chaos below runs. Bounded in time; prints its figures and exits non-zero
-- when an invariant fails. Usage (through scripts/soak, which sets LUA_PATH/CPATH):
--   lua5.4 scripts/soak.lua [SECONDS]
--
-- The work (each worker loops over the mix; every value is checked, so crosstalk
-- between requests fails the soak):
--   pipe       4 requests issued at once on pool A (pipeline = true), each checked
--   cached     pool B (statement_cache_size = 8): 20 statement texts in turn, so
--              statements are prepared, pushed out and deallocated all the time
--   stream     pool A: a stream read to its end (row count and every value checked)
--   early      pool A: a stream closed after a few rows
--   copy_in    pool B: COPY FROM a string, an array of rows or a source function,
--              then the rows counted back
--   copy_out   pool B: COPY TO a sink function or to one string, rows counted
--   readonly   pool A with opts.readonly (every other one a stream): must run on the
--              standby (pg_is_in_recovery() true) whenever the replica had a
--              connection open when it was issued
--   txn        pool B: transaction() (INSERT, then SELECT of the row)
--   getconn    pool B: a reserved connection, two requests on it
-- and beside them a listener (pool A's pool:listen, with on_reconnect) counting the
-- numbered notifications a notifier sends through pool A.
--
-- The chaos (one cycle, repeated): backends of the pools killed on the primary (never
-- the listener's, nor any backend that has run nothing yet, since the listener's
-- may be about to confirm its LISTEN), the listener's backend killed, tcproxy dropping every
-- connection, stalling all traffic, delaying every chunk, the replica's backends killed,
-- the standby stopped and started, the primary restarted.
--
-- The warm-up and RSS. RSS is taken after the warm-up: a burst in which all 200
-- workers run the same operation at once, for each operation in turn (every connection
-- of every pool busy with it: the most rows that streams and COPYs hold at once), then
-- one chaos cycle. What grew RSS in 600 s runs (LeakSanitizer clean once regress 163's
-- leak was fixed; the Lua heap at 1-3 MB after a collection; the malloc arenas of
-- other threads flat at some 2 MB) was glibc's main heap, which keeps much of the
-- memory of its highest use (at the end of one run: 11 MB from the system, 1.8 MB in
-- use, malloc_trim gave back 6 MB): it ended 35% and then 123% above the baseline.
-- Two causes were the library's: results held by cursors nobody had closed, which the
-- collector did not know about (regress 164), and libpq's input buffer, which a stream
-- read slowly made grow at each resume to all the server had sent (regress 162: 34 MB
-- in mmapped blocks at once). What is left is the rows streams happen to hold at once,
-- which the burst meets before the baseline and chunk = 50 bounds (the library holds
-- at most 50 rows of a stream, some 3 KB each).

-- "Up": the listener is up from the moment its subscription is confirmed (the first
-- pool:listen resolved, or on_reconnect ran after a reopen) until the chaos marks it
-- down, which it does GRACE ms before each fault that ends the listener's session
-- (killing its backend, tcproxy's drop, the primary's restart), while no fault is
-- being prepared. A notification counts as sent while up when its pg_notify was both
-- issued and acknowledged within one up period; each of those must be received, and
-- no notification may be received twice. (Stall and delay only hold data up: the
-- next session-ending fault comes GRACE ms after they ended.)
--
-- Afterwards it checks:
--   every request (each future a momoko call returned) ended exactly once, with its
--   result or a typed momoko.Error; no other error anywhere (untyped = 0); no wrong
--   value; no future pending once the load stopped (waiting at most 10 s)
--   both pools and the replica set back at size; no backend left on either server
--   after close (pg_stat_activity by application_name)
--   every notification sent while up received, none twice
--   readonly requests ran on the standby whenever a replica connection was open
--   RSS at the end within 10% of RSS after the warm-up
local momoko = require "momoko"
local Cluster = require "cluster"
local tcproxy = require "tcproxy_helper"

local seconds = tonumber(arg[1]) or 36
local WORKERS = 200
local APP = "momoko_soak"
local GRACE = 1000 -- ms; see "Up" above
local CHANNEL = "soak_notes"

local function sleep(ms) momoko.sleep(ms):await() end

local function wall()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("a"))
  p:close()
  return t
end

local function rss_kib()
  local f = io.open("/proc/self/status")
  local kib
  for line in f:lines() do kib = kib or tonumber(line:match("^VmRSS:%s+(%d+)")) end
  f:close()
  return kib
end

-- RSS by kind of mapping (KiB), to tell where growth is: the main heap (brk: Lua and
-- the main thread's malloc), anonymous mappings (other malloc arenas, large blocks),
-- and the rest (code, libraries, stacks' files).
local function rss_parts()
  local parts, kind = { heap = 0, anon = 0, other = 0 }, "other"
  for line in io.lines("/proc/self/smaps") do
    local name = line:match("^%x+%-%x+ %S+ %x+ %S+ %d+%s*(.*)$")
    if name then
      kind = name == "[heap]" and "heap" or name == "" and "anon" or "other"
    else
      local kib = tonumber(line:match("^Rss:%s+(%d+)"))
      if kib then parts[kind] = parts[kind] + kib end
    end
  end
  return string.format("heap %d anon %d other %d", parts.heap, parts.anon, parts.other)
end

local t0 = wall()
local function log(fmt, ...)
  print(string.format("[%5.1f s] " .. fmt, wall() - t0, ...))
end

-- The servers: a primary (behind tcproxy) and an asynchronous standby (a stopped
-- standby must not hold the primary's commits up).
local cl = Cluster.start{ synchronous = false, sleep = sleep }
local proxy = tcproxy.start{ upstream_port = cl.primary.port, dsn = cl.primary:dsn() }
log("primary on %d (tcproxy %d), standby on %d", cl.primary.port, proxy.port, cl.standby.port)

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- sql on node through psql, run in the background (the loop keeps running); its output.
local function psql_bg(node, sql)
  local ok, out = cl:run(string.format("psql -X -q -A -t -h 127.0.0.1 -p %d -U postgres -d postgres -c %s",
    node.port, quote(sql)), 30)
  return ok and out:gsub("%s+$", "") or nil
end

local extra = " application_name=" .. APP .. " connect_timeout=2"
local common = {
  reconnect_interval = 100, acquire_timeout = 3000, raise_connect_errors = false,
  auto_shrink = true, shrink_delay = 1000, shrink_period = 250,
}
local function pool_opts(o)
  for k, v in pairs(common) do o[k] = v end
  return o
end
local poolA = momoko.Pool(pool_opts{
  dsn = proxy.dsn .. extra, size = 4, max_size = 12, pipeline = true,
  replicas = { cl.standby:dsn(extra) }, replica_size = 3,
})
local poolB = momoko.Pool(pool_opts{ dsn = proxy.dsn .. extra, size = 4, max_size = 12, statement_cache_size = 8 })
-- the notifier's own: on pool A its notifications would wait behind 200 workers
local poolN = momoko.Pool(pool_opts{ dsn = proxy.dsn .. extra, size = 1 })
poolA:connect():await()
poolB:connect():await()
poolN:connect():await()
poolB:execute("CREATE TABLE soak (id bigserial PRIMARY KEY, v bigint)"):await()
poolB:execute("CREATE TABLE soak_copy (tag bigint, n int, s text)"):await()
poolB:execute("CREATE INDEX ON soak (v)"):await()
poolB:execute("CREATE INDEX ON soak_copy (tag)"):await()

-- Requests: every future a momoko call returns is tracked until its one end (a flag of
-- its own, no table of futures: the bookkeeping must not grow the heap it measures).
local req = { issued = 0, ended = 0, ok = 0, typed = 0, untyped = 0, twice = 0, kinds = {} }
local wrong, untyped_errors = 0, {}

local function untyped(what)
  req.untyped = req.untyped + 1
  if #untyped_errors < 10 then untyped_errors[#untyped_errors + 1] = tostring(what) end
end

local function track(f)
  local ended = false
  req.issued = req.issued + 1
  f:add_done_callback(function(d)
    if ended then
      req.twice = req.twice + 1
      return
    end
    ended = true
    req.ended = req.ended + 1
    local err = d:error()
    if err == nil then
      req.ok = req.ok + 1
    elseif getmetatable(err) == momoko.Error then
      req.typed = req.typed + 1
      req.kinds[err.kind] = (req.kinds[err.kind] or 0) + 1
    else
      untyped(err)
    end
  end)
  return f
end

local function pending() return req.issued - req.ended end

momoko.on_error(function(err, tb)
  untyped("on_error: " .. tostring(err) .. (tb and ("\n" .. tb) or ""))
end)

local function check(cond, what)
  if not cond then
    wrong = wrong + 1
    error("wrong value: " .. what, 2)
  end
end

-- the readonly figures
local ro = { standby = 0, primary = 0, misrouted = 0 }

local function replica_open()
  local r = poolA:stats().replicas[1]
  return r.free + r.busy > 0
end

local function rows_of_stream(s)
  local rows = {}
  while true do
    local row = track(s:next()):await()
    if row == nil then return rows end
    rows[#rows + 1] = row
  end
end

local ops = {
  { "pipe", function(i)
    local fs = {}
    for k = 1, 4 do fs[k] = track(poolA:execute("SELECT $1::bigint, $2::text", { i + k, "p" .. (i + k) })) end
    local first_err
    for k = 1, 4 do
      local ok, cur = pcall(fs[k].await, fs[k])
      if ok then
        local row = cur:fetchone()
        check(row[1] == i + k and row[2] == "p" .. (i + k), "pipelined row")
      else
        first_err = first_err or cur
      end
    end
    if first_err then error(first_err, 0) end
  end },
  { "cached", function(i)
    local n = i % 20 + 1
    local cur = track(poolB:execute("SELECT $1::bigint + " .. n .. ", 'c" .. n .. "'", { i })):await()
    local row = cur:fetchone()
    check(row[1] == i + n and row[2] == "c" .. n, "cached statement")
  end },
  { "stream", function(i)
    local n = 50 + i % 151
    local s <close> = poolA:stream("SELECT g, $1::bigint FROM generate_series(1, $2) g", { i, n }, { chunk = 50 })
    local rows = rows_of_stream(s)
    check(#rows == n, "stream row count")
    for g, row in ipairs(rows) do check(row[1] == g and row[2] == i, "stream row") end
  end },
  { "early", function(i)
    local s <close> = poolA:stream("SELECT g, $1::bigint FROM generate_series(1, 100000) g", { i }, { chunk = 50 })
    for g = 1, 3 + i % 20 do
      local row = track(s:next()):await()
      check(row and row[1] == g and row[2] == i, "early stream row")
    end
    track(s:close()):await()
    check(s.closed, "stream closed")
  end },
  { "copy_in", function(i)
    local n = 1 + i % 100
    local kind = i % 3
    local source
    if kind == 0 then
      local t = {}
      for k = 1, n do t[k] = string.format("%d\t%d\tstr %d\n", i, k, k) end
      source = table.concat(t)
    elseif kind == 1 then
      source = {}
      for k = 1, n do source[k] = { i, k, "row\t" .. k } end
    else
      local k = 0
      source = function()
        k = k + 1
        if k <= n then return { i, k, momoko.null } end
      end
    end
    local copied = track(poolB:copy_from("COPY soak_copy (tag, n, s) FROM STDIN", source)):await()
    check(copied == n, "rows copied")
    local cur = track(poolB:execute("SELECT count(*), sum(n) FROM soak_copy WHERE tag = $1", { i })):await()
    local row = cur:fetchone()
    check(row[1] == n and row[2] == n * (n + 1) // 2, "copied rows read back")
    track(poolB:execute("DELETE FROM soak_copy WHERE tag = $1", { i })):await()
  end },
  { "copy_out", function(i)
    local n = 1 + i % 200
    local sql = string.format("COPY (SELECT g, %d FROM generate_series(1, %d) g) TO STDOUT", i, n)
    if i % 2 == 0 then
      local seen = 0
      local count = track(poolB:copy_to(sql, function(line)
        seen = seen + 1
        if line ~= string.format("%d\t%d\n", seen, i) then seen = -1e9 end
      end)):await()
      check(count == n and seen == n, "copy_to rows")
    else
      local data = track(poolB:copy_to(sql)):await()
      local lines = 0
      for g, v in data:gmatch("(%d+)\t(%d+)\n") do
        lines = lines + 1
        check(tonumber(g) == lines and tonumber(v) == i, "copy_to data")
      end
      check(lines == n, "copy_to line count")
    end
  end },
  { "readonly", function(i)
    local open = replica_open()
    local in_recovery
    if i % 2 == 0 then
      local cur = track(poolA:execute("SELECT pg_is_in_recovery(), $1::bigint", { i }, { readonly = true })):await()
      local row = cur:fetchone()
      check(row[2] == i, "readonly value")
      in_recovery = row[1]
    else
      local s <close> = poolA:stream("SELECT pg_is_in_recovery(), g + $1::bigint FROM generate_series(1, 20) g",
        { i }, { readonly = true, chunk = 50 })
      local rows = rows_of_stream(s)
      check(#rows == 20, "readonly stream rows")
      for g, row in ipairs(rows) do check(row[2] == g + i, "readonly stream row") end
      in_recovery = rows[1][1]
    end
    if in_recovery then ro.standby = ro.standby + 1 else ro.primary = ro.primary + 1 end
    if open and not in_recovery then ro.misrouted = ro.misrouted + 1 end
  end },
  { "txn", function(i)
    local rs = track(poolB:transaction{ { "INSERT INTO soak (v) VALUES ($1)", { i } },
                                        { "SELECT count(*) FROM soak WHERE v = $1", { i } } }):await()
    check(rs[2]:fetchone()[1] == 1, "transaction")
  end },
  { "getconn", function(i)
    local conn <close> = track(poolB:getconn()):await()
    local cur = track(conn:execute("SELECT $1::bigint + 1", { i })):await()
    check(cur:fetchone()[1] == i + 1, "getconn")
    cur = track(conn:execute("SELECT $1::text", { "g" .. i })):await()
    check(cur:fetchone()[1] == "g" .. i, "getconn 2")
  end },
}

local feature = {}
for _, op in ipairs(ops) do feature[op[1]] = { ok = 0, failed = 0 } end

local running = true
local burst -- during the warm-up's burst: the operation every worker runs
local function worker(w)
  local n = 0
  while running do
    n = n + 1
    local op = burst or ops[(w + n) % #ops + 1]
    local ok, err = pcall(op[2], (w * 1000000 + n) * 1000)
    local f = feature[op[1]]
    if ok then
      f.ok = f.ok + 1
    else
      f.failed = f.failed + 1
      -- a typed error was counted by its future; anything else is a bug here or there
      if getmetatable(err) ~= momoko.Error then untyped(err) end
      sleep(20)
    end
  end
end

-- The listener and the notifier (see "Up" in the header).
-- n -> 2 * times received + (1 if sent while up), allocated before the RSS baseline
-- (at most 60 a second: the notifier sends one, awaits it, pauses 10 ms; it stops if
-- it ever reaches the end, and says so)
local notes_cap = seconds * 60 + 1000
local notes, note_period = {}, {} -- note_period[n]: the up period it was sent in, or 0
for n = 1, notes_cap do notes[n], note_period[n] = 0, 0 end
local listener = { up = false, striking = false, reconnects = 0 }
local notify_stats = { sent = 0, sent_up = 0, failed = 0, received = 0, twice = 0, unknown = 0 }

local function on_note(_, payload)
  local n = tonumber(payload)
  if not n or not notes[n] then
    notify_stats.unknown = notify_stats.unknown + 1
    return
  end
  if notes[n] >= 2 then notify_stats.twice = notify_stats.twice + 1 end
  notes[n] = notes[n] + 2
  notify_stats.received = notify_stats.received + 1
end

local up_period = 0
local function listener_up()
  if listener.striking then return end
  listener.up = true
  up_period = up_period + 1
end

track(poolA:listen(CHANNEL, on_note, { on_reconnect = function()
  listener.reconnects = listener.reconnects + 1
  listener_up()
end })):await()
listener_up()

local notifier_done = momoko.spawn(function()
  local n = 0
  while running and n < notes_cap do
    n = n + 1
    local period = listener.up and up_period
    local ok = pcall(function() track(poolN:notify(CHANNEL, tostring(n))):await() end)
    notify_stats.sent = notify_stats.sent + 1
    if not ok then
      notify_stats.failed = notify_stats.failed + 1
      sleep(20)
    elseif period and listener.up and up_period == period then
      notes[n] = notes[n] + 1
      note_period[n] = period
      notify_stats.sent_up = notify_stats.sent_up + 1
    end
    sleep(10)
  end
end)

-- The chaos.
local chaos_counts = {}
local function counted(what) chaos_counts[what] = (chaos_counts[what] or 0) + 1 end

local function app_backends(filter)
  return "SELECT pid FROM pg_stat_activity WHERE application_name = '" .. APP .. "'" .. (filter or "")
end

-- kills one random backend of the pools on node (filter: more conditions)
local function kill_one(node, filter)
  local out = psql_bg(node, "SELECT count(pg_terminate_backend(pid)) FROM (" ..
    app_backends(filter) .. " ORDER BY random() LIMIT 1) b")
  if out == "1" then counted("kill " .. node.name) end
end

-- a fault that ends the listener's session: marked down GRACE ms before
local period_end = {} -- up period -> the fault that ended it
local function strike(what, fn)
  listener.striking = true
  if listener.up then period_end[up_period] = what end
  listener.up = false
  sleep(GRACE)
  fn()
  counted(what)
  listener.striking = false
end

local function load_for(ms) sleep(ms) end

-- random backends of the pools (not the listener's) killed on the primary, one every
-- 250 ms or so, for ms (of the wall clock: a kill takes a while on a busy machine)
local function kills_for(ms)
  local stop = wall() + ms / 1000
  while wall() + 0.25 <= stop do
    -- the listener's backend runs LISTEN, or nothing yet: its LISTEN may be on its way
    kill_one(cl.primary, " AND query NOT LIKE 'LISTEN%' AND query <> ''")
    load_for(250)
  end
end

local function cycle()
  kills_for(1000)
  strike("kill listener", function()
    psql_bg(cl.primary, "SELECT pg_terminate_backend(pid) FROM (" .. app_backends(" AND query LIKE 'LISTEN%'") .. ") b")
  end)
  load_for(500)
  strike("tcproxy drop", function() proxy:cmd("drop") end)
  load_for(500)
  proxy:cmd("stall on")
  load_for(500)
  proxy:cmd("stall off")
  counted("tcproxy stall")
  load_for(300)
  proxy:cmd("delay 50")
  load_for(800)
  proxy:cmd("delay 0")
  counted("tcproxy delay")
  kill_one(cl.standby)
  load_for(250)
  kill_one(cl.standby)
  cl.standby:stop()
  load_for(800)
  cl.standby:start()
  counted("standby stop+start")
  load_for(500)
  strike("primary restart", function() cl.primary:ctl("restart -m fast") end)
  load_for(500)
end

local workers = {}
for w = 1, WORKERS do workers[w] = momoko.spawn(worker, w) end

local warm_rss, warm_heap, cycles = nil, nil, 0
local chaos = momoko.spawn(function()
  for _, op in ipairs(ops) do
    burst = op
    load_for(400)
  end
  burst = nil
  load_for(500)
  local began = wall()
  cycle()
  local took = wall() - began
  cycles = 1
  collectgarbage()
  warm_rss, warm_heap = rss_kib(), collectgarbage("count")
  log("warm-up done: RSS %d KiB (%s), Lua heap %.0f KiB", warm_rss, rss_parts(), warm_heap)
  -- another cycle while one fits (as long as the last one took), then backend kills
  while wall() - t0 + took <= seconds do
    began = wall()
    cycle()
    cycles = cycles + 1
    took = wall() - began
    log("cycle %d done: RSS %d KiB (%s), Lua heap %.0f KiB", cycles, rss_kib(), rss_parts(), collectgarbage("count"))
  end
  kills_for(math.max(0, math.floor((seconds - (wall() - t0)) * 1000)))
end)

local chaos_ok, chaos_err = pcall(chaos.await, chaos)
running = false
local load_end = wall()
if not chaos_ok then untyped("chaos: " .. tostring(chaos_err)) end

-- The load stops: every worker and the notifier finish their current work.
local all_done = momoko.all(workers)
for _ = 1, 100 do
  if all_done:done() and notifier_done:done() then break end
  sleep(100)
end
local workers_left = 0
for _, w in ipairs(workers) do if not w:done() then workers_left = workers_left + 1 end end
if not notifier_done:done() then workers_left = workers_left + 1 end
for _ = 1, 50 do
  if pending() == 0 then break end
  sleep(100)
end
local still_pending = pending()
sleep(500) -- the last notifications arrive

local function at_size()
  local a, b = poolA:stats(), poolB:stats()
  local r = a.replicas[1]
  local n = poolN:stats()
  return a.size == 4 and a.connecting == 0 and b.size == 4 and b.connecting == 0 and n.size == 1 and
    r.free + r.busy == 3 and r.dead == 0
end
local back_at_size = false
for _ = 1, 100 do
  if at_size() then back_at_size = true break end
  sleep(100)
end
local sa, sb = poolA:stats(), poolB:stats()
collectgarbage()
collectgarbage()
local end_rss, end_heap, end_parts = rss_kib(), collectgarbage("count"), rss_parts()

-- sent while up, never received; for each (10 at most) its up period and the
-- notifications of that period: how many, which came after it, how many of them arrived
local missed, missed_lines = 0, {}
for n = 1, notes_cap do
  if notes[n] == 1 then
    missed = missed + 1
    if #missed_lines < 10 then
      local p, first, last, later, later_got = note_period[n], nil, nil, 0, 0
      for m = 1, notes_cap do
        if note_period[m] == p then
          first, last = first or m, m
          if m > n then
            later = later + 1
            if notes[m] >= 2 then later_got = later_got + 1 end
          end
        end
      end
      missed_lines[#missed_lines + 1] = string.format(
        "missed notification %d: up period %d (notifications %d..%d, ended by %s), %d sent after it in that period, %d of them received",
        n, p, first, last, period_end[p] or "the end", later, later_got)
    end
  end
end

poolA:close()
poolB:close()
poolN:close()
local leaked = {}
for _, node in ipairs({ cl.primary, cl.standby }) do
  local count
  for _ = 1, 50 do
    count = tonumber(psql_bg(node, "SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. APP .. "'"))
    if count == 0 then break end
    sleep(100)
  end
  leaked[node.name] = count
end
proxy:stop()
cl:destroy()

local function list(t)
  local out = {}
  for k, v in pairs(t) do out[#out + 1] = k .. "=" .. tostring(v) end
  table.sort(out)
  return table.concat(out, " ")
end
local features = {}
for _, op in ipairs(ops) do
  local f = feature[op[1]]
  features[#features + 1] = string.format("%s=%d/%d", op[1], f.ok, f.ok + f.failed)
end

print(string.format("soak: %d s load, %d workers, %d chaos cycles (the first one the warm-up)",
  math.floor(load_end - t0 + 0.5), WORKERS, cycles))
print("chaos: " .. list(chaos_counts))
print(string.format("requests issued=%d succeeded=%d failed_typed=%d untyped=%d ended_twice=%d wrong_values=%d",
  req.issued, req.ok, req.typed, req.untyped, req.twice, wrong))
print("typed failures by kind: " .. list(req.kinds))
print("operations ok/done: " .. table.concat(features, " "))
print(string.format("readonly: on the standby %d, on the primary %d, on the primary with a replica open %d",
  ro.standby, ro.primary, ro.misrouted))
print(string.format("notifications: sent=%d (failed %d) sent_while_up=%d received=%d missed=%d twice=%d unknown=%d; listener reopened %d times",
  notify_stats.sent, notify_stats.failed, notify_stats.sent_up, notify_stats.received, missed,
  notify_stats.twice, notify_stats.unknown, listener.reconnects))
if notify_stats.sent >= notes_cap then print("the notifier stopped early: it sent its " .. notes_cap .. " notifications") end
print(string.format("pending futures after the load: %d; workers unfinished: %d", still_pending, workers_left))
print(string.format("pool A after: size=%d free=%d busy=%d connecting=%d reconnects=%d retries=%d timeouts=%d; replica free=%d busy=%d dead=%d",
  sa.size, sa.free, sa.busy, sa.connecting, sa.reconnects, sa.retries, sa.timeouts,
  sa.replicas[1].free, sa.replicas[1].busy, sa.replicas[1].dead))
print(string.format("pool B after: size=%d free=%d busy=%d connecting=%d reconnects=%d retries=%d timeouts=%d",
  sb.size, sb.free, sb.busy, sb.connecting, sb.reconnects, sb.retries, sb.timeouts))
print(string.format("leaked backends after close: primary %s, standby %s", tostring(leaked.primary), tostring(leaked.standby)))
print(string.format("RSS after warm-up %d KiB, at the end %d KiB (%+.1f%%; %s); Lua heap %.0f -> %.0f KiB",
  warm_rss or 0, end_rss, warm_rss and (end_rss - warm_rss) * 100 / warm_rss or 0, end_parts, warm_heap or 0, end_heap))
for _, e in ipairs(untyped_errors) do print("untyped: " .. e) end
for _, line in ipairs(missed_lines) do print(line) end

local failures = {}
local function require_(cond, what) if not cond then failures[#failures + 1] = what end end
require_(warm_rss ~= nil, "the warm-up ended (the run is long enough)")
require_(req.issued == req.ended and req.ended == req.ok + req.typed and req.untyped == 0,
  "every request ended once, succeeded or typed")
require_(req.twice == 0, "no request ended twice")
require_(wrong == 0, "no wrong value")
require_(still_pending == 0 and workers_left == 0, "nothing pending")
require_(back_at_size, "pools and replica set back at size")
require_(leaked.primary == 0 and leaked.standby == 0, "no leaked backend")
require_(missed == 0 and notify_stats.twice == 0 and notify_stats.unknown == 0, "every notification sent while up received once")
require_(notify_stats.sent_up > 0, "notifications sent while up")
require_(ro.misrouted == 0 and ro.standby > 0, "readonly requests on the standby")
require_(warm_rss and end_rss <= warm_rss * 1.10, "RSS within 10% of warm-up")
require_(req.ok > 0 and req.typed > 0, "both successes and typed failures happened")
if #failures > 0 then
  print("soak FAILED: " .. table.concat(failures, "; "))
  os.exit(1)
end
print("soak passed")
