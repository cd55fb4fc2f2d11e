-- Regression: pool:getconn{ping = "no"} was taken as ping = true (any value but nil and
-- false was), so a misspelt or mistyped option silently did the opposite of what was
-- meant. opts.ping must be a boolean now, as opts.readonly must; anything else is an
-- InterfaceError at the call, and nothing is reserved.
local momoko = require "momoko"
local H = require "helper"

describe("regress 172: getconn's opts.ping must be a boolean", function()
  it("refuses a string or a number, reserving nothing", function()
    local dsn, app = H.app_dsn("regress_172")
    local pool = momoko.Pool{dsn = dsn, size = 1}
    pool:connect():await()
    H.close_after(pool, app, function()
      for _, v in ipairs{"no", 0} do
        local err = H.interface_error(pool.getconn, pool, {ping = v})
        assert.equal("getconn: opts.ping must be a boolean", err.message)
      end
      local s = pool:stats()
      assert.same({1, 0, 0}, {s.free, s.busy, s.waiting})
      local conn = pool:getconn({ping = false}):await()
      pool:putconn(conn)
    end)
  end)
end)
