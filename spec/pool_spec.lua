-- API §6: momoko.Pool — connect, the FIFO of waiting requests, stretching to max_size
-- and shrinking back, getconn/putconn/manage, rollback of returned transactions,
-- acquire_timeout, max_waiting, close, stats, tostring, setsession, factories,
-- register_json/register_hstore, mogrify/callproc/transaction/ping, bad options.
-- Every test opens its own pool with a fresh application_name, closes it, and checks
-- on the server that no backend of it is left.
local momoko = require "momoko"
local H = require "helper"

local failure = H.failure

-- Asserts that the future fails with an error of this kind; returns the error.
local function fails_with(kind, f)
  local err = failure(f)
  assert.equal(momoko.Error, getmetatable(err), tostring(err))
  assert.equal(kind, err.kind, tostring(err))
  return err
end

-- Asserts that fn(...) raises an error of this kind at the call; returns it.
local function raises(kind, fn, ...)
  local err = H.error_of(fn, ...)
  assert.is_not_nil(err, "expected a " .. kind .. " at the call")
  assert.equal(momoko.Error, getmetatable(err), tostring(err))
  assert.equal(kind, err.kind, tostring(err))
  return err
end

-- Whether a getconn'd connection is still lent: one given back reads as closed (its
-- requests raise "given back").
local function lent(conn)
  return not conn.closed
end

-- A pool on the test server with a fresh application_name: pool, app.
local function new_pool(opts)
  local dsn, app = H.app_dsn("h8p")
  opts = opts or {}
  opts.dsn = opts.dsn or dsn
  return momoko.Pool(opts), app
end

-- A connected pool: pool, app.
local function open_pool(opts)
  local pool, app = new_pool(opts)
  assert.equal(pool, pool:connect():await())
  return pool, app
end

-- Closes the pool and asserts that none of its backends is left on the server.
local function finish(pool, app)
  pool:close()
  assert.is_true(pool.closed)
  assert.is_true(H.no_backends(app), "backends of " .. app .. " left")
end

local pids_of = H.pids_of

local function state_of_pid(pid)
  return H.psql("SELECT state FROM pg_stat_activity WHERE pid = " .. pid)
end

local function scratch_table()
  return H.scratch_table("h8_pool", "id serial PRIMARY KEY, v text")
end

local drop_table = H.drop_table

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function backend_pid(conn_or_pool)
  return conn_or_pool:execute("SELECT pg_backend_pid()"):await():fetchone()[1]
end

describe("pool:connect", function()
  it("opens size connections and resolves to the pool", function()
    local pool, app = new_pool{size = 3}
    assert.equal(0, H.backends(app))
    local f = pool:connect()
    assert.is_true(rawequal(f, pool:connect()), "the same future while connecting")
    assert.is_true(rawequal(pool, f:await()))
    assert.equal(3, H.backends(app))
    assert.same({size = 3, free = 3, busy = 0, connecting = 0, waiting = 0, dead = 0,
                 acquired = 0, timeouts = 0, reconnects = 0, retries = 0}, pool:stats())
    local again = pool:connect()
    assert.is_true(again:done())
    assert.is_true(rawequal(pool, again:result()))
    assert.equal(3, H.backends(app))
    finish(pool, app)
  end)

  it("accepts requests before connect() is done", function()
    local pool, app = new_pool{size = 2}
    local cf = pool:connect()
    local f = pool:execute("SELECT 7")
    assert.equal(7, f:await():fetchone()[1])
    assert.is_true(rawequal(pool, cf:await()))
    assert.equal(2, H.backends(app))
    finish(pool, app)
  end)

  it("refuses requests before connect() with PoolError at the call", function()
    local pool, app = new_pool{size = 1}
    assert.matches("connect", raises("PoolError", pool.execute, pool, "SELECT 1").message)
    raises("PoolError", pool.getconn, pool)
    raises("PoolError", pool.ping, pool)
    raises("PoolError", pool.callproc, pool, "now")
    raises("PoolError", pool.transaction, pool, {"SELECT 1"})
    raises("PoolError", pool.mogrify, pool, "SELECT $1", {1})
    assert.equal(0, H.backends(app))
    pool:connect():await()
    assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
    finish(pool, app)
  end)
end)

