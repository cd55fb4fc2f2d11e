-- Regressions found in review (repros r1, r3, r3b, r4, r4b, r5, r6): each spec pins one
-- bug and failed before its fix (a use-after-free, a stuck loop, or a plain-string error).
-- The lua_close / __gc ordering cases and those whose error value cannot even be printed
-- run in a child lua5.4, which must exit 0 with exactly the expected output.
local momoko = require "momoko"
local H = require "helper"

local CLOSED = "connection closed"
local NESTED_AWAIT = "cannot await on the main thread while the loop is running (inside a callback or "
  .. "uv.run()): await from a coroutine instead, e.g. in momoko.spawn"

-- Asserts that future f is done and failed with an InterfaceError "connection closed".
local function assert_closed_error(f, name)
  assert.is_true(f:done(), name .. " is done")
  local e = f:error()
  assert.is_true(momoko.is(e, "InterfaceError"), name .. ": " .. tostring(e))
  assert.is_false(momoko.is(e, "DatabaseError"), name .. ": " .. tostring(e))
  assert.equal(CLOSED, e.message, name)
end

-- Asserts that the loop and a main-thread await still work.
local function assert_loop_usable()
  assert.equal("awaited", H.async(function()
    momoko.sleep(1):await()
    return "awaited"
  end))
  local ok, err = pcall(function() return momoko.sleep(1):await() end)
  assert.is_true(ok, tostring(err))
  ok, err = pcall(momoko.run)
  assert.is_true(ok, tostring(err))
end

