-- Every runnable example in examples/ (the server and the C host have specs of their
-- own: server_spec, embed_spec) runs against the test server as a user would run it,
-- MOMOKO_DSN set, and prints what it says it does.
local H = require "helper"

-- Runs examples/NAME with MOMOKO_DSN; returns its output (stdout and stderr) and whether
-- it exited 0.
local function run_example(name)
  local cmd = string.format("LD_PRELOAD='%s' MOMOKO_DSN='%s' timeout 120 lua5.4 examples/%s 2>&1",
    os.getenv("MOMOKO_TEST_LD_PRELOAD") or "", H.dsn, name)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  return out, p:close() == true
end

local function assert_runs(name, lines)
  local out, ok = run_example(name)
  assert(ok, name .. " failed:\n" .. out)
  for _, pattern in ipairs(lines) do
    assert(out:find(pattern), name .. ": no line matching " .. pattern .. " in:\n" .. out)
  end
  return out
end

describe("examples", function()
  it("stream.lua streams 100,000 rows with the right sum and closes a second stream early", function()
    assert_runs("stream.lua", {
      "streamed 100000 rows, sum%(i%) = 5000050000 %(expected 5000050000%)",
      "took\t5\trows of 10,000,000, then closed the stream",
      "connection usable again",
    })
  end)

  it("copy.lua loads 10,000 rows, exports them, and a bad row commits nothing", function()
    assert_runs("copy.lua", {
      "copy_from loaded\t10000\trows",
      "copy_to with a sink:\t10000\trows",
      "bad row:\tfalse\tInterfaceError: copy_from: item 2 of the source, value 2",
      "rows after the failed COPY:\t10000",
    })
  end)

  it("listen.lua receives every notification in order, none after unlisten", function()
    assert_runs("listen.lua", {
      "received 5 of 5 notifications, in order: job 1, job 2, job 3, job 4, job 5",
      "after unlisten, still\t5\treceived",
    })
  end)

  it("trace.lua logs the slow and the failed query and the pool's events", function()
    assert_runs("trace.lua", {
      "slow query %([%d.]+ ms, 1 rows%): SELECT pg_sleep%(0.1%)",
      "query failed after [%d.]+ ms: SELECT %* FROM missing_table",
      "pool connect on 127.0.0.1",
      "\n42\n",
    })
  end)
end)
