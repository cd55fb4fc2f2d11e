-- Ownership and GC: objects dropped mid-flight never crash and never leak a backend;
-- lua_close with open connections exits cleanly.
local momoko = require "momoko"
local H = require "helper"

describe("dropping references mid-flight", function()
  it("completes dropped futures and collects dropped connections", function()
    local dsn, app = H.app_dsn("gc")
    local done = 0
    for _ = 1, 20 do
      local conn = momoko.connect(dsn):await()
      for i = 1, 5 do
        conn:execute("SELECT pg_sleep(0.001), $1::int", {i}):add_done_callback(function(f)
          if f:error() == nil then done = done + 1 end
        end)
      end
      conn = nil
      collectgarbage()
    end
    collectgarbage()
    momoko.run()
    assert.equal(100, done)
    for _ = 1, 3 do collectgarbage() end
    assert.is_true(H.no_backends(app))
  end)

  it("keeps an unreferenced connection alive until its requests are done", function()
    local dsn, app = H.app_dsn("gc_alive")
    local result
    do
      local conn = momoko.connect(dsn):await()
      conn:execute("SELECT pg_sleep(0.05), 'kept'"):add_done_callback(function(f)
        result = f:result():fetchone()[2]
      end)
    end
    collectgarbage(); collectgarbage()
    momoko.run()
    assert.equal("kept", result)
    collectgarbage(); collectgarbage()
    assert.is_true(H.no_backends(app))
  end)

  it("collects cursors and their results, and a connection closed by the GC mid-connect", function()
    local dsn, app = H.app_dsn("gc_mix")
    local conn = momoko.connect(dsn):await()
    for i = 1, 50 do
      local cur = conn:execute("SELECT generate_series(1, 100)"):await()
      if i % 2 == 0 then cur:close() end
    end
    conn:close()
    -- a connect started and dropped at once
    momoko.Connection(dsn):connect()
    collectgarbage(); collectgarbage()
    momoko.run()
    collectgarbage(); collectgarbage()
    assert.is_true(H.no_backends(app))
  end)

  it("survives a coroutine that awaits and is dropped with its connection", function()
    local dsn, app = H.app_dsn("gc_co")
    for _ = 1, 10 do
      coroutine.wrap(function()
        local c = momoko.connect(dsn):await()
        c:execute("SELECT 1"):await()
      end)()
    end
    collectgarbage()
    momoko.run()
    collectgarbage(); collectgarbage()
    assert.is_true(H.no_backends(app))
  end)
end)

describe("lua_close with open connections", function()
  it("exits cleanly from a child process and leaves no backend", function()
    local dsn, app = H.app_dsn("gc_close")
    local code = string.format([[
      local momoko = require "momoko"
      local conns = {}
      for i = 1, 3 do conns[i] = momoko.connect(%q):await() end
      conns[1]:execute("SELECT pg_sleep(30)")
      conns[2]:execute("SELECT 1")
      momoko.Connection(%q):connect()
      momoko.sleep(100000)
      print("bye")
    ]], dsn, dsn)
    local out, ok = H.run_lua(code)
    assert.is_true(ok, out)
    assert.equal("bye\n", out)
    assert.is_true(H.no_backends(app, 10000))
  end)
end)
