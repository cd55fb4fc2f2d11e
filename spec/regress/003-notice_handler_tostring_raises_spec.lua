-- An on_notice handler that raises a value whose __tostring raises neither fails the
-- request nor leaves the connection busy. The error value cannot even be printed, so it
-- runs in a child lua5.4, which must exit 0 with exactly the expected output.
-- Regression r3b, found in review: this spec failed before its fix.
local H = require "helper"

describe("regressions", function()
  -- r3b
  it("an on_notice handler raising a value whose __tostring raises does not fail the request or leave the connection busy", function()
    local dsn, app = H.app_dsn("regress_r3b")
    H.assert_child_output(string.format([[
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
    ]], dsn), {
      "momoko: unhandled error whose __tostring failed: tostring fails",
      "notice\ttrue\ttrue\t1",
      "select\ttrue\t1",
      "state\tidle\tfalse",
      "run\ttrue",
    })
    assert.is_true(H.no_backends(app))
  end)
end)
