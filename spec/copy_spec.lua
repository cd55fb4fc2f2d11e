-- API §8 "COPY": conn:copy_from (a string, an array of strings or row tables, a function
-- source; the COPY text encoding of row values), conn:copy_to (with and without a sink),
-- their errors (from the server, from the source or sink, bad arguments: nothing is
-- committed, the connection stays usable), execute of a COPY statement
-- (NotSupportedError), pool:copy_from / pool:copy_to, and COPY on a pipelined connection.
-- The data is checked on the server through psql as well as through momoko.
local momoko = require "momoko"
local H = require "helper"

local failure = H.failure
local null = momoko.null

local function open(prefix, opts)
  local dsn, app = H.app_dsn(prefix)
  return momoko.connect(dsn, opts):await(), app
end

local function count_rows(name)
  return tonumber(H.psql("SELECT count(*) FROM " .. name))
end

local function select_one(conn)
  return conn:execute("SELECT 1 AS one"):await():fetchone()[1]
end

-- Runs fn(table_name) on a scratch table with these columns, dropping it afterwards.
local function with_table(columns, fn)
  local name = H.scratch_table("cp", columns)
  local ok, err = pcall(fn, name)
  H.drop_table(name)
  if not ok then error(err, 0) end
end

-- Asserts a connection is usable and out of any transaction.
local function assert_usable(conn)
  assert.equal(1, select_one(conn))
  assert.equal("idle", conn.transaction_status)
end

