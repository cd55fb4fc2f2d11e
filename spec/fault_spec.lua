-- Failures injected by tcproxy (spec/support/tcproxy_helper.lua) between Pools and the server:
-- API §6 "Dead connections and retry" where the network, not the server, fails.
-- pool_failure_spec.lua covers killed backends and a stopped server; here:
--
--   drop     both sockets of every pair are reset. The client sees a reset, never a
--            57P01: a request in flight may have run. The backend does not notice the
--            reset while pg_sleep runs: it completes the statement (autocommit: the row
--            is committed) and only fails when it answers. So a dropped
--            `INSERT ... SELECT ... FROM pg_sleep(1)` leaves exactly 1 row under
--            retry = "safe" / "never" (not replayed: that is why it must not be), and 2
--            under "always" (replayed although it ran). With the server watching the
--            socket (client_connection_check_interval) the statement is aborted
--            instead: 0 rows, and 1 under "always" (the replay).
--   refuse   new clients are reset at once: requests fail with DatabaseNotAvailable
--            within connect_timeout, never hang; the pool recovers by itself.
--   stall    nothing is forwarded (the cancel request of a timed-out query neither: it
--            goes through the proxy too): query and acquire timeouts fire.
--   delay    every chunk waits: many requests over few connections, no crosstalk.
--
-- Each test starts its own proxy (the DSN: H.app_dsn's application_name, so psql, which
-- connects directly, counts the backends, and connect_timeout=2) and stops it, and
-- closes its pools, in a finally (with_proxy). Waits are bounded (H.wait_until, or a
-- race of the future against the loop's clock), so a hang fails a test instead of
-- blocking the suite.
--
-- Two tests under "stall on" fail on purpose, for bugs in the core (not fixed here):
--   * retry = "always" replays a query whose timeout closed its connection (the cancel
--     got no answer): the caller gets a replay, and DatabaseNotAvailable after the
--     replay's connect_timeout, instead of its TimeoutError (mk_pool.c may_replay does
--     not exclude a timed-out request).
--   * cancel requests run PQcancel, which blocks without a timeout, on libuv's thread
--     pool: as many unanswered cancels as it has threads hold up every other cancel,
--     so a query timeout on a healthy connection ends with the connection closed
--     ("the server did not answer the cancel") and f:cancel() does nothing meanwhile.
local momoko = require "momoko"
local H = require "helper"
local P = require "tcproxy_helper"

local RECONNECT = 100      -- reconnect_interval (ms) of every pool here
local CONNECT_TIMEOUT = 2  -- s, in every proxied DSN

-- Wall clock in milliseconds.
local function now_ms()
  local p = assert(io.popen("date +%s%3N"))
  local v = tonumber(p:read("l"))
  p:close()
  return v
end

local assert_kind = H.assert_kind

-- Races f against the loop's clock: asserts it is done within ms (the loop runs
-- meanwhile), then returns whether it succeeded, its result or error, and how long
-- it took from `since` (default: now).
local function settle(f, ms, since)
  local t0 = since or now_ms()
  assert.is_true(H.wait_until(function() return f:done() end, ms),
    string.format("still not done after %d ms: a hang", ms))
  local elapsed = now_ms() - t0
  local ok, res = pcall(f.await, f)
  return ok, res, elapsed
end

-- The error of a future that must fail within ms; also how long it took.
local function failure_within(f, ms, since)
  local ok, err, elapsed = settle(f, ms, since)
  assert.is_false(ok, "expected the future to fail")
  return err, elapsed
end

local pids_of = H.pids_of

local running_pid = H.running_pid

-- Waits (running the loop) until the backend pid has exited.
local function gone(pid, ms)
  return H.wait_until(function()
    return H.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = " .. pid) == "0"
  end, ms or 5000)
end

local function back_at_size(pool, app, size, ms)
  return H.wait_until(function()
    local s = pool:stats()
    return s.size == size and s.free == size and s.connecting == 0 and s.dead == 0
      and H.backends(app) == size
  end, ms or 5000)
end

