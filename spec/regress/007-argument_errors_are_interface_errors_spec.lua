-- The argument errors of sleep, spawn, add_done_callback and set_loop are InterfaceError
-- objects, not plain strings.
-- Regression r6, found in review: this spec failed before its fix.
local momoko = require "momoko"
local H = require "helper"

describe("regressions", function()
  local reported = H.collect_reports() -- what reached momoko.on_error during the spec

  -- r6
  it("argument errors of sleep, spawn, add_done_callback and set_loop are InterfaceError objects, not plain strings", function()
    local cases = {
      {function() momoko.sleep(1.5) end, "momoko.sleep: ms must be a non-negative integer"},
      {function() momoko.sleep(-1) end, "momoko.sleep: ms must be a non-negative integer"},
      {function() momoko.spawn(42) end, "momoko.spawn: a function expected, got number"},
      {function() momoko.spawn() end, "momoko.spawn: a function expected, got no value"},
      {function() momoko.sleep(0):add_done_callback(1) end, "add_done_callback: a function expected, got number"},
      {function() momoko.set_loop(1) end, "momoko.set_loop: a uv_loop_t* light userdata expected"},
    }
    for i, case in ipairs(cases) do
      local ok, e = pcall(case[1])
      assert.is_false(ok, "case " .. i)
      assert.equal("table", type(e), "case " .. i .. ": " .. tostring(e))
      assert.is_true(momoko.is(e, "InterfaceError"), "case " .. i .. ": " .. tostring(e))
      assert.equal(case[2], e.message, "case " .. i)
      assert.equal("InterfaceError: " .. case[2], tostring(e), "case " .. i)
    end
    H.assert_loop_usable()
    assert.same({}, reported)
  end)
end)
