-- Regression (issue "Foundation", item 2): pool:connect() resolved before its last
-- connection was free. The pool ended connect() as the last connection finished
-- connecting and only then put that connection on the free list; a coroutine resumed
-- by that resolution ran before it. API §6: when connect() resolves, every connection
-- that opened is free. Seen three ways, each pinned here from a coroutine resumed by
-- connect() itself: stats() showed free=1 of size=2; with max_waiting=2 only one
-- request could wait; with size=2, max_size=4 three requests grew the pool to 4.
local momoko = require "momoko"
local H = require "helper"

-- Runs fn(pool) in a coroutine that awaits pool:connect(), with the loop run from the
-- main thread; closes the pool; checks no backend of it is left.
local function after_connect(opts, fn)
  local dsn, app = H.app_dsn("r011")
  opts.dsn = dsn
  local pool = momoko.Pool(opts)
  local f = momoko.spawn(function()
    pool:connect():await()
    return fn(pool)
  end)
  local ok, err = pcall(f.await, f)
  pool:close()
  assert.is_true(H.no_backends(app), "backends of " .. app .. " left")
  if not ok then error(err, 0) end
end

describe("regress 011: pool:connect() resolves with every connection free", function()
  it("stats() right after connect() counts every connection free", function()
    after_connect({size = 2}, function(pool)
      local s = pool:stats()
      assert.same({2, 2, 0, 0, 0}, {s.size, s.free, s.busy, s.connecting, s.waiting})
    end)
  end)

  it("the first requests each find a free connection: none waits, the pool does not grow", function()
    after_connect({size = 2, max_size = 4}, function(pool)
      local fs = {pool:execute("SELECT 1, pg_sleep(0.2)"), pool:execute("SELECT 2, pg_sleep(0.2)")}
      local s = pool:stats()
      assert.same({2, 0, 2, 0, 0}, {s.size, s.free, s.busy, s.connecting, s.waiting})
      fs[3] = pool:execute("SELECT 3") -- every connection is busy: this one may grow it
      for i, cur in ipairs(momoko.all(fs):await()) do assert.equal(i, cur:fetchone()[1]) end
      s = pool:stats()
      assert.equal(3, s.size) -- 2 + one for the third request, never 4
    end)
  end)

  it("max_waiting = 2 lets two requests wait once both connections are busy", function()
    after_connect({size = 2, max_waiting = 2}, function(pool)
      local fs = {}
      for i = 1, 4 do fs[i] = pool:execute("SELECT $1::int, pg_sleep(0.1)", {i}) end
      local refused = pool:execute("SELECT 5")
      assert.equal(2, pool:stats().waiting)
      for i, cur in ipairs(momoko.all(fs):await()) do assert.equal(i, cur:fetchone()[1]) end
      local err = H.failure(refused)
      H.assert_kind("PoolError", err)
      assert.matches("max_waiting", err.message, 1, true)
    end)
  end)
end)
