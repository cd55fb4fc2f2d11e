-- tcproxy (tcproxy/, spec/support/tcproxy_helper.lua): the proxy the failure specs put between
-- momoko and the server. Checks forwarding, each control command as momoko sees it
-- (drop, refuse, stall, delay, stats, quit) and that the proxy never outlives its parent.
local momoko = require "momoko"
local H = require "helper"
local P = require "tcproxy_helper"

local failure = H.failure

local started = {}

-- A fresh proxy in front of the test server, stopped after the test.
local function start_proxy(opts)
  local proxy = P.start(opts)
  started[#started + 1] = proxy
  return proxy
end

-- proxy.dsn with a fresh application_name, to find its backend from psql.
local function app_dsn(proxy)
  local app = string.format("h10p_%d", math.random(1, 1e9))
  return proxy.dsn .. " application_name=" .. app, app
end

local function backend_state(app)
  return H.psql("SELECT state FROM pg_stat_activity WHERE application_name = '" .. app .. "'")
end

-- Waits (running momoko's loop) until the proxy counts no live pair.
local function no_pairs(proxy)
  return H.wait_until(function() return proxy:stats().pairs == 0 end, 5000)
end

local function read_all(path)
  local f = assert(io.open(path, "r"))
  local text = f:read("a")
  f:close()
  return text
end

-- Runs Lua code in a child lua5.4 with its output (and that of the proxy it starts) going
-- to a file, so that a proxy left behind cannot hold a pipe of ours open. Returns the
-- output so far, whether the child exited 0, and the file (to be read again later).
local function run_child(code)
  local script, out = os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local ok = os.execute(string.format("env -u LD_PRELOAD timeout 60 lua5.4 %s > %s 2>&1", script, out))
  os.remove(script)
  return read_all(out), ok == true, out
end

-- Asserts that the output file of a child (read once its proxy is gone) has no
-- sanitizer report, and removes it.
local function assert_clean(out)
  local text = read_all(out)
  os.remove(out)
  assert.not_matches("Sanitizer", text)
  assert.not_matches("runtime error", text)
end

-- Polls (without momoko's loop) until pid is gone, at most ms milliseconds.
local function gone_within(pid, ms)
  for _ = 1, math.ceil(ms / 20) do
    if not P.pid_alive(pid) then return true end
    os.execute("sleep 0.02")
  end
  return not P.pid_alive(pid)
end

describe("tcproxy", function()
  after_each(function()
    for i = #started, 1, -1 do
      started[i]:stop()
      started[i] = nil
    end
  end)

  it("starts on free ports and rewrites the DSN", function()
    local proxy = start_proxy()
    assert.is_true(proxy.port > 0 and proxy.control_port > 0)
    assert.are_not.equal(proxy.port, proxy.control_port)
    assert.is_true(proxy:alive())
    assert.matches("port=" .. proxy.port .. "%f[%D]", proxy.dsn)
    assert.matches("host=127.0.0.1", proxy.dsn)
    assert.not_matches("port=" .. os.getenv("MOMOKO_TEST_PORT") .. "%f[%D]", proxy.dsn)
    assert.equal("host=h port=2 dbname=x", P.rewrite_dsn("host=a port=1 dbname=x", "h", 2))
    assert.equal("dbname=x host=h port=2", P.rewrite_dsn("dbname=x", "h", 2))
  end)

  it("forwards a momoko connection both ways, large values included", function()
    local proxy = start_proxy()
    local conn = momoko.connect(proxy.dsn):await()
    assert.equal(42, conn:execute("SELECT 42"):await():fetchone()[1])
    -- 3 MB each way: more than the proxy's 256 KiB queue bound, so backpressure kicks in
    local big = string.rep("abcdefgh", 3 * 1024 * 1024 // 8)
    assert.equal(#big, conn:execute("SELECT length($1::text)", {big}):await():fetchone()[1])
    local got = conn:execute("SELECT repeat('xy', 1500000)"):await():fetchone()[1]
    assert.equal(3000000, #got)
    assert.equal(string.rep("xy", 1500000), got)
    local s = proxy:stats()
    assert.equal(1, s.pairs)
    assert.equal(1, s.accepted)
    assert.is_true(s.bytes_up > #big, "bytes_up " .. s.bytes_up)
    assert.is_true(s.bytes_down > 3000000, "bytes_down " .. s.bytes_down)
    conn:close()
    assert.is_true(no_pairs(proxy))
  end)

  it("serves several connections at once", function()
    local proxy = start_proxy()
    local futures = {}
    for i = 1, 8 do
      futures[i] = momoko.spawn(function()
        local c = momoko.connect(proxy.dsn):await()
        local v = c:execute("SELECT $1::int * 10, length(repeat('z', 200000))", {i}):await():fetchone()
        c:close()
        return v[1] + v[2]
      end)
    end
    local results = momoko.all(futures):await()
    for i = 1, 8 do assert.equal(i * 10 + 200000, results[i]) end
    assert.equal(8, proxy:stats().accepted)
    assert.is_true(no_pairs(proxy))
  end)

  it("drop: an in-flight query fails with OperationalError and the connection is closed", function()
    local proxy = start_proxy()
    local dsn, app = app_dsn(proxy)
    local conn = momoko.connect(dsn):await()
    local f = conn:execute("SELECT pg_sleep(2)")
    assert.is_true(H.wait_until(function() return backend_state(app) == "active" end, 5000))
    assert.equal("ok dropped=1", proxy:cmd("drop"))
    local err = failure(f)
    assert.equal("OperationalError", err.kind)
    assert.is_true(H.wait_until(function() return conn.closed end, 2000))
    assert.equal(0, proxy:stats().pairs)
    -- the backend notices when pg_sleep ends and it cannot answer
    assert.is_true(H.no_backends(app, 8000))
    -- later clients are served again
    local conn2 = momoko.connect(proxy.dsn):await()
    assert.equal(1, conn2:execute("SELECT 1"):await():fetchone()[1])
    conn2:close()
  end)

  it("drop: an idle connection is closed too", function()
    local proxy = start_proxy()
    local conn = momoko.connect(proxy.dsn):await()
    assert.equal("ok dropped=1", proxy:cmd("drop"))
    -- momoko watches idle connections: it sees the reset without a request
    assert.is_true(H.wait_until(function() return conn.closed end, 2000))
    local err = H.error_of(conn.execute, conn, "SELECT 1")
    assert.equal("InterfaceError", err.kind)
  end)

  it("refuse on: a new connection fails with OperationalError at once; off: it succeeds", function()
    local proxy = start_proxy()
    local before = momoko.connect(proxy.dsn):await()
    assert.equal("ok refuse=on", proxy:cmd("refuse on"))
    local f = momoko.connect(proxy.dsn)
    assert.is_true(H.wait_until(function() return f:done() end, 2000), "refused connect hangs")
    local err = failure(f)
    assert.equal("OperationalError", err.kind)
    -- a live pair is left alone
    assert.equal(5, before:execute("SELECT 5"):await():fetchone()[1])
    assert.equal("ok refuse=off", proxy:cmd("refuse off"))
    local conn = momoko.connect(proxy.dsn):await()
    assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
    local s = proxy:stats()
    assert.equal(1, s.refused)
    assert.equal(2, s.accepted)
    conn:close()
    before:close()
  end)

  it("stall on: a query with a timeout fails with TimeoutError", function()
    local proxy = start_proxy()
    local conn = momoko.connect(proxy.dsn):await()
    assert.equal("ok stall=on", proxy:cmd("stall on"))
    local f = conn:execute("SELECT 1", nil, {timeout = 300})
    local err = failure(f)
    assert.equal("TimeoutError", err.kind)
    -- the cancel went through the stalled proxy too; let everything through again
    assert.equal("ok stall=off", proxy:cmd("stall off"))
    local conn2 = momoko.connect(proxy.dsn):await()
    assert.equal(2, conn2:execute("SELECT 2"):await():fetchone()[1])
    conn2:close()
    conn:close()
    assert.is_true(no_pairs(proxy))
  end)

  it("stall on keeps the data; stall off delivers it", function()
    local proxy = start_proxy()
    local conn = momoko.connect(proxy.dsn):await()
    proxy:cmd("stall on")
    local f = conn:execute("SELECT 7, length(repeat('q', 1000000))")
    momoko.sleep(300):await()
    assert.is_false(f:done())
    assert.is_false(conn.closed)
    assert.equal(1, proxy:stats().pairs)
    proxy:cmd("stall off")
    local row = f:await():fetchone()
    assert.same({7, 1000000}, {row[1], row[2]})
    conn:close()
  end)

  it("delay MS: each chunk waits, in order, and 0 removes the delay", function()
    local proxy = start_proxy()
    local conn = momoko.connect(proxy.dsn):await()
    assert.equal("ok delay=200", proxy:cmd("delay 200"))
    -- the query waits 200 ms on the way up and 200 ms on the way down
    local f = conn:execute("SELECT 6")
    momoko.sleep(200):await()
    assert.is_false(f:done(), "no delay seen")
    assert.equal(6, f:await():fetchone()[1])
    -- several requests in a row keep their order
    local fs = {}
    for i = 1, 5 do fs[i] = conn:execute("SELECT $1::int", {i}) end
    for i = 1, 5 do assert.equal(i, fs[i]:await():fetchone()[1]) end
    assert.equal("ok delay=0", proxy:cmd("delay 0"))
    local before = proxy:stats()
    assert.equal(8, conn:execute("SELECT 8"):await():fetchone()[1])
    local after = proxy:stats()
    assert.is_true(after.bytes_up > before.bytes_up)
    assert.is_true(after.bytes_down > before.bytes_down)
    conn:close()
  end)

  it("stats counts pairs, clients, refusals and bytes; bad commands get an error", function()
    local proxy = start_proxy()
    assert.equal("ok pairs=0 accepted=0 refused=0 bytes_up=0 bytes_down=0", proxy:cmd("stats"))
    local a = momoko.connect(proxy.dsn):await()
    local b = momoko.connect(proxy.dsn):await()
    local s = proxy:stats()
    assert.equal(2, s.pairs)
    assert.equal(2, s.accepted)
    assert.is_true(s.bytes_up > 0 and s.bytes_down > 0)
    a:close()
    b:close()
    assert.is_true(no_pairs(proxy))
    proxy:cmd("refuse on")
    failure(momoko.connect(proxy.dsn))
    assert.equal(1, proxy:stats().refused)
    assert.equal(2, proxy:stats().accepted)
    for _, bad in ipairs({"bogus", "refuse", "stall maybe", "delay -1", "delay 1x", "drop now"}) do
      local err = H.error_of(proxy.cmd, proxy, bad)
      assert.matches('"error ', tostring(err))
    end
  end)

  it("quit closes everything and exits 0", function()
    local proxy = start_proxy()
    local conn = momoko.connect(proxy.dsn):await()
    assert.equal("ok bye", proxy:cmd("quit"))
    assert.is_true(gone_within(proxy.pid, 3000))
    local ok, how, code = proxy:stop()
    assert.is_true(ok, tostring(how) .. " " .. tostring(code))
    assert.is_false(proxy:alive())
    assert.is_true(H.wait_until(function() return conn.closed end, 2000))
  end)

  it("exits when stdin closes (the helper's pipe), its parent still running", function()
    local proxy = start_proxy()
    local pipe = proxy.pipe
    proxy.pipe = nil -- close it by hand, without "quit"
    assert.is_true(pipe:close())
    assert.is_false(proxy:alive())
  end)

  it("exits when its parent dies (getppid watch, stdin not watched)", function()
    local out, ok, path = run_child(string.format([[
      local P = require "tcproxy_helper"
      local proxy = P.start{upstream_port = %d, exit_on_stdin_eof = false}
      print("pid " .. proxy.pid)
      io.stdout:flush()
      os.exit(0) -- no lua_close: the pipe is not closed by its finalizer
    ]], tonumber(os.getenv("MOMOKO_TEST_PORT"))))
    assert.is_true(ok, out)
    local pid = tonumber(out:match("pid (%d+)"))
    assert.is_not_nil(pid, out)
    assert.is_true(gone_within(pid, 3000), "tcproxy " .. pid .. " outlived its parent")
    assert_clean(path)
  end)

  it("exits when its parent is killed", function()
    local out, _, path = run_child(string.format([[
      local P = require "tcproxy_helper"
      local proxy = P.start{upstream_port = %d}
      print("pid " .. proxy.pid)
      io.stdout:flush()
      local self = io.open("/proc/self/stat"):read("a"):match("^(%%d+)")
      os.execute("kill -9 " .. self)
    ]], tonumber(os.getenv("MOMOKO_TEST_PORT"))))
    local pid = tonumber(out:match("pid (%d+)"))
    assert.is_not_nil(pid, out)
    assert.is_true(gone_within(pid, 3000), "tcproxy " .. pid .. " outlived its parent")
    assert_clean(path)
  end)
end)
