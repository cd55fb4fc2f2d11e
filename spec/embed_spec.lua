-- The example C host (examples/embed: an HTTP server on its own libuv loop that embeds
-- Lua and gives momoko that loop) against the test server: the binary of the build
-- under test, started on 127.0.0.1 with a free port, requested by a luv child that
-- opens its connections all at once.
local H = require "helper"

-- <build>/examples/embed/momoko-embed, <build> being where LUA_CPATH finds momoko/core.so
-- (build/ or, under scripts/test --sanitize, build-asan/).
local function host_binary()
  local so = assert(package.searchpath("momoko.core", package.cpath))
  local exe = so:gsub("/momoko/core%.so$", "") .. "/examples/embed/momoko-embed"
  local f = io.open(exe)
  assert(f, exe .. " not built (scripts/build builds it)")
  f:close()
  return exe
end

-- Starts the host with its pool of pool_size connections on dsn. Returns {port =, pid =,
-- finish = fn}: finish() waits for the host to exit and returns whether it exited 0, and
-- the rest of its output (stdout and stderr). A test that fails before finish() leaves
-- the host to its finally, which kills it.
local function start_host(dsn, pool_size)
  local p = assert(io.popen(string.format(
    "exec env -u LD_PRELOAD MOMOKO_DSN='%s' EMBED_POOL_SIZE=%d timeout 60 %s examples/embed/handler.lua 2>&1",
    dsn, pool_size, host_binary())))
  local line = p:read("l") or ""
  local port, pid = line:match("^listening on http://127%.0%.0%.1:(%d+)/ pid (%d+)$")
  if not port then
    error("momoko-embed did not start: " .. line .. "\n" .. p:read("a"))
  end
  local host = {port = tonumber(port), pid = tonumber(pid)}
  function host.finish()
    local rest = p:read("a")
    local ok = p:close() == true
    p = nil
    return ok, rest
  end
  finally(function()
    if p then
      os.execute("kill -KILL " .. host.pid .. " 2>/dev/null")
      p:close()
    end
  end)
  return host
end

