-- API §3 statement_cache_size: the per-connection cache of prepared statements. Every
-- check of server state reads pg_prepared_statements on the same connection (it is per
-- session) with a statement without parameters, which the cache never takes.
local momoko = require "momoko"
local H = require "helper"

local failure, assert_kind = H.failure, H.assert_kind

-- The rows of pg_prepared_statements of conn's session, as {name, statement,
-- parameter_types} sorted by name; with sql, only those of that statement text.
local function prepared(conn, sql)
  local cur = conn:execute("SELECT name, statement, parameter_types::text FROM pg_prepared_statements ORDER BY name"):await()
  local rows = {}
  for row in cur:rows() do
    if sql == nil or row[2] == sql then rows[#rows + 1] = row end
  end
  return rows
end

-- The names of those rows, in order.
local function names(rows)
  local t = {}
  for i, row in ipairs(rows) do t[i] = row[1] end
  return t
end

-- Runs sql with params n times (awaiting each) and asserts the first column of each
-- result is want.
local function run(conn, n, sql, params, want)
  for _ = 1, n do
    local cur = conn:execute(sql, params):await()
    assert.same(want, cur:fetchone()[1])
  end
end

local function connect(opts)
  local dsn, app = H.app_dsn("stc")
  opts = opts or {}
  opts.dsn = dsn
  return momoko.Connection(opts):connect():await(), app
end

describe("statement cache", function()
  it("runs a statement seen once unnamed, prepares it on its second run as mk_<n>, and reuses that", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local sql = "SELECT $1::int + 1"
      run(conn, 1, sql, {1}, 2)
      assert.same({}, prepared(conn, sql))
      run(conn, 1, sql, {2}, 3)
      local rows = prepared(conn, sql)
      assert.equal(1, #rows)
      assert.matches("^mk_%d+$", rows[1][1])
      assert.equal("{integer}", rows[1][3])
      local name = rows[1][1]
      for i = 1, 8 do run(conn, 1, sql, {i}, i + 1) end
      assert.same({name}, names(prepared(conn, sql)))
      assert.equal(1, #prepared(conn)) -- nothing else was prepared
    end)
  end)

  it("never prepares with statement_cache_size = 0", function()
    local conn, app = connect({statement_cache_size = 0})
    H.close_after(conn, app, function()
      run(conn, 10, "SELECT $1::int * 2", {21}, 42)
      assert.same({}, prepared(conn))
      local res = conn:transaction({{"SELECT $1::int", {1}}, {"SELECT $1::int", {2}}, {"SELECT $1::int", {3}}}):await()
      assert.equal(3, res[3]:fetchone()[1])
      assert.same({}, prepared(conn))
    end)
  end)

  it("keys on the parameter types too: the same SQL with an integer and a string is two entries", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local sql = "SELECT $1::text"
      run(conn, 2, sql, {7}, "7")
      run(conn, 2, sql, {"seven"}, "seven")
      local rows = prepared(conn, sql)
      assert.equal(2, #rows)
      assert.are_not.equal(rows[1][1], rows[2][1])
      local types = {rows[1][3], rows[2][3]}
      table.sort(types)
      assert.same({"{integer}", "{text}"}, types)
      run(conn, 3, sql, {8}, "8")
      run(conn, 3, sql, {"eight"}, "eight")
      assert.same(names(rows), names(prepared(conn, sql)))
    end)
  end)

  it("with statement_cache_size = 2 deallocates the least recently used prepared statement", function()
    local conn, app = connect({statement_cache_size = 2})
    H.close_after(conn, app, function()
      local A, B, C = "SELECT $1::int + 100", "SELECT $1::int + 200", "SELECT $1::int + 300"
      run(conn, 2, A, {1}, 101)
      run(conn, 2, B, {1}, 201)
      assert.equal(1, #prepared(conn, A))
      run(conn, 2, C, {1}, 301)
      -- C's first run pushed A out: its DEALLOCATE went before C's second run
      assert.same({}, prepared(conn, A))
      assert.equal(1, #prepared(conn, B))
      assert.equal(1, #prepared(conn, C))
      assert.equal(2, #prepared(conn))
      run(conn, 1, A, {2}, 102) -- A again: a new entry, unnamed (pushes out B)
      assert.same({}, prepared(conn, A))
      assert.same({}, prepared(conn, B))
      run(conn, 1, A, {3}, 103) -- and prepared again on its second run
      assert.equal(1, #prepared(conn, A))
      assert.equal(1, #prepared(conn, C))
      assert.equal(2, #prepared(conn))
    end)
  end)

  it("re-runs a statement whose plan changed after DDL, and deallocates the stale one", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      conn:execute("CREATE TEMP TABLE stc_t (id int PRIMARY KEY, a text)"):await()
      conn:execute("INSERT INTO stc_t VALUES (1, 'one'), (2, 'two')"):await()
      local sql = "SELECT * FROM stc_t WHERE id = $1"
      run(conn, 2, sql, {1}, 1)
      local old = names(prepared(conn, sql))
      assert.equal(1, #old)
      conn:execute("ALTER TABLE stc_t ADD COLUMN b int DEFAULT 7"):await()
      local cur = conn:execute(sql, {2}):await()
      assert.same({2, "two", 7}, cur:fetchone())
      assert.same({"id", "a", "b"}, {cur.description[1].name, cur.description[2].name, cur.description[3].name})
      assert.equal(3, #cur.description)
      local now = prepared(conn)
      for _, row in ipairs(now) do assert.are_not.equal(old[1], row[1]) end
      assert.same({}, prepared(conn, sql)) -- run unnamed; prepared again on the next run
      run(conn, 2, sql, {1}, 1)
      assert.equal(1, #prepared(conn, sql))
      assert.same({1, "one", 7}, conn:execute(sql, {1}):await():fetchone())
    end)
  end)

  it("re-runs a cached statement after the user's DEALLOCATE ALL", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local sql = "SELECT $1::text || '!'"
      run(conn, 3, sql, {"a"}, "a!")
      assert.equal(1, #prepared(conn, sql))
      conn:execute("DEALLOCATE ALL"):await()
      assert.same({}, prepared(conn))
      run(conn, 1, sql, {"b"}, "b!")
      run(conn, 2, sql, {"c"}, "c!")
      assert.equal(1, #prepared(conn, sql))
      assert.equal("idle", conn.transaction_status)
    end)
  end)

  it("forgets a statement whose PREPARE fails: ProgrammingError each time, nothing left", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local sql = "SELECT $1::int FROM WHERE"
      for _ = 1, 3 do
        local err = failure(conn:execute(sql, {1}))
        assert_kind("ProgrammingError", err)
        assert.equal("42601", err.sqlstate)
        assert.same({}, prepared(conn))
      end
      run(conn, 2, "SELECT $1::int", {5}, 5) -- the connection is fine
      assert.equal(1, #prepared(conn))
    end)
  end)

  it("in pipeline mode: 20 runs at once, one failing, give 19 results, one DataError, one prepared statement", function()
    local conn, app = connect({pipeline = true})
    H.close_after(conn, app, function()
      local sql = "SELECT 10 / $1::int"
      local fs = {}
      for i = 1, 20 do fs[i] = conn:execute(sql, {i == 7 and 0 or 1}) end
      for i = 1, 20 do
        if i == 7 then
          local err = failure(fs[i])
          assert_kind("DataError", err)
          assert.equal("22012", err.sqlstate)
        else
          assert.equal(10, fs[i]:await():fetchone()[1])
        end
      end
      local rows = prepared(conn, sql)
      assert.equal(1, #rows)
      assert.equal(1, #prepared(conn))
      assert.equal("idle", conn.transaction_status)
    end)
  end)

  it("in pipeline mode: the failing run may be the one that prepares", function()
    local conn, app = connect({pipeline = true})
    H.close_after(conn, app, function()
      local sql = "SELECT 12 / $1::int"
      local fs = {}
      for i = 1, 6 do fs[i] = conn:execute(sql, {i == 2 and 0 or 3}) end
      for i = 1, 6 do
        if i == 2 then
          assert_kind("DataError", failure(fs[i]))
        else
          assert.equal(4, fs[i]:await():fetchone()[1])
        end
      end
      assert.equal(1, #prepared(conn, sql))
    end)
  end)

  for _, pipeline in ipairs({false, true}) do
    it("runs cached statements inside conn:transaction (pipeline = " .. tostring(pipeline) .. ")", function()
      local conn, app = connect({pipeline = pipeline})
      H.close_after(conn, app, function()
        local sql = "SELECT $1::int * 3"
        for round = 1, 3 do
          local res = conn:transaction({{sql, {round}}, {sql, {round + 1}}, "SELECT 1", {sql, {round + 2}}}):await()
          assert.equal(4, #res)
          assert.same({3 * round, 3 * (round + 1), 1, 3 * (round + 2)},
            {res[1]:fetchone()[1], res[2]:fetchone()[1], res[3]:fetchone()[1], res[4]:fetchone()[1]})
          assert.equal(1, #prepared(conn, sql))
          assert.equal("idle", conn.transaction_status)
        end
        -- a failing statement of the transaction leaves the cache and the session sound
        local err = failure(conn:transaction({{sql, {1}}, {"SELECT 1 / $1::int", {0}}, {sql, {2}}}))
        assert_kind("DataError", err)
        assert.equal("idle", conn.transaction_status)
        local res = conn:transaction({{sql, {5}}, {sql, {6}}}):await()
        assert.same({15, 18}, {res[1]:fetchone()[1], res[2]:fetchone()[1]})
        assert.equal(1, #prepared(conn, sql))
      end)
    end)
  end

  it("gives each connection of a Pool a cache of its own", function()
    local dsn, app = H.app_dsn("stcpool")
    local pool = momoko.Pool({dsn = dsn, size = 2})
    pool:connect():await()
    H.close_after(pool, app, function()
      local sql = "SELECT $1::int - 1"
      for _ = 1, 5 do
        local fs = {}
        for i = 1, 10 do fs[i] = pool:execute(sql, {i}) end
        for i, cur in ipairs(momoko.all(fs):await()) do assert.equal(i - 1, cur:fetchone()[1]) end
      end
      local a = pool:getconn():await()
      local b = pool:getconn():await()
      assert.are_not.equal(a.pid, b.pid)
      local ra, rb = prepared(a, sql), prepared(b, sql)
      assert.is_true(#ra <= 1 and #rb <= 1)
      assert.is_true(#ra + #rb >= 1)
      -- named by each connection's own cache, from a random base: never alike
      for _, rows in ipairs({ra, rb}) do
        if rows[1] then assert.matches("^mk_%d+$", rows[1][1]) end
      end
      if ra[1] and rb[1] then assert.are_not.equal(ra[1][1], rb[1][1]) end
      pool:putconn(a)
      pool:putconn(b)
    end)
  end)
end)
