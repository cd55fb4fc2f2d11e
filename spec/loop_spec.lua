-- API §1: the loop, futures and coroutines.
local momoko = require "momoko"
local H = require "helper"

describe("momoko.spawn", function()
  it("runs the function now and resolves its future with every return value", function()
    local ran = false
    local f = momoko.spawn(function(a, b) ran = true; return a + b, "x", nil end, 2, 3)
    assert.is_true(ran)
    assert.is_true(f:done())
    assert.same({5, "x"}, {f:result()})
  end)

  it("suspends at await and is resumed by the loop", function()
    local steps = {}
    local f = momoko.spawn(function()
      steps[#steps + 1] = "before"
      momoko.sleep(5):await()
      steps[#steps + 1] = "after"
      return "done"
    end)
    assert.same({"before"}, steps)
    assert.is_false(f:done())
    assert.equal("done", f:await())
    assert.same({"before", "after"}, steps)
  end)

  it("turns an error inside the coroutine into the future's error, reported nowhere else", function()
    local reported = 0
    momoko.on_error(function() reported = reported + 1 end)
    local f = momoko.spawn(function()
      momoko.sleep(1):await()
      error({code = 7})
    end)
    local err = H.error_of(function() return f:await() end)
    momoko.sleep(5):await()
    momoko.on_error(nil)
    assert.same({code = 7}, err)
    assert.same({code = 7}, f:error())
    assert.equal(0, reported)
  end)

  it("reports an error nobody awaits to on_error, and the loop keeps running", function()
    local seen = {}
    momoko.on_error(function(e) seen[#seen + 1] = e end)
    momoko.spawn(function()
      momoko.sleep(1):await()
      error("boom", 0)
    end)
    local later = momoko.spawn(function() momoko.sleep(20):await(); return "still running" end)
    assert.equal("still running", later:await())
    momoko.on_error(nil)
    assert.equal(1, #seen)
    assert.matches("^boom", seen[1])
  end)

  it("does not report an error that is awaited right after a synchronous failure", function()
    local seen = 0
    momoko.on_error(function() seen = seen + 1 end)
    local f = momoko.spawn(function() error("sync", 0) end)
    assert.equal("sync", H.error_of(function() return f:await() end))
    momoko.sleep(5):await()
    momoko.on_error(nil)
    assert.equal(0, seen)
  end)

  it("rejects a non-function", function()
    assert.has_error(function() momoko.spawn(42) end)
  end)
end)

describe("a host's coroutine.wrap handler", function()
  it("is suspended by await and resumed from the libuv callback", function()
    local log = {}
    local handler = coroutine.wrap(function(x)
      log[#log + 1] = "start " .. x
      momoko.sleep(5):await()
      log[#log + 1] = "resumed " .. x
    end)
    handler("a")
    assert.same({"start a"}, log)
    momoko.run()
    assert.same({"start a", "resumed a"}, log)
  end)

  it("routes an error raised after resumption to on_error", function()
    local seen = {}
    momoko.on_error(function(e) seen[#seen + 1] = e end)
    coroutine.wrap(function()
      momoko.sleep(1):await()
      error("handler failed", 0)
    end)()
    momoko.run()
    momoko.on_error(nil)
    assert.equal(1, #seen)
    assert.matches("handler failed", seen[1])
  end)

  it("closes the handler's to-be-closed variables when it fails", function()
    local closed = false
    momoko.on_error(function() end)
    coroutine.wrap(function()
      local guard <close> = setmetatable({}, {__close = function() closed = true end})
      momoko.sleep(1):await()
      error("x")
    end)()
    momoko.run()
    momoko.on_error(nil)
    assert.is_true(closed)
  end)
end)

describe("Future", function()
  it("await on a done future returns at once", function()
    local f = momoko.spawn(function() return 1 end)
    assert.equal(1, f:await())
    assert.equal(1, f:await())
  end)

  it("lets several coroutines await one future", function()
    local f = momoko.sleep(5)
    local got = {}
    for i = 1, 3 do
      momoko.spawn(function() f:await(); got[#got + 1] = i end)
    end
    f:await()
    assert.same({1, 2, 3}, got)
  end)

  it("result() raises InterfaceError while pending", function()
    local f = momoko.sleep(1)
    local err = H.error_of(function() return f:result() end)
    assert.is_true(momoko.is(err, "InterfaceError"))
    f:await()
    assert.is_nil(f:result())
  end)

  it("error() is nil for success and the error object for failure", function()
    local ok = momoko.spawn(function() return 1 end)
    assert.is_nil(ok:error())
    local bad = momoko.spawn(function() error("e", 0) end)
    assert.equal("e", bad:error())
  end)

  it("calls done callbacks once, at once when already done", function()
    local f = momoko.sleep(1)
    local calls = {}
    f:add_done_callback(function(d) calls[#calls + 1] = d end)
    assert.equal(0, #calls)
    f:await()
    assert.equal(1, #calls)
    assert.equal(f, calls[1])
    f:add_done_callback(function() calls[#calls + 1] = "late" end)
    assert.same("late", calls[2])
  end)

  it("routes an error in a done callback to on_error", function()
    local seen = {}
    momoko.on_error(function(e) seen[#seen + 1] = e end)
    local f = momoko.sleep(1)
    f:add_done_callback(function() error("cb failed", 0) end)
    f:await()
    momoko.on_error(nil)
    assert.same({"cb failed"}, seen)
  end)

  it("cancel() stops a sleep and the future fails with QueryCanceledError", function()
    local f = momoko.sleep(60000)
    assert.is_true(f:cancel())
    assert.is_true(f:done())
    assert.is_true(momoko.is(f:error(), "QueryCanceledError"))
    assert.is_false(f:cancel())
  end)

  it("await on the main thread inside a loop callback raises InterfaceError", function()
    local err
    momoko.sleep(1):add_done_callback(function()
      err = H.error_of(function() return momoko.sleep(1):await() end)
    end)
    momoko.run()
    assert.is_true(momoko.is(err, "InterfaceError"))
    assert.matches("coroutine", err.message)
  end)

  it("await of a future that can never complete raises instead of hanging", function()
    local f = require("momoko.core").future()
    local err = H.error_of(function() return f:await() end)
    assert.is_true(momoko.is(err, "InterfaceError"))
  end)

  it("tostring shows the state", function()
    local f = momoko.sleep(1)
    assert.equal("<momoko.Future pending>", tostring(f))
    f:await()
    assert.equal("<momoko.Future resolved>", tostring(f))
  end)
end)

describe("momoko.all", function()
  it("resolves to the results in order", function()
    local f = momoko.all{momoko.spawn(function() momoko.sleep(10):await(); return "a" end),
                         momoko.spawn(function() return "b" end),
                         momoko.sleep(1)}
    assert.same({"a", "b"}, f:await())
  end)

  it("fails with the first error while the others run to completion", function()
    local finished = false
    local slow = momoko.spawn(function() momoko.sleep(20):await(); finished = true; return 1 end)
    local bad = momoko.spawn(function() momoko.sleep(1):await(); error("first", 0) end)
    local err = H.error_of(function() return momoko.all{slow, bad}:await() end)
    assert.equal("first", err)
    assert.is_false(finished)
    slow:await()
    assert.is_true(finished)
  end)

  it("resolves an empty list to an empty table", function()
    assert.same({}, momoko.all{}:await())
  end)

  it("rejects what is not a future", function()
    local err = H.error_of(momoko.all, {momoko.sleep(1), 2})
    assert.is_true(momoko.is(err, "InterfaceError"))
    assert.matches("item 2", err.message)
  end)
end)

describe("momoko.sleep", function()
  it("rejects a negative delay", function()
    assert.is_true(momoko.is(H.error_of(momoko.sleep, -1), "InterfaceError"))
  end)

  it("orders timers by delay", function()
    local order = {}
    momoko.spawn(function() momoko.sleep(30):await(); order[#order + 1] = 30 end)
    momoko.spawn(function() momoko.sleep(10):await(); order[#order + 1] = 10 end)
    momoko.run()
    assert.same({10, 30}, order)
  end)
end)

describe("the loop", function()
  it("momoko.loop() is a light userdata and run() returns when idle", function()
    assert.equal("userdata", type(momoko.loop()))
    momoko.run()
  end)

  it("set_loop refuses while timers exist on the current loop", function()
    local f = momoko.sleep(50)
    local err = H.error_of(momoko.set_loop, momoko.loop())
    assert.is_nil(err) -- the same loop is always fine
    f:cancel()
  end)

  it("run() inside a callback raises InterfaceError", function()
    local err
    momoko.sleep(1):add_done_callback(function() err = H.error_of(momoko.run) end)
    momoko.run()
    assert.is_true(momoko.is(err, "InterfaceError"))
  end)

  it("has a version string", function()
    assert.matches("^momoko %d+%.%d+%.%d+$", momoko._VERSION)
  end)
end)
