-- Regression (pipeline adversarial review): in pipeline mode a request whose cached
-- statement the server no longer had (26000) waits, parked, until the requests sent
-- after it are done, then runs again (regress 095). A close() or a lost connection in
-- that wait ended it with the cache's own error, `prepared statement "mk_1" does not
-- exist`, instead of "connection closed" / OperationalError like every other request
-- that had not run: the failure it keeps took no effect and is none of the caller's
-- business. Now a parked request ends as one never sent (and may be replayed).
local momoko = require "momoko"
local H = require "helper"

local failure, assert_kind = H.failure, H.assert_kind

-- A pipelined connection whose cached statement sql the server forgot, and two
-- requests: the cached one (parked at once) and a sleeping one sent behind it.
local function parked_pair()
  local dsn, app = H.app_dsn("r098")
  local conn = momoko.connect(dsn, {pipeline = true}):await()
  local sql = "SELECT $1::int * 10"
  for i = 1, 3 do assert.equal(i * 10, conn:execute(sql, {i}):await():fetchone()[1]) end
  conn:execute("DEALLOCATE ALL"):await()
  local cached = conn:execute(sql, {4})
  local sleeper = conn:execute("SELECT pg_sleep(30), $1::int", {5})
  H.running_pid(app, "pg_sleep(30)") -- the cached one failed on the server by now
  momoko.sleep(100):await() -- and its error was read: it waits, parked
  assert.is_false(cached:done())
  return conn, app, cached, sleeper
end

describe("regress 098: a request parked for a re-run", function()
  it("fails with connection closed when the connection is closed meanwhile", function()
    local conn, app, cached, sleeper = parked_pair()
    conn:close()
    H.assert_closed_error(cached, "cached")
    H.assert_closed_error(sleeper, "sleeper")
    assert.is_true(H.no_backends(app))
  end)

  it("fails with OperationalError, as never sent, when the backend is killed meanwhile", function()
    local conn, app, cached, sleeper = parked_pair()
    H.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '" .. app .. "'")
    local err = failure(cached)
    assert_kind("OperationalError", err)
    assert.is_nil(err.sqlstate)
    assert.matches("before the request was sent", err.message)
    assert_kind("OperationalError", failure(sleeper))
    assert.is_true(conn.closed)
    assert.is_true(H.no_backends(app))
  end)
end)
