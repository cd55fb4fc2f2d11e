-- Regression (issue "Foundation", item 7): the connection setup (connection_factory)
-- anchored its pool in the registry, and only setup_finished dropped the anchor. A
-- factory whose coroutine never ended (it yielded and nothing resumed it) left the
-- pool anchored for good: never collected, its connection counted busy forever. Now
-- nothing anchors the pool for a setup (whatever can end it holds the pool through the
-- lent Connection); when the factory's coroutine is collected unfinished, the setup
-- counts as failed and the pool opens a replacement.
local momoko = require "momoko"
local H = require "helper"

describe("regress 019: a connection setup that never ends", function()
  it("does not keep a closed, unreferenced pool alive", function()
    local dsn, app = H.app_dsn("r019a")
    local weak = setmetatable({}, {__mode = "v"})
    do
      local pool = momoko.Pool{dsn = dsn, size = 1, connection_factory = function() coroutine.yield() end}
      weak.pool = pool
      pool:connect()
      assert.is_true(H.wait_until(function() return H.backends(app) == 1 end, 5000))
      momoko.sleep(50):await()
      pool:close()
    end
    H.collect_garbage(5, 20)
    assert.is_nil(weak.pool, "the pool was never collected")
    assert.is_true(H.no_backends(app))
  end)

  it("fails that setup and replaces the connection when its coroutine is collected", function()
    local dsn, app = H.app_dsn("r019b")
    local calls = 0
    local pool = momoko.Pool{dsn = dsn, size = 1, reconnect_interval = 50,
      connection_factory = function()
        calls = calls + 1
        if calls == 1 then coroutine.yield() end -- parked for good, then collected
      end}
    H.close_after(pool, app, function()
      local connected = pool:connect()
      assert.is_true(H.wait_until(function() return calls == 1 end, 5000))
      H.collect_garbage(5, 20)
      local e = H.failure(connected)
      H.assert_kind("PartiallyConnectedError", e)
      assert.matches("never finished", e.message, 1, true)
      assert.is_true(H.wait_until(function()
        local s = pool:stats()
        return calls == 2 and s.size == 1 and s.free == 1 and s.busy == 0
      end, 5000), "no replacement")
      assert.equal(7, pool:execute("SELECT 7"):await():fetchone()[1])
      assert.equal(1, H.backends(app))
    end)
  end)
end)
