-- API §6 "Dead connections and retry": killed backends, a stopped server, a server
-- that is down at connect(), and what each retry policy replays. Each test proves a
-- point where Python's Momoko misbehaves (momoko-behaviour.md §1.4-1.6, §1.11, §1.13):
--
--   Momoko                                        | we do
--   ----------------------------------------------+-----------------------------------------
--   a killed idle backend is noticed only when a  | noticed while idle, reopened at once
--     request fails on it                         |   (stats.reconnects), no request needed
--   dead connections reopened only by a request   | reopened every reconnect_interval while
--     (and "too soon" fails it)                   |   the server is down, by a timer
--   a request is handed a free connection whose   | a free connection's socket is looked at
--     backend died this loop turn (retry wasted)  |   before it is handed out
--   (no pacing: reopen on every request)          | a server refusing new connections is
--                                                 |   asked once per reconnect_interval
--   a whole transaction() replayed after its      | never replayed once BEGIN was sent
--     connection died mid-way                     |
--   every failure on a closed connection replayed | retry = "safe" | "always" | "never"
--   setsession with the server down hangs forever | connect fails, typed, within bounds
--   waiters of a dead pool may hang               | fail with DatabaseNotAvailable
--   close() leaves timers and futures behind      | nothing keeps running after close()
--
-- What "cannot have run" means under retry = "safe" (mk_conn.c, take_result): a
-- request never handed to libpq, sent on a connection that was already broken, or
-- answered with the server ending the session (57P01-57P03) BEFORE any result. That
-- last case includes pg_terminate_backend during a plain statement: the server aborts
-- the statement, rolls it back and answers it with the FATAL 57P01, so the statement
-- is replayed. A request with a result before the FATAL (a multi-statement string),
-- or whose connection just drops (pg_ctl stop -m immediate: the backend only sends a
-- WARNING, then closes) may have run: it fails with OperationalError.
--
-- These specs stop and start the server with $MOMOKO_TEST_PGCTL (scripts/pg-env);
-- after_each starts it again whatever happened, so later specs find it running.
local momoko = require "momoko"
local H = require "helper"

local PGCTL = os.getenv("MOMOKO_TEST_PGCTL")
local RECONNECT = 100 -- reconnect_interval (ms) of the pools below

local function pgctl(args)
  return os.execute(PGCTL .. " " .. args .. " >/dev/null 2>&1") == true
end

local function server_running()
  return pgctl("status")
end

local function stop_server(mode)
  assert(pgctl("stop -m " .. (mode or "fast")), "pg_ctl stop failed")
end

local function start_server()
  assert(pgctl("start"), "pg_ctl start failed")
end

-- Wall clock in milliseconds (momoko has no clock of its own to offer).
local function now_ms()
  local p = assert(io.popen("date +%s%3N"))
  local v = tonumber(p:read("l"))
  p:close()
  return v
end

local failure = H.failure

local assert_kind = H.assert_kind

local closed_port = H.closed_port

local pids_of = H.pids_of

