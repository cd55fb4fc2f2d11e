-- API §8 "LISTEN/NOTIFY": conn:listen/unlisten/notify and pool:listen/unlisten/notify.
-- Notifications come from psql (another client) or from a second momoko connection;
-- the pool's listener is killed with pg_terminate_backend and by a server restart.
local momoko = require "momoko"
local H = require "helper"

local PGCTL = os.getenv("MOMOKO_TEST_PGCTL")

local function pgctl(args)
  return os.execute(PGCTL .. " " .. args .. " >/dev/null 2>&1") == true
end

describe("conn:listen", function()
  local reported = H.collect_reports()

  it("delivers a NOTIFY from psql while idle, with channel, payload and pid", function()
    local dsn, app = H.app_dsn("listen_idle")
    local conn = momoko.connect(dsn):await()
    H.close_after(conn, app, function()
      local got = {}
      conn:listen("ch_idle", function(...) got[#got + 1] = table.pack(...) end):await()
      local pid = tonumber(H.psql("NOTIFY ch_idle, 'x'; SELECT pg_backend_pid()"))
      assert.is_true(H.wait_until(function() return #got == 1 end, 5000))
      assert.same({ n = 3, "ch_idle", "x", pid }, got[1])
      assert.is_true(conn:notify("ch_idle"):await() ~= nil)
      assert.is_true(H.wait_until(function() return #got == 2 end, 5000))
      assert.same({ n = 3, "ch_idle", "", conn.pid }, got[2])
      assert.same({}, reported)
    end)
  end)

  it("delivers between the results of a 50-deep pipeline", function()
    local conn, app = H.pipelined_connection({}, "listen_pipe")
    H.close_after(conn, app, function()
      local finished, at = 0, nil
      conn:listen("ch_pipe", function() at = finished end):await()
      local futures = {}
      for i = 1, 50 do
        futures[i] = conn:execute("SELECT pg_sleep(0.01)")
        futures[i]:add_done_callback(function() finished = finished + 1 end)
      end
      futures[1]:await()
      H.psql("NOTIFY ch_pipe, 'mid'")
      for i = 1, 50 do futures[i]:await() end
      assert.equal(50, finished)
      assert.is_not_nil(at, "the notification was not delivered")
      assert.is_true(at >= 1 and at < 50, "delivered after " .. tostring(at) .. " results")
    end)
  end)

  it("delivers a notification read in one go with later results before those results", function()
    -- The session notifies itself from request 26 of a pipeline of 50: the server sends
    -- the notification right after that request's result. The loop is blocked until all
    -- 50 answers wait in the socket, so one read takes them all: the notification must
    -- still come out between result 26 and result 27, not after the last one.
    local conn, app = H.pipelined_connection({}, "listen_batch")
    H.close_after(conn, app, function()
      local finished, at = 0, nil
      conn:listen("ch_batch", function() at = finished end):await()
      local futures = {}
      for i = 1, 50 do
        futures[i] = conn:execute(i == 26 and "SELECT pg_notify('ch_batch', 'x')" or "SELECT 1")
        futures[i]:add_done_callback(function() finished = finished + 1 end)
      end
      os.execute("sleep 0.3") -- the loop does not run: every answer piles up unread
      for i = 1, 50 do futures[i]:await() end
      assert.equal(50, finished)
      -- (25: libpq parsed it while taking result 26, whose request ends at its sync)
      assert.is_true(at == 25 or at == 26, "delivered after " .. tostring(at) .. " results")
    end)
  end)

  it("takes any string as channel: quotes, spaces, unicode", function()
    local dsn, app = H.app_dsn("listen_names")
    local conn = momoko.connect(dsn):await()
    local sender = momoko.connect(H.dsn):await()
    H.close_after(conn, app, function()
      local names = { 'a "quoted" name', "with spaces", "ünïcødé ✓", "Upper", "x'; DROP TABLE y; --" }
      local got = {}
      for _, name in ipairs(names) do
        conn:listen(name, function(ch, payload) got[ch] = payload end):await()
      end
      for i, name in ipairs(names) do sender:notify(name, "p" .. i):await() end
      assert.is_true(H.wait_until(function()
        for _, name in ipairs(names) do if got[name] == nil then return false end end
        return true
      end, 5000))
      for i, name in ipairs(names) do assert.equal("p" .. i, got[name]) end
      local listened = conn:execute("SELECT pg_listening_channels() ORDER BY 1"):await():fetchall()
      assert.equal(#names, #listened)
      sender:close()
    end)
  end)

  it("raises InterfaceError at the call for a bad channel, handler or payload", function()
    local dsn, app = H.app_dsn("listen_bad")
    local conn = momoko.connect(dsn):await()
    H.close_after(conn, app, function()
      local fn = function() end
      assert.matches("channel must be a string", H.interface_error(conn.listen, conn, 42, fn).message)
      assert.matches("channel must be a string", H.interface_error(conn.listen, conn, nil, fn).message)
      assert.matches("NUL byte", H.interface_error(conn.listen, conn, "a\0b", fn).message)
      assert.matches("fn must be a function", H.interface_error(conn.listen, conn, "ch").message)
      assert.matches("channel must be a string", H.interface_error(conn.unlisten, conn, {}).message)
      assert.matches("channel must be a string", H.interface_error(conn.notify, conn, 1).message)
      assert.matches("payload must be", H.interface_error(conn.notify, conn, "ch", 5).message)
      -- nothing was listened to, and the connection is fine
      assert.equal(0, #conn:execute("SELECT pg_listening_channels()"):await():fetchall())
    end)
  end)

  it("routes a raising handler to on_error and keeps delivering", function()
    local dsn, app = H.app_dsn("listen_raise")
    local conn = momoko.connect(dsn):await()
    H.close_after(conn, app, function()
      local got = {}
      conn:listen("ch_raise", function(_, payload)
        got[#got + 1] = payload
        if payload == "1" then error("handler failed") end
        if payload == "2" then conn:execute("SELECT 1/0"):await() end
      end):await()
      H.psql("NOTIFY ch_raise, '1'")
      assert.is_true(H.wait_until(function() return #reported == 1 end, 5000))
      assert.matches("handler failed", tostring(reported[1]))
      H.psql("NOTIFY ch_raise, '2'")
      assert.is_true(H.wait_until(function() return #reported == 2 end, 5000))
      H.assert_kind("DataError", reported[2])
      H.psql("NOTIFY ch_raise, '3'")
      assert.is_true(H.wait_until(function() return #got == 3 end, 5000))
      assert.same({ "1", "2", "3" }, got)
      assert.equal(2, #reported)
    end)
  end)

  it("runs each handler in a coroutine of its own", function()
    local dsn, app = H.app_dsn("listen_co")
    local conn = momoko.connect(dsn):await()
    H.close_after(conn, app, function()
      local started, ended, threads = {}, {}, {}
      conn:listen("ch_co", function(_, payload)
        threads[#threads + 1] = coroutine.running()
        started[#started + 1] = payload
        if payload == "slow" then momoko.sleep(500):await() end
        ended[#ended + 1] = payload
      end):await()
      H.psql("NOTIFY ch_co, 'slow'; NOTIFY ch_co, 'fast'")
      assert.is_true(H.wait_until(function() return #ended == 1 end, 400))
      assert.same({ "slow", "fast" }, started)
      assert.same({ "fast" }, ended)
      assert.are_not.equal(threads[1], threads[2])
      assert.is_true(H.wait_until(function() return #ended == 2 end, 2000))
      assert.same({ "fast", "slow" }, ended)
    end)
  end)

  it("stops delivering after unlisten", function()
    local dsn, app = H.app_dsn("listen_un")
    local conn = momoko.connect(dsn):await()
    H.close_after(conn, app, function()
      local got = {}
      conn:listen("ch_a", function(ch, p) got[#got + 1] = ch .. p end):await()
      conn:listen("ch_b", function(ch, p) got[#got + 1] = ch .. p end):await()
      conn:unlisten("ch_a"):await()
      assert.same({ { "ch_b" } }, conn:execute("SELECT pg_listening_channels()"):await():fetchall())
      H.psql("NOTIFY ch_a, '1'; NOTIFY ch_b, '2'")
      assert.is_true(H.wait_until(function() return #got >= 1 end, 5000))
      momoko.sleep(100):await()
      assert.same({ "ch_b2" }, got)
    end)
  end)

  it("lets a handler close its connection: later notifications are dropped", function()
    local dsn, app = H.app_dsn("listen_close")
    local conn = momoko.connect(dsn):await()
    local got = {}
    conn:listen("ch_close", function(_, p)
      got[#got + 1] = p
      conn:close()
    end):await()
    -- one transaction: both arrive in one packet, the second after the close
    H.psql("BEGIN; NOTIFY ch_close, '1'; NOTIFY ch_close, '2'; COMMIT")
    assert.is_true(H.wait_until(function() return conn.closed end, 5000))
    momoko.sleep(50):await()
    assert.same({ "1" }, got)
    assert.is_true(H.no_backends(app))
    assert.same({}, reported)
    H.assert_loop_usable()
  end)

  it("replaces the handler when a channel is listened to again", function()
    local dsn, app = H.app_dsn("listen_again")
    local conn = momoko.connect(dsn):await()
    H.close_after(conn, app, function()
      local got = {}
      conn:listen("ch_again", function() got[#got + 1] = "old" end):await()
      conn:listen("ch_again", function() got[#got + 1] = "new" end):await()
      H.psql("NOTIFY ch_again")
      assert.is_true(H.wait_until(function() return #got >= 1 end, 5000))
      momoko.sleep(50):await()
      assert.same({ "new" }, got)
    end)
  end)

  it("is refused on a pool's connection", function()
    local dsn, app = H.app_dsn("listen_lent")
    local pool = momoko.Pool{ dsn = dsn, size = 1 }
    pool:connect():await()
    H.close_after(pool, app, function()
      local conn = pool:getconn():await()
      assert.matches("pool:listen", H.interface_error(conn.listen, conn, "ch", function() end).message)
      pool:putconn(conn)
    end)
  end)
end)

describe("pool:listen", function()
  local reported = H.collect_reports()

  -- The pid of app's backend that listens (pg_stat_activity shows LISTEN as its last query).
  local function listener_pid(app)
    return tonumber(H.psql("SELECT pid FROM pg_stat_activity WHERE application_name = '" .. app ..
      "' AND query LIKE 'LISTEN%'"))
  end

  it("listens on one connection of its own, not counted in the pool", function()
    local dsn, app = H.app_dsn("plisten")
    local pool = momoko.Pool{ dsn = dsn, size = 2 }
    pool:connect():await()
    H.close_after(pool, app, function()
      local got = {}
      pool:listen("p_one", function(ch, p, pid) got[#got + 1] = { ch, p, pid } end):await()
      pool:listen("p_two", function(ch, p) got[#got + 1] = { ch, p } end):await()
      assert.equal(3, H.backends(app))
      local st = pool:stats()
      assert.equal(2, st.size)
      assert.equal(2, st.free)
      assert.equal(0, st.busy)
      pool:notify("p_one", "a"):await()
      assert.is_true(H.wait_until(function() return #got == 1 end, 5000))
      assert.equal("p_one", got[1][1])
      assert.equal("a", got[1][2])
      assert.is_not_nil(got[1][3])
      pool:unlisten("p_one"):await()
      pool:notify("p_one", "b"):await()
      pool:notify("p_two", "c"):await()
      assert.is_true(H.wait_until(function() return #got == 2 end, 5000))
      assert.same({ "p_two", "c" }, got[2])
    end)
  end)

  it("reopens a terminated listener, listens again and calls on_reconnect", function()
    local dsn, app = H.app_dsn("plisten_kill")
    local pool = momoko.Pool{ dsn = dsn, size = 1, reconnect_interval = 50 }
    pool:connect():await()
    H.close_after(pool, app, function()
      local got, reconnected = {}, {}
      local opts = { on_reconnect = function(ch) reconnected[#reconnected + 1] = ch end }
      pool:listen("k_one", function(_, p) got[#got + 1] = p end, opts):await()
      pool:listen("k two", function(_, p) got[#got + 1] = p end, opts):await()
      local pid = listener_pid(app)
      assert.is_not_nil(pid)
      H.psql("SELECT pg_terminate_backend(" .. pid .. ")")
      assert.is_true(H.wait_until(function() return #reconnected == 2 end, 5000))
      table.sort(reconnected)
      assert.same({ "k two", "k_one" }, reconnected)
      local newpid = listener_pid(app)
      assert.is_not_nil(newpid)
      assert.are_not.equal(pid, newpid)
      assert.equal(2, H.backends(app)) -- the pool's connection and one listener
      H.psql([[NOTIFY k_one, 'after'; NOTIFY "k two", 'after2']])
      assert.is_true(H.wait_until(function() return #got == 2 end, 5000))
      table.sort(got)
      assert.same({ "after", "after2" }, got)
      assert.same({}, reported)
    end)
  end)

  it("survives a server restart", function()
    local dsn, app = H.app_dsn("plisten_restart")
    local pool = momoko.Pool{ dsn = dsn, size = 1, reconnect_interval = 100 }
    pool:connect():await()
    local ok, err = pcall(function()
      local got, reconnected = {}, 0
      pool:listen("r_ch", function(_, p) got[#got + 1] = p end,
        { on_reconnect = function() reconnected = reconnected + 1 end }):await()
      assert(pgctl("stop -m fast"), "pg_ctl stop failed")
      momoko.sleep(300):await()
      assert(pgctl("start"), "pg_ctl start failed")
      assert.is_true(H.wait_until(function() return reconnected == 1 end, 10000))
      assert.equal(1, tonumber(H.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" ..
        app .. "' AND query LIKE 'LISTEN%'")))
      H.psql("NOTIFY r_ch, 'back'")
      assert.is_true(H.wait_until(function() return #got == 1 end, 5000))
      assert.same({ "back" }, got)
    end)
    if not pgctl("status") then pgctl("start") end
    pool:close()
    assert.is_true(H.no_backends(app))
    if not ok then error(err, 0) end
  end)

  it("pool:close() closes the listener", function()
    local dsn, app = H.app_dsn("plisten_close")
    local pool = momoko.Pool{ dsn = dsn, size = 1 }
    pool:connect():await()
    pool:listen("c_ch", function() end):await()
    assert.matches("channel must be a string", H.interface_error(pool.listen, pool, 1, function() end).message)
    assert.matches("fn must be", H.interface_error(pool.listen, pool, "c_ch").message)
    assert.matches("on_reconnect", H.interface_error(pool.listen, pool, "c_ch", function() end, { on_reconnect = 1 }).message)
    assert.matches("channel must be", H.interface_error(pool.notify, pool, false).message)
    assert.equal(2, H.backends(app))
    pool:close()
    assert.is_true(H.no_backends(app))
    assert.matches("closed", H.interface_error(pool.listen, pool, "c_ch", function() end).message)
    do
      local scoped <close> = momoko.Pool{ dsn = dsn, size = 1 }
      scoped:connect():await()
      scoped:listen("c_ch", function() end):await()
      assert.equal(2, H.backends(app))
    end
    assert.is_true(H.no_backends(app))
  end)
end)
