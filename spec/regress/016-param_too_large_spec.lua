-- Regression (issue "Foundation", item 6): a parameter of 2 GiB or more was passed to
-- libpq with its length cast to int: cut short or negative (a bytea of 4 GiB + 3 bytes
-- would go out as 3 bytes). mk_req_param now refuses such a length (-2), and the request
-- raises InterfaceError "parameter too large" at the call; nothing is sent and the
-- connection stays usable. The value is 2 GiB + 1 zero bytes, as bytea (Lua's
-- string.rep stops below 2 GiB; io.read does not). tests/core/test_conn.c checks
-- mk_req_param's limit for any length without the memory.
local momoko = require "momoko"
local H = require "helper"

describe("regress 016: a parameter longer than libpq takes", function()
  it("raises InterfaceError at the call; the connection stays usable", function()
    local dsn, app = H.app_dsn("r016")
    local conn = momoko.connect(dsn):await()
    H.close_after(conn, app, function()
      local e
      do
        local f = assert(io.open("/dev/zero", "rb"))
        local big = assert(f:read(2 ^ 31 + 1))
        f:close()
        assert.equal(2 ^ 31 + 1, #big)
        e = H.error_of(conn.execute, conn, "SELECT length($1)", {momoko.bytea(big)})
      end
      collectgarbage()
      collectgarbage()
      H.assert_kind("InterfaceError", e)
      assert.matches("parameter too large", e.message, 1, true)
      assert.is_false(conn.closed)
      assert.equal(3, conn:execute("SELECT length($1)", {momoko.bytea("a\0b")}):await():fetchone()[1])
    end)
  end)
end)
