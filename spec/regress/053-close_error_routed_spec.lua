-- When a coroutine resumed by momoko failed, closing its to-be-closed variables could
-- raise again, and that error was dropped: lua_resetthread's status was ignored.
-- Fixed: the coroutine's error goes where it went before (its spawn future, or
-- on_error), and an error raised by a closing method goes to on_error as well.
local momoko = require "momoko"
local H = require "helper"

describe("regress 053: an error raised while closing a failed coroutine's to-be-closed variables", function()
  local reported, closing_saw

  before_each(function()
    reported, closing_saw = {}, {}
    momoko.on_error(function(e) reported[#reported + 1] = e end)
  end)

  after_each(function()
    momoko.on_error(nil)
  end)

  -- A guard whose closing method records the error it closes for, then raises.
  local function raising_guard()
    return setmetatable({}, {__close = function(_, err)
      closing_saw[#closing_saw + 1] = err
      error("closing failed", 0)
    end})
  end

  it("in a spawned coroutine: the future fails with the coroutine's error, on_error gets the closing one", function()
    local f = momoko.spawn(function()
      local guard <close> = raising_guard()
      momoko.sleep(1):await()
      error("body failed", 0)
    end)
    assert.equal("body failed", H.error_of(function() return f:await() end))
    assert.same({"body failed"}, closing_saw)
    assert.same({"closing failed"}, reported)
  end)

  it("in a host's coroutine.wrap handler: on_error gets both, the coroutine's first", function()
    coroutine.wrap(function()
      local guard <close> = raising_guard()
      momoko.sleep(1):await()
      error("body failed", 0)
    end)()
    momoko.run()
    assert.same({"body failed"}, closing_saw)
    assert.same({"body failed", "closing failed"}, reported)
  end)

  it("a closing method that does not raise adds nothing", function()
    local closed = 0
    local f = momoko.spawn(function()
      local guard <close> = setmetatable({}, {__close = function() closed = closed + 1 end})
      momoko.sleep(1):await()
      error("body failed", 0)
    end)
    assert.equal("body failed", H.error_of(function() return f:await() end))
    assert.equal(1, closed)
    assert.same({}, reported)
  end)
end)
