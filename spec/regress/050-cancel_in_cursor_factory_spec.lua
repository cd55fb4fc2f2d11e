-- f:cancel() called from inside a cursor_factory, which runs while the request is
-- completing, reached the pool with a wait record that was no longer the pool's
-- (ASan: heap-buffer-overflow in mk_pool.c's finish; a segfault without ASan). Fixed:
-- the future's cancel hook is cleared before any Lua runs on completion, so such a
-- cancel does nothing and returns false.
local momoko = require "momoko"
local H = require "helper"

describe("regress 050: f:cancel() inside the request's cursor_factory", function()
  it("on a Pool: returns false, the future gets the factory's value, the pool serves on", function()
    local dsn, app = H.app_dsn("regress_050_pool")
    local pool = momoko.Pool{dsn = dsn, size = 1}
    pool:connect():await()
    local f, g, cancelled
    f = pool:execute("SELECT 1", nil, {cursor_factory = function(cur)
      cancelled = f:cancel()
      return cur:fetchone()[1] * 10
    end})
    assert.equal(10, f:await())
    assert.is_false(cancelled)
    -- the same with a request queued behind it, which then runs as usual
    cancelled = nil
    g = pool:execute("SELECT 2", nil, {cursor_factory = function(cur)
      cancelled = g:cancel()
      return cur
    end})
    local h = pool:execute("SELECT 3")
    assert.same({2}, g:await():fetchone())
    assert.is_false(cancelled)
    assert.same({3}, h:await():fetchone())
    assert.is_false(f:cancel())
    local s = pool:stats()
    assert.same({1, 1, 0, 0, 0}, {s.size, s.free, s.busy, s.waiting, s.dead})
    assert.equal(1, H.backends(app))
    pool:close()
    assert.is_true(H.no_backends(app))
  end)

  it("on a Connection: returns false, the future gets the factory's value", function()
    local dsn, app = H.app_dsn("regress_050_conn")
    local conn = momoko.connect(dsn):await()
    local f, cancelled
    f = conn:execute("SELECT 5", nil, {cursor_factory = function(cur)
      cancelled = f:cancel()
      return cur:fetchone()[1]
    end})
    local after = conn:execute("SELECT 6")
    assert.equal(5, f:await())
    assert.is_false(cancelled)
    assert.same({6}, after:await():fetchone())
    assert.equal("idle", tostring(conn):match("state=(%a+)"))
    conn:close()
    assert.is_true(H.no_backends(app))
  end)
end)
