-- Regression (issue 13, found by the soak's RSS check): a cursor nobody closed held its
-- PGresult (libpq's memory, unseen by Lua's collector) until the collector happened to
-- collect it, and Lua's own allocations brought that about late: a cursor is some 100
-- bytes of Lua over kilobytes of result. Under load the results that garbage cursors
-- held piled up (the soak's main heap rose by 20 MB, kept by the allocator after the
-- collection), and a loop over large results held hundreds of megabytes. The fix: a
-- cursor tells the collector of its result's size (lua_gc LUA_GCSTEP), as if Lua had
-- allocated it, unless the program stopped the collector.
--
-- The check, in a child lua5.4 on a fresh heap: 300 results of 1 MB each, never
-- closed, must not raise the peak RSS (VmHWM) by 8 MB; without the fix it rose by some
-- 23 MB (about 23 results held at a time), with it by nothing measurable (a result is
-- collected before the next one). Under the sanitizers RSS says nothing (ASan's
-- quarantine keeps freed memory): there the child runs the same loop and the check is
-- only that it ends well.
local H = require "helper"

local sanitized = os.getenv("MOMOKO_TEST_SANITIZE") == "1"

describe("regress 164: cursors nobody closes", function()
  it("are collected as often as their results' size asks", function()
    local grown, out, ok = H.run_lua_grown([[
      local momoko = require "momoko"
      local conn = momoko.connect(os.getenv("MOMOKO_TEST_DSN")):await()
      local function run(n)
        for i = 1, n do
          local cur = conn:execute("SELECT repeat('x', 1000000), $1::int", { i }):await()
          assert(cur.rowcount == 1)
        end
      end
      run(20)
      collectgarbage()
      local before = proc_kib("VmHWM")
      run(300)
      print("peak grown " .. (proc_kib("VmHWM") - before))
      conn:close()
    ]])
    assert.is_true(ok, out)
    assert.is_not_nil(grown, out)
    if not sanitized then
      assert.is_true(grown < 8192, "the peak RSS grew by " .. grown .. " KiB")
    end
  end)
end)
