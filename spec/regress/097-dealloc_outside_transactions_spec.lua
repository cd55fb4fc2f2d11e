-- Regression: the statement cache sent the DEALLOCATE of an entry it pushed out right
-- away, also inside the user's transaction block. When the server no longer had the
-- statement (the user ran DEALLOCATE ALL or DISCARD ALL), that DEALLOCATE failed and
-- aborted the user's transaction: its next statement failed with 25P02. DEALLOCATEs now
-- wait until the connection is out of the block.
local momoko = require "momoko"
local H = require "helper"

local prepared = H.prepared_count

describe("regress 097: the statement cache deallocates only outside a transaction block", function()
  for _, pipeline in ipairs({false, true}) do
    it("a user's transaction survives the eviction of a statement the server dropped (pipeline " .. tostring(pipeline) .. ")", function()
      local dsn, app = H.app_dsn("r097")
      local conn = momoko.connect(dsn, {pipeline = pipeline, statement_cache_size = 1}):await()
      H.close_after(conn, app, function()
        for _ = 1, 2 do conn:execute("SELECT $1::int AS a", {1}):await() end -- A prepared
        assert.equal(1, prepared(conn))
        conn:execute("DEALLOCATE ALL"):await() -- behind the cache's back
        conn:execute("BEGIN"):await()
        assert.equal(2, conn:execute("SELECT $1::int AS b", {2}):await():fetchone()[1]) -- pushes A out
        assert.equal(5, conn:execute("SELECT 5"):await():fetchone()[1])
        assert.equal("intrans", conn.transaction_status)
        conn:execute("COMMIT"):await() -- A's DEALLOCATE goes now, behind the COMMIT
        -- the DEALLOCATE of A went after the COMMIT, and failed there harmlessly
        assert.equal(3, conn:execute("SELECT $1::int AS b", {3}):await():fetchone()[1])
        assert.equal(3, conn:execute("SELECT $1::int AS b", {3}):await():fetchone()[1])
        assert.equal(1, prepared(conn))
        assert.equal("idle", conn.transaction_status)
      end)
    end)

    it("a statement pushed out inside a transaction is deallocated after it (pipeline " .. tostring(pipeline) .. ")", function()
      local dsn, app = H.app_dsn("r097b")
      local conn = momoko.connect(dsn, {pipeline = pipeline, statement_cache_size = 1}):await()
      H.close_after(conn, app, function()
        for _ = 1, 2 do conn:execute("SELECT $1::int AS a", {1}):await() end
        conn:execute("BEGIN"):await()
        conn:execute("SELECT $1::int AS b", {2}):await() -- pushes A out
        assert.equal(1, prepared(conn)) -- A is still there: its DEALLOCATE waits
        conn:execute("ROLLBACK"):await()
        conn:execute("SELECT 1"):await()
        assert.equal(0, prepared(conn))
      end)
    end)
  end
end)
