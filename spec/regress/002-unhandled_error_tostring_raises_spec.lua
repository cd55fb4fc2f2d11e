-- An unhandled error of a spawned coroutine whose __tostring raises is still reported,
-- and momoko.run() and main-thread awaits stay usable. The error value cannot even be
-- printed, so it runs in a child lua5.4, which must exit 0 with exactly the expected
-- output.
-- Regression r3, found in review: this spec failed before its fix.
local H = require "helper"

describe("regressions", function()
  -- r3
  it("an unhandled spawn error whose __tostring raises is reported and leaves momoko.run() and main-thread awaits usable", function()
    H.assert_child_output([[
      local momoko = require "momoko"
      local bad = setmetatable({}, {__tostring = function() error("tostring fails", 0) end})
      momoko.spawn(function() momoko.sleep(1):await(); error(bad) end)
      print("run 1", pcall(momoko.run))
      print("run 2", pcall(momoko.run))
      print("await", pcall(function() momoko.sleep(1):await(); return "awaited" end))
      -- an on_error handler that collects, then fails with the same value: the stderr
      -- fallback must survive the failing __tostring too
      local got = {}
      momoko.on_error(function(e) got[#got + 1] = e; error(e) end)
      momoko.spawn(function() momoko.sleep(1):await(); error(bad) end)
      print("run 3", pcall(momoko.run))
      print("collected", #got, rawequal(got[1], bad))
      print("await", pcall(function() momoko.sleep(1):await(); return "again" end))
    ]], {
      "momoko: unhandled error whose __tostring failed: tostring fails",
      "run 1\ttrue",
      "run 2\ttrue",
      "await\ttrue\tawaited",
      "momoko: unhandled error whose __tostring failed: tostring fails",
      "run 3\ttrue",
      "collected\t1\ttrue",
      "await\ttrue\tagain",
    })
  end)
end)