describe("regressions", function()
  local reported -- what reached momoko.on_error during the spec

  before_each(function()
    reported = {}
    momoko.on_error(function(e) reported[#reported + 1] = e end)
  end)

  after_each(function()
    momoko.on_error(nil)
  end)

  -- r1
  it("close(): a done callback that cancels a later queued request does not touch freed memory", function()
    local dsn, app = H.app_dsn("regress_r1")
    local conn = momoko.connect(dsn):await()
    local f1 = conn:execute("SELECT pg_sleep(0.2)")
    local f2 = conn:execute("SELECT 2")
    local f3 = conn:execute("SELECT 3")
    local seen
    f1:add_done_callback(function()
      -- close() has already ended f2 and f3: nothing is left to cancel
      seen = {f2:cancel(), f3:cancel()}
    end)
    conn:close()
    assert.same({false, false}, seen)
    assert.is_true(conn.closed)
    assert_closed_error(f1, "f1 (in flight)")
    assert_closed_error(f2, "f2 (queued, cancel attempted)")
    assert_closed_error(f3, "f3 (queued, cancel attempted)")
    assert_loop_usable()
    assert.same({}, reported)
    assert.is_true(H.no_backends(app))
  end)

  -- r5
  it("close(): a done callback that awaits on the main thread gets an InterfaceError instead of re-entering the loop over closed requests", function()
    local dsn, app = H.app_dsn("regress_r5")
    local conn = momoko.connect(dsn):await()
    local f1 = conn:execute("SELECT pg_sleep(0.2)")
    local f2 = conn:execute("SELECT 2", nil, {timeout = 50})
    local nested
    f1:add_done_callback(function()
      nested = table.pack(pcall(function() return momoko.sleep(150):await() end))
    end)
    conn:close()
    assert.is_not_nil(nested, "the done callback ran during close()")
    assert.is_false(nested[1])
    assert.is_true(momoko.is(nested[2], "InterfaceError"), tostring(nested[2]))
    assert.equal(NESTED_AWAIT, nested[2].message)
    assert_closed_error(f1, "f1 (in flight)")
    assert_closed_error(f2, "f2 (queued with a timeout)")
    -- past f2's 50 ms timeout: its timer is gone, the error stays "connection closed"
    momoko.sleep(100):await()
    assert_closed_error(f2, "f2 after its timeout would have fired")
    assert_loop_usable()
    assert.same({}, reported)
    assert.is_true(H.no_backends(app))
  end)

  -- r6
  it("argument errors of sleep, spawn, add_done_callback and set_loop are InterfaceError objects, not plain strings", function()
    local cases = {
      {function() momoko.sleep(1.5) end, "momoko.sleep: ms must be a non-negative integer"},
      {function() momoko.sleep(-1) end, "momoko.sleep: ms must be a non-negative integer"},
      {function() momoko.spawn(42) end, "momoko.spawn: a function expected, got number"},
      {function() momoko.spawn() end, "momoko.spawn: a function expected, got no value"},
      {function() momoko.sleep(0):add_done_callback(1) end, "add_done_callback: a function expected, got number"},
      {function() momoko.set_loop(1) end, "momoko.set_loop: a uv_loop_t* light userdata expected"},
    }
    for i, case in ipairs(cases) do
      local ok, e = pcall(case[1])
      assert.is_false(ok, "case " .. i)
      assert.equal("table", type(e), "case " .. i .. ": " .. tostring(e))
      assert.is_true(momoko.is(e, "InterfaceError"), "case " .. i .. ": " .. tostring(e))
      assert.equal(case[2], e.message, "case " .. i)
      assert.equal("InterfaceError: " .. case[2], tostring(e), "case " .. i)
    end
    assert_loop_usable()
    assert.same({}, reported)
  end)

  -- r3
  it("an unhandled spawn error whose __tostring raises is reported and leaves momoko.run() and main-thread awaits usable", function()
    local out, ok = H.run_lua([[
      io.stdout:setvbuf("no")
      local momoko = require "momoko"
      local bad = setmetatable({}, {__tostring = function() error("tostring fails", 0) end})
      momoko.spawn(function() momoko.sleep(1):await(); error(bad) end)
      print("run 1", pcall(momoko.run))
      print("run 2", pcall(momoko.run))
      print("await", pcall(function() momoko.sleep(1):await(); return "awaited" end))
      -- an on_error handler that collects, then fails with the same value: the stderr
      -- fallback must survive the failing __tostring too
      local got = {}
      momoko.on_error(function(e) got[#got + 1] = e; error(e) end)
      momoko.spawn(function() momoko.sleep(1):await(); error(bad) end)
      print("run 3", pcall(momoko.run))
      print("collected", #got, rawequal(got[1], bad))
      print("await", pcall(function() momoko.sleep(1):await(); return "again" end))
    ]])
    assert.is_true(ok, out)
    assert.equal(table.concat({
      "momoko: unhandled error whose __tostring failed: tostring fails",
      "run 1\ttrue",
      "run 2\ttrue",
      "await\ttrue\tawaited",
      "momoko: unhandled error whose __tostring failed: tostring fails",
      "run 3\ttrue",
      "collected\t1\ttrue",
      "await\ttrue\tagain",
    }, "\n") .. "\n", out)
  end)

  -- r3b
  it("an on_notice handler raising a value whose __tostring raises does not fail the request or leave the connection busy", function()
    local dsn, app = H.app_dsn("regress_r3b")
    local out, ok = H.run_lua(string.format([[
      io.stdout:setvbuf("no")
      local momoko = require "momoko"
      local bad = setmetatable({}, {__tostring = function() error("tostring fails", 0) end})
      local notices = 0
      local conn = momoko.connect{dsn = %q, on_notice = function() notices = notices + 1; error(bad) end}:await()
      local ok, cur = pcall(function() return conn:execute("DO $$BEGIN RAISE NOTICE 'hi'; END$$"):await() end)
      print("notice", ok, (tostring(cur):match("^<momoko%%.Cursor") ~= nil), notices)
      local ok2, cur2 = pcall(function() return conn:execute("SELECT 1"):await() end)
      print("select", ok2, ok2 and cur2:fetchone()[1])
      print("state", tostring(conn):match("state=(%%w+)"), conn.closed)
      print("run", pcall(momoko.run))
      conn:close()
    ]], dsn))
    assert.is_true(ok, out)
    assert.equal(table.concat({
      "momoko: unhandled error whose __tostring failed: tostring fails",
      "notice\ttrue\ttrue\t1",
      "select\ttrue\t1",
      "state\tidle\tfalse",
      "run\ttrue",
    }, "\n") .. "\n", out)
    assert.is_true(H.no_backends(app))
  end)

  -- r4
  it("lua_close: cancelling a query future in a __gc that runs after its connection's __gc does not touch freed memory", function()
    local dsn, app = H.app_dsn("regress_r4")
    local out, ok = H.run_lua(string.format([[
      io.stdout:setvbuf("no")
      local momoko = require "momoko"
      -- created before the connection, so lua_close finalizes it after the connection
      local holder = setmetatable({}, {__gc = function(self)
        print("cancel in __gc", pcall(self.f.cancel, self.f))
      end})
      local conn = momoko.connect(%q):await()
      holder.f = conn:execute("SELECT pg_sleep(0.5)")
      print("end of chunk")
    ]], dsn))
    assert.is_true(ok, out)
    assert.equal("end of chunk\ncancel in __gc\ttrue\tfalse\n", out)
    assert.is_true(H.no_backends(app, 10000))
  end)

  -- r4b
  it("lua_close: cancelling a sleep future in a __gc that runs after momoko shut down does not touch freed memory", function()
    local out, ok = H.run_lua([[
      io.stdout:setvbuf("no")
      -- created before momoko is loaded, so lua_close finalizes it after momoko's state
      local holder = setmetatable({}, {__gc = function(self)
        print("cancel sleep in __gc", pcall(self.f.cancel, self.f))
      end})
      local momoko = require "momoko"
      holder.f = momoko.sleep(10000)
      print("end of chunk")
    ]])
    assert.is_true(ok, out)
    assert.equal("end of chunk\ncancel sleep in __gc\ttrue\tfalse\n", out)
  end)
end)
