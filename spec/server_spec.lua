-- The example server (examples/server/): started as a child lua5.4 on 127.0.0.1 (a free
-- port) against the test server, asked through the example client (a child too: luv
-- handles in this process would live on the loop momoko shares with luv).
local H = require "helper"
local cjson = require "cjson"

local SERVER = "examples/server/main.lua"
local CLIENT = "examples/server/client.lua"

-- Starts the example server on dsn; returns the H.child_server handle, with .errors the
-- path of the file its stderr goes to.
local function start_server(dsn)
  local errors = os.tmpname()
  local p = assert(io.popen(string.format(
    "exec env LD_PRELOAD='%s' MOMOKO_DSN='%s' timeout 120 lua5.4 %s --port 0 2>%s",
    os.getenv("MOMOKO_TEST_LD_PRELOAD") or "", dsn, SERVER, errors)))
  local server = H.child_server(p, "example server")
  server.errors = errors
  return server
end

local function stderr_of(server)
  local f = assert(io.open(server.errors))
  local text = f:read("a")
  f:close()
  return text
end

-- Runs the client with these arguments (each quoted for the shell); returns its
-- io.popen handle.
local function client(port, ...)
  local args = {}
  for i, a in ipairs{...} do args[i] = "'" .. a .. "'" end
  return assert(io.popen(string.format("env -u LD_PRELOAD timeout 60 lua5.4 %s %d %s 2>&1",
    CLIENT, port, table.concat(args, " "))))
end

