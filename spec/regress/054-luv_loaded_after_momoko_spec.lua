-- momoko used before require "luv" silently ran on another loop: momoko had chosen
-- libuv's default loop, luv made its own, uv.run() returned at once and the query never
-- ran. Fixed: momoko finds luv's loop through luv's public interface (luv.h's
-- luv_loop(), looked up with dlsym) and, while its own loop is one it chose and not one
-- it was given, raises InterfaceError, saying what to do, when a connection, pool or
-- sleep is made or a future awaited on another loop than luv's. Each case is a child
-- lua5.4.
local H = require "helper"

describe("regress 054: luv loaded after momoko chose its loop", function()
  it("an await, new connections, pools and sleeps, and momoko.run() raise InterfaceError saying what to do", function()
    local out, ok = H.run_lua([[
      local momoko = require "momoko"
      local dsn = os.getenv("MOMOKO_TEST_DSN")
      local conn = momoko.Connection(dsn) -- momoko chooses its loop: luv is not loaded yet
      local uv = require "luv"
      local function show(what, ok, err)
        print(what, ok, momoko.is(err, "InterfaceError"), err and err.message)
      end
      local connecting = conn:connect()
      coroutine.wrap(function()
        show("await", pcall(connecting.await, connecting))
      end)()
      show("Connection", pcall(momoko.Connection, dsn))
      show("Pool", pcall(momoko.Pool, {dsn = dsn}))
      show("sleep", pcall(momoko.sleep, 1))
      show("run", pcall(momoko.run))
      uv.run()
      -- momoko's own loop, said so: it works, run by momoko
      momoko.set_loop(momoko.loop())
      local cur = connecting:await() and conn:execute("SELECT 40 + 2"):await()
      print("own loop", cur:fetchone()[1], momoko.sleep(1):await() == nil)
      conn:close()
    ]])
    assert.is_true(ok, out)
    local hint = 'require "luv" before momoko\'s first connection, pool or sleep, or keep momoko on its own '
      .. "loop with momoko.set_loop(momoko.loop()) and momoko.run()"
    for _, what in ipairs({"await", "Connection", "Pool", "sleep", "run"}) do
      local line = out:match("\n?(" .. what .. "\t[^\n]*)")
      assert.is_not_nil(line, what .. " in:\n" .. out)
      assert.equal(what .. "\tfalse\ttrue\tmomoko runs on another loop than luv's (luv was loaded after "
        .. "momoko chose its loop), so uv.run() would not run it: " .. hint, line)
    end
    assert.matches("\nown loop\t42\ttrue\n", out)
  end)

  it("luv loaded first: no complaint, uv.run() drives momoko, and luv's loop is momoko's", function()
    local out, ok = H.run_lua([[
      local uv = require "luv"
      local momoko = require "momoko"
      local conn = momoko.Connection(os.getenv("MOMOKO_TEST_DSN"))
      local got
      coroutine.wrap(function()
        conn:connect():await()
        got = conn:execute("SELECT 7"):await():fetchone()[1]
        conn:close()
      end)()
      uv.run()
      print("got", got)
    ]])
    assert.is_true(ok, out)
    assert.equal("got\t7\n", out)
  end)

  it("a loop given with set_loop is never compared with luv's", function()
    local out, ok = H.run_lua([[
      local momoko = require "momoko"
      momoko.set_loop(momoko.loop()) -- libuv's default loop, chosen on purpose
      local uv = require "luv"
      local conn = momoko.connect(os.getenv("MOMOKO_TEST_DSN")):await()
      print("got", conn:execute("SELECT 8"):await():fetchone()[1])
      conn:close()
      momoko.run()
    ]])
    assert.is_true(ok, out)
    assert.equal("got\t8\n", out)
  end)
end)
