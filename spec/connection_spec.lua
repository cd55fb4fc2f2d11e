-- API §3: momoko.Connection — connect, execute, callproc, transaction, mogrify, ping,
-- the per-connection FIFO, close, notices, timeouts and cancellation.
local momoko = require "momoko"
local H = require "helper"

local failure = H.failure

-- Asserts that fn(...) raises an InterfaceError at the call and returns it.
local function interface_error(fn, ...)
  local err = H.error_of(fn, ...)
  assert.is_not_nil(err, "expected an InterfaceError at the call")
  assert.equal("InterfaceError", type(err) == "table" and err.kind or tostring(err))
  assert.equal(momoko.Error, getmetatable(err))
  return err
end

-- The state word of tostring(conn).
local function state_of(conn)
  return tostring(conn):match("state=(%a+)>$")
end

local closed_port = H.closed_port

-- Waits until the backend with this pid runs a query (pg_stat_activity state active).
local function wait_active(pid)
  return H.wait_until(function()
    return H.psql("SELECT state FROM pg_stat_activity WHERE pid = " .. pid) == "active"
  end, 5000)
end

local function scratch_table()
  return H.scratch_table("h5_conn", "id serial PRIMARY KEY, v text, tx bigint")
end

local drop_table = H.drop_table

describe("momoko.connect", function()
  it("resolves to a connected Connection from a dsn", function()
    local dsn, app = H.app_dsn("h5c")
    local conn = momoko.connect(dsn):await()
    assert.equal("momoko.Connection", getmetatable(conn).__name)
    assert.is_false(conn.closed)
    assert.equal("idle", state_of(conn))
    assert.equal(1, H.backends(app))
    assert.equal(42, conn:execute("SELECT 42"):await():fetchone()[1])
    conn:close()
    assert.is_true(conn.closed)
    assert.is_true(H.no_backends(app))
  end)

  it("accepts momoko.Connection(opts), (dsn, opts) and momoko.connect(opts)", function()
    local dsn, app = H.app_dsn("h5c")
    local a = momoko.Connection({dsn = dsn})
    local b = momoko.Connection(dsn, {cursor_factory = momoko.cursors.dict})
    local c = momoko.Connection(dsn)
    assert.equal("new", state_of(a))
    assert.equal(0, H.backends(app))
    assert.equal(a, a:connect():await())
    assert.equal(b, b:connect():await())
    assert.equal(c, c:connect():await())
    local d = momoko.connect({dsn = dsn}):await()
    local e = momoko.connect(dsn, {}):await()
    assert.equal(5, H.backends(app))
    assert.same({x = 1}, b:execute("SELECT 1 AS x"):await():fetchone())
    assert.same({1}, a:execute("SELECT 1 AS x"):await():fetchone())
    for _, conn in ipairs({a, b, c, d, e}) do conn:close() end
    assert.is_true(H.no_backends(app))
  end)

  it("leaves the caller's opts table unchanged", function()
    local opts = {setsession = {"SET search_path = public"}}
    local conn = momoko.Connection(H.dsn, opts)
    assert.is_nil(opts.dsn)
    assert.same({setsession = {"SET search_path = public"}}, opts)
    conn:close()
  end)

  it("returns the same future while connecting, and a done one once connected", function()
    local conn = momoko.Connection(H.dsn)
    local f1 = conn:connect()
    local f2 = conn:connect()
    assert.is_true(rawequal(f1, f2))
    assert.equal("connecting", state_of(conn))
    assert.equal(conn, f1:await())
    assert.is_true(f2:done())
    local f3 = conn:connect()
    assert.is_false(rawequal(f1, f3))
    assert.is_true(f3:done())
    assert.equal(conn, f3:result())
    conn:close()
    interface_error(conn.connect, conn)
  end)

  it("shows new, connecting, idle, busy and closed in tostring, never the password", function()
    local conn = momoko.Connection(H.dsn .. " password=secret")
    local seen = {}
    local function look()
      local s = tostring(conn)
      assert.is_nil(s:find("secret", 1, true), s)
      assert.matches("^<momoko%.Connection host=127%.0%.0%.1 dbname=momoko_test state=%a+>$", s)
      seen[#seen + 1] = state_of(conn)
    end
    look()
    local f = conn:connect()
    look()
    f:await()
    look()
    local q = conn:execute("SELECT pg_sleep(0.05)")
    look()
    q:await()
    look()
    conn:close()
    look()
    assert.same({"new", "connecting", "idle", "busy", "idle", "closed"}, seen)
  end)

  it("raises InterfaceError at the call for a malformed dsn", function()
    for _, dsn in ipairs({"host='unterminated", "nosuchoption=1", "dbname", "postgresql://[::1", "port=1 port"}) do
      local err = interface_error(momoko.connect, dsn)
      assert.matches("invalid dsn", err.message)
      interface_error(momoko.Connection, dsn)
      interface_error(momoko.Connection, {dsn = dsn})
    end
  end)

  it("raises InterfaceError at the call for bad arguments and options", function()
    local err = interface_error(momoko.Connection, {dsn = H.dsn, nosuch = 1})
    assert.matches("unknown option 'nosuch'", err.message)
    interface_error(momoko.Connection, {dsn = H.dsn, [1] = "x"})
    interface_error(momoko.Connection)
    interface_error(momoko.Connection, 42)
    interface_error(momoko.Connection, {})
    interface_error(momoko.Connection, {dsn = 5})
    interface_error(momoko.Connection, H.dsn, "opts")
    interface_error(momoko.Connection, H.dsn, {setsession = "SET x = 1"})
    interface_error(momoko.Connection, H.dsn, {setsession = {"SELECT 1", 2}})
    interface_error(momoko.Connection, H.dsn, {connection_factory = "f"})
    interface_error(momoko.Connection, H.dsn, {on_notice = true})
    interface_error(momoko.Connection, H.dsn, {cursor_factory = "rows"})
    interface_error(momoko.Connection, H.dsn, {loop = "loop"})
    interface_error(momoko.connect, {dsn = H.dsn, nosuch = 1})
  end)

  it("fails with OperationalError when nothing listens on the port", function()
    local port = closed_port()
    local err = failure(momoko.connect("host=127.0.0.1 dbname=x port=" .. port))
    assert.equal("OperationalError", err.kind)
    assert.matches("port " .. port, err.message)
    assert.matches("refused", err.message)
  end)

  it("tries several hosts in turn (libpq swaps the socket during connect)", function()
    local port = closed_port()
    local real = H.dsn:match("port=(%d+)")
    local base = H.dsn:gsub("host=%S+", ""):gsub("port=%S+", "")
    for _, extra in ipairs({"", " target_session_attrs=read-write", " sslmode=prefer"}) do
      local conn = momoko.connect(string.format("host=127.0.0.1,127.0.0.1 port=%d,%s %s%s", port, real, base, extra)):await()
      assert.equal(tonumber(real), conn:execute("SELECT inet_server_port()"):await():fetchone()[1])
      conn:close()
    end
    local err = failure(momoko.connect(string.format("host=127.0.0.1,127.0.0.1 port=%d,%d %s", port, port, base)))
    assert.equal("OperationalError", err.kind)
  end)

  it("fails with OperationalError for an unknown database and leaves no backend", function()
    local dsn, app = H.app_dsn("h5c")
    local conn = momoko.Connection((dsn:gsub("dbname=%S+", "dbname=h5_no_such_db")))
    local err = failure(conn:connect())
    assert.equal("OperationalError", err.kind)
    assert.matches('database "h5_no_such_db" does not exist', err.message)
    assert.is_true(conn.closed)
    assert.equal("closed", state_of(conn))
    assert.is_true(H.no_backends(app))
    interface_error(conn.execute, conn, "SELECT 1")
  end)

  it("honours connect_timeout against a server that never answers", function()
    local server = H.silent_server(30)
    assert.is_not_nil(server.port)
    local ok, err = pcall(function()
      local conn = momoko.Connection("host=127.0.0.1 dbname=x connect_timeout=2 port=" .. server.port)
      local f = conn:connect()
      momoko.sleep(1000):await()
      assert.is_false(f:done(), "gave up before connect_timeout")
      assert.equal("connecting", state_of(conn))
      assert.is_true(H.wait_until(function() return f:done() end, 3000), "connect_timeout not honoured")
      local e = failure(f)
      assert.equal("OperationalError", e.kind)
      assert.matches("timeout", e.message)
      assert.is_true(conn.closed)
    end)
    server.stop()
    assert(ok, err)
  end)

  it("runs setsession before resolving", function()
    local app = string.format("h5_ss_%d", math.random(1, 1e9))
    local conn = momoko.connect(H.dsn, {setsession = {
      "SET application_name = '" .. app .. "'",
      "SET search_path = pg_catalog, public",
    }}):await()
    assert.equal(app, conn:execute("SHOW application_name"):await():fetchone()[1])
    assert.equal("pg_catalog, public", conn:execute("SHOW search_path"):await():fetchone()[1])
    -- the block was committed: no transaction is left open
    assert.equal("idle", H.psql("SELECT state FROM pg_stat_activity WHERE application_name = '" .. app .. "'"))
    assert.equal(1, H.backends(app))
    conn:close()
    assert.is_true(H.no_backends(app))
  end)

  it("runs an empty setsession as none", function()
    local conn = momoko.connect(H.dsn, {setsession = {}}):await()
    assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
    conn:close()
  end)

  it("fails connect with the error of a failing setsession and leaves no backend", function()
    local dsn, app = H.app_dsn("h5c")
    local conn = momoko.Connection(dsn, {setsession = {"SET search_path = public", "SELECT 1 / 0", "SET work_mem = '8MB'"}})
    local queued = nil
    local f = conn:connect()
    queued = conn:execute("SELECT 1") -- queued behind the connect
    local err = failure(f)
    assert.equal("DataError", err.kind)
    assert.equal("22012", err.sqlstate)
    assert.is_true(conn.closed)
    local qerr = failure(queued)
    assert.is_true(momoko.is(qerr, "Error"))
    assert.is_true(H.no_backends(app))
  end)

  it("runs connection_factory after setsession and before connect resolves", function()
    local dsn, app = H.app_dsn("h5c")
    local f, got, was_done, saw_search_path
    f = momoko.connect(dsn, {
      setsession = {"SET search_path = pg_catalog"},
      connection_factory = function(c)
        got = c
        was_done = f:done()
        saw_search_path = c:execute("SHOW search_path"):await():fetchone()[1]
        return c:execute("CREATE TEMP TABLE made_by_factory (x int)")
      end,
    })
    local conn = f:await()
    assert.equal(conn, got)
    assert.is_false(was_done)
    assert.equal("pg_catalog", saw_search_path)
    assert.equal(0, conn:execute("SELECT count(*) FROM made_by_factory"):await():fetchone()[1])
    assert.equal(1, H.backends(app))
    conn:close()
    assert.is_true(H.no_backends(app))
  end)

  it("awaits the future a connection_factory returns", function()
    local resolved = false
    local conn = momoko.connect(H.dsn, {connection_factory = function()
      return momoko.spawn(function()
        momoko.sleep(50):await()
        resolved = true
      end)
    end}):await()
    assert.is_true(resolved)
    conn:close()
  end)

  it("fails connect with the connection_factory's error and closes the connection", function()
    local dsn, app = H.app_dsn("h5c")
    local conn
    local err = failure(momoko.connect(dsn, {connection_factory = function(c)
      conn = c
      return c:execute("SELECT 1 / 0")
    end}))
    assert.equal("DataError", err.kind)
    assert.is_true(conn.closed)
    assert.is_true(H.no_backends(app))

    local err2 = failure(momoko.connect(dsn, {connection_factory = function() error("factory boom", 0) end}))
    assert.equal("InterfaceError", err2.kind)
    assert.matches("factory boom", err2.message)
    assert.is_true(H.no_backends(app))
  end)
end)

describe("a connection", function()
  local conn, tbl

  setup(function()
    conn = momoko.connect(H.dsn):await()
    tbl = scratch_table()
  end)

  teardown(function()
    conn:close()
    drop_table(tbl)
  end)

  before_each(function()
    H.psql("TRUNCATE " .. tbl)
  end)

  describe("execute", function()
    it("runs parametrized and multi-statement SQL", function()
      local cur = conn:execute("SELECT $1::int + $2::int, $3::text", {40, 2, "x"}):await()
      assert.same({42, "x"}, cur:fetchone())
      cur = conn:execute("SELECT 1; SELECT 2 AS b, 3"):await()
      assert.same({{2, 3}}, cur:fetchall())
      assert.equal("b", cur.description[1].name)
    end)

    it("sends and receives a 10 MB parameter", function()
      local big = string.rep("0123456789", 1000000)
      local fs = {}
      for i = 1, 3 do fs[i] = conn:execute("SELECT length($1::text), right($1::text, 2)", {big .. i}) end
      for i = 1, 3 do assert.same({10000001, "9" .. i}, fs[i]:await():fetchone()) end
      local cur = conn:execute("SELECT length('" .. big .. "')"):await()
      assert.equal(10000000, cur:fetchone()[1])
    end)

    it("takes a cursor_factory per request", function()
      local row = conn:execute("SELECT 1 AS a", nil, {cursor_factory = momoko.cursors.dict}):await():fetchone()
      assert.same({a = 1}, row)
      local v = conn:execute("SELECT 1 AS a", nil, {cursor_factory = function(cur)
        return "got " .. cur:fetchone()[1]
      end}):await()
      assert.equal("got 1", v)
      local err = failure(conn:execute("SELECT 1", nil, {cursor_factory = function() error("cf boom", 0) end}))
      assert.equal("cf boom", err)
      assert.equal(2, conn:execute("SELECT 2"):await():fetchone()[1])
    end)

    it("raises InterfaceError at the call for bad arguments, sending nothing", function()
      interface_error(conn.execute, conn)
      interface_error(conn.execute, conn, 123)
      interface_error(conn.execute, conn, "SELECT $1", "x")
      interface_error(conn.execute, conn, "SELECT $1", {function() end})
      interface_error(conn.execute, conn, "SELECT 1", nil, 5)
      interface_error(conn.execute, conn, "SELECT 1", nil, {timeout = -1})
      interface_error(conn.execute, conn, "SELECT 1", nil, {timeout = "x"})
      interface_error(conn.execute, conn, "SELECT 1", nil, {timeout = 1.5})
      interface_error(conn.execute, conn, "SELECT 1", nil, {cursor_factory = "x"})
      assert.equal("idle", state_of(conn))
    end)
  end)

  describe("callproc", function()
    setup(function()
      conn:execute([[
        CREATE OR REPLACE FUNCTION pg_temp.h5f(a bigint, b text)
        RETURNS TABLE (x bigint, y text) LANGUAGE sql AS $$ SELECT a * 2, b || '!' UNION ALL SELECT a, b $$;
        CREATE OR REPLACE FUNCTION pg_temp.h5none() RETURNS int LANGUAGE sql AS $$ SELECT 7 $$;
        CREATE TEMP TABLE victim (x int);
      ]]):await()
    end)

    it("calls a schema-qualified function with parameters", function()
      local cur = conn:callproc("pg_temp.h5f", {21, "hi"}):await()
      assert.same({{42, "hi!"}, {21, "hi"}}, cur:fetchall())
      assert.equal("SELECT * FROM pg_temp.h5f($1, $2)", cur.query)
      assert.same({{7}}, conn:callproc("pg_temp.h5none"):await():fetchall())
      assert.same({{7}}, conn:callproc("pg_temp.h5none", {}):await():fetchall())
    end)

    it("passes a trailing NULL counted by params.n", function()
      local cur = conn:callproc("pg_temp.h5f", table.pack(3, nil)):await()
      assert.same({{6, momoko.null}, {3, momoko.null}}, cur:fetchall())
    end)

    it("rejects what is not a routine name with InterfaceError, sending nothing", function()
      for _, name in ipairs({"h5f; DROP TABLE victim", "a.b.c.d", "", "1abc", "f()", "f--", "f g", 'f"', "pg_temp.", ".f"}) do
        local err = interface_error(conn.callproc, conn, name)
        assert.matches("not a routine name", err.message)
        assert.equal("idle", state_of(conn))
      end
      interface_error(conn.callproc, conn, 42)
      interface_error(conn.callproc, conn, nil)
      interface_error(conn.callproc, conn, "pg_temp.h5f", "params")
      interface_error(conn.callproc, conn, "pg_temp.h5f", {1, "x"}, "opts")
      -- named arguments and absurd counts are refused before any SQL is built
      assert.matches("array", interface_error(conn.callproc, conn, "upper", {s = "x"}).message)
      assert.matches("65535", interface_error(conn.callproc, conn, "now", {n = 1 << 40}).message)
      assert.matches("params.n", interface_error(conn.callproc, conn, "now", {n = 1.5}).message)
      assert.equal(0, conn:execute("SELECT count(*) FROM victim"):await():fetchone()[1])
    end)

    it("fails with ProgrammingError for a missing function", function()
      local err = failure(conn:callproc("pg_temp.h5_missing", {1}))
      assert.equal("ProgrammingError", err.kind)
      assert.equal("42883", err.sqlstate)
    end)
  end)

  describe("transaction", function()
    it("resolves to one cursor per statement and commits", function()
      local res = conn:transaction({
        "SELECT 1",
        {"SELECT $1::int + 1", {41}},
        {"INSERT INTO " .. tbl .. " (v) VALUES ($1)", {"a"}},
        "INSERT INTO " .. tbl .. " (v) VALUES ('b'), ('c')",
      }):await()
      assert.equal(4, #res)
      assert.same({1}, res[1]:fetchone())
      assert.same({42}, res[2]:fetchone())
      assert.equal("INSERT 0 1", res[3].statusmessage)
      assert.equal(2, res[4].rowcount)
      assert.equal("a,b,c", H.psql("SELECT string_agg(v, ',' ORDER BY v) FROM " .. tbl))
    end)

    it("rolls back everything when a statement fails (auto_rollback)", function()
      local err = failure(conn:transaction({
        "INSERT INTO " .. tbl .. " (v) VALUES ('first')",
        "SELECT 1 / 0",
        "INSERT INTO " .. tbl .. " (v) VALUES ('third')",
      }))
      assert.equal("DataError", err.kind)
      assert.equal("0", H.psql("SELECT count(*) FROM " .. tbl))
      -- the connection is out of the transaction and usable
      assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
      assert.equal("0", H.psql("SELECT count(*) FROM " .. tbl))
      local cur = conn:execute("INSERT INTO " .. tbl .. " (v) VALUES ('after')"):await()
      assert.equal(1, cur.rowcount)
      assert.equal("after", H.psql("SELECT string_agg(v, ',') FROM " .. tbl))
    end)

    it("leaves a failed transaction open with auto_rollback = false", function()
      local err = failure(conn:transaction({
        "INSERT INTO " .. tbl .. " (v) VALUES ('first')",
        "SELECT 1 / 0",
      }, {auto_rollback = false}))
      assert.equal("DataError", err.kind)
      local err2 = failure(conn:execute("SELECT 1"))
      assert.equal("InternalError", err2.kind)
      assert.equal("25P02", err2.sqlstate)
      conn:execute("ROLLBACK"):await()
      assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
      assert.equal("0", H.psql("SELECT count(*) FROM " .. tbl))
    end)

    it("raises InterfaceError at the call for bad statements, sending nothing", function()
      interface_error(conn.transaction, conn)
      interface_error(conn.transaction, conn, {})
      interface_error(conn.transaction, conn, "SELECT 1")
      interface_error(conn.transaction, conn, {1})
      interface_error(conn.transaction, conn, {{}})
      interface_error(conn.transaction, conn, {"SELECT 1", {42}})
      interface_error(conn.transaction, conn, {{"SELECT $1", "x"}})
      interface_error(conn.transaction, conn, {{"SELECT $1", {{f = 1}}}})
      interface_error(conn.transaction, conn, {"SELECT 1", true})
      interface_error(conn.transaction, conn, {"SELECT 1"}, "opts")
      interface_error(conn.transaction, conn, {"SELECT 1"}, {timeout = "x"})
      assert.equal("idle", state_of(conn))
      assert.equal("idle", H.psql("SELECT state FROM pg_stat_activity WHERE pid = " ..
        conn:execute("SELECT pg_backend_pid()"):await():fetchone()[1]))
    end)
  end)

  describe("mogrify", function()
    local function roundtrip(v)
      local sql = conn:mogrify("SELECT $1", table.pack(v))
      assert.equal("string", type(sql))
      local inlined = conn:execute(sql):await():fetchone()[1]
      local bound = conn:execute("SELECT $1", table.pack(v)):await():fetchone()[1]
      return sql, inlined, bound
    end

    it("escapes quotes, backslashes and NULL", function()
      local sql, got = roundtrip("it's")
      assert.equal("SELECT 'it''s'", sql)
      assert.equal("it's", got)
      sql, got = roundtrip([[back\slash 'q' \' ]])
      assert.equal([[back\slash 'q' \' ]], got)
      sql, got = roundtrip(momoko.null)
      assert.equal("SELECT NULL", sql)
      assert.equal(momoko.null, got)
      assert.equal("SELECT NULL", conn:mogrify("SELECT $1", {n = 1}))
    end)

    it("inlines booleans, integers and bytea", function()
      local sql, got, bound = roundtrip(true)
      assert.equal("SELECT true", sql)
      assert.is_true(got)
      sql, got = roundtrip(false)
      assert.is_false(got)
      sql, got, bound = roundtrip(-9007199254740993)
      assert.equal(-9007199254740993, got)
      assert.equal(bound, got)
      local bin = "\0\1'\\x\255"
      sql, got, bound = roundtrip(momoko.bytea(bin))
      assert.equal(bin, got)
      assert.equal(bin, bound)
    end)

    it("inlines floats as floats, infinities included", function()
      for _, x in ipairs({1.5, -0.25, 2.0, 1 / 0, -1 / 0}) do
        local sql, got, bound = roundtrip(x)
        assert.equal("float", math.type(bound))
        assert.equal("float", math.type(got), sql)
        assert.equal(x, got, sql)
      end
    end)

    it("keeps a negative number a number after a minus sign", function()
      local sql = conn:mogrify("SELECT 1-$1", {-5})
      assert.equal(6, conn:execute(sql):await():fetchone()[1], sql)
    end)

    it("inlines arrays", function()
      local _, got, bound = roundtrip({1, 2, 3})
      assert.same({1, 2, 3}, got)
      assert.same(bound, got)
      _, got = roundtrip({"a'b", [[c\d]], 'e"f'})
      assert.same({"{\"a'b\",\"c\\\\d\",\"e\\\"f\"}"}, {got})
      _, got = roundtrip({true, false})
      assert.same({true, false}, got)
      _, got = roundtrip({1.5, 2.5})
      assert.same({1.5, 2.5}, got)
    end)

    it("inlines several placeholders and leaves literals alone", function()
      local sql = conn:mogrify("SELECT $2::text, '$1', $1::int", {7, "x"})
      assert.equal("SELECT 'x'::text, '$1', 7::int", sql)
      assert.same({"x", "$1", 7}, conn:execute(sql):await():fetchone())
      assert.equal("SELECT 1", conn:mogrify("SELECT 1"))
    end)

    it("raises InterfaceError for a missing value and on an unconnected connection", function()
      interface_error(conn.mogrify, conn, "SELECT $1, $2", {1})
      interface_error(conn.mogrify, conn, 5)
      local fresh = momoko.Connection(H.dsn)
      local err = interface_error(fresh.mogrify, fresh, "SELECT $1", {1})
      assert.matches("not connected", err.message)
      local f = fresh:connect()
      interface_error(fresh.mogrify, fresh, "SELECT $1", {1})
      f:await()
      assert.equal("SELECT 1", fresh:mogrify("SELECT $1", {1}))
      fresh:close()
      interface_error(fresh.mogrify, fresh, "SELECT $1", {1})
    end)
  end)

  describe("ping", function()
    it("resolves to the connection", function()
      local f = conn:ping()
      assert.is_true(rawequal(conn, f:await()))
    end)
  end)
end)

describe("the request queue", function()
  local conn

  setup(function()
    conn = momoko.connect(H.dsn):await()
  end)

  teardown(function()
    conn:close()
  end)

  it("runs 200 requests from one coroutine in order", function()
    local futures, order = {}, {}
    for i = 1, 200 do
      futures[i] = conn:execute("SELECT $1::int", {i})
      futures[i]:add_done_callback(function() order[#order + 1] = i end)
    end
    assert.equal("busy", state_of(conn))
    for i = 1, 200 do
      assert.equal(i, futures[i]:await():fetchone()[1])
    end
    local expect = {}
    for i = 1, 200 do expect[i] = i end
    assert.same(expect, order)
    assert.equal("idle", state_of(conn))
  end)

  it("runs requests of 200 coroutine.wrap handlers in order, each awaiting twice", function()
    local order, results = {}, {}
    for i = 1, 200 do
      coroutine.wrap(function()
        local a = conn:execute("SELECT $1::int", {i}):await():fetchone()[1]
        order[#order + 1] = a
        local b = conn:execute("SELECT $1::int * 2", {i}):await():fetchone()[1]
        results[i] = {a, b}
      end)()
    end
    assert.is_true(H.wait_until(function()
      local n = 0
      for _ in pairs(results) do n = n + 1 end
      return n == 200
    end, 10000))
    for i = 1, 200 do
      assert.equal(i, order[i])
      assert.same({i, i * 2}, results[i])
    end
  end)

  it("never interleaves other requests with a queued transaction", function()
    conn:execute("CREATE TEMP TABLE IF NOT EXISTS qlog (n serial, who text, tx bigint)"):await()
    local function ins(who) return "INSERT INTO qlog (who, tx) VALUES ('" .. who .. "', txid_current())" end
    local fs = {}
    fs[#fs + 1] = conn:execute(ins("e1"))
    fs[#fs + 1] = conn:transaction({ins("t1"), "SELECT pg_sleep(0.05)", ins("t2"), ins("t3")})
    -- requests issued by other handlers while the transaction is queued and running
    for i = 2, 4 do
      fs[#fs + 1] = momoko.spawn(function()
        return conn:execute(ins("e" .. i)):await()
      end)
    end
    local late = momoko.spawn(function()
      momoko.sleep(10):await()
      return conn:execute(ins("e5")):await()
    end)
    momoko.all(fs):await()
    late:await()
    local rows = conn:execute("SELECT who, tx FROM qlog ORDER BY n"):await():fetchall()
    local who = {}
    for i, r in ipairs(rows) do who[i] = r[1] end
    assert.same({"e1", "t1", "t2", "t3", "e2", "e3", "e4", "e5"}, who)
    local ttx = rows[2][2]
    assert.equal(ttx, rows[3][2])
    assert.equal(ttx, rows[4][2])
    for _, i in ipairs({1, 5, 6, 7, 8}) do
      assert.are_not.equal(ttx, rows[i][2])
    end
  end)
end)

describe("momoko.run", function()
  it("returns when requests are done, though connections stay open and idle", function()
    local dsn, app = H.app_dsn("h5c")
    local conn = momoko.connect(dsn):await()
    local got
    conn:execute("SELECT pg_sleep(0.05), 9"):add_done_callback(function(f) got = f:result():fetchone()[2] end)
    momoko.run()
    assert.equal(9, got)
    assert.is_false(conn.closed)
    assert.equal(1, H.backends(app))
    -- and an idle connection is still watched: a killed backend is noticed
    local pid = conn:execute("SELECT pg_backend_pid()"):await():fetchone()[1]
    assert.equal("t", H.psql("SELECT pg_terminate_backend(" .. pid .. ")"))
    assert.is_true(H.wait_until(function() return conn.closed end, 3000))
  end)
end)

describe("conn:close", function()
  it("fails the running and queued requests with InterfaceError 'connection closed'", function()
    local dsn, app = H.app_dsn("h5c")
    local conn = momoko.connect(dsn):await()
    local running = conn:execute("SELECT pg_sleep(0.5)")
    local queued = conn:execute("SELECT 1")
    local txn = conn:transaction({"SELECT 1", "SELECT 2"})
    local pinged = conn:ping()
    conn:close()
    for _, f in ipairs({running, queued, txn, pinged}) do
      assert.is_true(f:done())
      local err = failure(f)
      assert.equal("InterfaceError", err.kind)
      assert.equal("connection closed", err.message)
    end
    assert.is_true(conn.closed)
    assert.equal("closed", state_of(conn))
    assert.is_true(H.no_backends(app))
  end)

  it("is idempotent, and methods of a closed connection raise InterfaceError at the call", function()
    local conn = momoko.connect(H.dsn):await()
    conn:close()
    conn:close()
    assert.is_true(conn.closed)
    local err = interface_error(conn.execute, conn, "SELECT 1")
    assert.matches("closed", err.message)
    interface_error(conn.callproc, conn, "now")
    interface_error(conn.transaction, conn, {"SELECT 1"})
    interface_error(conn.ping, conn)
    interface_error(conn.mogrify, conn, "SELECT 1")
    interface_error(conn.connect, conn)
    conn:close()
  end)

  it("closes a connection that never connected", function()
    local conn = momoko.Connection(H.dsn)
    conn:close()
    assert.is_true(conn.closed)
    assert.equal("closed", state_of(conn))
    interface_error(conn.connect, conn)
    conn:close()
  end)

  it("closes while connecting and fails the connect", function()
    local dsn, app = H.app_dsn("h5c")
    local conn = momoko.Connection(dsn)
    local f = conn:connect()
    local q = conn:execute("SELECT 1")
    conn:close()
    local err = failure(f)
    assert.equal("InterfaceError", err.kind)
    assert.equal("InterfaceError", failure(q).kind)
    assert.is_true(H.no_backends(app))
  end)

  it("is what a to-be-closed variable does at scope exit", function()
    local dsn, app = H.app_dsn("h5c")
    local inside
    do
      local c <close> = momoko.connect(dsn):await()
      assert.equal(1, c:execute("SELECT 1"):await():fetchone()[1])
      inside = H.backends(app)
    end
    assert.equal(1, inside)
    assert.is_true(H.no_backends(app))
    -- also when the scope is left by an error
    local ok = pcall(function()
      local c <close> = momoko.connect(dsn):await()
      assert.equal(1, H.backends(app))
      error("leave")
    end)
    assert.is_false(ok)
    assert.is_true(H.no_backends(app))
  end)

  it("mid-query cancels it on the server: no backend is left", function()
    local dsn, app = H.app_dsn("h5c")
    local conn = momoko.connect(dsn):await()
    local pid = conn:execute("SELECT pg_backend_pid()"):await():fetchone()[1]
    local f = conn:execute("SELECT pg_sleep(30)")
    assert.is_true(wait_active(pid))
    conn:close()
    assert.equal("InterfaceError", failure(f).kind)
    assert.is_true(H.no_backends(app, 5000), "the backend still runs pg_sleep(30)")
  end)

  it("is done by the GC for an idle connection nobody references", function()
    local dsn, app = H.app_dsn("h5c")
    do
      local conn = momoko.connect(dsn):await()
      conn:execute("SELECT 1"):await()
    end
    collectgarbage()
    collectgarbage()
    assert.is_true(H.no_backends(app))
  end)
end)

describe("on_notice", function()
  after_each(function()
    momoko.on_error(nil)
  end)

  it("receives server notices with the connection", function()
    local got = {}
    local conn
    conn = momoko.connect(H.dsn, {on_notice = function(c, msg)
      assert.equal(conn, c)
      got[#got + 1] = msg
    end}):await()
    local cur = conn:execute("DO $$ BEGIN RAISE NOTICE 'hello %', 1; RAISE WARNING 'careful'; END $$; SELECT 5"):await()
    assert.same({5}, cur:fetchone())
    assert.same({"NOTICE:  hello 1", "WARNING:  careful"}, got)
    conn:close()
  end)

  it("sends an error inside on_notice to momoko.on_error; the connection keeps working", function()
    local errors = {}
    momoko.on_error(function(e) errors[#errors + 1] = e end)
    local conn = momoko.connect(H.dsn, {on_notice = function() error("notice boom") end}):await()
    local cur = conn:execute("DO $$ BEGIN RAISE NOTICE 'n1'; RAISE NOTICE 'n2'; END $$; SELECT 6"):await()
    assert.same({6}, cur:fetchone())
    assert.equal(2, #errors)
    assert.matches("notice boom", tostring(errors[1]))
    assert.equal(7, conn:execute("SELECT 7"):await():fetchone()[1])
    conn:close()
  end)

  it("may issue requests from the hook; they run after the current one", function()
    local fs = {}
    local conn = momoko.connect(H.dsn, {on_notice = function(c, msg)
      fs[#fs + 1] = c:execute("SELECT $1::text", {msg})
    end}):await()
    local cur = conn:execute("DO $$ BEGIN RAISE NOTICE 'a'; RAISE NOTICE 'b'; END $$; SELECT 8"):await()
    assert.same({8}, cur:fetchone())
    assert.equal(2, #fs)
    assert.equal("NOTICE:  a", fs[1]:await():fetchone()[1])
    assert.equal("NOTICE:  b", fs[2]:await():fetchone()[1])
    conn:close()
  end)

  -- the notice arrives while libpq parses the results of a request
  for i, sql in ipairs({
    "DO $$ BEGIN RAISE NOTICE 'x'; END $$; SELECT 3",
    "SELECT 1; DO $$ BEGIN RAISE NOTICE 'x'; END $$; SELECT 3",
    "SELECT repeat('x', 200000) FROM generate_series(1, 5); DO $$ BEGIN RAISE NOTICE 'x'; END $$; SELECT 3",
    "SELECT 1 UNION ALL SELECT 2; SELECT pg_sleep(0.05); DO $$ BEGIN RAISE NOTICE 'x'; END $$; SELECT 3",
    "DO $$ BEGIN PERFORM pg_sleep(0.05); RAISE NOTICE 'x'; PERFORM pg_sleep(0.05); END $$",
  }) do
    it("may close the connection from the hook (" .. i .. ")", function()
      local dsn, app = H.app_dsn("h5n")
      local conn = momoko.connect(dsn, {on_notice = function(c) c:close() end}):await()
      local f = conn:execute(sql)
      local g = conn:execute("SELECT 2")
      for _, fut in ipairs({f, g}) do
        local err = failure(fut)
        assert.equal("InterfaceError", err.kind)
        assert.equal("connection closed", err.message)
      end
      assert.is_true(conn.closed)
      assert.is_true(H.no_backends(app))
    end)
  end
end)

describe("COPY", function()
  it("through execute fails with NotSupportedError naming copy_to/copy_from and leaves the connection usable", function()
    local conn = momoko.connect(H.dsn):await()
    conn:execute("CREATE TEMP TABLE cp (x int)"):await()
    for sql, method in pairs({
      ["COPY (SELECT 1) TO STDOUT"] = "copy_to",
      ["COPY (SELECT g FROM generate_series(1, 100000) g) TO STDOUT"] = "copy_to",
      ["COPY cp FROM STDIN"] = "copy_from",
    }) do
      local err = failure(conn:execute(sql))
      assert.equal("NotSupportedError", err.kind)
      assert.matches(method .. "(sql,", err.message, 1, true)
      assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
    end
    local err = failure(conn:transaction({"INSERT INTO cp VALUES (1)", "COPY cp FROM STDIN"}))
    assert.equal("NotSupportedError", err.kind)
    assert.equal(0, conn:execute("SELECT count(*) FROM cp"):await():fetchone()[1])
    conn:close()
  end)
end)

describe("timeouts and cancellation", function()
  local conn, pid, tbl

  setup(function()
    tbl = scratch_table()
  end)

  teardown(function()
    drop_table(tbl)
  end)

  before_each(function()
    conn = momoko.connect(H.dsn):await()
    pid = conn:execute("SELECT pg_backend_pid()"):await():fetchone()[1]
    H.psql("TRUNCATE " .. tbl)
  end)

  after_each(function()
    conn:close()
  end)

  local function idle_on_server()
    return H.wait_until(function()
      return H.psql("SELECT state FROM pg_stat_activity WHERE pid = " .. pid) == "idle"
    end, 3000)
  end

  it("fails a slow query with TimeoutError, cancels it and keeps the connection", function()
    local f = conn:execute("SELECT pg_sleep(5)", nil, {timeout = 200})
    momoko.sleep(100):await()
    assert.is_false(f:done())
    assert.is_true(H.wait_until(function() return f:done() end, 2000), "timeout not honoured")
    local err = failure(f)
    assert.equal("TimeoutError", err.kind)
    assert.is_true(momoko.is(err, "OperationalError"))
    assert.matches("200 ms", err.message)
    assert.is_true(idle_on_server())
    assert.is_false(conn.closed)
    assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
  end)

  it("counts the timeout from the call, even after the loop sat idle", function()
    os.execute("sleep 0.4") -- busy main thread: the loop has not run for 400 ms
    local f = conn:execute("SELECT pg_sleep(0.1), 4", nil, {timeout = 300})
    local ok, res = pcall(f.await, f)
    assert.is_true(ok, tostring(res))
    assert.equal(4, res:fetchone()[2])
  end)

  it("leaves a query that ends in time alone", function()
    local cur = conn:execute("SELECT pg_sleep(0.01), 3", nil, {timeout = 2000}):await()
    assert.equal(3, cur:fetchone()[2])
    -- its timer is gone: nothing fails later
    momoko.sleep(50):await()
    assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
  end)

  it("fails a queued request whose timeout expires while waiting, without running it", function()
    local slow = conn:execute("SELECT pg_sleep(0.6)")
    local f = conn:execute("INSERT INTO " .. tbl .. " (v) VALUES ('never')", nil, {timeout = 100})
    local after = conn:execute("INSERT INTO " .. tbl .. " (v) VALUES ('after')")
    assert.is_true(H.wait_until(function() return f:done() end, 500))
    assert.is_false(slow:done())
    local err = failure(f)
    assert.equal("TimeoutError", err.kind)
    assert.matches("waiting", err.message)
    slow:await()
    after:await()
    assert.equal("after", H.psql("SELECT string_agg(v, ',') FROM " .. tbl))
  end)

  it("cancels a running query with f:cancel()", function()
    local f = conn:execute("SELECT pg_sleep(5)")
    assert.is_true(wait_active(pid))
    assert.is_true(f:cancel())
    assert.is_true(H.wait_until(function() return f:done() end, 3000), "cancel not honoured")
    local err = failure(f)
    assert.equal("QueryCanceledError", err.kind)
    assert.equal("57014", err.sqlstate)
    assert.is_true(momoko.is(err, "OperationalError"))
    assert.is_false(f:cancel())
    assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
  end)

  it("removes a queued request on cancel; it never runs", function()
    local slow = conn:execute("SELECT pg_sleep(0.3)")
    local f = conn:execute("INSERT INTO " .. tbl .. " (v) VALUES ('never')")
    local after = conn:execute("INSERT INTO " .. tbl .. " (v) VALUES ('after')")
    assert.is_true(f:cancel())
    assert.is_true(f:done())
    local err = failure(f)
    assert.equal("QueryCanceledError", err.kind)
    assert.is_false(slow:done())
    assert.is_false(f:cancel())
    slow:await()
    after:await()
    assert.equal("after", H.psql("SELECT string_agg(v, ',') FROM " .. tbl))
  end)

  it("cancels a queued transaction; none of it runs", function()
    local slow = conn:execute("SELECT pg_sleep(0.2)")
    local f = conn:transaction({"INSERT INTO " .. tbl .. " (v) VALUES ('never')"})
    assert.is_true(f:cancel())
    assert.equal("QueryCanceledError", failure(f).kind)
    slow:await()
    assert.equal("0", H.psql("SELECT count(*) FROM " .. tbl))
  end)

  it("never lets a late cancel hit the next request", function()
    for _ = 1, 3 do
      local f = conn:execute("SELECT 1")
      os.execute("sleep 0.05") -- the server finishes f; the loop has not read it yet
      local g = conn:execute("SELECT pg_sleep(0.2), 2")
      assert.is_true(f:cancel())
      assert.equal(1, f:await():fetchone()[1]) -- it completed first
      assert.equal(2, g:await():fetchone()[2])
    end
  end)

  it("returns false when cancelling a done future", function()
    local f = conn:execute("SELECT 1")
    f:await()
    assert.is_false(f:cancel())
    assert.equal(1, f:result():fetchone()[1])
  end)

  it("fails the in-flight request with OperationalError when the backend is killed", function()
    local f = conn:execute("SELECT pg_sleep(10)")
    local queued = conn:execute("SELECT 1")
    assert.is_true(wait_active(pid))
    assert.equal("t", H.psql("SELECT pg_terminate_backend(" .. pid .. ")"))
    assert.is_true(H.wait_until(function() return f:done() end, 3000))
    local err = failure(f)
    assert.equal("OperationalError", err.kind)
    local qerr = failure(queued)
    assert.equal("OperationalError", qerr.kind)
    assert.is_true(conn.closed)
    assert.equal("closed", state_of(conn))
    interface_error(conn.execute, conn, "SELECT 1")
  end)

  it("fails the next request with OperationalError after the backend was killed", function()
    assert.equal("t", H.psql("SELECT pg_terminate_backend(" .. pid .. ")"))
    -- the loop has not run since: the connection cannot know yet
    local f = conn:execute("SELECT 1")
    assert.is_true(H.wait_until(function() return f:done() end, 3000))
    local err = failure(f)
    assert.equal("OperationalError", err.kind)
    assert.is_true(conn.closed)
  end)

  it("notices a killed backend while idle", function()
    assert.equal("t", H.psql("SELECT pg_terminate_backend(" .. pid .. ")"))
    assert.is_true(H.wait_until(function() return conn.closed end, 3000))
    interface_error(conn.execute, conn, "SELECT 1")
  end)
end)
