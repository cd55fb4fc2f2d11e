-- Regression (issue "Foundation", item 6): a replication stream (PGRES_COPY_BOTH) was
-- taken for a COPY TO STDOUT and drained until it ended, which a stream never does: the
-- request never completed and the connection was wedged. Now the request fails with
-- NotSupportedError: momoko ends the stream (CopyDone), drops what the server still
-- sends, and the connection is usable afterwards. Driven for real on a physical
-- replication connection (replication=true, allowed by the test server's pg_hba).
local momoko = require "momoko"
local H = require "helper"

describe("regress 015: a replication stream (COPY BOTH)", function()
  it("fails with NotSupportedError and leaves the connection usable", function()
    local dsn, app = H.app_dsn("r015")
    local conn = momoko.connect(dsn .. " replication=true"):await()
    H.close_after(conn, app, function()
      local sys = conn:execute("IDENTIFY_SYSTEM"):await():fetchone()
      local lsn = sys[3]
      assert.matches("^%x+/%x+$", lsn)
      local f = conn:execute("START_REPLICATION " .. lsn)
      assert.is_true(H.wait_until(function() return f:done() end, 5000), "the stream wedged the request")
      local e = H.failure(f)
      H.assert_kind("NotSupportedError", e)
      assert.matches("COPY BOTH", e.message, 1, true)
      assert.is_false(conn.closed)
      local again = conn:execute("IDENTIFY_SYSTEM"):await():fetchone()
      assert.equal(sys[1], again[1])
    end)
  end)
end)