describe("bad Pool options", function()
  it("raise InterfaceError at the call, opening nothing", function()
    local dsn, app = H.app_dsn("h8p")
    local bad = {
      {size = 0}, {size = -1}, {size = 1.5}, {size = "2"},
      {size = 2, max_size = 1}, {max_size = 0},
      {retry = "x"}, {retry = true},
      {bogus = 1}, {sise = 2},
      {acquire_timeout = -1}, {max_waiting = -1}, {auto_shrink = "yes"},
      {shrink_delay = "1s"}, {reconnect_interval = 0},
      {raise_connect_errors = 1}, {cursor_factory = "rows"}, {connection_factory = 1},
      {setsession = "SET x = 1"},
    }
    for _, opts in ipairs(bad) do
      opts.dsn = dsn
      raises("InterfaceError", momoko.Pool, opts)
    end
    assert.matches("unknown option 'bogus'", raises("InterfaceError", momoko.Pool, {dsn = dsn, bogus = 1}).message)
    assert.matches("max_size", raises("InterfaceError", momoko.Pool, {dsn = dsn, size = 3, max_size = 2}).message)
    assert.matches("retry", raises("InterfaceError", momoko.Pool, {dsn = dsn, retry = "x"}).message)
    raises("InterfaceError", momoko.Pool, {size = 1})
    raises("InterfaceError", momoko.Pool, dsn)
    raises("InterfaceError", momoko.Pool)
    assert.equal(0, H.backends(app))
  end)
end)

