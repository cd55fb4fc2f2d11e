-- A connect with a connection_factory could stay pending for ever: the connect future's
-- reference was dropped before the factory runner was called, unprotected, so a runner
-- that raised (momoko.core used without the Lua layer, or no memory) left the future
-- unsettled and the error went to on_error. And while the factory ran, the connection
-- was already ready with no connect future: a second connect() got a new, resolved
-- future although docs/api.md says "the same future while connecting". Fixed: the
-- runner is called under pcall (its error fails the connect and closes the connection),
-- and the connect future is kept until it is done.
local momoko = require "momoko"
local H = require "helper"

local RUNNER = "momoko.after_connect" -- the registry slot of the Lua layer's runner

describe("regress 061: connect with a connection_factory", function()
  local reported = H.collect_reports()

  it("fails the connect future when the factory runner raises, and closes the connection", function()
    local dsn, app = H.app_dsn("regress_061")
    local registry = debug.getregistry()
    local runner = registry[RUNNER]
    local called = false
    registry[RUNNER] = function() error("runner failed", 0) end
    local conn = momoko.Connection(dsn, {connection_factory = function() called = true end})
    local f = conn:connect()
    local ok = H.wait_until(function() return f:done() end, 5000)
    registry[RUNNER] = runner
    assert.is_true(ok, "the connect future stayed pending")
    assert.equal("runner failed", f:error())
    assert.is_false(called)
    assert.is_true(conn.closed)
    assert.same({}, reported)
    assert.is_true(H.no_backends(app))
  end)

  it("returns the same pending future from connect() while the factory runs", function()
    local dsn, app = H.app_dsn("regress_061")
    local second, second_done
    local conn = momoko.Connection(dsn, {connection_factory = function(c)
      second = c:connect()
      second_done = second:done()
      c:execute("SET application_name = '" .. app .. "_set'"):await()
    end})
    H.close_after(conn, app, function()
      local first = conn:connect()
      assert.equal(conn, first:await())
      assert.is_true(rawequal(first, second), "a second future while connecting")
      assert.is_false(second_done)
      -- once done, connect() gives a done future of the connection
      local third = conn:connect()
      assert.is_true(third:done())
      assert.equal(conn, third:result())
      assert.equal(1, H.backends(app .. "_set"))
      conn:execute("SET application_name = '" .. app .. "'"):await()
    end)
    assert.same({}, reported)
  end)
end)
