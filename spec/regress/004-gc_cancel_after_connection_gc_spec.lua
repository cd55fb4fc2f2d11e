-- lua_close: a __gc that cancels a query future after its connection's __gc ran must not
-- touch freed memory. The finalizer order at lua_close needs a fresh interpreter, so it
-- runs in a child lua5.4, which must exit 0 with exactly the expected output.
-- Regression r4, found in review: this spec failed before its fix.
local H = require "helper"

describe("regressions", function()
  -- r4
  it("lua_close: cancelling a query future in a __gc that runs after its connection's __gc does not touch freed memory", function()
    local dsn, app = H.app_dsn("regress_r4")
    H.assert_child_output(string.format([[
      local momoko = require "momoko"
      -- created before the connection, so lua_close finalizes it after the connection
      local holder = setmetatable({}, {__gc = function(self)
        print("cancel in __gc", pcall(self.f.cancel, self.f))
      end})
      local conn = momoko.connect(%q):await()
      holder.f = conn:execute("SELECT pg_sleep(0.5)")
      print("end of chunk")
    ]], dsn), {
      "end of chunk",
      "cancel in __gc\ttrue\tfalse",
    })
    assert.is_true(H.no_backends(app, 10000))
  end)
end)
