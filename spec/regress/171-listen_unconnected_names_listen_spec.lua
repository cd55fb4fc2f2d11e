-- Regression: conn:listen and conn:unlisten on a Connection that was never connected, or
-- was closed, raised "escape_identifier: connection is not connected", naming a method
-- the caller never called. They name themselves now.
local momoko = require "momoko"
local H = require "helper"

describe("regress 171: listen and unlisten on an unconnected Connection", function()
  it("raise an InterfaceError naming listen or unlisten", function()
    local fresh = momoko.Connection(H.dsn)
    local closed = momoko.connect(H.dsn):await()
    closed:close()
    for _, c in ipairs{fresh, closed} do
      local err = H.interface_error(c.listen, c, "ch", function() end)
      assert.equal("listen: connection is not connected", err.message)
      err = H.interface_error(c.unlisten, c, "ch")
      assert.equal("unlisten: connection is not connected", err.message)
    end
  end)
end)
