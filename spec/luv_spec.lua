-- momoko shares luv's loop when luv is loaded first: uv.run() drives both. Each case
-- runs in a child lua5.4 so that luv is loaded before momoko there.
local H = require "helper"

local run_child = H.run_lua

describe("with luv loaded first", function()
  it("uses luv's loop, and uv.run() drives momoko's queries and timers", function()
    local out, ok = run_child([[
      local uv = require "luv"
      local momoko = require "momoko"
      local conn = momoko.Connection(os.getenv("MOMOKO_TEST_DSN"))
      local got = {}
      coroutine.wrap(function()
        conn:connect():await()
        local cur = conn:execute("SELECT $1::int * 2", {21}):await()
        got[#got + 1] = cur:fetchone()[1]
        momoko.sleep(5):await()
        got[#got + 1] = "slept"
        conn:close()
      end)()
      local t = uv.new_timer()
      t:start(1, 0, function() got[#got + 1] = "luv timer"; t:close() end)
      uv.run()
      print(table.concat(got, ","))
    ]])
    assert.is_true(ok, out)
    -- the luv timer fires while the query is in flight, both on the same loop
    assert.matches("42", out)
    assert.matches("slept", out)
    assert.matches("luv timer", out)
  end)

  it("refuses a main-thread await while uv.run() is running", function()
    local out, ok = run_child([[
      local uv = require "luv"
      local momoko = require "momoko"
      local t = uv.new_timer()
      t:start(1, 0, function()
        local ok, err = pcall(function() return momoko.sleep(1):await() end)
        print(ok, momoko.is(err, "InterfaceError"))
        t:close()
      end)
      uv.run()
    ]])
    assert.is_true(ok, out)
    assert.matches("false%s+true", out)
  end)

  it("exits cleanly when the state closes with momoko handles open", function()
    local out, ok = run_child([[
      local uv = require "luv"
      local momoko = require "momoko"
      local conn = momoko.connect(os.getenv("MOMOKO_TEST_DSN")):await()
      local f = conn:execute("SELECT pg_sleep(10)")
      local s = momoko.sleep(100000)
      print("exiting")
    ]])
    assert.is_true(ok, out)
    assert.equal("exiting\n", out)
  end)
end)
