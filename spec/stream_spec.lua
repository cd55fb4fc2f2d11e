-- API §8 "Streaming large results": conn:stream / pool:stream, Stream:next/rows/close,
-- description, rownumber, closed, to-be-closed and GC, the pool connection a stream
-- holds, backpressure (the backend waits on ClientWrite while the consumer is behind),
-- the Lua heap staying flat, bad arguments, and requests queued behind a stream.
-- Every test opens its own connection or pool with a fresh application_name and checks
-- on the server that no backend of it is left.
local momoko = require "momoko"
local H = require "helper"

local failure = H.failure

-- The server's view of one backend: state, wait_event, query.
local function backend_state(pid)
  return H.psql("SELECT coalesce(state, '') || '|' || coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = " .. pid)
end

local function state_of(pid)
  return H.psql("SELECT state FROM pg_stat_activity WHERE pid = " .. pid)
end

local function open(prefix, opts)
  local dsn, app = H.app_dsn(prefix)
  return momoko.connect(dsn, opts):await(), app
end

local function open_pool(prefix, opts)
  local dsn, app = H.app_dsn(prefix)
  opts = opts or {}
  opts.dsn = dsn
  local pool = momoko.Pool(opts)
  pool:connect():await()
  return pool, app
end

local function select_one(conn)
  return conn:execute("SELECT 1 AS one"):await():fetchone()[1]
end

local BIG = "SELECT g FROM generate_series(1,10000000) g"

-- Reads s to its end, checking that each row is {k} for k = done + 1, done + 2, ...
-- (done: the rows taken before); returns the last k.
local function read_sequence(s, done)
  local n = done
  while true do
    local row = s:next():await()
    if row == nil then return n end
    n = n + 1
    assert.equal(n, row[1])
  end
end

