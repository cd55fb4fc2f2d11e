-- add_done_callback on a future already done called the callback unprotected, so an
-- error inside it was raised to the caller of add_done_callback, while docs/api.md says
-- it goes to on_error (as it does for a callback added while pending). Fixed: it is
-- called under pcall and its error reported.
local momoko = require "momoko"

describe("regress 062: add_done_callback on a done future", function()
  local reported = {}
  before_each(function()
    for i = #reported, 1, -1 do reported[i] = nil end
    momoko.on_error(function(e) reported[#reported + 1] = e end)
  end)
  after_each(function() momoko.on_error(nil) end)

  it("sends an error of the callback to on_error, not to the caller", function()
    local f = momoko.spawn(function() return 7 end)
    assert.is_true(f:done())
    local got
    assert.has_no.errors(function()
      f:add_done_callback(function(g) got = g:result(); error("callback failed", 0) end)
    end)
    assert.equal(7, got)
    assert.same({"callback failed"}, reported)
  end)

  it("also for a failed future, and a pending one's callback error goes the same way", function()
    local f = momoko.spawn(function() error("spawn failed", 0) end)
    f:add_done_callback(function(g) error("after " .. g:error(), 0) end)
    local p = momoko.sleep(1)
    p:add_done_callback(function() error("pending callback failed", 0) end)
    p:await()
    assert.same({"after spawn failed", "pending callback failed"}, reported)
  end)
end)
