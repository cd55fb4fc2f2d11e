-- Regression (statement cache review): in pipeline mode a request whose cached statement
-- the server no longer had (26000 after DEALLOCATE ALL) or whose plan went stale (0A000
-- after ALTER TABLE) failed with that error instead of running again, whenever requests
-- sent after it were still in the pipeline: the re-run needs the session to be outside a
-- transaction, and libpq's PQtransactionStatus says "active" until every request of the
-- pipeline is done. The same hid a failed PREPARE's syntax error behind 26000 for the
-- runs sent behind it. Now such a request waits until the pipeline is empty, and is then
-- run again or failed by the transaction status libpq reports. (The last case passes with
-- and without the fix: it pins the rule the wait keeps, no re-run inside a transaction.)
local momoko = require "momoko"
local H = require "helper"

local failure, assert_kind = H.failure, H.assert_kind

local function connect()
  local dsn, app = H.app_dsn("r095")
  return momoko.Connection({dsn = dsn, pipeline = true}):connect():await(), app
end

local prepared = H.prepared_count

describe("regress 095: pipeline mode re-runs a request whose cached statement went away", function()
  it("after DEALLOCATE ALL: 8 requests at once all succeed, in order", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local sql = "SELECT $1::int * 10"
      for i = 1, 3 do assert.equal(i * 10, conn:execute(sql, {i}):await():fetchone()[1]) end
      assert.equal(1, prepared(conn))
      conn:execute("DEALLOCATE ALL"):await()
      local fs = {}
      for i = 1, 8 do fs[i] = conn:execute(sql, {i}) end
      for i = 1, 8 do assert.equal(i * 10, fs[i]:await():fetchone()[1]) end
      assert.equal("idle", conn.transaction_status)
      assert.equal(1, prepared(conn))
    end)
  end)

  it("after ALTER TABLE: 6 requests at once all succeed and show the new column", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      conn:execute("CREATE TEMP TABLE r095 (id int, a text)"):await()
      conn:execute("INSERT INTO r095 VALUES (1, 'x')"):await()
      local sql = "SELECT * FROM r095 WHERE id = $1"
      for _ = 1, 3 do conn:execute(sql, {1}):await() end
      conn:execute("ALTER TABLE r095 ADD COLUMN b int DEFAULT 5"):await()
      local fs = {}
      for i = 1, 6 do fs[i] = conn:execute(sql, {1}) end
      for i = 1, 6 do
        local cur = fs[i]:await()
        assert.same({1, "x", 5}, cur:fetchone())
        assert.equal(3, #cur.description)
      end
      assert.equal(1, prepared(conn)) -- the stale one deallocated, the new one prepared
    end)
  end)

  it("a PREPARE that fails: every run sent at once reports the syntax error", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local fs = {}
      for i = 1, 5 do fs[i] = conn:execute("SELECT $1::int FROM WHERE", {i}) end
      for i = 1, 5 do
        local err = failure(fs[i])
        assert_kind("ProgrammingError", err)
        assert.equal("42601", err.sqlstate)
      end
      assert.equal(0, prepared(conn))
    end)
  end)

  it("inside the user's transaction block it does not run again", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local sql = "SELECT $1::int + 1"
      for i = 1, 3 do conn:execute(sql, {i}):await() end
      conn:execute("DEALLOCATE ALL"):await()
      local fb, f1, f2 = conn:execute("BEGIN"), conn:execute(sql, {1}), conn:execute(sql, {2})
      fb:await()
      local e1, e2 = failure(f1), failure(f2)
      -- both failed at Bind (26000 comes before the aborted block's 25P02): a re-run in the
      -- failed block would have given 25P02
      assert.equal("26000", e1.sqlstate)
      assert.equal("26000", e2.sqlstate)
      assert.equal("inerror", conn.transaction_status)
      conn:execute("ROLLBACK"):await()
      assert.equal(3, conn:execute(sql, {2}):await():fetchone()[1])
      assert.equal("idle", conn.transaction_status)
    end)
  end)
end)
