-- Read replicas (API §9): a Pool with replicas = {dsn, ...} runs execute, callproc and
-- stream made with { readonly = true } on the least busy replica that has a connection
-- open, and everything else on the primary; with no replica reachable they fall back to
-- the primary, and return once it is back; stats().replicas and the trace events name
-- each replica. Proven on real servers: a primary (wal_level=replica) and two streaming
-- standbys made with pg_basebackup -R, started by this spec on free ports of 127.0.0.1 in
-- a temporary directory and stopped at its end. Not in the default run (scripts/test
-- excludes it; .ci/run runs it as the `replicas` phase).
local momoko = require "momoko"
local H = require "helper"

-- The servers --------------------------------------------------------------------------

local PG_BIN = (function()
  local p = assert(io.popen("printf '%s\\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1"))
  local bin = p:read("l")
  p:close()
  return bin
end)()
local ROOT = (function()
  local p = assert(io.popen("id -u"))
  local uid = p:read("l")
  p:close()
  return uid == "0"
end)()

-- Runs a shell command (as the postgres user when we are root: PostgreSQL refuses to run
-- as root), bounded by timeout; raises with its output if it fails.
local function sh(cmd, as_postgres)
  if as_postgres and ROOT then cmd = "runuser -u postgres -- " .. cmd end
  local p = assert(io.popen("env -u LD_PRELOAD timeout 90 " .. cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  if not ok then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

local function append(path, text)
  local f = assert(io.open(path, "a"))
  f:write(text)
  f:close()
end

local cluster = {servers = {}}

-- psql on one of our servers; unaligned output, trimmed.
local function psql(server, sql)
  return (sh(string.format("%s/psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d -U postgres -d postgres -c %q",
    PG_BIN, server.port, sql)):gsub("%s+$", ""))
end

local function pg_ctl(server, args)
  sh(string.format("%s/pg_ctl -D %s -l %s -w -t 60 %s", PG_BIN, server.data, server.data .. ".log", args), true)
end

local function start(server)
  pg_ctl(server, "start")
  server.running = true
end

local function stop(server)
  server.running = false
  pg_ctl(server, "stop -m fast")
end

-- Polls (blocking, without momoko's loop) until pred() holds, at most ms milliseconds.
local function poll(pred, ms, what)
  for _ = 1, math.ceil(ms / 100) do
    if pred() then return end
    os.execute("sleep 0.1")
  end
  assert(pred(), "timed out waiting for " .. what)
end

local function settings(port)
  return string.format([[
# replica_spec (the last value of a setting wins)
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 100
fsync = off
full_page_writes = off
synchronous_commit = off
wal_level = replica
max_wal_senders = 10
hot_standby = on
]], port, cluster.dir)
end

-- A primary and nstandbys streaming standbys, each on a free port.
local function start_cluster(nstandbys)
  cluster.dir = sh("mktemp -d /tmp/momoko-replicas.XXXXXX"):gsub("%s+$", "")
  if ROOT then sh("chown postgres: " .. cluster.dir) end
  sh("chmod 755 " .. cluster.dir)
  local primary = {name = "primary", data = cluster.dir .. "/primary", port = H.closed_port()}
  cluster.servers[1] = primary
  sh(string.format("%s/initdb -D %s --auth=trust -U postgres -E UTF8 --locale=C --no-sync", PG_BIN, primary.data), true)
  append(primary.data .. "/postgresql.conf", settings(primary.port))
  start(primary)
  cluster.primary = primary
  cluster.standbys = {}
  for i = 1, nstandbys do
    local standby = {name = "standby" .. i, data = cluster.dir .. "/standby" .. i, port = H.closed_port()}
    sh(string.format("%s/pg_basebackup -h 127.0.0.1 -p %d -U postgres -D %s -R -X stream --no-sync",
      PG_BIN, primary.port, standby.data), true)
    append(standby.data .. "/postgresql.conf", settings(standby.port))
    cluster.servers[#cluster.servers + 1] = standby
    start(standby)
    cluster.standbys[i] = standby
  end
  poll(function() return tonumber(psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")) == nstandbys end,
    30000, "the standbys to stream")
  for _, standby in ipairs(cluster.standbys) do
    assert(psql(standby, "SELECT pg_is_in_recovery()") == "t", standby.name .. " is a standby")
  end
end

-- Stops every server still running (fast, else immediate) and removes the directory;
-- never raises, so that it also cleans up after a failed start.
local function stop_cluster()
  for i = #cluster.servers, 1, -1 do
    local server = cluster.servers[i]
    if not pcall(pg_ctl, server, "stop -m fast") then pcall(pg_ctl, server, "stop -m immediate") end
    cluster.servers[i] = nil
  end
  if cluster.dir then os.execute("rm -rf " .. cluster.dir) end
  cluster.dir = nil
end

local function dsn_of(server, extra)
  return string.format("host=127.0.0.1 port=%d dbname=postgres user=postgres%s", server.port, extra or "")
end

-- Helpers --------------------------------------------------------------------------

local function in_recovery(cursor) return cursor:fetchone()[1] end

local function ro_execute(pool, sql) return pool:execute(sql, nil, {readonly = true}):await() end

-- The one value a stream of one row yields.
local function stream_value(pool, sql, opts)
  local s = pool:stream(sql, nil, opts)
  local row = s:next():await()
  assert.is_nil(s:next():await())
  return row[1]
end

-- Backends of application_name app on server.
local function backends_on(server, app)
  return tonumber(psql(server, "SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app .. "'"))
end

local function new_app()
  return string.format("repl_%d", math.random(1, 1e9))
end

-- Runs fn(pool) with a connected pool, closing it afterwards, also when fn fails.
local function with_pool(opts, fn)
  local pool = momoko.Pool(opts)
  local ok, err = pcall(function()
    pool:connect():await()
    fn(pool)
  end)
  pool:close()
  if not ok then error(err, 0) end
end

-- Options and routing without a standby --------------------------------------------------

describe("replicas: options", function()
  it("replicas must be an array of dsn strings, replica_size a positive integer", function()
    local function pool_error(opts)
      opts.dsn = H.dsn
      return H.interface_error(momoko.Pool, opts)
    end
    assert.matches("replicas must be an array", pool_error{replicas = "host=127.0.0.1"}.message)
    assert.matches("replicas must be an array", pool_error{replicas = 5}.message)
    assert.matches("replicas%[1%] must be a dsn string", pool_error{replicas = {5}}.message)
    assert.matches("replicas%[2%] must be a dsn string", pool_error{replicas = {H.dsn, {}}}.message)
    assert.matches("replicas must be an array", pool_error{replicas = {H.dsn, x = H.dsn}}.message)
    assert.matches("invalid replicas%[1%]", pool_error{replicas = {"port"}}.message)
    for _, bad in ipairs{0, -1, 1.5, "2", true} do
      assert.matches("replica_size must be an integer", pool_error{replicas = {H.dsn}, replica_size = bad}.message)
    end
    local pool = momoko.Pool{dsn = H.dsn, replicas = {}, replica_size = 3}
    assert.is_nil(pool:stats().replicas) -- none: no replicas field
    pool:close()
  end)

  it("opts.readonly must be a boolean; a Connection accepts it and runs the request itself", function()
    with_pool({dsn = H.dsn}, function(pool)
      for _, bad in ipairs{1, "yes", {}} do
        assert.matches("opts.readonly must be a boolean", H.interface_error(pool.execute, pool, "SELECT 1", nil, {readonly = bad}).message)
        assert.matches("opts.readonly must be a boolean", H.interface_error(pool.callproc, pool, "now", nil, {readonly = bad}).message)
        assert.matches("opts.readonly must be a boolean", H.interface_error(pool.stream, pool, "SELECT 1", nil, {readonly = bad}).message)
      end
      assert.equal(1, pool:execute("SELECT 1", nil, {readonly = false}):await():fetchone()[1])
    end)
    local conn = momoko.connect(H.dsn):await()
    assert.is_false(conn:execute("SELECT pg_is_in_recovery()", nil, {readonly = true}):await():fetchone()[1])
    conn:close()
  end)

  it("with no replica reachable, connect() succeeds and readonly requests run on the primary", function()
    local port = H.closed_port()
    local app = new_app()
    with_pool({dsn = H.dsn .. " application_name=" .. app, replicas = {"host=127.0.0.1 port=" .. port},
               replica_size = 2, reconnect_interval = 100}, function(pool)
      local r = pool:stats().replicas
      assert.equal(1, #r)
      assert.equal("127.0.0.1", r[1].dsn_host)
      assert.equal(0, r[1].free)
      assert.equal(0, r[1].busy)
      assert.is_true(r[1].dead >= 1)
      local f = pool:execute("SELECT pg_backend_pid()", nil, {readonly = true})
      local pid = f:await():fetchone()[1]
      assert.equal(app, H.psql("SELECT application_name FROM pg_stat_activity WHERE pid = " .. pid))
      assert.equal(1, pool:stats().size)
    end)
  end)
end)

-- On a primary and two standbys ------------------------------------------------------

describe("replicas: on real standbys", function()
  lazy_setup(function()
    local ok, err = pcall(start_cluster, 2)
    if not ok then
      stop_cluster()
      error(err, 0)
    end
  end)
  lazy_teardown(stop_cluster)

  it("readonly execute, callproc and stream run on the replica; everything else on the primary", function()
    local s1 = cluster.standbys[1]
    with_pool({dsn = dsn_of(cluster.primary), replicas = {dsn_of(s1)}, size = 2, replica_size = 2}, function(pool)
      local ro = {readonly = true}
      assert.is_true(in_recovery(ro_execute(pool, "SELECT pg_is_in_recovery()")))
      assert.is_true(in_recovery(pool:callproc("pg_is_in_recovery", nil, ro):await()))
      assert.is_true(stream_value(pool, "SELECT pg_is_in_recovery()", ro))
      assert.equal(s1.port, ro_execute(pool, "SELECT inet_server_port()"):fetchone()[1])
      -- the rest: on the primary
      assert.is_false(in_recovery(pool:execute("SELECT pg_is_in_recovery()"):await()))
      assert.is_false(in_recovery(pool:execute("SELECT pg_is_in_recovery()", nil, {readonly = false}):await()))
      assert.is_false(in_recovery(pool:callproc("pg_is_in_recovery"):await()))
      assert.is_false(stream_value(pool, "SELECT pg_is_in_recovery()"))
      assert.is_false(pool:transaction({"SELECT pg_is_in_recovery()"}, ro):await()[1]:fetchone()[1])
      assert.equal(cluster.primary.port, pool:execute("SELECT inet_server_port()"):await():fetchone()[1])
      local conn <close> = pool:getconn():await()
      assert.is_false(in_recovery(conn:execute("SELECT pg_is_in_recovery()", nil, ro):await()))
    end)
  end)

  it("writes never go to a replica: every non-readonly INSERT succeeds on the primary", function()
    psql(cluster.primary, "CREATE TABLE IF NOT EXISTS repl_writes (n int)")
    for _, standby in ipairs(cluster.standbys) do
      poll(function() return psql(standby, "SELECT to_regclass('repl_writes') IS NOT NULL") == "t" end, 10000,
        "the table on " .. standby.name)
    end
    with_pool({dsn = dsn_of(cluster.primary), replicas = {dsn_of(cluster.standbys[1]), dsn_of(cluster.standbys[2])},
               size = 2, replica_size = 2}, function(pool)
      local futures = {}
      for i = 1, 40 do
        futures[#futures + 1] = pool:execute("INSERT INTO repl_writes VALUES ($1)", {i})
        -- readonly reads in between keep the replicas busy: writes still take the primary
        futures[#futures + 1] = pool:execute("SELECT count(*) FROM repl_writes", nil, {readonly = true})
      end
      momoko.all(futures):await()
      assert.equal("40", psql(cluster.primary, "SELECT count(*) FROM repl_writes"))
      -- a write sent readonly goes to a replica, which refuses it (read-only transaction)
      local err = H.failure(pool:execute("INSERT INTO repl_writes VALUES (0)", nil, {readonly = true}))
      assert.equal("25006", err.sqlstate)
      assert.equal("40", psql(cluster.primary, "SELECT count(*) FROM repl_writes"))
    end)
  end)

  it("picks the least busy replica; equally busy ones take turns", function()
    local s1, s2 = cluster.standbys[1], cluster.standbys[2]
    local app = new_app()
    with_pool({dsn = dsn_of(cluster.primary), replicas = {dsn_of(s1, " application_name=" .. app),
               dsn_of(s2, " application_name=" .. app)}, replica_size = 1}, function(pool)
      assert.equal(1, backends_on(s1, app))
      assert.equal(1, backends_on(s2, app))
      -- one replica busy with a long query: the next readonly request takes the other
      local long = pool:execute("SELECT inet_server_port(), pg_sleep(1)", nil, {readonly = true})
      local other = ro_execute(pool, "SELECT inet_server_port()"):fetchone()[1]
      local busy = long:await():fetchone()[1]
      assert.are_not.equal(busy, other)
      assert.same({[s1.port] = true, [s2.port] = true}, {[busy] = true, [other] = true})
      -- stats while one replica is busy
      local again = pool:execute("SELECT pg_sleep(0.5)", nil, {readonly = true})
      local r = pool:stats().replicas
      assert.equal(1, r[1].busy + r[2].busy)
      assert.equal(1, r[1].free + r[2].free)
      again:await()
      -- idle replicas take turns
      local count = {[s1.port] = 0, [s2.port] = 0}
      for _ = 1, 10 do
        local port = ro_execute(pool, "SELECT inet_server_port()"):fetchone()[1]
        count[port] = count[port] + 1
      end
      assert.same({[s1.port] = 5, [s2.port] = 5}, count)
      -- several at once: spread over both, one connection each
      local futures = {}
      for i = 1, 6 do futures[i] = pool:execute("SELECT inet_server_port(), pg_sleep(0.2)", nil, {readonly = true}) end
      count = {[s1.port] = 0, [s2.port] = 0}
      for _, f in ipairs(futures) do
        local port = f:await():fetchone()[1]
        count[port] = count[port] + 1
      end
      assert.same({[s1.port] = 3, [s2.port] = 3}, count)
      assert.equal(1, backends_on(s1, app))
      assert.equal(1, backends_on(s2, app))
    end)
  end)

  it("stats().replicas lists each replica", function()
    local s1, s2 = cluster.standbys[1], cluster.standbys[2]
    local app = new_app()
    with_pool({dsn = dsn_of(cluster.primary), replicas = {dsn_of(s1, " application_name=" .. app),
               "host=localhost hostaddr=127.0.0.1 port=" .. s2.port .. " dbname=postgres user=postgres application_name=" .. app},
               size = 1, replica_size = 3}, function(pool)
      local s = pool:stats()
      assert.same({{dsn_host = "127.0.0.1", free = 3, busy = 0, dead = 0},
                   {dsn_host = "localhost", free = 3, busy = 0, dead = 0}}, s.replicas)
      assert.equal(1, s.size) -- the primary's own connections
      assert.equal(3, backends_on(s1, app))
      assert.equal(3, backends_on(s2, app))
    end)
    assert.is_true(H.wait_until(function() return backends_on(s1, app) + backends_on(s2, app) == 0 end, 5000))
  end)

  it("falls back to the primary while no replica is reachable, and returns to it once back", function()
    local s1 = cluster.standbys[1]
    local events = {}
    local replica_dsn = "host=localhost hostaddr=127.0.0.1 port=" .. s1.port .. " dbname=postgres user=postgres"
    with_pool({dsn = dsn_of(cluster.primary), replicas = {replica_dsn}, replica_size = 2, reconnect_interval = 100,
               trace = function(ev) events[#events + 1] = ev end}, function(pool)
      local ro = {readonly = true}
      assert.is_true(in_recovery(ro_execute(pool, "SELECT pg_is_in_recovery()")))
      stop(s1)
      assert.is_true(H.wait_until(function()
        local r = pool:stats().replicas[1]
        return r.free == 0 and r.busy == 0
      end, 10000), "the pool noticed the replica's end")
      assert.is_true(pool:stats().replicas[1].dead >= 1)
      for _ = 1, 3 do
        assert.is_false(in_recovery(ro_execute(pool, "SELECT pg_is_in_recovery()")))
        assert.is_false(in_recovery(pool:callproc("pg_is_in_recovery", nil, ro):await()))
        assert.is_false(stream_value(pool, "SELECT pg_is_in_recovery()", ro))
        momoko.sleep(150):await() -- across reconnect attempts, which fail
      end
      start(s1)
      assert.is_true(H.wait_until(function() return pool:stats().replicas[1].free == 2 end, 10000),
        "the replica's connections were reopened")
      assert.same({dsn_host = "localhost", free = 2, busy = 0, dead = 0}, pool:stats().replicas[1])
      assert.is_true(in_recovery(ro_execute(pool, "SELECT pg_is_in_recovery()")))
      assert.is_true(stream_value(pool, "SELECT pg_is_in_recovery()", ro))
    end)
    -- tracing: the replica's events and queries name its host, the primary's its own
    local seen = {}
    for _, ev in ipairs(events) do
      local key = ev.type .. "@" .. tostring(ev.host)
      seen[key] = (seen[key] or 0) + 1
      if ev.type == "query" then assert.is_nil(ev.error, ev.sql) end
    end
    assert.equal(1, seen["connect@127.0.0.1"]) -- the primary's one connection
    assert.is_true((seen["connect@localhost"] or 0) >= 4, "connects of the replica (2, the failed ones, 2 again)")
    assert.is_true((seen["lost@localhost"] or 0) >= 2, "the replica's connections were lost")
    assert.is_nil(seen["lost@127.0.0.1"])
    assert.is_true((seen["reconnect@localhost"] or 0) >= 2)
    assert.equal(3, seen["query@localhost"]) -- before the stop; after the return: execute, stream
    assert.equal(9, seen["query@127.0.0.1"]) -- the fallbacks
  end)
end)