-- Runs body(proxy, app, new_pool) with a fresh proxy in front of the server; whatever
-- happens, closes the pools made by new_pool and stops the proxy (a finally).
-- new_pool(opts): a Pool on the proxy (opts.dsn to override) with reconnect_interval
-- RECONNECT unless given.
local function with_proxy(body)
  local dsn, app = H.app_dsn("h13f")
  local proxy = P.start{dsn = dsn .. " connect_timeout=" .. CONNECT_TIMEOUT}
  local pools = {}
  local function new_pool(opts)
    opts.dsn = opts.dsn or proxy.dsn
    opts.reconnect_interval = opts.reconnect_interval or RECONNECT
    local pool = momoko.Pool(opts)
    pools[#pools + 1] = pool
    return pool
  end
  local ok, err = pcall(body, proxy, app, new_pool)
  for _, pool in ipairs(pools) do
    if not pool.closed then pool:close() end
  end
  proxy:stop()
  if not ok then error(err, 0) end
end

describe("faults through tcproxy", function()
  local tbl = string.format("h13_fault_%d", math.random(1, 1e9))

  local function rows(tag)
    return tonumber(H.psql("SELECT count(*) FROM " .. tbl .. " WHERE tag = '" .. tag .. "'"))
  end

  setup(function()
    H.psql("CREATE TABLE " .. tbl .. " (id serial PRIMARY KEY, tag text NOT NULL)")
  end)

  teardown(function()
    H.psql("DROP TABLE IF EXISTS " .. tbl)
  end)

  describe("drop mid-query", function()
    -- Runs the INSERT on a size-1 pool, drops it while pg_sleep runs; returns the
    -- future, the pool and the dropped backend's pid.
    local function dropped_insert(proxy, app, new_pool, opts, tag)
      opts.size = 1
      local pool = new_pool(opts)
      pool:connect():await()
      local f = pool:execute("INSERT INTO " .. tbl .. " (tag) SELECT '" .. tag .. "' FROM pg_sleep(1)")
      local pid = running_pid(app, "pg_sleep")
      assert.equal("ok dropped=1", proxy:cmd("drop"))
      return f, pool, pid
    end

    for _, retry in ipairs{"safe", "never"} do
      it("fails an INSERT with OperationalError, not replayed (retry = '" .. retry .. "'); it ran once", function()
        with_proxy(function(proxy, app, new_pool)
          local tag = "drop_" .. retry
          local f, pool, pid = dropped_insert(proxy, app, new_pool, {retry = retry}, tag)
          local err, elapsed = failure_within(f, 2000)
          assert.is_true(elapsed < 1000, "noticed the drop after " .. elapsed .. " ms")
          assert_kind("OperationalError", err)
          assert.is_nil(err.sqlstate) -- a reset, no word from the server (no 57P01)
          assert.equal(0, pool:stats().retries)
          -- the backend completes the statement unaware, then fails to answer
          assert.is_true(gone(pid))
          assert.equal(1, rows(tag))
          assert.is_true(back_at_size(pool, app, 1))
          assert.equal(1, pool:stats().reconnects)
          assert.equal(1, rows(tag))
          assert.equal(7, pool:execute("SELECT 7"):await():fetchone()[1])
          pool:close()
          assert.is_true(H.no_backends(app))
        end)
      end)
    end

    it("replays an INSERT once under retry = 'always': it ran twice", function()
      with_proxy(function(proxy, app, new_pool)
        local f, pool, pid = dropped_insert(proxy, app, new_pool, {retry = "always"}, "drop_always")
        local ok, cur = settle(f, 5000)
        assert.is_true(ok, tostring(cur))
        assert.equal("INSERT 0 1", cur.statusmessage)
        assert.equal(1, pool:stats().retries)
        assert.is_true(gone(pid))
        assert.equal(2, rows("drop_always")) -- the dropped attempt committed, and the replay
        assert.is_true(back_at_size(pool, app, 1))
        assert.equal(1, pool:stats().reconnects)
        pool:close()
        assert.is_true(H.no_backends(app))
      end)
    end)

    for _, case in ipairs{{"safe", 0, 0}, {"always", 1, 1}} do
      local retry, retries, want = case[1], case[2], case[3]
      it("with a server that watches the socket: the statement is aborted (retry = '" .. retry .. "', "
          .. want .. " row)", function()
        with_proxy(function(proxy, app, new_pool)
          local tag = "watched_" .. retry
          local f, pool, pid = dropped_insert(proxy, app, new_pool,
            {retry = retry, setsession = {"SET client_connection_check_interval = 50"}}, tag)
          local ok, res = settle(f, 5000)
          if retry == "safe" then
            assert.is_false(ok)
            assert_kind("OperationalError", res)
          else
            assert.is_true(ok, tostring(res))
          end
          assert.equal(retries, pool:stats().retries)
          assert.is_true(gone(pid))
          assert.equal(want, rows(tag))
          assert.is_true(back_at_size(pool, app, 1))
          pool:close()
          assert.is_true(H.no_backends(app))
        end)
      end)
    end

    for _, retry in ipairs{"safe", "always"} do
      it("inside transaction() is never replayed (retry = '" .. retry .. "'), nothing committed", function()
        with_proxy(function(proxy, app, new_pool)
          local tag = "txn_" .. retry
          local pool = new_pool{size = 1, retry = retry}
          pool:connect():await()
          local f = pool:transaction{
            "INSERT INTO " .. tbl .. " (tag) VALUES ('" .. tag .. "')",
            "SELECT pg_sleep(1)",
            "INSERT INTO " .. tbl .. " (tag) VALUES ('" .. tag .. "')",
          }
          local pid = running_pid(app, "pg_sleep")
          assert.equal("ok dropped=1", proxy:cmd("drop"))
          local err = failure_within(f, 2000)
          assert_kind("OperationalError", err)
          assert.is_nil(err.sqlstate)
          assert.equal(0, pool:stats().retries)
          assert.is_true(gone(pid)) -- its transaction rolled back as it exited
          assert.equal(0, rows(tag))
          assert.is_true(back_at_size(pool, app, 1))
          assert.equal(1, pool:stats().reconnects)
          assert.equal(2, #pool:transaction{"SELECT 1", "SELECT 2"}:await())
          assert.equal(0, rows(tag))
          pool:close()
          assert.is_true(H.no_backends(app))
        end)
      end)
    end
  end)

  describe("refuse on", function()
    it("fails in-flight (OperationalError) and new requests (DatabaseNotAvailable) fast; off: recovers alone", function()
      with_proxy(function(proxy, app, new_pool)
        local pool = new_pool{size = 2}
        pool:connect():await()
        local old = pids_of(app)
        assert.equal(2, #old)
        local inflight = pool:execute("SELECT pg_sleep(1)")
        running_pid(app, "pg_sleep")
        assert.equal("ok refuse=on", proxy:cmd("refuse on"))
        assert.equal("ok dropped=2", proxy:cmd("drop"))
        -- may have run: not replayed, fails as sent
        local err, elapsed = failure_within(inflight, CONNECT_TIMEOUT * 1000 + 500)
        assert_kind("OperationalError", err)
        assert.is_true(elapsed < 1000, elapsed .. " ms")
        -- the idle one is noticed too; their replacements are refused
        assert.is_true(H.wait_until(function() return proxy:stats().refused >= 1 end, 2000))
        for i = 1, 3 do
          local t0 = now_ms()
          local f = pool:execute("SELECT $1::int", {i})
          local e, ms = failure_within(f, CONNECT_TIMEOUT * 1000 + 500, t0)
          assert_kind("DatabaseNotAvailable", e)
          assert.is_true(momoko.is(e, "PoolError"))
          assert.is_true(ms < CONNECT_TIMEOUT * 1000, "failed after " .. ms .. " ms")
          momoko.sleep(RECONNECT // 2):await() -- between, and during, reconnect attempts
        end
        local t0 = now_ms()
        local e = failure_within(pool:getconn(), CONNECT_TIMEOUT * 1000 + 500, t0)
        assert_kind("DatabaseNotAvailable", e)
        local s = pool:stats()
        assert.equal(0, s.size)
        assert.equal(2, s.dead + s.connecting)
        assert.equal(0, s.retries)
        -- one attempt per reconnect_interval, not a loop
        local r0, w0 = proxy:stats().refused, now_ms()
        momoko.sleep(5 * RECONNECT):await()
        local n, window = proxy:stats().refused - r0, now_ms() - w0
        assert.is_true(n >= 1 and n <= window // RECONNECT + 2,
          string.format("%d refusals in %d ms", n, window))
        -- nothing got through: only the dropped backends were there (one ends its pg_sleep)
        for _, pid in ipairs(old) do assert.is_true(gone(pid)) end
        assert.equal(0, H.backends(app))
        assert.equal("ok refuse=off", proxy:cmd("refuse off"))
        -- no request needed: the reconnect timer reopens both
        assert.is_true(back_at_size(pool, app, 2))
        assert.is_true(pool:stats().reconnects >= 2)
        local fs = {}
        for i = 1, 6 do fs[i] = pool:execute("SELECT $1::int", {i}) end
        for i, cur in ipairs(momoko.all(fs):await()) do assert.equal(i, cur:fetchone()[1]) end
        local conn = pool:getconn():await()
        assert.equal(3, conn:execute("SELECT 3"):await():fetchone()[1])
        pool:putconn(conn)
        pool:close()
        assert.is_true(H.no_backends(app))
      end)
    end)
  end)

  describe("stall on", function()
    it("before connect(): connect() fails within connect_timeout, then the pool recovers alone", function()
      with_proxy(function(proxy, app, new_pool)
        local pool = new_pool{size = 2}
        assert.equal("ok stall=on", proxy:cmd("stall on"))
        local t0 = now_ms()
        -- the TCP connections succeed, the startup packets are held: libpq's
        -- connect_timeout ends them
        local err, elapsed = failure_within(pool:connect(), CONNECT_TIMEOUT * 1000 + 1500, t0)
        assert_kind("PartiallyConnectedError", err)
        assert.matches("2 of 2 connections", err.message, 1, true)
        assert.is_true(elapsed >= CONNECT_TIMEOUT * 1000 - 100, elapsed .. " ms")
        local e = failure_within(pool:execute("SELECT 1"), CONNECT_TIMEOUT * 1000 + 1000)
        assert_kind("DatabaseNotAvailable", e)
        assert.equal("ok stall=off", proxy:cmd("stall off"))
        assert.is_true(back_at_size(pool, app, 2, CONNECT_TIMEOUT * 1000 + 3000))
        assert.equal(4, pool:execute("SELECT 4"):await():fetchone()[1])
        pool:close()
        assert.is_true(H.no_backends(app))
      end)
    end)

    it("a query with {timeout = 300} fails with TimeoutError; its connection is closed and replaced", function()
      with_proxy(function(proxy, app, new_pool)
        local pool = new_pool{size = 1}
        pool:connect():await()
        local old = pids_of(app)[1]
        assert.equal("ok stall=on", proxy:cmd("stall on"))
        local t0 = now_ms()
        -- 300 ms, then the cancel (stalled too) gets a second to be answered
        local err, elapsed = failure_within(pool:execute("SELECT 1", nil, {timeout = 300}), 3000, t0)
        assert_kind("TimeoutError", err)
        assert.is_true(momoko.is(err, "OperationalError"))
        assert.matches("did not answer the cancel, connection closed", err.message, 1, true)
        assert.is_true(elapsed >= 300, elapsed .. " ms")
        local s = pool:stats()
        assert.equal(0, s.size) -- closed; its replacement is connecting through the stall
        assert.equal(0, s.retries)
        assert.equal("ok stall=off", proxy:cmd("stall off"))
        assert.is_true(gone(old))
        assert.is_true(back_at_size(pool, app, 1))
        local new = pids_of(app)[1]
        assert.are_not.equal(old, new)
        assert.equal(1, pool:stats().reconnects)
        local row = pool:execute("SELECT pg_backend_pid(), 9"):await():fetchone()
        assert.same({new, 9}, {row[1], row[2]})
        pool:close()
        assert.is_true(H.no_backends(app))
      end)
    end)

    it("a query that timed out is not replayed, even under retry = 'always'", function()
      -- API §3: on expiry the future fails with TimeoutError. The connection is closed
      -- by momoko because of the timeout, not lost: a replay would run the query again
      -- (and wait for a connection, past the caller's timeout)
      with_proxy(function(proxy, app, new_pool)
        local pool = new_pool{size = 1, retry = "always"}
        pool:connect():await()
        proxy:cmd("stall on")
        local err, elapsed = failure_within(pool:execute("SELECT 1", nil, {timeout = 300}), 5000)
        proxy:cmd("stall off")
        assert_kind("TimeoutError", err)
        assert.is_true(elapsed < 2000, elapsed .. " ms")
        assert.equal(0, pool:stats().retries)
        assert.is_true(back_at_size(pool, app, 1))
        pool:close()
        assert.is_true(H.no_backends(app))
      end)
    end)

    it("cancels stuck behind the stall do not hold up the timeout of a healthy connection", function()
      -- PQcancel blocks (libpq 15: no timeout) in libuv's thread pool (UV_THREADPOOL_SIZE
      -- threads, 4 by default). Cancels that wait on the stalled proxy must not keep the
      -- cancel of a query on a healthy server from being sent.
      with_proxy(function(proxy, app, new_pool)
        local threads = tonumber(os.getenv("UV_THREADPOOL_SIZE")) or 4
        local stalled = new_pool{size = threads}
        local direct = new_pool{dsn = H.dsn .. " application_name=" .. app .. "_direct", size = 1}
        stalled:connect():await()
        direct:connect():await()
        assert.equal("ok stall=on", proxy:cmd("stall on"))
        local fs = {}
        for i = 1, threads do fs[i] = stalled:execute("SELECT 1", nil, {timeout = 200}) end
        assert.is_true(H.wait_until(function() return stalled:stats().busy == threads end, 1000))
        momoko.sleep(300):await() -- their timeouts fired: their cancels hang in the stall
        local t0 = now_ms()
        local err, elapsed = failure_within(direct:execute("SELECT pg_sleep(3)", nil, {timeout = 300}), 3000, t0)
        proxy:cmd("stall off")
        for i = 1, threads do -- timed out, or answered once the stall ended
          local ok, res = settle(fs[i], 3000)
          if not ok then assert_kind("TimeoutError", res) end
        end
        assert_kind("TimeoutError", err)
        assert.matches("canceled on the server", err.message, 1, true)
        assert.is_true(elapsed < 1000, elapsed .. " ms")
        assert.equal(0, direct:stats().reconnects)
      end)
    end)

    it("acquire_timeout: the next request fails with TimeoutError while the only connection is stalled-busy", function()
      with_proxy(function(proxy, app, new_pool)
        local pool = new_pool{size = 1, acquire_timeout = 200}
        pool:connect():await()
        local pid = pids_of(app)[1]
        assert.equal("ok stall=on", proxy:cmd("stall on"))
        local busy = pool:execute("SELECT $1::text", {"busy"})
        local t0 = now_ms()
        local err, elapsed = failure_within(pool:execute("SELECT 2"), 2000, t0)
        assert_kind("TimeoutError", err)
        assert.matches("acquire_timeout", err.message, 1, true)
        assert.is_true(elapsed >= 200 and elapsed < 1500, elapsed .. " ms")
        local s = pool:stats()
        assert.equal(1, s.timeouts)
        assert.equal(1, s.busy)
        assert.equal(0, s.waiting)
        assert.is_false(busy:done())
        assert.equal("ok stall=off", proxy:cmd("stall off"))
        -- the held bytes go through: the stalled request completes, the connection stays
        local ok, cur = settle(busy, 2000)
        assert.is_true(ok, tostring(cur))
        assert.equal("busy", cur:fetchone()[1])
        assert.is_true(back_at_size(pool, app, 1))
        assert.same({pid}, pids_of(app))
        local fs = {}
        for i = 1, 4 do fs[i] = pool:execute("SELECT $1::int", {i}) end
        for i, c in ipairs(momoko.all(fs):await()) do assert.equal(i, c:fetchone()[1]) end
        s = pool:stats()
        assert.equal(1, s.timeouts)
        assert.equal(0, s.reconnects)
        pool:close()
        assert.is_true(H.no_backends(app))
      end)
    end)
  end)

  describe("delay 20", function()
    it("200 concurrent requests over 4 connections each get their own answer", function()
      with_proxy(function(proxy, app, new_pool)
        local pool = new_pool{size = 4}
        pool:connect():await()
        local pids = {}
        for _, pid in ipairs(pids_of(app)) do pids[pid] = true end
        assert.equal("ok delay=20", proxy:cmd("delay 20"))
        local fs = {}
        for i = 1, 200 do
          fs[i] = momoko.spawn(function()
            local row = pool:execute("SELECT $1::int, $2::text, pg_backend_pid()", {i, "req-" .. i}):await():fetchone()
            return {row[1], row[2], row[3]}
          end)
        end
        local all = momoko.all(fs)
        local ok, res = settle(all, 30000)
        assert.is_true(ok, tostring(res))
        local used = {}
        for i, r in ipairs(res) do
          assert.same({i, "req-" .. i}, {r[1], r[2]})
          assert.is_true(pids[r[3]], "answered by a backend not of the pool")
          used[r[3]] = true
        end
        local n = 0
        for _ in pairs(used) do n = n + 1 end
        assert.equal(4, n)
        local s = pool:stats()
        assert.equal(4, s.size)
        assert.equal(0, s.retries)
        assert.equal(0, s.reconnects)
        assert.is_true(s.acquired >= 200)
        proxy:cmd("delay 0")
        pool:close()
        assert.is_true(H.no_backends(app))
      end)
    end)
  end)

  describe("smoke workload", function()
    for _, via in ipairs{"direct", "proxy"} do
      it("connect, execute, transaction, getconn/putconn pass " .. via, function()
        with_proxy(function(proxy, app, new_pool)
          local dsn = via == "proxy" and proxy.dsn
            or H.dsn .. " connect_timeout=" .. CONNECT_TIMEOUT .. " application_name=" .. app
          local tag = "smoke_" .. via
          -- a connection of its own
          local conn = momoko.connect(dsn):await()
          assert.equal("a", conn:execute("SELECT $1::text", {"a"}):await():fetchone()[1])
          conn:close()
          assert.is_true(H.no_backends(app))
          -- a pool
          local pool = new_pool{dsn = dsn, size = 2}
          assert.equal(pool, pool:connect():await())
          assert.equal(2, H.backends(app))
          assert.equal("x", pool:execute("SELECT :name::text", {name = "x"}):await():fetchone()[1])
          assert.equal(42, pool:execute("SELECT $1::int + 1", {41}):await():fetchone()[1])
          local res = pool:transaction{
            {"INSERT INTO " .. tbl .. " (tag) VALUES ($1)", {tag}},
            {"INSERT INTO " .. tbl .. " (tag) VALUES ($1)", {tag}},
            {"SELECT count(*) FROM " .. tbl .. " WHERE tag = $1", {tag}},
          }:await()
          assert.equal(3, #res)
          assert.equal(2, res[3]:fetchone()[1])
          local c = pool:getconn():await()
          c:execute("BEGIN"):await()
          c:execute("INSERT INTO " .. tbl .. " (tag) VALUES ($1)", {tag}):await()
          pool:putconn(c) -- its open transaction is rolled back
          do
            local c2 <close> = pool:getconn():await()
            assert.equal(2, c2:execute("SELECT count(*) FROM " .. tbl .. " WHERE tag = $1", {tag}):await():fetchone()[1])
          end
          local fs = {}
          for i = 1, 10 do fs[i] = pool:execute("SELECT $1::int * 2", {i}) end
          for i, r in ipairs(momoko.all(fs):await()) do assert.equal(i * 2, r:fetchone()[1]) end
          assert.is_true(back_at_size(pool, app, 2))
          local s = pool:stats()
          assert.equal(0, s.retries)
          assert.equal(0, s.reconnects)
          pool:close()
          assert.is_true(H.no_backends(app))
          assert.equal(2, rows(tag))
          if via == "proxy" then
            assert.equal(3, proxy:stats().accepted)
          else
            assert.equal(0, proxy:stats().accepted)
          end
        end)
      end)
    end
  end)
end)
