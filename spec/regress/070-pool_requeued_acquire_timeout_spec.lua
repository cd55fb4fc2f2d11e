-- Regression (review, item 7): a pool waiter that went back to the queue lost its
-- acquire_timeout. Handing a waiter a connection stopped (closed) its timer; a request
-- replayed after its connection died, or a getconn whose ping failed, then waited
-- without limit on a saturated pool. Now the time a waiter spends queued counts, in
-- total, against acquire_timeout: back in the queue it fails with TimeoutError once
-- acquire_timeout of waiting is used up.
-- (A ping that fails is driven through tcproxy: held back, then its connection cut.)
local momoko = require "momoko"
local H = require "helper"
local P = require "tcproxy_helper"

-- The pool's replacement connections are slowed down by their setsession, which
-- sleeps for the seconds in this table: the pool stays saturated meanwhile.
local DELAY = "regress070_delay"

local function set_delay(s)
  H.psql("UPDATE " .. DELAY .. " SET s = " .. s)
end

-- Terminates the backend of app that runs a statement containing marker.
local function kill_running(app, marker)
  return H.wait_until(function()
    return H.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '"
      .. app .. "' AND query LIKE '%" .. marker .. "%' AND pid <> pg_backend_pid()") == "1"
  end, 3000)
end

local function slow_pool(app_prefix, extra)
  local dsn, app = H.app_dsn(app_prefix)
  local opts = {dsn = dsn, size = 1, max_size = 1, acquire_timeout = 300,
    setsession = {"SELECT pg_sleep(s) FROM " .. DELAY}}
  for k, v in pairs(extra or {}) do opts[k] = v end
  return momoko.Pool(opts), app
end

describe("regress 070: a re-queued pool waiter keeps acquire_timeout", function()
  lazy_setup(function()
    H.psql("DROP TABLE IF EXISTS " .. DELAY .. "; CREATE TABLE " .. DELAY .. " (s float8); INSERT INTO "
      .. DELAY .. " VALUES (0)")
  end)
  lazy_teardown(function()
    H.psql("DROP TABLE IF EXISTS " .. DELAY)
  end)
  after_each(function() set_delay(0) end)

  it("a replayed request fails with TimeoutError after acquire_timeout", function()
    local pool, app = slow_pool("r070a", {retry = "always"})
    H.close_after(pool, app, function()
      pool:connect():await()
      set_delay(5) -- the replacement of the killed connection takes 5 s
      local t0 = os.time()
      local f = pool:execute("SELECT 'r070_marker', pg_sleep(10)")
      assert.is_true(kill_running(app, "r070_marker"), "the request never ran")
      local err = H.error_of(function() return f:await() end)
      local waited = os.time() - t0
      H.assert_kind("TimeoutError", err)
      assert.matches("acquire_timeout", err.message, 1, true)
      assert.is_true(waited <= 3, "the replayed request waited " .. waited .. " s")
      assert.equal(1, pool:stats().retries)
      assert.equal(1, pool:stats().timeouts)
    end)
  end)

  it("a getconn whose ping failed fails with TimeoutError after acquire_timeout", function()
    -- through the proxy: the ping is held back (stall), then its connection is cut
    -- (drop), so that the ping fails with the connection
    local proxy = P.start()
    local dsn, app = H.app_dsn("r070b")
    dsn = P.rewrite_dsn(dsn, "127.0.0.1", proxy.port)
    local pool = momoko.Pool{dsn = dsn, size = 1, max_size = 1, acquire_timeout = 300,
      setsession = {"SELECT pg_sleep(s) FROM " .. DELAY}}
    H.close_after(pool, app, function()
      pool:connect():await()
      momoko.sleep(1100):await() -- idle for over a second: getconn pings first
      set_delay(5)
      assert.equal("ok stall=on", proxy:cmd("stall on"))
      local t0 = os.time()
      local f = pool:getconn{ping = true}
      assert.equal("ok dropped=1", proxy:cmd("drop"))
      assert.equal("ok stall=off", proxy:cmd("stall off"))
      local err = H.error_of(function() return f:await() end)
      local waited = os.time() - t0
      H.assert_kind("TimeoutError", err)
      assert.matches("acquire_timeout", err.message, 1, true)
      assert.is_true(waited <= 3, "the getconn waited " .. waited .. " s")
      assert.equal(1, pool:stats().timeouts)
    end)
    proxy:stop()
  end)
end)
