-- close() ends the request in flight and the queued ones: a done callback of the first
-- that tries to cancel the queued ones (already ended) must not touch freed memory.
-- Regression r1, found in review: this spec failed before its fix.
local momoko = require "momoko"
local H = require "helper"

describe("regressions", function()
  local reported = H.collect_reports() -- what reached momoko.on_error during the spec

  -- r1
  it("close(): a done callback that cancels a later queued request does not touch freed memory", function()
    local dsn, app = H.app_dsn("regress_r1")
    local conn = momoko.connect(dsn):await()
    local f1 = conn:execute("SELECT pg_sleep(0.2)")
    local f2 = conn:execute("SELECT 2")
    local f3 = conn:execute("SELECT 3")
    local seen
    f1:add_done_callback(function()
      -- close() has already ended f2 and f3: nothing is left to cancel
      seen = {f2:cancel(), f3:cancel()}
    end)
    conn:close()
    assert.same({false, false}, seen)
    assert.is_true(conn.closed)
    H.assert_closed_error(f1, "f1 (in flight)")
    H.assert_closed_error(f2, "f2 (queued, cancel attempted)")
    H.assert_closed_error(f3, "f3 (queued, cancel attempted)")
    H.assert_loop_usable()
    assert.same({}, reported)
    assert.is_true(H.no_backends(app))
  end)
end)
