-- A done callback run by close() that awaits on the main thread gets an InterfaceError
-- instead of re-entering the loop over the closed requests; a queued request's timeout
-- does not fire afterwards.
-- Regression r5, found in review: this spec failed before its fix.
local momoko = require "momoko"
local H = require "helper"

local NESTED_AWAIT = "cannot await on the main thread while the loop is running (inside a callback or "
  .. "uv.run()): await from a coroutine instead, e.g. in momoko.spawn"

describe("regressions", function()
  local reported = H.collect_reports() -- what reached momoko.on_error during the spec

  -- r5
  it("close(): a done callback that awaits on the main thread gets an InterfaceError instead of re-entering the loop over closed requests", function()
    local dsn, app = H.app_dsn("regress_r5")
    local conn = momoko.connect(dsn):await()
    local f1 = conn:execute("SELECT pg_sleep(0.2)")
    local f2 = conn:execute("SELECT 2", nil, {timeout = 50})
    local nested
    f1:add_done_callback(function()
      nested = table.pack(pcall(function() return momoko.sleep(150):await() end))
    end)
    conn:close()
    assert.is_not_nil(nested, "the done callback ran during close()")
    assert.is_false(nested[1])
    assert.is_true(momoko.is(nested[2], "InterfaceError"), tostring(nested[2]))
    assert.equal(NESTED_AWAIT, nested[2].message)
    H.assert_closed_error(f1, "f1 (in flight)")
    H.assert_closed_error(f2, "f2 (queued with a timeout)")
    -- past f2's 50 ms timeout: its timer is gone, the error stays "connection closed"
    momoko.sleep(100):await()
    H.assert_closed_error(f2, "f2 after its timeout would have fired")
    H.assert_loop_usable()
    assert.same({}, reported)
    assert.is_true(H.no_backends(app))
  end)
end)
