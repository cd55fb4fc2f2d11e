-- Regression: a copy_from source or a copy_to sink that closed its connection freed the
-- request (and its COPY state) while the hook still used it: the source was then asked
-- for more items after the close (heap use after free, reported by ASan; without it the
-- source ran again and again, its items written into freed memory), and a sink or
-- source that raised after closing set the error of the freed request. The request is
-- now freed once the hook returned, and nothing more is asked of the source.
local momoko = require "momoko"
local H = require "helper"

describe("regress 170: a COPY source or sink that closes its connection", function()
  it("is called no more, and the COPY fails with connection closed", function()
    local dsn, app = H.app_dsn("regress_170")
    local conn = momoko.connect(dsn):await()
    conn:execute("CREATE TEMP TABLE t (a int)"):await()
    local calls = 0
    local f = conn:copy_from("COPY t FROM STDIN", function()
      calls = calls + 1
      conn:close()
      return "1\n"
    end)
    local err = H.failure(f)
    H.assert_kind("InterfaceError", err)
    assert.equal("connection closed", err.message)
    assert.equal(1, calls)
    assert.is_true(H.no_backends(app))
  end)

  it("may raise after closing: the COPY fails with connection closed", function()
    for _, method in ipairs{"copy_from", "copy_to"} do
      local dsn, app = H.app_dsn("regress_170b")
      local conn = momoko.connect(dsn):await()
      conn:execute("CREATE TEMP TABLE t (a int)"):await()
      local calls = 0
      local function hook()
        calls = calls + 1
        conn:close()
        error("after close", 0)
      end
      local f = method == "copy_from" and conn:copy_from("COPY t FROM STDIN", hook)
        or conn:copy_to("COPY (SELECT generate_series(1, 1000)) TO STDOUT", hook)
      local err = H.failure(f)
      H.assert_kind("InterfaceError", err)
      assert.equal("connection closed", err.message, method)
      assert.equal(1, calls, method)
      assert.is_true(H.no_backends(app))
    end
    H.assert_loop_usable()
  end)
end)
