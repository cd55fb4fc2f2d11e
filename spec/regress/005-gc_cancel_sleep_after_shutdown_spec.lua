-- lua_close: a __gc that cancels a sleep future after momoko shut down must not touch
-- freed memory. The finalizer order at lua_close needs a fresh interpreter, so it runs
-- in a child lua5.4, which must exit 0 with exactly the expected output.
-- Regression r4b, found in review: this spec failed before its fix.
local H = require "helper"

describe("regressions", function()
  -- r4b
  it("lua_close: cancelling a sleep future in a __gc that runs after momoko shut down does not touch freed memory", function()
    H.assert_child_output([[
      -- created before momoko is loaded, so lua_close finalizes it after momoko's state
      local holder = setmetatable({}, {__gc = function(self)
        print("cancel sleep in __gc", pcall(self.f.cancel, self.f))
      end})
      local momoko = require "momoko"
      holder.f = momoko.sleep(10000)
      print("end of chunk")
    ]], {
      "end of chunk",
      "cancel sleep in __gc\ttrue\tfalse",
    })
  end)
end)
