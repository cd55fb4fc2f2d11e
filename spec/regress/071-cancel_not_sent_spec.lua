-- Regression (review, item 4): f:cancel() on a running request returned false when no
-- cancel request could be started (mk_cancel_start failed: no memory, no thread), and
-- the query went on running: the header said 0 means "not on this connection", the docs
-- that cancel returns true when anything was cancelled. Now the connection is closed
-- instead: cancel returns true, the future fails at once with QueryCanceledError, the
-- connection is closed and its backend goes. Driven in a child process whose thread
-- stacks (the stack rlimit) cannot fit in its address space (ulimit -v): pthread_create
-- fails, everything else works. Not under the sanitizers (ASan needs the address space).
local momoko = require "momoko"
local H = require "helper"

local CHILD = [[
local momoko = require "momoko"
momoko.spawn(function()
  local conn = momoko.connect(os.getenv("MOMOKO_TEST_DSN")):await()
  local f = conn:execute("SELECT pg_sleep(5)")
  momoko.sleep(100):await() -- sent and running
  local t0 = os.time()
  print("cancel", f:cancel())
  local ok, err = pcall(f.await, f)
  print("failed", not ok, err.kind, err.message)
  print("closed", conn.closed, "quick", os.time() - t0 <= 2)
  print("again", f:cancel())
end):await()
]]

local function run_without_threads(code, app)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local cmd = string.format("env -u LD_PRELOAD MOMOKO_TEST_DSN='%s application_name=%s' bash -c "
    .. "'ulimit -s 4000000 && ulimit -v 3000000 && exec timeout 60 lua5.4 %s' 2>&1", H.dsn, app, path)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  os.remove(path)
  return out, ok == true
end

describe("regress 071: f:cancel() when no cancel request can be sent", function()
  local sanitized = os.getenv("MOMOKO_TEST_SANITIZE") == "1"

  ;(sanitized and pending or it)("closes the connection: true, QueryCanceledError at once, backend gone", function()
    local app = "r071_" .. math.random(1, 1e9)
    local out, ok = run_without_threads(CHILD, app)
    assert.is_true(ok, out)
    assert.equal(table.concat({
      "cancel\ttrue",
      "failed\ttrue\tQueryCanceledError\tcanceling statement due to user request: the cancel request could not be sent, connection closed",
      "closed\ttrue\tquick\ttrue",
      "again\tfalse",
    }, "\n") .. "\n", out)
    assert.is_true(H.no_backends(app, 8000))
  end)

  it("the return values a user sees: true for a running or queued request, false once done", function()
    local dsn, app = H.app_dsn("r071b")
    H.async(function()
      local conn = momoko.connect(dsn):await()
      H.close_after(conn, app, function()
        local running = conn:execute("SELECT pg_sleep(5)")
        local queued = conn:execute("SELECT 1")
        momoko.sleep(100):await()
        assert.equal("active", H.psql("SELECT state FROM pg_stat_activity WHERE application_name = '" .. app .. "'"))
        assert.is_true(queued:cancel())
        assert.is_true(running:cancel())
        H.assert_kind("QueryCanceledError", H.failure(running))
        H.assert_kind("QueryCanceledError", H.failure(queued))
        assert.is_false(running:cancel())
        assert.is_false(queued:cancel())
        assert.equal(2, conn:execute("SELECT 2"):await():fetchone()[1])
      end)
    end)
  end)
end)