-- Terminates every backend of app; returns how many.
local function kill_all(app)
  return tonumber(H.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '" .. app .. "'"))
end

local function kill(pid)
  assert.equal("t", H.psql("SELECT pg_terminate_backend(" .. pid .. ")"))
end

-- Blocks (the loop does not run) until none of these backends exists any more.
local function gone_blocking(pids)
  local list = table.concat(pids, ",")
  for _ = 1, 500 do
    if H.psql("SELECT count(*) FROM pg_stat_activity WHERE pid IN (" .. list .. ")") == "0" then return true end
  end
  return false
end

local running_pid = H.running_pid

local function back_at_size(pool, app, size, ms)
  return H.wait_until(function()
    local s = pool:stats()
    return s.size == size and s.free == size and s.connecting == 0 and H.backends(app) == size
  end, ms or 5000)
end

describe("pool failures", function()
  local tbl = string.format("h9_pool_failure_%d", math.random(1, 1e9))
  local pools = {}

  -- A pool on a fresh application_name, closed by after_each if the test did not.
  local function new_pool(opts)
    local dsn, app = H.app_dsn("h9pf")
    opts.dsn = opts.dsn or dsn
    opts.reconnect_interval = opts.reconnect_interval or RECONNECT
    local pool = momoko.Pool(opts)
    pools[#pools + 1] = pool
    return pool, app
  end

  local function rows(tag)
    return tonumber(H.psql("SELECT count(*) FROM " .. tbl .. " WHERE tag = '" .. tag .. "'"))
  end

  setup(function()
    assert(PGCTL, "MOMOKO_TEST_PGCTL is not set: run the specs through scripts/test")
    H.psql("CREATE TABLE " .. tbl .. " (id serial PRIMARY KEY, tag text NOT NULL)")
  end)

  after_each(function()
    for i, pool in ipairs(pools) do
      if not pool.closed then pool:close() end
      pools[i] = nil
    end
    if not server_running() then start_server() end
  end)

  teardown(function()
    if not server_running() then start_server() end
    H.psql("DROP TABLE IF EXISTS " .. tbl)
  end)

  describe("killed backends", function()
    it("are noticed while idle and reopened, with no request needed", function()
      local pool, app = new_pool{size = 3}
      pool:connect():await()
      local old = pids_of(app)
      assert.equal(3, #old)
      assert.equal(3, kill_all(app))
      -- no request is made: the pool notices the deaths on its own
      assert.is_true(back_at_size(pool, app, 3))
      local s = pool:stats()
      assert.equal(3, s.reconnects)
      assert.equal(0, s.retries)
      assert.equal(0, s.dead)
      local fresh = pids_of(app)
      for _, pid in ipairs(old) do
        for _, p in ipairs(fresh) do assert.are_not.equal(pid, p) end
      end
      -- the next requests all succeed, on the new backends
      local fs = {}
      for i = 1, 6 do fs[i] = pool:execute("SELECT pg_backend_pid(), $1::int", {i}) end
      for i, cur in ipairs(momoko.all(fs):await()) do
        local row = cur:fetchone()
        assert.equal(i, row[2])
        assert.is_true(row[1] == fresh[1] or row[1] == fresh[2] or row[1] == fresh[3])
      end
      -- getconn (ping off) hands out a live connection too
      local conn = pool:getconn{ping = false}:await()
      assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
      pool:putconn(conn)
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("never hands out a free connection killed in the same loop turn", function()
      local pool, app = new_pool{size = 2}
      pool:connect():await()
      local old = pids_of(app)
      assert.equal(2, kill_all(app))
      -- the backends are gone before the loop could notice: the pool looks at a free
      -- connection's socket before handing it out, so no request meets a dead one
      assert.is_true(gone_blocking(old))
      local fs = {}
      for i = 1, 4 do fs[i] = pool:execute("SELECT $1::int * 10", {i}) end
      for i, cur in ipairs(momoko.all(fs):await()) do assert.equal(i * 10, cur:fetchone()[1]) end
      assert.equal(0, pool:stats().retries)
      assert.is_true(back_at_size(pool, app, 2))
      assert.equal(2, pool:stats().reconnects)
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("runs nothing twice when the kill races a new request", function()
      local pool, app = new_pool{size = 1}
      pool:connect():await()
      -- kill and send at once, ten times. The request meets a socket already closing
      -- (not handed out: waits for the new connection), a backend that answers it with
      -- 57P01 (rolled back: replayed), or a backend that drops it unanswered (may have
      -- run: OperationalError). In every case it ran at most once.
      local ok_count = 0
      for i = 1, 10 do
        assert.equal(1, kill_all(app))
        local ok, res = pcall(function()
          return pool:execute("INSERT INTO " .. tbl .. " (tag) VALUES ('race') RETURNING " .. i):await()
        end)
        if ok then
          ok_count = ok_count + 1
          assert.equal(i, res:fetchone()[1])
        else
          assert_kind("OperationalError", res)
        end
        assert.equal(ok_count, rows("race"))
        assert.is_true(back_at_size(pool, app, 1))
      end
      assert.is_true(pool:stats().retries <= ok_count)
      assert.equal(10, pool:stats().reconnects)
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("reports why on a reserved connection whose backend was killed (57P01, never replayed)", function()
      local pool, app = new_pool{size = 1, retry = "always"}
      pool:connect():await()
      local conn = pool:getconn{ping = false}:await()
      local pid = conn:execute("SELECT pg_backend_pid()"):await():fetchone()[1]
      kill(pid)
      assert.is_true(gone_blocking{pid})
      -- sent on a socket the server closed: the reset that answers it must not hide
      -- the server's last word, which says the request cannot have run
      local err = failure(conn:execute("SELECT 1"))
      assert_kind("OperationalError", err)
      assert.equal("57P01", err.sqlstate)
      assert.is_true(conn.closed)
      assert.equal(0, pool:stats().retries)
      pool:putconn(conn) -- a dead one is replaced
      assert.is_true(back_at_size(pool, app, 1))
      assert.equal(1, pool:stats().reconnects)
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

  end)

  describe("a server refusing new connections", function()
    -- setsession counts attempts in a sequence (not rolled back) and fails while the
    -- block table has a row: new connections fail, open ones keep working
    local seq, block = tbl .. "_seq", tbl .. "_block"
    local setsession = {
      "SELECT nextval('" .. seq .. "')",
      "SELECT 1 / (1 - (SELECT count(*) FROM " .. block .. "))::int"}

    local function attempts() return tonumber(H.psql("SELECT last_value FROM " .. seq)) end

    before_each(function()
      H.psql("DROP SEQUENCE IF EXISTS " .. seq .. "; DROP TABLE IF EXISTS " .. block ..
        "; CREATE SEQUENCE " .. seq .. "; CREATE TABLE " .. block .. " (x int)")
    end)

    after_each(function()
      H.psql("DROP SEQUENCE IF EXISTS " .. seq .. "; DROP TABLE IF EXISTS " .. block)
    end)

    it("is asked again every reconnect_interval while other connections live, not in a loop", function()
      local pool, app = new_pool{size = 2, setsession = setsession}
      pool:connect():await()
      assert.equal(2, attempts())
      H.psql("INSERT INTO " .. block .. " VALUES (1)")
      kill(pids_of(app)[1])
      assert.is_true(H.wait_until(function() return attempts() >= 2 + 1 end, 5000))
      -- watch the loop run freely for three intervals: one attempt per interval
      local a0, t0 = attempts(), now_ms()
      momoko.sleep(3 * RECONNECT):await()
      local n, elapsed = attempts() - a0, now_ms() - t0
      assert.is_true(n >= 1 and n <= elapsed // RECONNECT + 1,
        string.format("%d attempts in %d ms (reconnect_interval %d ms)", n, elapsed, RECONNECT))
      local s = pool:stats()
      assert.equal(1, s.size)
      assert.equal(1, s.dead + s.connecting)
      -- the live connection serves meanwhile
      assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
      H.psql("DELETE FROM " .. block)
      assert.is_true(back_at_size(pool, app, 2))
      assert.equal(1, pool:stats().reconnects)
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("is asked again for a waiting request after a failed growth to max_size", function()
      local pool, app = new_pool{size = 1, max_size = 2, setsession = setsession}
      pool:connect():await()
      H.psql("INSERT INTO " .. block .. " VALUES (1)")
      local busy = pool:execute("SELECT pg_sleep(5)")
      running_pid(app, "pg_sleep")
      local waiter = pool:execute("SELECT 'served'")
      -- the growth for the waiter fails, and is retried
      assert.is_true(H.wait_until(function() return attempts() >= 1 + 2 end, 5000))
      assert.is_false(waiter:done())
      H.psql("DELETE FROM " .. block)
      -- served by a new connection while the first one still sleeps
      assert.equal("served", waiter:await():fetchone()[1])
      assert.is_false(busy:done())
      assert.equal(2, pool:stats().size)
      pool:close()
      assert_kind("InterfaceError", failure(busy))
      assert.is_true(H.no_backends(app))
    end)
  end)

  describe("a request killed while it runs", function()
    -- INSERT ... SELECT pg_sleep: killed mid-statement, nothing of it stays
    local function killed_insert(retry, tag)
      local pool, app = new_pool{size = 1, retry = retry}
      pool:connect():await()
      local f = pool:execute("INSERT INTO " .. tbl .. " (tag) SELECT '" .. tag .. "' FROM pg_sleep(1)")
      local pid = running_pid(app, "pg_sleep")
      kill(pid)
      return pool, app, f
    end

    it("is not replayed under retry = 'never'", function()
      local pool, app, f = killed_insert("never", "never")
      local err = failure(f)
      assert_kind("OperationalError", err)
      assert.equal("57P01", err.sqlstate)
      assert.equal(0, pool:stats().retries)
      assert.equal(0, rows("never"))
      assert.is_true(back_at_size(pool, app, 1))
      assert.equal(0, rows("never"))
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("is replayed once under retry = 'always'", function()
      local pool, app, f = killed_insert("always", "always")
      local cur = f:await()
      assert.equal("INSERT 0 1", cur.statusmessage)
      local s = pool:stats()
      assert.equal(1, s.retries)
      assert.equal(1, rows("always")) -- the killed attempt was rolled back
      assert.is_true(back_at_size(pool, app, 1))
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("is replayed under retry = 'safe' when the server answered it with 57P01 before any result", function()
      local pool, app, f = killed_insert(nil, "safe") -- "safe" is the default
      local cur = f:await()
      assert.equal("INSERT 0 1", cur.statusmessage)
      assert.equal(1, pool:stats().retries)
      assert.equal(1, rows("safe"))
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("is not replayed under retry = 'safe' once a result came before the 57P01", function()
      local pool, app = new_pool{size = 1}
      pool:connect():await()
      -- the INSERT's result arrives, then the kill: may have run, so never replayed
      -- (here the implicit transaction of the statement string rolls it back)
      local f = pool:execute("INSERT INTO " .. tbl .. " (tag) VALUES ('after'); SELECT pg_sleep(1)")
      kill(running_pid(app, "pg_sleep"))
      local err = failure(f)
      assert_kind("OperationalError", err)
      assert.equal("57P01", err.sqlstate)
      assert.equal(0, pool:stats().retries)
      assert.equal(0, rows("after"))
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("is not replayed under retry = 'safe' when the connection just drops", function()
      local pool, app = new_pool{size = 1}
      pool:connect():await()
      local f = pool:execute("INSERT INTO " .. tbl .. " (tag) SELECT 'drop' FROM pg_sleep(5)")
      running_pid(app, "pg_sleep")
      stop_server("immediate") -- the backend sends a WARNING (not a FATAL) and closes
      local t0 = now_ms()
      local err = failure(f)
      assert.is_true(now_ms() - t0 < 1000)
      assert_kind("OperationalError", err) -- not DatabaseNotAvailable: it was not retried
      assert.is_nil(err.sqlstate)
      assert.equal(0, pool:stats().retries)
      start_server()
      assert.equal(0, rows("drop"))
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    for _, retry in ipairs{"safe", "always"} do
      it("inside transaction() is never replayed (retry = '" .. retry .. "'), nothing committed", function()
        local tag = "txn_" .. retry
        local pool, app = new_pool{size = 1, retry = retry}
        pool:connect():await()
        local f = pool:transaction{
          "INSERT INTO " .. tbl .. " (tag) VALUES ('" .. tag .. "')",
          "SELECT pg_sleep(1)",
          "INSERT INTO " .. tbl .. " (tag) VALUES ('" .. tag .. "')",
        }
        kill(running_pid(app, "pg_sleep"))
        local err = failure(f)
        assert_kind("OperationalError", err)
        assert.equal(0, pool:stats().retries)
        assert.equal(0, rows(tag))
        assert.is_true(back_at_size(pool, app, 1))
        assert.equal(1, pool:stats().reconnects)
        -- the pool works on
        assert.equal(2, #pool:transaction{"SELECT 1", "SELECT 2"}:await())
        assert.equal(0, rows(tag))
        pool:close()
        assert.is_true(H.no_backends(app))
      end)
    end
  end)

  describe("a server stopped and started", function()
    it("fails requests fast while down, then recovers on its own", function()
      local pool, app = new_pool{size = 3}
      pool:connect():await()
      local inflight = pool:execute("SELECT pg_sleep(5)")
      running_pid(app, "pg_sleep")
      stop_server("fast")
      -- in flight: answered with 57P01 (rolled back), replayed, and no server to take it
      local t0 = now_ms()
      assert_kind("DatabaseNotAvailable", failure(inflight))
      assert.is_true(now_ms() - t0 < 1000)
      assert.equal(1, pool:stats().retries)
      for i = 1, 3 do
        t0 = now_ms()
        local err = failure(pool:execute("SELECT $1::int", {i}))
        assert.is_true(now_ms() - t0 < 1000, "a request took too long to fail")
        assert_kind("DatabaseNotAvailable", err)
        assert.is_true(momoko.is(err, "PoolError"))
      end
      t0 = now_ms()
      assert_kind("DatabaseNotAvailable", failure(pool:getconn()))
      assert.is_true(now_ms() - t0 < 1000)
      local s = pool:stats()
      assert.equal(0, s.size)
      assert.equal(3, s.dead + s.connecting)
      start_server()
      -- no request: the reconnect timer reopens all of them
      assert.is_true(back_at_size(pool, app, 3, 10000))
      assert.is_true(pool:stats().reconnects >= 3)
      local fs = {}
      for i = 1, 6 do fs[i] = pool:execute("SELECT $1::int", {i}) end
      for i, cur in ipairs(momoko.all(fs):await()) do assert.equal(i, cur:fetchone()[1]) end
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("fails waiting requests and getconn with DatabaseNotAvailable when the only connection dies", function()
      local pool, app = new_pool{size = 1}
      pool:connect():await()
      local busy = pool:execute("SELECT pg_sleep(5)")
      local w1, w2 = pool:execute("SELECT 1"), pool:execute("SELECT 2")
      local g = pool:getconn()
      running_pid(app, "pg_sleep")
      assert.equal(3, pool:stats().waiting)
      stop_server("fast")
      local t0 = now_ms()
      assert_kind("DatabaseNotAvailable", failure(busy))
      assert_kind("DatabaseNotAvailable", failure(w1))
      assert_kind("DatabaseNotAvailable", failure(w2))
      assert_kind("DatabaseNotAvailable", failure(g))
      assert.is_true(now_ms() - t0 < 1000)
      assert.equal(0, pool:stats().waiting)
      start_server()
      assert.is_true(back_at_size(pool, app, 1, 10000))
      assert.equal(3, pool:execute("SELECT 3"):await():fetchone()[1])
      pool:close()
      assert.is_true(H.no_backends(app))
    end)
  end)

  describe("a server down at connect()", function()
    it("fails connect() with PartiallyConnectedError under raise_connect_errors", function()
      stop_server("fast")
      local pool = new_pool{size = 2, dsn = H.dsn .. " connect_timeout=2"}
      local t0 = now_ms()
      local err = failure(pool:connect())
      assert.is_true(now_ms() - t0 < 2500)
      assert_kind("PartiallyConnectedError", err)
      assert.is_true(momoko.is(err, "PoolError"))
      assert.matches("2 of 2 connections", err.message, 1, true)
      pool:close()
    end)

    it("resolves connect() without raise_connect_errors, fails requests, then recovers", function()
      stop_server("fast")
      local pool, app = new_pool{size = 2, raise_connect_errors = false}
      assert.equal(pool, pool:connect():await())
      local s = pool:stats()
      assert.equal(0, s.size)
      assert.equal(2, s.dead + s.connecting)
      local t0 = now_ms()
      assert_kind("DatabaseNotAvailable", failure(pool:execute("SELECT 1")))
      assert_kind("DatabaseNotAvailable", failure(pool:getconn()))
      assert.is_true(now_ms() - t0 < 1000)
      start_server()
      assert.is_true(back_at_size(pool, app, 2, 10000))
      assert.equal(2, pool:stats().reconnects)
      assert.equal(5, pool:execute("SELECT 5"):await():fetchone()[1])
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("fails connect() with PartiallyConnectedError for a closed port", function()
      local pool = new_pool{size = 3,
        dsn = string.format("host=127.0.0.1 port=%d dbname=x user=postgres connect_timeout=2", closed_port())}
      local t0 = now_ms()
      local err = failure(pool:connect())
      assert.is_true(now_ms() - t0 < 2500)
      assert_kind("PartiallyConnectedError", err)
      assert.matches("3 of 3 connections", err.message, 1, true)
      assert_kind("DatabaseNotAvailable", failure(pool:execute("SELECT 1")))
      pool:close()
    end)

    it("with setsession does not hang, and runs setsession once the server is back", function()
      stop_server("fast")
      local t0 = now_ms()
      local err = failure(momoko.connect(H.dsn .. " connect_timeout=2", {setsession = {"SET statement_timeout = '1234ms'"}}))
      assert_kind("OperationalError", err)
      local pool, app = new_pool{size = 2, raise_connect_errors = false, setsession = {"SET statement_timeout = '1234ms'"}}
      local strict = new_pool{size = 2, setsession = {"SET statement_timeout = '1234ms'"}}
      assert_kind("PartiallyConnectedError", failure(strict:connect()))
      strict:close()
      pool:connect():await()
      assert.is_true(now_ms() - t0 < 2500)
      start_server()
      assert.is_true(back_at_size(pool, app, 2, 10000))
      local fs = {}
      for i = 1, 2 do fs[i] = pool:execute("SELECT pg_backend_pid(), current_setting('statement_timeout')") end
      local res = momoko.all(fs):await()
      assert.equal("1234ms", res[1]:fetchone()[2])
      assert.equal("1234ms", res[2]:fetchone()[2])
      pool:close()
      assert.is_true(H.no_backends(app))
    end)
  end)

  describe("close()", function()
    it("with a reconnect pending stops the timer: nothing keeps running", function()
      stop_server("fast")
      local pool, app = new_pool{size = 2, raise_connect_errors = false}
      pool:connect():await()
      assert.is_true(H.wait_until(function()
        local s = pool:stats()
        return s.dead == 2 and s.connecting == 0
      end, 2000))
      pool:close()
      local s = pool:stats()
      assert.equal(0, s.size)
      assert.equal(0, s.connecting)
      assert.equal(0, s.dead)
      assert_kind("PoolError", H.error_of(pool.execute, pool, "SELECT 1"))
      local t0 = now_ms()
      momoko.run() -- returns: no handle of the pool keeps the loop going
      assert.is_true(now_ms() - t0 < 500)
      start_server()
      -- five reconnect intervals with the server up: a live timer would have connected
      assert.is_false(H.wait_until(function() return H.backends(app) > 0 end, 5 * RECONNECT))
    end)
  end)
end)