describe("conn:copy_from", function()
  local reported = H.collect_reports()
  local conn, app
  before_each(function() conn, app = open("cp_from") end)
  after_each(function()
    conn:close()
    assert.is_true(H.no_backends(app))
  end)

  it("sends a string as COPY data and resolves to the row count", function()
    with_table("id int, t text", function(t)
      local f = conn:copy_from("COPY " .. t .. " FROM STDIN", "1\ta\n2\tb\n3\t\\N\n")
      assert.is_true(momoko.is_future(f))
      local n = f:await()
      assert.equal(3, n)
      assert.equal(math.type(3), math.type(n))
      assert.equal("1|a\n2|b\n3|NULL", H.psql("SELECT id || '|' || coalesce(t, 'NULL') FROM " .. t .. " ORDER BY id"))
      assert.equal(0, conn:copy_from("COPY " .. t .. " FROM STDIN", ""):await())
      assert.equal(3, count_rows(t))
      assert_usable(conn)
      assert.same({}, reported)
    end)
  end)

  it("sends the strings of an array as they are", function()
    with_table("id int, t text", function(t)
      assert.equal(3, conn:copy_from("COPY " .. t .. " FROM STDIN", {"1\ta\n", "2\tb\n", "3\tc\n"}):await())
      -- one row split over items, two rows in one item: the data is a byte stream
      assert.equal(3, conn:copy_from("copy " .. t .. " (id, t) from stdin", {"4\t", "d\n5\te\n6", "\tf\n"}):await())
      assert.equal(0, conn:copy_from("COPY " .. t .. " FROM STDIN", {}):await())
      assert.equal("1a,2b,3c,4d,5e,6f", H.psql("SELECT string_agg(id || t, ',' ORDER BY id) FROM " .. t))
      assert_usable(conn)
    end)
  end)

  it("encodes row tables in COPY text format: NULL, tab, newline, backslash, CR, numbers, booleans, unicode", function()
    with_table("id bigint, t text, f float8, b bool", function(t)
      local rows = {
        {1, "tab\there", 1.5, true},
        {2, "new\nline", -0.25, false},
        {3, "back\\slash", 1e300, true},
        {4, "cr\rhere", null, null},
        {5, "ünïcødé ✓", 3, false},
        {6, null, 0.1, true},
        {7, "\\N", 2.0, true},
        {4611686018427387904, "a\\tb\\n\t\r\n\\", -7, false},
        {9, "", 0.0, true},
      }
      assert.equal(#rows, conn:copy_from("COPY " .. t .. " FROM STDIN", rows):await())
      -- through momoko
      local got = conn:execute("SELECT id, t, f, b FROM " .. t .. " ORDER BY id"):await():fetchall()
      assert.same({
        {1, "tab\there", 1.5, true},
        {2, "new\nline", -0.25, false},
        {3, "back\\slash", 1e300, true},
        {4, "cr\rhere", null, null},
        {5, "ünïcødé ✓", 3.0, false},
        {6, null, 0.1, true},
        {7, "\\N", 2.0, true},
        {9, "", 0.0, true},
        {4611686018427387904, "a\\tb\\n\t\r\n\\", -7.0, false},
      }, got)
      -- through psql (E'' strings: the server's own reading of the escapes)
      assert.equal("1,2,3,4,5,6,7,9,4611686018427387904", H.psql(
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM " .. t .. " WHERE " ..
        "(id = 1 AND t = E'tab\\there' AND f = 1.5 AND b) OR " ..
        "(id = 2 AND t = E'new\\nline' AND f = -0.25 AND NOT b) OR " ..
        "(id = 3 AND t = E'back\\\\slash' AND f = 1e300 AND b) OR " ..
        "(id = 4 AND t = E'cr\\rhere' AND f IS NULL AND b IS NULL) OR " ..
        "(id = 5 AND t = U&'\\00fcn\\00efc\\00f8d\\00e9 \\2713' AND f = 3 AND NOT b) OR " ..
        "(id = 6 AND t IS NULL AND f = 0.1 AND b) OR " ..
        "(id = 7 AND t = E'\\\\N' AND f = 2 AND b) OR " ..
        "(id = 4611686018427387904 AND t = E'a\\\\tb\\\\n\\t\\r\\n\\\\' AND f = -7 AND NOT b) OR " ..
        "(id = 9 AND t = '' AND t IS NOT NULL AND f = 0 AND b)"))
      assert_usable(conn)
    end)
  end)

  it("takes a function source of row tables and strings, called until nil", function()
    with_table("id int, t text", function(t)
      local i, calls = 0, 0
      local n = conn:copy_from("COPY " .. t .. " FROM STDIN", function()
        calls = calls + 1
        i = i + 1
        if i > 100 then return nil end
        if i % 2 == 0 then return i .. "\ts" .. i .. "\n" end
        return {i, "s" .. i}
      end):await()
      assert.equal(100, n)
      assert.equal(101, calls)
      assert.equal("100|5050|100", H.psql(
        "SELECT count(*) || '|' || sum(id) || '|' || count(*) FILTER (WHERE t = 's' || id) FROM " .. t))
      assert_usable(conn)
    end)
  end)

  it("copies 200k rows from a function source", function()
    with_table("id int, t text", function(t)
      local i = 0
      local n = conn:copy_from("COPY " .. t .. " FROM STDIN", function()
        i = i + 1
        if i > 200000 then return nil end
        return {i, string.rep("z", 50)}
      end):await()
      assert.equal(200000, n)
      local row = conn:execute("SELECT count(*), sum(id), min(length(t)), max(length(t)) FROM " .. t):await():fetchone()
      assert.same({200000, 20000100000, 50, 50}, row)
      assert.equal("200000", H.psql("SELECT count(DISTINCT id) FROM " .. t))
      assert_usable(conn)
    end)
  end)

  it("fails with ProgrammingError for a missing table, and stays usable", function()
    local err = failure(conn:copy_from("COPY no_such_table_cp FROM STDIN", {"1\n"}))
    H.assert_kind("ProgrammingError", err)
    assert.equal("42P01", err.sqlstate)
    assert_usable(conn)
  end)

  it("fails with DataError for bad data, committing nothing", function()
    with_table("id int, t text", function(t)
      local err = failure(conn:copy_from("COPY " .. t .. " FROM STDIN", {"1\ta\n", "x\tb\n", "3\tc\n"}))
      H.assert_kind("DataError", err)
      assert.equal("22P02", err.sqlstate)
      assert.equal(0, count_rows(t))
      err = failure(conn:copy_from("COPY " .. t .. " FROM STDIN", {{1, "a"}, {"notanint", "b"}}))
      H.assert_kind("DataError", err)
      assert.equal(0, count_rows(t))
      assert_usable(conn)
      assert.equal(1, conn:copy_from("COPY " .. t .. " FROM STDIN", {{1, "a"}}):await())
      assert.equal(1, count_rows(t))
    end)
  end)

  it("fails with InterfaceError for an item that is neither string nor table, committing nothing", function()
    with_table("id int, t text", function(t)
      for _, bad in ipairs({42, true, 1.5}) do
        local err = failure(conn:copy_from("COPY " .. t .. " FROM STDIN", {{1, "a"}, "2\tb\n", bad}))
        H.assert_kind("InterfaceError", err)
        assert.matches("item 3", err.message, 1, true) -- names the item
        assert.equal(0, count_rows(t))
        assert_usable(conn)
      end
      -- from a function source too
      local i = 0
      local err = failure(conn:copy_from("COPY " .. t .. " FROM STDIN", function()
        i = i + 1
        if i == 1 then return {1, "a"} end
        return false
      end))
      H.assert_kind("InterfaceError", err)
      assert.equal(0, count_rows(t))
      assert_usable(conn)
      assert.same({}, reported)
    end)
  end)

  it("fails with InterfaceError for a row value that cannot be encoded, committing nothing", function()
    with_table("id int, t text", function(t)
      for _, bad in ipairs({function() end, {2}, {x = 1}, coroutine.create(function() end)}) do
        local err = failure(conn:copy_from("COPY " .. t .. " FROM STDIN", {{1, "a"}, {2, bad}}))
        H.assert_kind("InterfaceError", err)
        assert.matches("item 2", err.message, 1, true)
        assert.equal(0, count_rows(t))
        assert_usable(conn)
      end
      -- a NUL byte cannot be sent in COPY text either
      local err = failure(conn:copy_from("COPY " .. t .. " FROM STDIN", {{1, "a"}, {2, "nul\0byte"}}))
      assert.is_true(momoko.is(err, "Error"), tostring(err))
      assert.equal(0, count_rows(t))
      assert_usable(conn)
    end)
  end)

  it("fails with InterfaceError carrying the message of a raising source, committing nothing", function()
    with_table("id int, t text", function(t)
      local i = 0
      local err = failure(conn:copy_from("COPY " .. t .. " FROM STDIN", function()
        i = i + 1
        if i <= 1000 then return {i, "r"} end
        error("source boom")
      end))
      H.assert_kind("InterfaceError", err)
      assert.matches("source boom", err.message, 1, true)
      assert.equal(1001, i)
      assert.equal(0, count_rows(t))
      assert_usable(conn)
      assert.equal(2, conn:copy_from("COPY " .. t .. " FROM STDIN", "1\ta\n2\tb\n"):await())
      assert.equal(2, count_rows(t))
      assert.same({}, reported)
    end)
  end)

  it("accepts blanks and comments before COPY, and floats NaN and Infinity", function()
    with_table("id int, f float8", function(t)
      local rows = {{1, 0 / 0}, {2, math.huge}, {3, -math.huge}}
      local n = conn:copy_from("  -- a comment\n /* another */ COPY " .. t .. " FROM STDIN", rows):await()
      assert.equal(3, n)
      assert.equal("1:NaN,2:Infinity,3:-Infinity", H.psql("SELECT string_agg(id || ':' || f, ',' ORDER BY id) FROM " .. t))
      assert_usable(conn)
    end)
  end)

  it("fails a COPY of the other direction with NotSupportedError naming copy_to", function()
    with_table("id int", function(t)
      local err = H.error_of(function() return conn:copy_from("COPY " .. t .. " TO STDOUT", "1\n"):await() end)
      assert.is_not_nil(err)
      H.assert_kind("NotSupportedError", err)
      assert.matches("copy_to", err.message, 1, true)
      assert_usable(conn)
    end)
  end)

  it("raises InterfaceError at the call for a bad source or sql", function()
    with_table("id int", function(t)
      local sql = "COPY " .. t .. " FROM STDIN"
      H.interface_error(conn.copy_from, conn, sql, 42)
      H.interface_error(conn.copy_from, conn, sql, true)
      H.interface_error(conn.copy_from, conn, sql, nil)
      H.interface_error(conn.copy_from, conn, sql)
      H.interface_error(conn.copy_from, conn, "SELECT 1", "1\n")
      H.interface_error(conn.copy_from, conn, "INSERT INTO " .. t .. " VALUES (1)", {"1\n"})
      H.interface_error(conn.copy_from, conn, 42, "1\n")
      H.interface_error(conn.copy_from, conn, nil, "1\n")
      assert.equal(0, count_rows(t))
      assert_usable(conn)
    end)
  end)
end)

describe("conn:copy_to", function()
  local reported = H.collect_reports()
  local conn, app
  before_each(function() conn, app = open("cp_to") end)
  after_each(function()
    conn:close()
    assert.is_true(H.no_backends(app))
  end)

  it("calls the sink for every row and resolves to the row count", function()
    with_table("id int, t text", function(t)
      H.psql("INSERT INTO " .. t .. " VALUES (1, 'a'), (2, E'tab\\tx'), (3, NULL)")
      local seen = {}
      local n = conn:copy_to("COPY " .. t .. " TO STDOUT", function(data) seen[#seen + 1] = data end):await()
      assert.equal(3, n)
      table.sort(seen)
      assert.same({"1\ta\n", "2\ttab\\tx\n", "3\t\\N\n"}, seen)
      local many = {}
      n = conn:copy_to("COPY (SELECT g, 'r' || g FROM generate_series(1,5000) g) TO STDOUT",
        function(data) many[#many + 1] = data end):await()
      assert.equal(5000, n)
      assert.equal(5000, #many)
      local bad = 0
      for i = 1, 5000 do if many[i] ~= i .. "\tr" .. i .. "\n" then bad = bad + 1 end end
      assert.equal(0, bad)
      assert_usable(conn)
      assert.same({}, reported)
    end)
  end)

  it("resolves to all the data as one string without a sink", function()
    local s = conn:copy_to("COPY (SELECT g, CASE WHEN g = 2 THEN NULL ELSE 'v' || g END FROM generate_series(1,4) g) TO STDOUT"):await()
    assert.equal("1\tv1\n2\t\\N\n3\tv3\n4\tv4\n", s)
    assert.equal("", conn:copy_to("COPY (SELECT 1 WHERE false) TO STDOUT"):await())
    local csv = conn:copy_to("COPY (SELECT 1 AS a, 'x,y' AS b) TO STDOUT WITH (FORMAT csv, HEADER)"):await()
    assert.equal('a,b\n1,"x,y"\n', csv)
    assert_usable(conn)
  end)

  it("round-trips data through copy_to and copy_from", function()
    with_table("id int, t text, f float8", function(a)
      with_table("id int, t text, f float8", function(b)
        H.psql("INSERT INTO " .. a .. " SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE E'x\\t\\n\\\\' || g END, g / 3.0 FROM generate_series(1,3000) g")
        local data = conn:copy_to("COPY " .. a .. " TO STDOUT"):await()
        assert.equal(3000, conn:copy_from("COPY " .. b .. " FROM STDIN", data):await())
        assert.equal("0|3000", H.psql("SELECT (SELECT count(*) FROM (SELECT * FROM " .. a .. " EXCEPT SELECT * FROM " .. b ..
          ") d) || '|' || (SELECT count(*) FROM " .. b .. ")"))
      end)
    end)
  end)

  it("fails with InterfaceError carrying the message of a raising sink, and stays usable", function()
    local calls = 0
    local err = failure(conn:copy_to("COPY (SELECT g FROM generate_series(1,200000) g) TO STDOUT", function()
      calls = calls + 1
      if calls == 10 then error("sink boom") end
    end))
    H.assert_kind("InterfaceError", err)
    assert.matches("sink boom", err.message, 1, true)
    assert.equal(10, calls)
    assert_usable(conn)
    assert.equal("1\n2\n", conn:copy_to("COPY (SELECT generate_series(1,2)) TO STDOUT"):await())
    assert.equal("idle", H.psql("SELECT state FROM pg_stat_activity WHERE pid = " .. conn.pid))
  end)

  it("fails with ProgrammingError for a missing table, and stays usable", function()
    local err = failure(conn:copy_to("COPY no_such_table_cp TO STDOUT", function() end))
    H.assert_kind("ProgrammingError", err)
    assert.equal("42P01", err.sqlstate)
    err = failure(conn:copy_to("COPY no_such_table_cp TO STDOUT"))
    H.assert_kind("ProgrammingError", err)
    assert_usable(conn)
  end)

  it("fails a COPY of the other direction with NotSupportedError naming copy_from", function()
    with_table("id int", function(t)
      local err = H.error_of(function() return conn:copy_to("COPY " .. t .. " FROM STDIN"):await() end)
      assert.is_not_nil(err)
      H.assert_kind("NotSupportedError", err)
      assert.matches("copy_from", err.message, 1, true)
      assert.equal(0, count_rows(t))
      assert_usable(conn)
    end)
  end)

  it("fails with TimeoutError after opts.timeout, and stays usable", function()
    local err = failure(conn:copy_to("COPY (SELECT pg_sleep(5)) TO STDOUT", nil, {timeout = 100}))
    H.assert_kind("TimeoutError", err)
    assert_usable(conn)
    assert.equal("idle", H.psql("SELECT state FROM pg_stat_activity WHERE pid = " .. conn.pid))
  end)

  it("raises InterfaceError at the call for a sink that is not a function", function()
    local sql = "COPY (SELECT 1) TO STDOUT"
    H.interface_error(conn.copy_to, conn, sql, 42)
    H.interface_error(conn.copy_to, conn, sql, "sink")
    H.interface_error(conn.copy_to, conn, sql, {})
    H.interface_error(conn.copy_to, conn, 42)
    assert_usable(conn)
  end)
end)

describe("execute of a COPY statement", function()
  it("fails with NotSupportedError naming copy_from / copy_to, and stays usable", function()
    local conn, app = open("cp_exec")
    H.close_after(conn, app, function()
      with_table("id int", function(t)
        local err = failure(conn:execute("COPY " .. t .. " FROM STDIN"))
        H.assert_kind("NotSupportedError", err)
        assert.matches("copy_from", err.message, 1, true)
        assert_usable(conn)
        err = failure(conn:execute("COPY " .. t .. " TO STDOUT"))
        H.assert_kind("NotSupportedError", err)
        assert.matches("copy_to", err.message, 1, true)
        assert_usable(conn)
        -- after another statement of the same string, in any case, after a comment
        local m = failure(conn:execute("SELECT 1; COPY " .. t .. " TO STDOUT"))
        H.assert_kind("NotSupportedError", m)
        assert.matches("copy_to", m.message, 1, true)
        m = failure(conn:execute("SELECT 1; copy " .. t .. " from stdin"))
        H.assert_kind("NotSupportedError", m)
        assert.matches("copy_from", m.message, 1, true)
        assert_usable(conn)
        H.assert_kind("NotSupportedError", failure(conn:execute("/* c */ copy " .. t .. " to stdout")))
        H.assert_kind("NotSupportedError", failure(conn:execute("COPY " .. t .. " FROM STDIN")))
        assert.equal(0, count_rows(t))
        assert_usable(conn)
      end)
    end)
  end)

  it("fails the same way on a pipelined connection, leaving the requests around it alone", function()
    local conn, app = H.pipelined_connection({}, "cp_exec_pipe")
    H.close_after(conn, app, function()
      with_table("id int", function(t)
        local f1 = conn:execute("SELECT 1")
        local f2 = conn:execute("COPY " .. t .. " FROM STDIN")
        local f3 = conn:execute("SELECT 3")
        local f4 = conn:execute("COPY " .. t .. " TO STDOUT")
        local f5 = conn:execute("SELECT 5")
        assert.equal(1, f1:await():fetchone()[1])
        local e2 = failure(f2)
        H.assert_kind("NotSupportedError", e2)
        assert.matches("copy_from", e2.message, 1, true)
        assert.equal(3, f3:await():fetchone()[1])
        local e4 = failure(f4)
        H.assert_kind("NotSupportedError", e4)
        assert.matches("copy_to", e4.message, 1, true)
        assert.equal(5, f5:await():fetchone()[1])
        assert_usable(conn)
      end)
    end)
  end)
end)

describe("pool:copy_from and pool:copy_to", function()
  it("copy on one pool connection and leave every connection free", function()
    local dsn, app = H.app_dsn("cp_pool")
    local pool = momoko.Pool{dsn = dsn, size = 2}
    pool:connect():await()
    H.close_after(pool, app, function()
      with_table("id int, t text", function(t)
        assert.equal(3, pool:copy_from("COPY " .. t .. " FROM STDIN", {{1, "a"}, {2, null}, "3\tc\n"}):await())
        assert.same({2, 0}, {pool:stats().free, pool:stats().busy})
        assert.equal("1a,2NULL,3c", H.psql("SELECT string_agg(id || coalesce(t, 'NULL'), ',' ORDER BY id) FROM " .. t))
        local seen = {}
        assert.equal(3, pool:copy_to("COPY (SELECT * FROM " .. t .. " ORDER BY id) TO STDOUT",
          function(d) seen[#seen + 1] = d end):await())
        assert.same({"1\ta\n", "2\t\\N\n", "3\tc\n"}, seen)
        assert.equal("1\ta\n2\t\\N\n3\tc\n", pool:copy_to("COPY (SELECT * FROM " .. t .. " ORDER BY id) TO STDOUT"):await())
        -- errors give the connection back too
        H.assert_kind("ProgrammingError", failure(pool:copy_from("COPY no_such_table_cp FROM STDIN", "1\n")))
        H.assert_kind("DataError", failure(pool:copy_from("COPY " .. t .. " FROM STDIN", "x\ty\n")))
        H.assert_kind("InterfaceError", failure(pool:copy_from("COPY " .. t .. " FROM STDIN", function() error("pool boom") end)))
        H.assert_kind("InterfaceError", failure(pool:copy_to("COPY " .. t .. " TO STDOUT", function() error("pool sink boom") end)))
        H.interface_error(pool.copy_from, pool, "SELECT 1", "1\n")
        H.interface_error(pool.copy_from, pool, "COPY " .. t .. " FROM STDIN", 42)
        H.interface_error(pool.copy_to, pool, "COPY " .. t .. " TO STDOUT", 42)
        -- concurrent copies on both connections
        local fs = {}
        for k = 1, 4 do
          fs[k] = pool:copy_from("COPY " .. t .. " FROM STDIN", {{100 + k, "p"}, {200 + k, "q"}})
        end
        assert.same({2, 2, 2, 2}, momoko.all(fs):await())
        assert.equal(11, count_rows(t))
        assert.is_true(H.wait_until(function() return pool:stats().free == 2 end, 2000))
        assert.same({2, 0, 0}, {pool:stats().free, pool:stats().busy, pool:stats().waiting})
        assert.equal(2, H.backends(app))
      end)
    end)
  end)
end)

describe("COPY on a pipeline = true connection", function()
  it("copy_from runs, and a pipelined execute queued behind it gets its result", function()
    local conn, app = H.pipelined_connection({}, "cp_pipe")
    H.close_after(conn, app, function()
      with_table("id int, t text", function(t)
        local f0 = conn:execute("SELECT 0")
        local c = conn:copy_from("COPY " .. t .. " FROM STDIN", {{1, "a"}, {2, "b"}, {3, "c"}})
        local f1 = conn:execute("SELECT count(*) FROM " .. t)
        local f2 = conn:execute("SELECT $1::text", {"after"})
        assert.equal(0, f0:await():fetchone()[1])
        assert.equal(3, c:await())
        assert.equal(3, f1:await():fetchone()[1])
        assert.equal("after", f2:await():fetchone()[1])
        local d = conn:copy_to("COPY (SELECT * FROM " .. t .. " ORDER BY id) TO STDOUT")
        local f3 = conn:execute("SELECT 3")
        assert.equal("1\ta\n2\tb\n3\tc\n", d:await())
        assert.equal(3, f3:await():fetchone()[1])
        -- a failed copy_from in the pipeline leaves the next request alone
        local bad = conn:copy_from("COPY " .. t .. " FROM STDIN", "x\ty\n")
        local f4 = conn:execute("SELECT 4")
        H.assert_kind("DataError", failure(bad))
        assert.equal(4, f4:await():fetchone()[1])
        assert.equal(3, count_rows(t))
        assert_usable(conn)
      end)
    end)
  end)
end)