describe("conn:stream", function()
  local reported = H.collect_reports()

  it("hands out 10000 rows in order, 100 at a time, then nil again and again", function()
    local conn, app = open("st_all")
    H.close_after(conn, app, function()
      local s = conn:stream("SELECT g AS n, 'r' || g AS t FROM generate_series(1,10000) g", nil, {chunk = 100})
      assert.is_false(momoko.is_future(s))
      assert.is_nil(s.description)
      assert.equal(0, s.rownumber)
      assert.is_false(s.closed)
      local first = s:next()
      assert.is_true(momoko.is_future(first))
      local row = first:await()
      assert.same({1, "r1"}, row)
      assert.same({{name = "n", type_code = 23}, {name = "t", type_code = 25}}, s.description)
      assert.equal(1, s.rownumber)
      assert.is_false(s.closed)
      local bad = {}
      for i = 2, 10000 do
        row = s:next():await()
        if type(row) ~= "table" or row[1] ~= i or row[2] ~= "r" .. i or #row ~= 2 then
          bad[#bad + 1] = i
        end
      end
      assert.same({}, bad)
      assert.equal(10000, s.rownumber)
      assert.is_nil(s:next():await())
      assert.is_true(s.closed)
      assert.is_nil(s:next():await())
      assert.is_nil(s:next():await())
      assert.equal(10000, s.rownumber)
      assert.same({{name = "n", type_code = 23}, {name = "t", type_code = 25}}, s.description)
      assert.equal(1, select_one(conn))
      assert.equal("idle", conn.transaction_status)
      assert.same({}, reported)
    end)
  end)

  it("binds params and gives the description of an empty result at its end", function()
    local conn, app = open("st_params")
    H.close_after(conn, app, function()
      local s = conn:stream("SELECT g AS v, $2::text AS w FROM generate_series(1, $1::int) g", {3, "x"})
      local got = {}
      for _ = 1, 4 do got[#got + 1] = s:next():await() or "END" end
      assert.same({{1, "x"}, {2, "x"}, {3, "x"}, "END"}, got)

      local e = conn:stream("SELECT g AS only FROM generate_series(1, 0) g")
      assert.is_nil(e.description)
      assert.is_nil(e:next():await())
      assert.same({{name = "only", type_code = 23}}, e.description)
      assert.equal(0, e.rownumber)
      assert.is_true(e.closed)
      assert.is_nil(e:next():await())
      assert.equal(1, select_one(conn))
    end)
  end)

  it("iterates with rows() in a coroutine", function()
    local conn, app = open("st_rows")
    H.close_after(conn, app, function()
      local got = H.async(function()
        local out = {}
        for row in conn:stream("SELECT g FROM generate_series(1,2500) g", nil, {chunk = 7}):rows() do
          out[#out + 1] = row[1]
        end
        return out
      end)
      assert.equal(2500, #got)
      local bad = 0
      for i = 1, 2500 do if got[i] ~= i then bad = bad + 1 end end
      assert.equal(0, bad)
      assert.equal(1, select_one(conn))
    end)
  end)

  it("shapes rows with cursor_factory: dict, a function, and the owner's default", function()
    local conn, app = open("st_cf")
    local dconn, dapp = open("st_cfd", {cursor_factory = momoko.cursors.dict})
    H.close_after(dconn, dapp, function() H.close_after(conn, app, function()
      local s = conn:stream("SELECT g AS id, 'n' || g AS name FROM generate_series(1,3) g", nil,
        {cursor_factory = momoko.cursors.dict, chunk = 2})
      assert.same({id = 1, name = "n1"}, s:next():await())
      assert.same({id = 2, name = "n2"}, s:next():await())
      assert.same({id = 3, name = "n3"}, s:next():await())
      assert.is_nil(s:next():await())

      local seen = {}
      local f = conn:stream("SELECT g AS id FROM generate_series(1,3) g", nil, {cursor_factory = function(cur)
        local r = cur:fetchone()
        seen[#seen + 1] = #cur
        return "row" .. r[1] * 10
      end})
      assert.equal("row10", f:next():await())
      assert.equal("row20", f:next():await())
      assert.equal("row30", f:next():await())
      assert.is_nil(f:next():await())
      assert.same({1, 1, 1}, seen) -- one-row cursors

      -- the connection's own factory is the default; opts win over it
      local d = dconn:stream("SELECT 5 AS five")
      assert.same({five = 5}, d:next():await())
      assert.is_nil(d:next():await())
      local a = dconn:stream("SELECT 5 AS five", nil, {cursor_factory = momoko.cursors.array})
      assert.same({5}, a:next():await())
      assert.is_nil(a:next():await())
    end) end)
  end)

  it("hands out the rows before an error, then fails next() with it, every time", function()
    local conn, app = open("st_err")
    H.close_after(conn, app, function()
      local s = conn:stream("SELECT 1/(1000-g) AS v FROM generate_series(1,2000) g", nil, {chunk = 10})
      local rows, err = {}, nil
      for _ = 1, 2001 do
        local ok, r = pcall(function() return s:next():await() end)
        if not ok then err = r break end
        if r == nil then break end
        rows[#rows + 1] = r[1]
      end
      assert.is_not_nil(err, "the stream ended without the error")
      H.assert_kind("DataError", err)
      assert.equal("22012", err.sqlstate)
      assert.equal(999, #rows)
      local zeros = 0
      for i = 1, 998 do if rows[i] == 0 then zeros = zeros + 1 end end
      assert.equal(998, zeros)
      assert.equal(1, rows[999])
      assert.equal(999, s.rownumber)
      for _ = 1, 2 do
        local again = failure(s:next())
        H.assert_kind("DataError", again)
        assert.equal("22012", again.sqlstate)
        assert.equal(err.message, again.message)
      end
      assert.equal(1, select_one(conn))
      assert.equal("idle", conn.transaction_status)
      s:close():await()
      assert.equal(1, select_one(conn))
    end)
  end)

  it("fails next() with the error of a query that fails at once, and stays usable", function()
    local conn, app = open("st_syntax")
    H.close_after(conn, app, function()
      local s = conn:stream("SELEC 1")
      local err = failure(s:next())
      H.assert_kind("ProgrammingError", err)
      assert.equal("42601", err.sqlstate)
      H.assert_kind("ProgrammingError", failure(s:next()))
      local m = conn:stream("SELECT * FROM no_such_table_st")
      assert.equal("42P01", failure(m:next()).sqlstate)
      assert.equal(1, select_one(conn))
    end)
  end)

  it("close() mid-stream of 10M rows cancels the query: the backend is idle, the connection works", function()
    local conn, app = open("st_close")
    H.close_after(conn, app, function()
      local pid = conn.pid
      local s = conn:stream(BIG, nil, {chunk = 100})
      for i = 1, 5 do assert.same({i}, s:next():await()) end
      assert.equal("active", state_of(pid))
      local c = s:close()
      assert.is_true(momoko.is_future(c))
      assert.is_nil(c:await())
      assert.is_true(s.closed)
      assert.equal(5, s.rownumber)
      assert.equal("idle", state_of(pid))
      assert.equal("idle", conn.transaction_status)
      assert.equal(1, select_one(conn))
      assert.equal(pid, conn:execute("SELECT pg_backend_pid()"):await():fetchone()[1])
      assert.equal("idle", state_of(pid))
      -- idempotent
      assert.is_nil(s:close():await())
      assert.equal(1, select_one(conn))
      assert.same({}, reported) -- the cancel is not reported
    end)
  end)

  it("close() before the first next() ends the query too", function()
    local conn, app = open("st_close0")
    H.close_after(conn, app, function()
      local s = conn:stream(BIG, nil, {chunk = 50})
      s:close():await()
      assert.is_true(s.closed)
      assert.equal(0, s.rownumber)
      assert.equal("idle", state_of(conn.pid))
      assert.equal(1, select_one(conn))
      assert.same({}, reported)
    end)
  end)

  it("is to-be-closed: leaving the scope ends the query", function()
    local conn, app = open("st_tbc")
    H.close_after(conn, app, function()
      local outer
      do
        local s <close> = conn:stream(BIG, nil, {chunk = 50})
        outer = s
        for i = 1, 3 do assert.same({i}, s:next():await()) end
      end
      assert.is_true(outer.closed)
      -- queued behind the close: runs once the query ended
      local f = conn:execute("SELECT 2")
      assert.is_true(H.wait_until(function() return f:done() end, 10000), "the connection stayed busy")
      assert.equal(2, f:await():fetchone()[1])
      assert.equal("idle", state_of(conn.pid))
      -- an error inside the scope closes it as well
      local ok, err = pcall(function()
        local s <close> = conn:stream(BIG, nil, {chunk = 50})
        outer = s
        s:next():await()
        error("scope boom", 0)
      end)
      assert.is_false(ok)
      assert.equal("scope boom", err)
      assert.is_true(outer.closed)
      f = conn:execute("SELECT 3")
      assert.is_true(H.wait_until(function() return f:done() end, 10000), "the connection stayed busy")
      assert.equal(3, f:await():fetchone()[1])
      assert.same({}, reported)
    end)
  end)

  it("ends the query of an unfinished stream the GC collects", function()
    local conn, app = open("st_gc")
    H.close_after(conn, app, function()
      local weak = setmetatable({}, {__mode = "v"})
      local function start()
        local s = conn:stream(BIG, nil, {chunk = 50})
        for i = 1, 3 do assert.same({i}, s:next():await()) end
        weak[1] = s
      end
      start()
      assert.equal("active", state_of(conn.pid))
      local f = conn:execute("SELECT 4")
      H.collect_garbage(3, 20)
      assert.is_nil(weak[1], "the stream was not collected")
      assert.is_true(H.wait_until(function() return f:done() end, 10000), "the connection stayed busy")
      assert.equal(4, f:await():fetchone()[1])
      assert.equal("idle", state_of(conn.pid))
      assert.equal(1, select_one(conn))
      assert.same({}, reported)
    end)
  end)

  it("stops reading while the consumer is behind: the backend waits on ClientWrite", function()
    local conn, app = open("st_bp")
    H.close_after(conn, app, function()
      local pid = conn.pid
      local s = conn:stream("SELECT g, repeat('x', 100) FROM generate_series(1,1000000) g", nil, {chunk = 10})
      for i = 1, 10 do
        local row = s:next():await()
        assert.equal(i, row[1])
        assert.equal(100, #row[2])
      end
      momoko.sleep(300):await()
      -- the socket buffers fill, then the server blocks writing to this client
      assert.is_true(H.wait_until(function() return backend_state(pid) == "active|ClientWrite" end, 5000),
        "backend: " .. backend_state(pid))
      momoko.sleep(300):await()
      assert.equal("active|ClientWrite", backend_state(pid))
      assert.equal(10, s.rownumber)
      -- and it goes on from where it was
      assert.equal(11, s:next():await()[1])
      s:close():await()
      assert.equal("idle", state_of(pid))
      assert.equal(1, select_one(conn))
    end)
  end)

  it("streams 200k rows of 200 bytes with a flat Lua heap", function()
    local conn, app = open("st_mem")
    H.close_after(conn, app, function()
      collectgarbage()
      collectgarbage()
      local base = collectgarbage("count")
      local peak = 0
      local s = conn:stream("SELECT g, repeat('y', 200) FROM generate_series(1,200000) g")
      local n, sum, badlen = 0, 0, 0
      while true do
        local row = s:next():await()
        if row == nil then break end
        n = n + 1
        sum = sum + row[1]
        if #row[2] ~= 200 then badlen = badlen + 1 end
        if n % 2000 == 0 then
          collectgarbage()
          peak = math.max(peak, collectgarbage("count") - base)
        end
      end
      assert.equal(200000, n)
      assert.equal(200000 * 200001 // 2, sum)
      assert.equal(0, badlen)
      -- 40 MB went through; at most about a chunk (1000 rows, ~200 kB) is held
      assert.is_true(peak < 30 * 1024, string.format("the Lua heap grew by %.0f kB", peak))
      assert.equal(1, select_one(conn))
    end)
  end)

  it("raises InterfaceError at the call for bad arguments", function()
    local conn, app = open("st_bad")
    H.close_after(conn, app, function()
      assert.matches("sql", H.interface_error(conn.stream, conn, 42).message)
      assert.matches("sql", H.interface_error(conn.stream, conn).message)
      assert.matches("params", H.interface_error(conn.stream, conn, "SELECT 1", "x").message)
      assert.matches("params", H.interface_error(conn.stream, conn, "SELECT 1", 5).message)
      for _, chunk in ipairs({0, -1, 1.5, "x", "10", true, {}, 1000001, math.huge}) do
        assert.matches("chunk", H.interface_error(conn.stream, conn, "SELECT 1", nil, {chunk = chunk}).message)
      end
      assert.matches("opts", H.interface_error(conn.stream, conn, "SELECT 1", nil, "opts").message)
      assert.matches("opts", H.interface_error(conn.stream, conn, "SELECT 1", nil, 3).message)
      H.interface_error(conn.stream, conn, "SELECT 1", nil, {cursor_factory = "rows"})
      -- nothing was sent; the connection is fine, and chunk = 1 is fine
      assert.equal(1, select_one(conn))
      local s = conn:stream("SELECT g FROM generate_series(1,3) g", nil, {chunk = 1})
      assert.same({1}, s:next():await())
      assert.same({2}, s:next():await())
      assert.same({3}, s:next():await())
      assert.is_nil(s:next():await())
    end)
  end)

  it("refuses a second next() while one waits, and gives nil after close()", function()
    local conn, app = open("st_twice")
    H.close_after(conn, app, function()
      local s = conn:stream(BIG, nil, {chunk = 10})
      local first = s:next()
      H.interface_error(s.next, s)
      assert.same({1}, first:await())
      assert.same({2}, s:next():await())
      s:close():await()
      assert.is_nil(s:next():await())
      assert.is_nil(s:next():await())
      assert.equal(2, s.rownumber)
      assert.equal(1, select_one(conn))
    end)
  end)

  it("refuses COPY: NotSupportedError naming copy_from / copy_to, and stays usable", function()
    local conn, app = open("st_copy")
    H.close_after(conn, app, function()
      local t = H.scratch_table("st_copy", "id int")
      local ok, err = pcall(function()
        local function refusal(sql)
          local e = H.error_of(function() return conn:stream(sql):next():await() end)
          assert.is_not_nil(e, sql)
          H.assert_kind("NotSupportedError", e)
          return e
        end
        assert.matches("copy_from", refusal("COPY " .. t .. " FROM STDIN").message, 1, true)
        assert.matches("copy_to", refusal("COPY " .. t .. " TO STDOUT").message, 1, true)
        assert.equal(1, select_one(conn))
      end)
      H.drop_table(t)
      assert(ok, err)
    end)
  end)

  it("is not cut by command_timeout: a slow consumer reads on", function()
    local conn, app = open("st_tmo", {command_timeout = 100})
    H.close_after(conn, app, function()
      local s = conn:stream("SELECT g FROM generate_series(1,300000) g", nil, {chunk = 10})
      assert.same({1}, s:next():await())
      momoko.sleep(400):await()
      local n = 1
      while true do
        local row = s:next():await()
        if row == nil then break end
        n = n + 1
        if row[1] ~= n then break end
      end
      assert.equal(300000, n)
      assert.equal(1, select_one(conn))
    end)
  end)

  it("runs requests queued while it runs after it, with their own results", function()
    local conn, app = open("st_queue")
    H.close_after(conn, app, function()
      local order = {}
      local s = conn:stream("SELECT g FROM generate_series(1,3000) g", nil, {chunk = 100})
      local f1 = conn:execute("SELECT 1 AS a")
      local f2 = conn:execute("SELECT $1::text AS b", {"two"})
      f1:add_done_callback(function() order[#order + 1] = 1 end)
      f2:add_done_callback(function() order[#order + 1] = 2 end)
      assert.same({1}, s:next():await())
      momoko.sleep(50):await()
      assert.is_false(f1:done())
      assert.is_false(f2:done())
      local n = read_sequence(s, 1)
      assert.equal(3000, n)
      assert.same({{1}}, f1:await():fetchall())
      assert.equal("two", f2:await():fetchone()[1])
      assert.same({1, 2}, order)
    end)
  end)

  it("runs alone on a pipeline = true connection, between pipelined requests", function()
    local conn, app = H.pipelined_connection({}, "st_pipe")
    H.close_after(conn, app, function()
      local f0 = conn:execute("SELECT 0")
      local s = conn:stream("SELECT g FROM generate_series(1,500) g", nil, {chunk = 10})
      local f1 = conn:execute("SELECT $1::int", {1})
      local f2 = conn:execute("SELECT 2")
      local n = read_sequence(s, 0)
      assert.equal(500, n)
      assert.same({{0}}, f0:await():fetchall())
      assert.same({{1}}, f1:await():fetchall())
      assert.same({{2}}, f2:await():fetchall())
      -- an error in a stream on a pipelined connection leaves it usable
      local e = conn:stream("SELECT 1/0")
      H.assert_kind("DataError", failure(e:next()))
      assert.equal(7, conn:execute("SELECT 7"):await():fetchone()[1])
    end)
  end)
end)

describe("pool:stream", function()
  local reported = H.collect_reports()

  it("holds one connection until the end, then gives it back", function()
    local pool, app = open_pool("st_pool", {size = 2})
    H.close_after(pool, app, function()
      assert.same({2, 0}, {pool:stats().free, pool:stats().busy})
      local s = pool:stream("SELECT g, 'p' || g FROM generate_series(1,5000) g", nil, {chunk = 100})
      assert.is_false(momoko.is_future(s))
      assert.is_nil(s.description)
      assert.same({1, "p1"}, s:next():await())
      assert.same({1, 1}, {pool:stats().free, pool:stats().busy})
      -- the other connection serves other requests meanwhile
      assert.equal(9, pool:execute("SELECT 9"):await():fetchone()[1])
      local n = 1
      while true do
        local row = s:next():await()
        if row == nil then break end
        n = n + 1
        assert.same({n, "p" .. n}, row)
      end
      assert.equal(5000, n)
      assert.is_true(s.closed)
      assert.same({2, 0}, {pool:stats().free, pool:stats().busy})
      assert.is_nil(s:next():await())
      assert.same({}, reported)
    end)
  end)

  it("gives the connection back on close(), with its query ended", function()
    local pool, app = open_pool("st_pclose", {size = 1})
    H.close_after(pool, app, function()
      local pid = pool:execute("SELECT pg_backend_pid()"):await():fetchone()[1]
      local s = pool:stream(BIG, nil, {chunk = 100})
      assert.same({1}, s:next():await())
      assert.same({0, 1}, {pool:stats().free, pool:stats().busy})
      -- with size 1, a request waits for the stream
      local f = pool:execute("SELECT 6")
      momoko.sleep(50):await()
      assert.equal(1, pool:stats().waiting)
      assert.is_false(f:done())
      s:close():await()
      assert.is_true(s.closed)
      assert.equal(6, f:await():fetchone()[1])
      assert.is_true(H.wait_until(function() return pool:stats().free == 1 end, 2000))
      assert.same({1, 0, 0}, {pool:stats().free, pool:stats().busy, pool:stats().waiting})
      assert.equal("idle", state_of(pid))
      assert.equal(1, H.backends(app))
      assert.same({}, reported)
    end)
  end)

  it("gives the connection back after close() before the first row, and after an error", function()
    local pool, app = open_pool("st_pclose0", {size = 1})
    H.close_after(pool, app, function()
      local s = pool:stream(BIG)
      s:close():await()
      assert.same({1, 0}, {pool:stats().free, pool:stats().busy})
      local e = pool:stream("SELECT 1/(3-g) FROM generate_series(1,5) g", nil, {chunk = 1})
      assert.same({0}, e:next():await())
      assert.same({1}, e:next():await())
      H.assert_kind("DataError", failure(e:next()))
      H.assert_kind("DataError", failure(e:next()))
      assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
      assert.is_true(H.wait_until(function() return pool:stats().free == 1 end, 2000))
      assert.same({1, 0}, {pool:stats().free, pool:stats().busy})
    end)
  end)

  it("gives the connection back when the GC collects an unfinished stream", function()
    local pool, app = open_pool("st_pgc", {size = 1})
    H.close_after(pool, app, function()
      local weak = setmetatable({}, {__mode = "v"})
      local function start()
        local s = pool:stream(BIG, nil, {chunk = 50})
        assert.same({1}, s:next():await())
        weak[1] = s
      end
      start()
      assert.equal(0, pool:stats().free)
      H.collect_garbage(3, 20)
      assert.is_nil(weak[1], "the stream was not collected")
      assert.is_true(H.wait_until(function() return pool:stats().free == 1 end, 10000),
        "the connection did not come back")
      assert.equal(8, pool:execute("SELECT 8"):await():fetchone()[1])
      assert.same({}, reported)
    end)
  end)

  it("uses the pool's cursor_factory and is to-be-closed", function()
    local pool, app = open_pool("st_pdict", {size = 1, cursor_factory = momoko.cursors.dict})
    H.close_after(pool, app, function()
      do
        local s <close> = pool:stream("SELECT g AS k FROM generate_series(1,100000) g", nil, {chunk = 10})
        assert.same({k = 1}, s:next():await())
        assert.same({k = 2}, s:next():await())
      end
      assert.is_true(H.wait_until(function() return pool:stats().free == 1 end, 10000))
      local got = H.async(function()
        local out = {}
        for row in pool:stream("SELECT g AS k FROM generate_series(1,3) g"):rows() do out[#out + 1] = row end
        return out
      end)
      assert.same({{k = 1}, {k = 2}, {k = 3}}, got)
      assert.same({1, 0}, {pool:stats().free, pool:stats().busy})
    end)
  end)

  it("takes a connection of its own in a pipeline = true pool", function()
    local pool, app = open_pool("st_ppipe", {size = 1, pipeline = true})
    H.close_after(pool, app, function()
      local s = pool:stream("SELECT g FROM generate_series(1,2000) g", nil, {chunk = 10})
      assert.same({1}, s:next():await())
      local f = pool:execute("SELECT $1::int AS x", {77})
      local g = pool:execute("SELECT 78")
      local n = read_sequence(s, 1)
      assert.equal(2000, n)
      assert.same({{77}}, f:await():fetchall())
      assert.same({{78}}, g:await():fetchall())
      assert.is_true(H.wait_until(function() return pool:stats().free == 1 end, 2000))
    end)
  end)

  it("raises InterfaceError at the call for bad arguments", function()
    local pool, app = open_pool("st_pbad", {size = 1})
    H.close_after(pool, app, function()
      H.interface_error(pool.stream, pool, 42)
      H.interface_error(pool.stream, pool, "SELECT 1", "x")
      for _, chunk in ipairs({0, -1, 1.5, "x"}) do
        H.interface_error(pool.stream, pool, "SELECT 1", nil, {chunk = chunk})
      end
      H.interface_error(pool.stream, pool, "SELECT 1", nil, "opts")
      assert.same({1, 0, 0}, {pool:stats().free, pool:stats().busy, pool:stats().waiting})
      assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
    end)
  end)
end)