-- Starts a luv child that sends a GET for each target, all connections opened at once,
-- and reads each answer to the end. Returns the io.popen handle of its output.
local function start_client(port, targets)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(string.format([[
    local uv = require "luv"
    local port, targets = %d, {%s}
    local answers = {}
    local t0 = uv.hrtime()
    for i, target in ipairs(targets) do
      local tcp, chunks = uv.new_tcp(), {}
      assert(tcp:connect("127.0.0.1", port, function(err)
        assert(not err, err)
        assert(tcp:write("GET " .. target .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
        assert(tcp:read_start(function(rerr, data)
          assert(not rerr, rerr)
          if data then
            chunks[#chunks + 1] = data
          else
            tcp:close()
            answers[i] = table.concat(chunks)
          end
        end))
      end))
    end
    uv.run()
    for i = 1, #targets do
      io.write(i, "\t", ((answers[i] or "no answer"):gsub("\r", "\\r"):gsub("\n", "\\n")), "\n")
    end
    io.write("ms\t", (uv.hrtime() - t0) / 1e6, "\n")
  ]], port, table.concat((function()
    local quoted = {}
    for i, t in ipairs(targets) do quoted[i] = string.format("%q", t) end
    return quoted
  end)(), ", ")))
  f:close()
  return assert(io.popen("exec env -u LD_PRELOAD timeout 60 lua5.4 " .. path .. " 2>&1; rm -f " .. path))
end

-- What the client printed: {answers = {[i] = raw answer}, ms = elapsed milliseconds}.
local function client_result(p)
  local out = p:read("a")
  assert(p:close(), "the client failed: " .. out)
  local result = {answers = {}}
  for i, answer in out:gmatch("(%d+)\t([^\n]*)\n") do
    result.answers[tonumber(i)] = answer:gsub("\\n", "\n"):gsub("\\r", "\r")
  end
  result.ms = tonumber(out:match("\nms\t([%d.]+)\n"))
  return result
end

local function request(port, targets)
  return client_result(start_client(port, targets))
end

-- An answer "HTTP/1.1 status ...": its status line, content type and body.
local function parse(answer)
  local status, headers, body = answer:match("^HTTP/1%.1 (%d+ [^\r]*)\r\n(.-)\r\n\r\n(.*)$")
  return status, headers and headers:match("Content%-Type: ([^\r]+)"), body
end

-- The largest number of the intervals {started, ended} that overlap at one instant.
local function max_overlap(intervals)
  local events = {}
  for _, iv in ipairs(intervals) do
    events[#events + 1] = {iv[1], 1}
    events[#events + 1] = {iv[2], -1}
  end
  table.sort(events, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2] -- an end before a start at the same instant
  end)
  local now, most = 0, 0
  for _, e in ipairs(events) do
    now = now + e[2]
    if now > most then most = now end
  end
  return most
end

describe("examples/embed: a C host on its own libuv loop", function()
  it("serves 50 requests at once, each waiting 0.2 s on the server, and stops on /quit", function()
    local dsn, app = H.app_dsn("embed")
    local host = start_host(dsn, 50)
    -- the pool's 50 connections are open: the requests need not wait for them
    assert.is_true(H.wait_until(function() return H.backends(app) == 50 end, 10000))
    local targets = {}
    for i = 1, 50 do targets[i] = "/sleep?n=" .. i end
    local result = request(host.port, targets)

    local intervals, pids, npids = {}, {}, 0
    for i = 1, 50 do
      local status, content_type, body = parse(result.answers[i] or "")
      assert.equal("200 OK", status, result.answers[i])
      assert.equal("application/json", content_type)
      local n, pid, started, ended = body:match('^{"n":(%d+),"pid":(%d+),"started":([%d.]+),"ended":([%d.]+)}\n$')
      assert.equal(i, tonumber(n), body)
      started, ended = tonumber(started), tonumber(ended)
      assert.is_true(ended - started >= 0.2, body) -- the server slept
      intervals[i] = {started, ended}
      if not pids[pid] then
        pids[pid], npids = true, npids + 1
      end
    end
    -- served concurrently: all 50 sleeps ran on the server at one instant, each on a
    -- backend of its own, and the whole took far less than 50 x 0.2 s one after another
    assert.equal(50, max_overlap(intervals))
    assert.equal(50, npids)
    assert.is_true(result.ms < 50 * 200 / 2, "50 requests took " .. result.ms .. " ms")
    print(string.format("# embed: 50 concurrent /sleep requests answered in %.0f ms", result.ms))

    local status, content_type, stats = parse(request(host.port, {"/stats"}).answers[1])
    assert.same({"200 OK", "application/json"}, {status, content_type})
    for _, field in ipairs{'"busy":0', '"waiting":0', '"size":50', '"dead":0'} do
      assert.matches(field, stats, 1, true)
    end
    local bye = request(host.port, {"/quit"}).answers[1]
    assert.same({"200 OK", "text/plain", "bye\n"}, {parse(bye)})
    local ok, rest = host.finish()
    assert.is_true(ok, rest)
    assert.equal("", rest) -- nothing on stderr: no handler error, no sanitizer report
    assert.is_true(H.no_backends(app))
  end)

  it("answers a request in flight, then exits 0 on SIGTERM and leaves no backend", function()
    local dsn, app = H.app_dsn("embed")
    local host = start_host(dsn, 1)
    local before = request(host.port, {"/", "/nowhere", "/sleep?s=9"}).answers
    local status, content_type, body = parse(before[1])
    assert.same({"200 OK", "text/plain"}, {status, content_type})
    assert.matches("^database momoko_test on PostgreSQL ", body)
    assert.same({"404 Not Found", "text/plain", "not found\n"}, {parse(before[2])})
    assert.same({"400 Bad Request", "text/plain", "s: 0 to 5 seconds\n"}, {parse(before[3])})

    local client = start_client(host.port, {"/sleep?n=7&s=1"})
    H.running_pid(app, "pg_sleep")
    assert.is_true(os.execute("kill -TERM " .. host.pid))
    local answer = client_result(client).answers[1]
    status, _, body = parse(answer)
    assert.equal("200 OK", status, answer)
    assert.matches('^{"n":7,', body)
    local ok, rest = host.finish()
    assert.is_true(ok, rest)
    assert.equal("", rest)
    assert.is_true(H.no_backends(app))
  end)
end)
