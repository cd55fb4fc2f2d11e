-- The lean request path (issue 9 §3): a request keeps its owner, factory and SQL in its
-- future until it completes, and no longer; a future wakes one waiter or several, in
-- order; cursor.query is the SQL that was sent.
local momoko = require "momoko"
local H = require "helper"

describe("hot path requests", function()
  it("a kept future of a completed request does not keep its connection alive", function()
    local dsn, app = H.app_dsn("hot_exec")
    local kept = {}
    do
      local conn = momoko.connect(dsn):await()
      kept[1] = conn:execute("SELECT 1", nil, {cursor_factory = "dict"})
      kept[2] = conn:transaction({"SELECT 2", {"SELECT $1::int", {3}}})
      conn:ping():await() -- resolves to conn itself: not kept
      kept[1]:await()
      kept[2]:await()
      assert.equal(1, H.backends(app))
    end
    H.collect_garbage(3, 20)
    assert.is_true(H.no_backends(app))
    assert.same({{["?column?"] = 1}}, kept[1]:result():fetchall())
    assert.same({{{2}}, {{3}}}, {kept[2]:result()[1]:fetchall(), kept[2]:result()[2]:fetchall()})
  end)

  it("a pool request anchors the pool until it completes, and only until then", function()
    local dsn, app = H.app_dsn("hot_pool")
    local got
    do
      local pool = momoko.Pool{dsn = dsn, size = 1}
      pool:connect():await()
      pool:execute("SELECT pg_sleep(0.05), 'kept'"):add_done_callback(function(f)
        got = f:result():fetchone()[2]
      end)
    end
    collectgarbage(); collectgarbage()
    momoko.run()
    assert.equal("kept", got)
    H.collect_garbage(3, 20)
    assert.is_true(H.no_backends(app))
  end)

  it("wakes one waiter, then several in the order they came", function()
    local conn <close> = momoko.connect(H.dsn):await()
    local order = {}
    local f = conn:execute("SELECT pg_sleep(0.02), 7")
    f:add_done_callback(function(g) order[#order + 1] = "cb1:" .. tostring(g:done()) end)
    local one = conn:execute("SELECT 8")
    local co = momoko.spawn(function()
      local v = f:await():fetchone()[2]
      order[#order + 1] = "co:" .. v
      return v
    end)
    f:add_done_callback(function() order[#order + 1] = "cb2" end)
    assert.equal(8, one:await():fetchone()[1]) -- a future with a single waiter
    assert.equal(7, co:await())
    assert.same({"cb1:true", "co:7", "cb2"}, order)
    local late = {}
    f:add_done_callback(function() late[#late + 1] = "now" end) -- done: called at once
    assert.same({"now"}, late)
  end)

  it("cursor.query is the SQL sent, :names rewritten, for every statement", function()
    local conn <close> = momoko.connect(H.dsn):await()
    local long = "SELECT " .. string.rep("1 + ", 30) .. "$1::int AS v"
    assert.equal(long, conn:execute(long, {1}):await().query)
    assert.equal("SELECT $1::int, $2::text", conn:execute("SELECT :a::int, :b::text", {a = 1, b = "x"}):await().query)
    local curs = conn:transaction({"SELECT 1", {"SELECT $1::int", {2}}}):await()
    assert.same({"SELECT 1", "SELECT $1::int"}, {curs[1].query, curs[2].query})
    assert.equal("SELECT * FROM pg_catalog.abs($1)", conn:callproc("pg_catalog.abs", {-3}):await().query)
    -- libpq would send the SQL only up to a NUL byte: such SQL is refused at the call
    -- (regress 166), so cursor.query is always the whole SQL given
    local err = H.interface_error(conn.execute, conn, "SELECT 5\0 junk")
    assert.equal("sql contains a NUL byte (libpq would send only the text before it)", err.message)
    assert.equal("SELECT 5 -- x", conn:execute("SELECT 5 -- x"):await().query)
  end)

  it("parameters past the inline anchors keep their strings", function()
    local conn <close> = momoko.connect(H.dsn):await()
    local n, params, cols = 100, {}, {}
    for i = 1, n do
      params[i] = i % 2 == 0 and ("s" .. i .. string.rep("x", 50)) or i
      cols[i] = "$" .. i .. (i % 2 == 0 and "::text" or "::int")
    end
    local sql = "SELECT " .. table.concat(cols, ", ")
    local f = conn:execute(sql, params)
    params = nil
    collectgarbage(); collectgarbage()
    local row = f:await():fetchone()
    for i = 1, n do
      assert.equal(i % 2 == 0 and ("s" .. i .. string.rep("x", 50)) or i, row[i])
    end
  end)
end)
