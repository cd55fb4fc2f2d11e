-- Regression (issue "Foundation", item 6): libpq resolves host names with a blocking
-- getaddrinfo inside PQconnectStart, which stopped the whole loop for as long as the
-- lookup took. Names are now resolved on libuv's thread pool first and handed to libpq
-- as hostaddr beside host (libpq keeps host for TLS, .pgpass and its messages); a name
-- with several addresses becomes several hosts, and lists of hosts keep working.
--
-- A slow lookup without any network traffic: glibc reads the file named by
-- HOSTALIASES for a dotless name before it would ask DNS, and here that file is a FIFO
-- whose writer waits 600 ms before it answers, with an alias that is not a valid DNS
-- name (a label of 70 characters), so no query is ever sent and the lookup fails. The
-- child lua5.4 counts a 10 ms timer meanwhile.
local momoko = require "momoko"
local H = require "helper"

local function dsn_with_host(host, extra)
  return (H.dsn:gsub("host=%S+", "host=" .. host)) .. (extra or "")
end

describe("regress 017: host names are resolved off the loop", function()
  it("a lookup that takes 600 ms does not stop the loop; the name then fails with OperationalError", function()
    local fifo = os.tmpname()
    os.remove(fifo)
    assert(os.execute("mkfifo " .. fifo))
    local label = string.rep("a", 70)
    local out, ok = H.run_lua([[
local uv = require "luv"
local momoko = require "momoko"
local fifo, label = ]] .. string.format("%q, %q", fifo, label) .. [[
uv.os_setenv("HOSTALIASES", fifo)
-- the writer opens the FIFO (waiting for the resolver to open it), then answers late,
-- a few times: glibc reads the file once for each address family it asks for
os.execute(string.format("(sleep 0.6; for i in 1 2 3 4 5 6 7 8; do echo 'momokoslowhost %s'; sleep 0.1; done) > %s 2>/dev/null &", label, fifo))
local ticks = 0
local ticker = uv.new_timer()
ticker:start(10, 10, function() ticks = ticks + 1 end)
local dsn = os.getenv("MOMOKO_TEST_DSN"):gsub("host=%S+", "host=momokoslowhost") .. " connect_timeout=10"
local t0 = uv.hrtime()
local f = momoko.connect(dsn)
local call_ms = (uv.hrtime() - t0) // 1000000
local ok, err = pcall(f.await, f)
local total_ms = (uv.hrtime() - t0) // 1000000
ticker:stop()
ticker:close()
print(string.format("call_ms=%d total_ms=%d ticks=%d", call_ms, total_ms, ticks))
print("ok=" .. tostring(ok) .. " kind=" .. tostring(not ok and err.kind))
print("message=" .. tostring(not ok and err.message))
print("END")
io.stdout:flush()
os.exit(0) -- no lua_close: luv crashes there on a handle whose close callback never ran
]])
    -- a writer still waiting for a reader (a lookup that never read the file) is let go
    os.execute("timeout 2 cat " .. fifo .. " >/dev/null 2>&1")
    os.remove(fifo)
    assert.is_true(ok, out)
    assert.matches("END", out, 1, true)
    local call_ms, total_ms, ticks = out:match("call_ms=(%d+) total_ms=(%d+) ticks=(%d+)")
    call_ms, total_ms, ticks = tonumber(call_ms), tonumber(total_ms), tonumber(ticks)
    assert.is_not_nil(call_ms, out)
    assert.is_true(total_ms >= 500, "the lookup was not slow: " .. out)
    assert.is_true(call_ms < 200, "connect() blocked for " .. call_ms .. " ms")
    -- the timer kept firing while the lookup ran (about 60 times in 600 ms)
    assert.is_true(ticks >= total_ms // 40, "the loop stood still: " .. out)
    assert.matches("ok=false kind=OperationalError", out, 1, true)
    assert.matches('message=could not translate host name "momokoslowhost" to address', out, 1, true)
  end)

  it("host=localhost connects, and keeps the name for libpq", function()
    local dsn, app = H.app_dsn("r017")
    local conn = momoko.connect(dsn_with_host("localhost", dsn:match(" application_name=%S+"))):await()
    assert.matches("^<momoko%.Connection host=localhost ", tostring(conn))
    assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
    assert.equal(1, H.backends(app))
    conn:close()
    assert.is_true(H.no_backends(app))
  end)

  it("a list of hosts: a name that does not resolve is skipped, the next one is used", function()
    local port = tonumber(os.getenv("MOMOKO_TEST_PORT"))
    local bad = string.rep("b", 70) -- not a valid DNS name: fails at once, nothing is sent
    local dsn = (H.dsn:gsub("host=%S+", "host=" .. bad .. ",localhost,127.0.0.1"):gsub("port=%S+",
      string.format("port=%d,%d,%d", port, port, port)))
    local conn = momoko.connect(dsn .. " target_session_attrs=read-write"):await()
    assert.matches("^<momoko%.Connection host=localhost ", tostring(conn))
    assert.equal(2, conn:execute("SELECT 2"):await():fetchone()[1])
    conn:close()
    local err = H.failure(momoko.connect((H.dsn:gsub("host=%S+", "host=" .. bad))))
    H.assert_kind("OperationalError", err)
    assert.matches('could not translate host name "' .. bad .. '"', err.message, 1, true)
  end)
end)
