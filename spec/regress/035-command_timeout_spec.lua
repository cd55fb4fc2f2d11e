-- New option command_timeout (API §3, §6): the default per-query timeout (ms) of every
-- request of a Connection or Pool. A request's own opts.timeout wins, and
-- opts.timeout = 0 means no timeout for that request.
local momoko = require "momoko"
local H = require "helper"

-- The backends of app that are running a statement containing text.
local function running(app, text)
  return tonumber(H.psql(string.format(
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s' AND state = 'active' AND query LIKE '%%%s%%'",
    app, text)))
end

local function timeout_error(f)
  local err = H.failure(f)
  H.assert_kind("TimeoutError", err)
  return err
end

describe("regress 035: command_timeout", function()
  it("is checked as a non-negative integer (ms) for Connection and Pool", function()
    for _, bad in ipairs({-1, 1.5, "100", true, 2 ^ 31}) do
      local err = H.error_of(momoko.Connection, H.dsn, {command_timeout = bad})
      H.assert_kind("InterfaceError", err)
      assert.matches("command_timeout", err.message)
      err = H.error_of(momoko.Pool, {dsn = H.dsn, command_timeout = bad})
      H.assert_kind("InterfaceError", err)
      assert.matches("command_timeout", err.message)
    end
    momoko.Connection(H.dsn, {command_timeout = 0}):close()
    momoko.Pool{dsn = H.dsn, command_timeout = 0x7fffffff}:close()
  end)

  it("times out a Connection's requests; a request's own timeout wins", function()
    local dsn, app = H.app_dsn("regress_035c")
    local conn = momoko.connect(dsn, {command_timeout = 150}):await()
    local ok, err = pcall(function()
      local err1 = timeout_error(conn:execute("SELECT pg_sleep(3) /* r035 slow */"))
      assert.matches("150 ms", err1.message)
      -- cancelled on the server, and the connection goes on
      assert.is_true(H.wait_until(function() return running(app, "r035 slow") == 0 end, 3000))
      assert.is_false(conn.closed)
      -- its own longer timeout, and 0 for none
      local cur = conn:execute("SELECT pg_sleep(0.4), 1", nil, {timeout = 5000}):await()
      assert.equal(1, cur:fetchone()[2])
      cur = conn:execute("SELECT pg_sleep(0.4), 2", nil, {timeout = 0}):await()
      assert.equal(2, cur:fetchone()[2])
      -- a shorter one of its own too
      assert.matches("50 ms", timeout_error(conn:execute("SELECT pg_sleep(3)", nil, {timeout = 50})).message)
      -- callproc, transaction and ping get the default as well
      timeout_error(conn:callproc("pg_sleep", {3}))
      timeout_error(conn:transaction({"SELECT 1", "SELECT pg_sleep(3)"}))
      assert.equal(conn, conn:ping():await())
      assert.same({3}, conn:execute("SELECT 3"):await():fetchone())
    end)
    conn:close()
    assert(ok, err)
  end)

  it("times out a Pool's requests, also on a getconn'd connection", function()
    local dsn, app = H.app_dsn("regress_035p")
    local pool = momoko.Pool{dsn = dsn, size = 2, command_timeout = 150}
    pool:connect():await()
    local ok, err = pcall(function()
      local err1 = timeout_error(pool:execute("SELECT pg_sleep(3) /* r035 pool */"))
      assert.matches("150 ms", err1.message)
      assert.is_true(H.wait_until(function() return running(app, "r035 pool") == 0 end, 3000))
      local cur = pool:execute("SELECT pg_sleep(0.4), 4", nil, {timeout = 5000}):await()
      assert.equal(4, cur:fetchone()[2])
      cur = pool:execute("SELECT pg_sleep(0.4), 5", nil, {timeout = 0}):await()
      assert.equal(5, cur:fetchone()[2])
      local c <close> = pool:getconn():await()
      timeout_error(c:execute("SELECT pg_sleep(3)"))
      assert.equal(6, c:execute("SELECT pg_sleep(0.4), 6", nil, {timeout = 5000}):await():fetchone()[2])
    end)
    pool:close()
    assert(ok, err)
    assert.is_true(H.no_backends(app))
  end)

  it("without command_timeout nothing times out", function()
    local conn = momoko.connect(H.dsn):await()
    assert.equal(7, conn:execute("SELECT pg_sleep(0.4), 7"):await():fetchone()[2])
    conn:close()
  end)
end)
