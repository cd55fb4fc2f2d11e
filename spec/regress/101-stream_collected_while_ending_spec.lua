-- Regression (issue "Streams, LISTEN/NOTIFY, COPY and tracing", streams): the end of a
-- stream resumed the coroutine waiting in next(); that coroutine could finish with the
-- stream, drop it and run a full GC, whose finalizer freed the stream's record while
-- the end was still using it (a use after free: a crash, or an ASan/valgrind report).
local momoko = require "momoko"
local H = require "helper"

describe("regress 101: a stream collected by the coroutine its end resumed", function()
  it("is freed only after its end is done, and the connection stays usable", function()
    local dsn, app = H.app_dsn("regress101")
    local conn = momoko.connect(dsn):await()
    for round = 1, 20 do
      local n = H.async(function()
        local count = 0
        do
          local s <close> = conn:stream("SELECT g FROM generate_series(1, $1) g", {10 + round})
          for _ in s:rows() do count = count + 1 end
        end
        collectgarbage("collect") -- the stream is garbage now, its end still running
        collectgarbage("collect")
        return count
      end)
      assert.equal(10 + round, n)
    end
    assert.equal(7, conn:execute("SELECT 7"):await():fetchone()[1])
    conn:close()
    assert.is_true(H.no_backends(app))
  end)
end)