-- Reads the client's output to the end: an array of {path =, status =, ms =, body =
-- (decoded)}, with .total (the "all N" line's milliseconds) and .other (any other line).
local function answers(p)
  local list = {other = {}}
  for line in p:lines() do
    local total = line:match("^all %d+ %S+ ([%d.]+)$")
    local path, status, ms, body = line:match("^(%S+) (%d%d%d) ([%d.]+) (.*)$")
    if total then
      list.total = tonumber(total)
    elseif path then
      list[#list + 1] = {path = path, status = tonumber(status), ms = tonumber(ms), body = cjson.decode(body)}
    else
      list.other[#list.other + 1] = line
    end
  end
  local ok = p:close()
  assert.is_true(ok == true, "the client failed: " .. table.concat(list.other, "\n"))
  return list
end

local function get(port, ...)
  return answers(client(port, ...))
end

-- The one answer to path: asserts its status; returns its body.
local function body_of(port, path, status)
  local list = get(port, path)
  assert.equal(1, #list)
  assert.equal(status or 200, list[1].status, path .. ": " .. cjson.encode(list[1].body))
  return list[1].body
end

describe("the example server", function()
  local server, app
  lazy_setup(function()
    local dsn
    dsn, app = H.app_dsn("server")
    server = start_server(dsn)
  end)
  lazy_teardown(function()
    if server then
      server.stop()
      os.remove(server.errors)
    end
  end)

  it("answers each page of the tutorial with its values", function()
    local port = server.port
    assert.same({result = 1}, body_of(port, "/one"))
    assert.same({q1 = {{1}}, q2 = {{2}}, q3 = {{3}}}, body_of(port, "/parallel"))
    local tx = body_of(port, "/transaction")
    assert.is_true(tx.same_transaction)
    assert.equal(42, tx.answer)
    assert.equal("number", type(tx.xid))
    assert.same({rows = 1000, chunks = 100, sum = 500500, last = 1000}, body_of(port, "/cursor"))
    assert.same({values = {1, 2, 3, 4, 5}}, body_of(port, "/callproc"))
    assert.same({sql = "SELECT 'O''Reilly', 42"}, body_of(port, "/mogrify"))
    assert.same({hstore = {a = "1", b = cjson.null}}, body_of(port, "/hstore"))
    assert.same({jsonb = {a = {1, 2, {b = true}}}, json = {hello = "world", n = 3}}, body_of(port, "/json"))
    assert.same({slept_ms = 10}, body_of(port, "/sleep?ms=10"))
    local index = body_of(port, "/")
    assert.same({"/", "/callproc", "/cursor", "/fail", "/hstore", "/json", "/mogrify", "/one",
                 "/parallel", "/sleep", "/stats", "/transaction"}, index.pages)
    assert.same({error = "no page /nope"}, body_of(port, "/nope", 404))
    assert.same({error = "ms must be an integer from 0 to 10000"}, body_of(port, "/sleep?ms=x", 400))
  end)

  it("answers 500 for a failing handler, reports the error to on_error and keeps serving", function()
    local before = body_of(server.port, "/stats").errors
    local list = get(server.port, "/fail?when=now", "/fail?when=later", "/fail?when=query", "/one")
    assert.equal(4, #list)
    for i = 1, 3 do
      assert.equal(500, list[i].status)
      assert.same({error = "internal server error"}, list[i].body)
    end
    assert.equal(200, list[4].status)
    assert.same({result = 1}, list[4].body)
    assert.equal(before + 3, body_of(server.port, "/stats").errors)
    -- what the server's on_error handler wrote: each error, the traceback of the
    -- coroutine when momoko resumed it (after an await)
    local text = stderr_of(server)
    assert.matches("request failed: [^\n]*pages.lua:%d+: failed on purpose, before any await\n", text)
    assert.matches("request failed: [^\n]*pages.lua:%d+: failed on purpose, after an await\nstack traceback:", text)
    assert.matches("request failed: DataError: division by zero %(SQLSTATE 22012%)\nstack traceback:", text)
    -- a failed request gave its connection back: none is left busy
    local pool = body_of(server.port, "/stats").pool
    assert.equal(0, pool.busy)
    assert.equal(pool.size, pool.free)
  end)

  it("runs requests concurrently, each in its own coroutine, on the pool's connections", function()
    local n, ms = 20, 500
    local p = client(server.port, "--times", tostring(n), "/sleep?ms=" .. ms)
    -- all n queries run on the server at the same time
    local sleeping = 0
    local all_at_once = H.wait_until(function()
      sleeping = tonumber(H.psql(string.format(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s' AND state = 'active' AND query LIKE '%%pg_sleep%%'",
        app)))
      return sleeping == n
    end, 5000)
    local list = answers(p)
    assert.is_true(all_at_once, "at most " .. sleeping .. " of " .. n .. " ran at once")
    assert.equal(n, #list)
    for _, a in ipairs(list) do
      assert.equal(200, a.status)
      assert.same({slept_ms = ms}, a.body)
    end
    -- far less than one after the other (n * ms); a loose bound, not a timing test
    assert.is_true(list.total < n * ms / 2, "took " .. list.total .. " ms")
  end)

  it("answers several requests on one connection (keep-alive, pipelined) in order", function()
    local list = get(server.port, "--keep-alive", "/one", "/mogrify", "/stats")
    assert.equal(3, #list)
    assert.same({result = 1}, list[1].body)
    assert.same({sql = "SELECT 'O''Reilly', 42"}, list[2].body)
    assert.equal(1, list[3].body.connections) -- the three came on the one connection
  end)

  it("answers a malformed request with 400 and closes the connection", function()
    local out, ok = H.run_lua(string.format([[
      local uv = require "luv"
      local tcp = uv.new_tcp()
      local got = ""
      tcp:connect("127.0.0.1", %d, function(err)
        assert(not err, err)
        tcp:write("NOT HTTP\r\n\r\nGET /one HTTP/1.1\r\n\r\n")
        tcp:read_start(function(read_err, data)
          assert(not read_err, read_err)
          if data then got = got .. data else tcp:close() end
        end)
      end)
      uv.run()
      io.write(got)
    ]], server.port))
    assert.is_true(ok, out)
    local head, body = out:match("^(.-)\r\n\r\n(.*)$")
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", head)
    assert.matches("\r\nConnection: close$", head)
    assert.same({error = "bad request line"}, cjson.decode(body)) -- and nothing for the GET after it
  end)

  it("has sane pool stats afterwards, matching the server's backends", function()
    local stats = body_of(server.port, "/stats")
    local pool = stats.pool
    assert.is_true(pool.size >= 20 and pool.size <= 32, "size " .. pool.size)
    assert.equal(pool.size, pool.free)
    for _, zero in ipairs{"busy", "waiting", "connecting", "dead", "timeouts", "reconnects", "retries"} do
      assert.equal(0, pool[zero], zero)
    end
    -- one per pool request and getconn: 1 at start-up (register_hstore's lookup), 11 for
    -- the pages (3 of them /parallel's), 3 failing pages, 20 sleeps, 2 keep-alive pages
    assert.equal(1 + 11 + 3 + 20 + 2, pool.acquired)
    assert.equal(pool.size, H.backends(app))
    assert.equal(1, stats.connections)
    assert.is_true(stats.requests > 40)
  end)

  it("closes its pool on SIGTERM", function()
    server.stop()
    assert.is_true(H.no_backends(app))
  end)
end)

describe("the example server on a database without hstore", function()
  it("answers /hstore with 501 saying so, and serves the other pages", function()
    local db = "nohstore_" .. math.random(1, 1e9)
    H.psql("CREATE DATABASE " .. db)
    local dsn, app = H.app_dsn("server_nohstore")
    dsn = dsn:gsub("dbname=%S+", "dbname=" .. db)
    local server = start_server(dsn)
    local ok, err = pcall(function()
      local body = body_of(server.port, "/hstore", 501)
      assert.matches("hstore type not found", body.error)
      assert.same({result = 1}, body_of(server.port, "/one"))
      assert.matches("/hstore is off: ProgrammingError", stderr_of(server))
    end)
    server.stop()
    os.remove(server.errors)
    assert.is_true(H.no_backends(app))
    H.psql("DROP DATABASE " .. db)
    if not ok then error(err, 0) end
  end)
end)