describe("pool requests", function()
  it("run 2000 concurrent requests of 400 coroutines on size=4 without crosstalk", function()
    local pool, app = open_pool{size = 4}
    local done, bad = 0, {}
    for i = 1, 400 do
      local run = function()
        local fs = {}
        for j = 1, 5 do
          local n = i * 10 + j
          fs[j] = pool:execute("SELECT $1::int, $2::text, pg_backend_pid()", {n, "s" .. n})
        end
        for j, cur in ipairs(momoko.all(fs):await()) do
          local n = i * 10 + j
          local row = cur:fetchone()
          if row[1] ~= n or row[2] ~= "s" .. n then bad[#bad + 1] = {n, row[1], row[2]} end
        end
        done = done + 1
      end
      if i % 2 == 0 then coroutine.wrap(run)() else momoko.spawn(run) end
    end
    local s = pool:stats()
    assert.equal(4, s.busy)
    assert.equal(2000 - 4, s.waiting)
    assert.is_true(H.wait_until(function() return done == 400 end, 20000))
    assert.same({}, bad)
    s = pool:stats()
    assert.equal(2000, s.acquired)
    assert.same({4, 4, 0, 0}, {s.size, s.free, s.busy, s.waiting})
    assert.equal(4, H.backends(app))
    finish(pool, app)
  end)

  it("serve waiting requests in FIFO order", function()
    local pool, app = open_pool{size = 1}
    local order, fs = {}, {}
    for i = 1, 5 do
      fs[i] = pool:execute("SELECT $1::int", {i})
      fs[i]:add_done_callback(function() order[#order + 1] = i end)
    end
    momoko.all(fs):await()
    assert.same({1, 2, 3, 4, 5}, order)
    finish(pool, app)
  end)

  it("cancel a queued request: QueryCanceledError, and it leaves the queue", function()
    local pool, app = open_pool{size = 1}
    local running = pool:execute("SELECT pg_sleep(0.1)")
    local queued = pool:execute("SELECT 1")
    assert.equal(1, pool:stats().waiting)
    assert.is_true(queued:cancel())
    assert.equal(0, pool:stats().waiting)
    fails_with("QueryCanceledError", queued)
    running:await()
    finish(pool, app)
  end)

  it("mogrify resolves to the inlined SQL", function()
    local pool, app = open_pool{size = 1}
    local f = pool:mogrify("SELECT $1, $2, $3", {"it's", 2, momoko.null})
    assert.equal("SELECT 'it''s', 2, NULL", f:await())
    assert.equal("SELECT 'a'", pool:mogrify("SELECT :x", {x = "a"}):await())
    -- bad arguments raise at the call, as on a Connection, and reserve nothing
    raises("InterfaceError", pool.mogrify, pool, 42)
    raises("InterfaceError", pool.mogrify, pool, "SELECT $1", {function() end})
    raises("InterfaceError", pool.mogrify, pool, "SELECT $1", "x")
    raises("InterfaceError", pool.mogrify, pool, "SELECT :a", {b = 1})
    local s = pool:stats()
    assert.same({1, 0, 0}, {s.free, s.busy, s.waiting})
    -- it waits for a free connection
    local conn = pool:getconn():await()
    f = pool:mogrify("SELECT $1", {1})
    assert.is_false(f:done())
    pool:putconn(conn)
    assert.equal("SELECT 1", f:await())
    assert.equal(1, pool:stats().free)
    finish(pool, app)
  end)

  it("callproc calls a function", function()
    local pool, app = open_pool{size = 1}
    assert.same({{"ABC"}}, pool:callproc("pg_catalog.upper", {"abc"}):await():fetchall())
    raises("InterfaceError", pool.callproc, pool, "upper(); DROP TABLE x")
    fails_with("ProgrammingError", pool:callproc("h8_no_such_function", {1}))
    finish(pool, app)
  end)

  it("transaction commits, and rolls back on failure", function()
    local tbl = scratch_table()
    local pool, app = open_pool{size = 1}
    local res = pool:transaction({
      {"INSERT INTO " .. tbl .. " (v) VALUES ($1)", {"a"}},
      "SELECT txid_current()",
      "SELECT txid_current()",
    }):await()
    assert.equal(3, #res)
    assert.equal(1, res[1].rowcount)
    assert.equal(res[2]:fetchone()[1], res[3]:fetchone()[1])
    assert.equal("a", H.psql("SELECT string_agg(v, ',') FROM " .. tbl))
    local err = fails_with("DataError", pool:transaction({"INSERT INTO " .. tbl .. " (v) VALUES ('b')", "SELECT 1/0"}))
    assert.equal("22012", err.sqlstate)
    assert.equal("a", H.psql("SELECT string_agg(v, ',') FROM " .. tbl))
    assert.same({true}, pool:execute("SELECT txid_current_if_assigned() IS NULL"):await():fetchone())
    finish(pool, app)
    drop_table(tbl)
  end)

  it("ping resolves to the pool", function()
    local pool, app = open_pool{size = 2}
    assert.is_true(rawequal(pool, pool:ping():await()))
    assert.equal(1, pool:stats().acquired)
    finish(pool, app)
  end)
end)

describe("stretching", function()
  it("grows to max_size for waiting requests, never above", function()
    local pool, app = open_pool{size = 1, max_size = 3}
    assert.equal(1, H.backends(app))
    local peak_stats, peak_backends, running = 0, 0, true
    local sampler = momoko.spawn(function()
      while running do
        local s = pool:stats()
        peak_stats = math.max(peak_stats, s.size + s.connecting)
        peak_backends = math.max(peak_backends, H.backends(app))
        momoko.sleep(5):await()
      end
    end)
    local fs = {}
    for i = 1, 6 do
      fs[i] = pool:execute("SELECT $1::int, pg_backend_pid() FROM pg_sleep(0.2)", {i})
    end
    local s = pool:stats()
    assert.equal(1, s.busy)
    assert.equal(5, s.waiting)
    assert.equal(2, s.connecting)
    local curs = momoko.all(fs):await()
    running = false
    sampler:await()
    local pids = {}
    for i, cur in ipairs(curs) do
      local row = cur:fetchone()
      assert.equal(i, row[1])
      pids[row[2]] = true
    end
    assert.equal(3, count(pids))
    assert.equal(3, peak_stats)
    assert.equal(3, peak_backends)
    assert.equal(3, H.backends(app))
    s = pool:stats()
    assert.same({3, 3, 0, 0, 0}, {s.size, s.free, s.busy, s.waiting, s.connecting})
    finish(pool, app)
  end)

  it("does not grow when nobody waits (sequential requests keep size)", function()
    local pool, app = open_pool{size = 1, max_size = 3}
    local pid = backend_pid(pool)
    for i = 1, 20 do
      assert.equal(i, pool:execute("SELECT $1::int", {i}):await():fetchone()[1])
      local s = pool:stats()
      assert.same({1, 0}, {s.size, s.connecting})
    end
    assert.equal(pid, backend_pid(pool))
    assert.equal(1, H.backends(app))
    finish(pool, app)
  end)

  it("shrinks back to size with auto_shrink, least recently used first", function()
    local pool, app = open_pool{size = 1, max_size = 3, auto_shrink = true, shrink_delay = 200, shrink_period = 100}
    local fs = {}
    for i = 1, 3 do fs[i] = pool:execute("SELECT pg_sleep(0.15)") end
    momoko.all(fs):await()
    assert.equal(3, pool:stats().size)
    assert.equal(3, H.backends(app))
    local mru = backend_pid(pool) -- now the most recently used connection
    assert.is_true(H.wait_until(function() return pool:stats().size == 1 end, 3000))
    local s = pool:stats()
    assert.same({1, 1, 0}, {s.size, s.free, s.connecting})
    assert.is_true(H.wait_until(function() return H.backends(app) == 1 end, 2000))
    assert.same({mru}, pids_of(app))
    assert.equal(mru, backend_pid(pool))
    finish(pool, app)
  end)
end)

describe("getconn and putconn", function()
  it("reserve a connection: requests wait until it is given back", function()
    local pool, app = open_pool{size = 1}
    local conn = pool:getconn():await()
    assert.equal("momoko.Connection", getmetatable(conn).__name)
    assert.is_true(lent(conn))
    local pid = backend_pid(conn)
    local f = pool:execute("SELECT pg_backend_pid()")
    local s = pool:stats()
    assert.same({1, 0, 1, 1}, {s.size, s.free, s.busy, s.waiting})
    -- a round trip on the reserved connection: the queued request still waits
    assert.same({1}, conn:execute("SELECT 1 FROM pg_sleep(0.05)"):await():fetchone())
    assert.is_false(f:done())
    assert.is_nil(pool:putconn(conn))
    assert.is_false(lent(conn))
    assert.equal(pid, f:await():fetchone()[1])
    s = pool:stats()
    assert.same({1, 1, 0, 0}, {s.size, s.free, s.busy, s.waiting})
    assert.equal(1, H.backends(app))
    finish(pool, app)
  end)

  it("refuse a second putconn, a foreign connection, and use after putconn", function()
    local pool, app = open_pool{size = 1}
    local other, app2 = open_pool{size = 1}
    local plain = momoko.connect(H.dsn):await()
    local conn = pool:getconn():await()
    local foreign = other:getconn():await()
    raises("PoolError", pool.putconn, pool, plain)
    raises("PoolError", pool.putconn, pool, foreign)
    raises("PoolError", pool.putconn, pool, "conn")
    raises("PoolError", pool.putconn, pool, nil)
    pool:putconn(conn)
    raises("PoolError", pool.putconn, pool, conn)
    assert.matches("given back", raises("InterfaceError", conn.execute, conn, "SELECT 1").message)
    raises("InterfaceError", conn.mogrify, conn, "SELECT 1")
    raises("InterfaceError", conn.transaction, conn, {"SELECT 1"})
    -- the pool is unharmed; the other pool's connection still works and goes back
    assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
    assert.equal(2, foreign:execute("SELECT 2"):await():fetchone()[1])
    other:putconn(foreign)
    assert.equal(1, other:stats().free)
    plain:close()
    finish(other, app2)
    finish(pool, app)
  end)

  it("manage() gives the connection back at scope exit, also when the body raises", function()
    local pool, app = open_pool{size = 1}
    local conn = pool:getconn():await()
    local ok, err = pcall(function()
      local g <close> = pool:manage(conn)
      assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
      error("boom", 0)
    end)
    assert.is_false(ok)
    assert.equal("boom", err)
    assert.is_false(lent(conn))
    assert.equal(1, pool:stats().free)
    do
      local c2 = pool:getconn():await()
      local g <close> = pool:manage(c2)
      assert.equal(0, pool:stats().free)
    end
    assert.equal(1, pool:stats().free)
    raises("PoolError", pool.manage, pool, conn) -- already given back
    local plain = momoko.connect(H.dsn):await()
    raises("PoolError", pool.manage, pool, plain)
    plain:close()
    raises("PoolError", pool.manage, pool, "conn")
    -- another pool's connection is refused at the call, not at scope exit
    local other, app2 = open_pool{size = 1}
    local foreign = other:getconn():await()
    raises("PoolError", pool.manage, pool, foreign)
    assert.is_true(lent(foreign))
    do
      local g <close> = other:manage(foreign)
    end
    assert.is_false(lent(foreign))
    assert.equal(1, other:stats().free)
    finish(other, app2)
    finish(pool, app)
  end)

  it("a getconn'd connection is to-be-closed: <close> gives it back", function()
    local pool, app = open_pool{size = 1}
    local held
    do
      local conn <close> = pool:getconn():await()
      held = conn
      assert.equal(0, pool:stats().free)
    end
    assert.is_false(lent(held))
    assert.equal(1, pool:stats().free)
    local ok = pcall(function()
      local conn <close> = pool:getconn():await()
      held = conn
      error("boom")
    end)
    assert.is_false(ok)
    assert.is_false(lent(held))
    assert.equal(1, pool:stats().free)
    -- closing again after putconn does nothing
    pool:putconn(pool:getconn():await())
    assert.equal(1, pool:stats().free)
    finish(pool, app)
  end)

  it("a lent connection nobody references goes back when collected", function()
    local pool, app = open_pool{size = 1}
    do
      local conn = pool:getconn():await()
      assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
    end
    collectgarbage()
    collectgarbage()
    assert.is_true(H.wait_until(function() return pool:stats().free == 1 end, 2000))
    assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
    finish(pool, app)
  end)

  it("replace a connection given back dead (backend killed, or closed by the holder)", function()
    local pool, app = open_pool{size = 1}
    local conn = pool:getconn():await()
    local pid = backend_pid(conn)
    H.psql("SELECT pg_terminate_backend(" .. pid .. ")")
    fails_with("OperationalError", conn:execute("SELECT 1"))
    assert.is_true(conn.closed)
    local s = pool:stats()
    assert.same({1, 0, 1}, {s.size, s.free, s.busy}) -- still the holder's
    pool:putconn(conn)
    assert.is_true(H.wait_until(function() return pool:stats().free == 1 end, 3000))
    local pid2 = backend_pid(pool)
    assert.are_not.equal(pid, pid2)
    conn = pool:getconn():await()
    conn:close()
    pool:putconn(conn)
    assert.is_true(H.wait_until(function() return pool:stats().free == 1 end, 3000))
    assert.are_not.equal(pid2, backend_pid(pool))
    assert.equal(2, pool:stats().reconnects)
    assert.equal(1, H.backends(app))
    finish(pool, app)
  end)

  it("getconn pings a connection idle for a second and never hands out a dead one", function()
    local pool, app = open_pool{size = 1}
    local pid = backend_pid(pool)
    momoko.sleep(1100):await() -- getconn pings connections idle for a second or more
    H.psql("SELECT pg_terminate_backend(" .. pid .. ")")
    local conn = pool:getconn():await()
    local pid2 = backend_pid(conn)
    assert.are_not.equal(pid, pid2)
    pool:putconn(conn)
    assert.same({pid2}, pids_of(app))
    finish(pool, app)
  end)

  it("roll back a transaction left open by putconn", function()
    local tbl = scratch_table()
    local pool, app = open_pool{size = 1}
    local conn = pool:getconn():await()
    local pid = backend_pid(conn)
    conn:execute("BEGIN"):await()
    conn:execute("INSERT INTO " .. tbl .. " (v) VALUES ('x')"):await()
    assert.equal("idle in transaction", state_of_pid(pid))
    pool:putconn(conn)
    local row = pool:execute("SELECT pg_backend_pid(), txid_current_if_assigned() IS NULL, now() = statement_timestamp(), (SELECT count(*) FROM " .. tbl .. ")"):await():fetchone()
    assert.same({pid, true, true, 0}, row)
    assert.equal("0", H.psql("SELECT count(*) FROM " .. tbl))
    assert.equal("idle", state_of_pid(pid))
    -- an aborted transaction likewise
    conn = pool:getconn():await()
    conn:execute("BEGIN"):await()
    fails_with("DataError", conn:execute("SELECT 1/0"))
    assert.equal("idle in transaction (aborted)", state_of_pid(pid))
    pool:putconn(conn)
    assert.same({pid, true}, pool:execute("SELECT pg_backend_pid(), txid_current_if_assigned() IS NULL"):await():fetchone())
    assert.equal("idle", state_of_pid(pid))
    assert.equal(1, H.backends(app))
    finish(pool, app)
    drop_table(tbl)
  end)

  it("discard a connection given back while it runs a query", function()
    local pool, app = open_pool{size = 1}
    local conn = pool:getconn():await()
    local pid = backend_pid(conn)
    local f = conn:execute("SELECT pg_sleep(5)")
    assert.is_true(H.wait_until(function() return state_of_pid(pid) == "active" end, 3000))
    pool:putconn(conn)
    local err = failure(f)
    assert.is_true(momoko.is(err, "Error"), tostring(err))
    -- its backend goes away soon (well before pg_sleep's 5 s), the pool reopens one
    assert.is_true(H.wait_until(function() return state_of_pid(pid) == "" end, 3000))
    assert.is_true(H.wait_until(function()
      local s = pool:stats()
      return s.size == 1 and s.free == 1
    end, 3000))
    local pids = pids_of(app)
    assert.equal(1, #pids)
    assert.are_not.equal(pid, pids[1])
    assert.equal(pids[1], backend_pid(pool))
    finish(pool, app)
  end)
end)

describe("acquire_timeout and max_waiting", function()
  it("a request waiting longer than acquire_timeout fails with TimeoutError", function()
    local pool, app = open_pool{size = 1, max_size = 1, acquire_timeout = 100}
    local conn = pool:getconn():await()
    local f = pool:execute("SELECT 1")
    local g = pool:getconn()
    local err = fails_with("TimeoutError", f)
    assert.is_true(momoko.is(err, "OperationalError"))
    fails_with("TimeoutError", g)
    local s = pool:stats()
    assert.equal(2, s.timeouts)
    assert.equal(0, s.waiting)
    pool:putconn(conn)
    assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
    assert.equal(2, pool:stats().timeouts)
    finish(pool, app)
  end)

  it("counts one timeout for one timed-out request", function()
    local pool, app = open_pool{size = 1, max_size = 1, acquire_timeout = 100}
    local conn = pool:getconn():await()
    fails_with("TimeoutError", pool:execute("SELECT 1"))
    assert.equal(1, pool:stats().timeouts)
    pool:putconn(conn)
    finish(pool, app)
  end)

  it("past max_waiting a request fails at once with PoolError", function()
    local pool, app = open_pool{size = 1, max_size = 1, max_waiting = 2}
    local conn = pool:getconn():await()
    local f1, f2 = pool:execute("SELECT 1"), pool:execute("SELECT 2")
    local f3 = pool:execute("SELECT 3")
    assert.is_true(f3:done(), "failed before awaiting")
    assert.equal("PoolError", f3:error().kind)
    assert.matches("max_waiting", f3:error().message)
    local g = pool:getconn()
    assert.is_true(g:done())
    assert.equal("PoolError", g:error().kind)
    assert.equal(2, pool:stats().waiting)
    assert.is_false(f1:done())
    pool:putconn(conn)
    assert.equal(1, f1:await():fetchone()[1])
    assert.equal(2, f2:await():fetchone()[1])
    finish(pool, app)
  end)
end)

describe("pool:close", function()
  it("fails queued requests with PoolError, running ones with InterfaceError", function()
    local pool, app = open_pool{size = 1}
    local running = pool:execute("SELECT pg_sleep(5)")
    assert.is_true(H.wait_until(function()
      return H.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND application_name = '" .. app .. "'") == "1"
    end, 3000))
    local queued = pool:execute("SELECT 1")
    local queued_get = pool:getconn()
    assert.equal(2, pool:stats().waiting)
    pool:close()
    assert.is_true(queued:done())
    assert.matches("pool is closed", fails_with("PoolError", queued).message)
    fails_with("PoolError", queued_get)
    fails_with("InterfaceError", running)
    assert.is_true(H.no_backends(app, 3000))
    -- later calls raise PoolError; close is idempotent
    raises("PoolError", pool.execute, pool, "SELECT 1")
    raises("PoolError", pool.getconn, pool)
    raises("PoolError", pool.connect, pool)
    raises("PoolError", pool.ping, pool)
    raises("PoolError", pool.transaction, pool, {"SELECT 1"})
    raises("PoolError", pool.callproc, pool, "now")
    raises("PoolError", pool.mogrify, pool, "SELECT 1")
    pool:close()
    assert.is_true(pool.closed)
    assert.matches("closed", tostring(pool))
    finish(pool, app)
  end)

  it("closes connections held with getconn; they can still be given back", function()
    local pool, app = open_pool{size = 2}
    local conn = pool:getconn():await()
    pool:close()
    assert.is_true(conn.closed)
    raises("InterfaceError", conn.execute, conn, "SELECT 1")
    assert.is_true(H.no_backends(app, 3000))
    pool:putconn(conn)
    raises("PoolError", pool.putconn, pool, conn)
    finish(pool, app)
  end)

  it("works on a pool never connected, and as a to-be-closed variable", function()
    local pool, app = new_pool{size = 1}
    pool:close()
    raises("PoolError", pool.connect, pool)
    finish(pool, app)
    local p2, app2 = open_pool{size = 2}
    assert.equal(2, H.backends(app2))
    do
      local p <close> = p2
    end
    assert.is_true(p2.closed)
    assert.is_true(H.no_backends(app2))
  end)
end)

describe("pool:stats and tostring", function()
  it("count free, busy, waiting and acquisitions", function()
    local pool, app = open_pool{size = 2}
    for i = 1, 3 do pool:execute("SELECT $1::int", {i}):await() end
    assert.equal(3, pool:stats().acquired)
    local conn = pool:getconn():await()
    local s = pool:stats()
    assert.same({2, 1, 1, 0, 4}, {s.size, s.free, s.busy, s.waiting, s.acquired})
    local f1 = pool:execute("SELECT pg_sleep(0.1)")
    local f2 = pool:execute("SELECT 1")
    s = pool:stats()
    assert.same({2, 0, 2, 1, 5}, {s.size, s.free, s.busy, s.waiting, s.acquired})
    pool:putconn(conn)
    s = pool:stats()
    assert.same({2, 0, 2, 0, 6}, {s.size, s.free, s.busy, s.waiting, s.acquired})
    momoko.all{f1, f2}:await()
    assert.same({size = 2, free = 2, busy = 0, connecting = 0, waiting = 0, dead = 0,
                 acquired = 6, timeouts = 0, reconnects = 0, retries = 0}, pool:stats())
    finish(pool, app)
    s = pool:stats()
    assert.same({0, 0, 0, 0}, {s.size, s.free, s.busy, s.waiting})
  end)

  it("tostring shows the counts and the dsn without the password", function()
    local dsn, app = H.app_dsn("h8p")
    local pool = momoko.Pool{dsn = dsn .. " password=secret", size = 2}
    local where = string.format("host=%s port=%s dbname=%s", H.dsn:match("host=(%S+)"),
      H.dsn:match("port=(%S+)"), H.dsn:match("dbname=(%S+)"))
    local function look(expect)
      local s = tostring(pool)
      assert.is_nil(s:find("secret", 1, true), s)
      assert.equal(expect .. " dsn=" .. where .. ">", s)
    end
    look("<momoko.Pool size=0 free=0 busy=0 connecting=0 waiting=0")
    local cf = pool:connect()
    look("<momoko.Pool size=0 free=0 busy=0 connecting=2 waiting=0")
    cf:await()
    look("<momoko.Pool size=2 free=2 busy=0 connecting=0 waiting=0")
    local a, b = pool:getconn():await(), pool:getconn():await()
    local f = pool:execute("SELECT 1")
    look("<momoko.Pool size=2 free=0 busy=2 connecting=0 waiting=1")
    pool:putconn(a)
    pool:putconn(b)
    f:await()
    look("<momoko.Pool size=2 free=2 busy=0 connecting=0 waiting=0")
    finish(pool, app)
    assert.matches("^<momoko%.Pool .* closed dsn=", tostring(pool))
  end)
end)

describe("connection options on every pool connection", function()
  it("setsession runs on every connection, stretched ones too", function()
    local pool, app = open_pool{size = 1, max_size = 3, setsession = {"SET work_mem = '7777kB'", "SET search_path = pg_catalog, public"}}
    local fs = {}
    for i = 1, 3 do
      fs[i] = pool:execute("SELECT pg_backend_pid(), current_setting('work_mem'), current_setting('search_path') FROM pg_sleep(0.3)")
    end
    local pids = {}
    for _, cur in ipairs(momoko.all(fs):await()) do
      local row = cur:fetchone()
      assert.same({"7777kB", "pg_catalog, public"}, {row[2], row[3]})
      pids[row[1]] = true
    end
    assert.equal(3, count(pids))
    local conns = {}
    for i = 1, 3 do
      conns[i] = pool:getconn():await()
      assert.equal("7777kB", conns[i]:execute("SHOW work_mem"):await():fetchone()[1])
    end
    for i = 1, 3 do pool:putconn(conns[i]) end
    assert.equal(3, H.backends(app))
    finish(pool, app)
  end)

  it("connection_factory runs once per connection, stretched ones too, before first use", function()
    local calls, lent = 0, {}
    local pool, app = open_pool{size = 1, max_size = 3, connection_factory = function(conn)
      calls = calls + 1
      lent[#lent + 1] = conn
      assert(getmetatable(conn).__name == "momoko.Connection")
      return momoko.spawn(function()
        momoko.sleep(30):await() -- requests must still wait for the table
        conn:execute("CREATE TEMP TABLE h8f AS SELECT pg_backend_pid() AS pid"):await()
      end)
    end}
    assert.equal(1, calls)
    local fs = {}
    for i = 1, 3 do
      fs[i] = pool:execute("SELECT pid, pg_backend_pid() FROM h8f, pg_sleep(0.3)")
    end
    local pids = {}
    for _, cur in ipairs(momoko.all(fs):await()) do
      local row = cur:fetchone()
      assert.equal(row[1], row[2])
      pids[row[1]] = true
    end
    assert.equal(3, count(pids))
    assert.equal(3, calls)
    for i = 1, 10 do pool:execute("SELECT count(*) FROM h8f"):await() end
    assert.equal(3, calls)
    -- the factory's connection is not the caller's to keep
    raises("InterfaceError", lent[1].execute, lent[1], "SELECT 1")
    finish(pool, app)
  end)

  it("cursor_factory applies to pool requests and getconn'd connections", function()
    local pool, app = open_pool{size = 1, cursor_factory = momoko.cursors.dict}
    assert.same({a = 1, b = "x"}, pool:execute("SELECT 1 AS a, 'x' AS b"):await():fetchone())
    assert.same({1}, pool:execute("SELECT 1 AS a", nil, {cursor_factory = momoko.cursors.array}):await():fetchone())
    local conn = pool:getconn():await()
    assert.same({a = 2}, conn:execute("SELECT 2 AS a"):await():fetchone())
    pool:putconn(conn)
    local res = pool:transaction({"SELECT 3 AS c"}):await()
    assert.same({c = 3}, res[1]:fetchone())
    finish(pool, app)
  end)

  it("register_hstore applies to every connection, later ones too", function()
    local pool, app = open_pool{size = 1, max_size = 2}
    assert.is_true(rawequal(pool, pool:register_hstore():await()))
    assert.same({a = "1"}, pool:execute("SELECT 'a=>1'::hstore"):await():fetchone()[1])
    local conn = pool:getconn():await()
    assert.same({b = "2"}, conn:execute("SELECT 'b=>2'::hstore"):await():fetchone()[1])
    local pid1 = backend_pid(conn)
    -- the only connection is held: this request makes the pool open a second one
    local row = pool:execute("SELECT $1::hstore, pg_backend_pid()", {momoko.hstore({c = "3", d = momoko.null})}):await():fetchone()
    assert.same({c = "3", d = momoko.null}, row[1])
    assert.are_not.equal(pid1, row[2])
    assert.equal(2, pool:stats().size)
    pool:putconn(conn)
    finish(pool, app)
  end)

  it("register_json decodes json and jsonb on the pool's connections only", function()
    local pool, app = open_pool{size = 1, max_size = 2}
    assert.is_true(rawequal(pool, pool:register_json():await()))
    local row = pool:execute([[SELECT '{"a": [1, 2]}'::json, '{"b": true}'::jsonb]]):await():fetchone()
    assert.same({{a = {1, 2}}, {b = true}}, row)
    local conn = pool:getconn():await()
    assert.same({x = 1}, conn:execute([[SELECT '{"x": 1}'::jsonb]]):await():fetchone()[1])
    assert.same({y = 2}, pool:execute([[SELECT '{"y": 2}'::json]]):await():fetchone()[1]) -- stretched
    pool:putconn(conn)
    local plain = momoko.connect(H.dsn):await()
    assert.equal('{"z": 3}', plain:execute([[SELECT '{"z": 3}'::jsonb]]):await():fetchone()[1])
    plain:close()
    local custom = open_pool{size = 1, dsn = H.dsn .. " application_name=" .. app}
    custom:register_json{loads = function(s) return "custom:" .. s end}
    assert.equal('custom:{"k": 1}', custom:execute([[SELECT '{"k": 1}'::jsonb]]):await():fetchone()[1])
    custom:close()
    finish(pool, app)
  end)
end)

describe("connection setup failures", function()
  it("a failing setsession: PartiallyConnectedError, then DatabaseNotAvailable", function()
    local pool, app = new_pool{size = 2, setsession = {"SET h8_no_such_setting_x = 1"}}
    local err = fails_with("PartiallyConnectedError", pool:connect())
    assert.is_true(momoko.is(err, "PoolError"))
    assert.matches("2 of 2", err.message)
    local f = pool:execute("SELECT 1")
    assert.is_true(H.wait_until(function() return f:done() end, 3000))
    fails_with("DatabaseNotAvailable", f)
    assert.equal(0, H.backends(app))
    finish(pool, app)
  end)

  it("a failing connection_factory: PartiallyConnectedError, attempts paced by reconnect_interval", function()
    local calls = 0
    local pool, app = new_pool{size = 1, reconnect_interval = 100, connection_factory = function()
      calls = calls + 1
      error("factory says no")
    end}
    fails_with("PartiallyConnectedError", pool:connect())
    assert.equal(1, calls)
    local f = pool:execute("SELECT 1")
    assert.is_true(H.wait_until(function() return f:done() end, 3000))
    fails_with("DatabaseNotAvailable", f)
    -- it tries again, one connection every reconnect_interval, not in a tight loop
    assert.is_true(H.wait_until(function() return calls >= 2 end, 3000))
    local before = calls
    momoko.sleep(250):await()
    assert.is_true(calls - before <= 4, "connection attempts in 250 ms: " .. (calls - before))
    finish(pool, app)
  end)

  -- Regression: a connection whose connection_factory still ran was freed by close() or
  -- by its backend's death, leaving the factory's Connection on freed memory.
  it("close() while connection_factory runs leaves the factory a closed Connection", function()
    local started, state = 0, {}
    local pool, app = new_pool{size = 1, connection_factory = function(conn)
      started = started + 1
      return momoko.spawn(function()
        momoko.sleep(100):await()
        state.closed = conn.closed
        state.err = H.error_of(conn.execute, conn, "SELECT 1")
        state.done = true
      end)
    end}
    local cf = pool:connect()
    assert.is_true(H.wait_until(function() return started == 1 end, 3000))
    pool:close()
    fails_with("PoolError", cf)
    assert.is_true(H.wait_until(function() return state.done end, 3000))
    assert.is_true(state.closed)
    assert.equal("InterfaceError", state.err and state.err.kind)
    finish(pool, app)
  end)

  it("a connection whose backend dies while connection_factory runs is replaced", function()
    local calls, state = 0, {}
    local pool, app = new_pool{size = 1, reconnect_interval = 100, connection_factory = function(conn)
      calls = calls + 1
      local pid = conn:execute("SELECT pg_backend_pid()"):await():fetchone()[1]
      if calls == 1 then
        H.psql("SELECT pg_terminate_backend(" .. pid .. ")")
        assert(H.wait_until(function() return conn.closed end, 3000))
        state.err = H.error_of(conn.execute, conn, "SELECT 1")
      end
    end}
    fails_with("PartiallyConnectedError", pool:connect())
    assert.equal("InterfaceError", state.err and state.err.kind)
    assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
    assert.equal(2, calls)
    assert.equal(1, H.backends(app))
    finish(pool, app)
  end)
end)
