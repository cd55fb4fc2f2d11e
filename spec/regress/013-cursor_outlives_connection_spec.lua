-- Regression (issue "Foundation", item 4): a PGresult keeps a copy of its connection's
-- notice receiver and argument, and libpq calls it for its own checks on the result
-- (an out-of-range PQgetvalue or PQfname), also after the connection was closed and
-- freed. The argument was the mk_conn itself: a use after free. It is now a small sink
-- that libpq's result events keep alive while any result lives. The binding never asks
-- libpq out of range, so the receiver call itself is pinned by tests/core/test_conn.c
-- (under ASan with scripts/test --sanitize); here, cursors used after their connection
-- or pool was closed and collected keep working, under ASan too.
local momoko = require "momoko"
local H = require "helper"

describe("regress 013: a cursor outlives its connection", function()
  it("of a Connection, closed and collected", function()
    local dsn, app = H.app_dsn("r013a")
    local weak = setmetatable({}, {__mode = "v"})
    local cur
    do
      local conn = momoko.connect(dsn):await()
      weak.conn = conn
      cur = conn:execute("SELECT g AS n, 'row ' || g AS label FROM generate_series(1, 3) g"):await()
      conn:close()
    end
    H.collect_garbage(3, 10)
    assert.is_nil(weak.conn)
    assert.is_true(H.no_backends(app))
    assert.equal(3, #cur)
    assert.same({{name = "n", type_code = 23}, {name = "label", type_code = 25}}, cur.description)
    assert.same({1, "row 1"}, cur:fetchone())
    assert.same({{2, "row 2"}, {3, "row 3"}}, cur:fetchall())
    assert.is_nil(cur:fetchone())
    H.assert_kind("ProgrammingError", H.error_of(cur.scroll, cur, 10, "absolute"))
    cur:scroll(0, "absolute")
    assert.same({1, "row 1"}, cur:fetchone())
    cur:close()
  end)

  it("of a Pool, closed and collected, with the cursors of a transaction", function()
    local dsn, app = H.app_dsn("r013b")
    local weak = setmetatable({}, {__mode = "v"})
    local curs
    do
      local pool = momoko.Pool{dsn = dsn, size = 2}
      weak.pool = pool
      pool:connect():await()
      curs = pool:transaction{"SELECT 1 AS a", {"SELECT $1::text AS b", {"x"}}}:await()
      pool:close()
    end
    H.collect_garbage(3, 10)
    assert.is_nil(weak.pool)
    assert.is_true(H.no_backends(app))
    assert.same({1}, curs[1]:fetchone())
    assert.same({{"x"}}, curs[2]:fetchall())
    assert.equal("b", curs[2].description[1].name)
    curs = nil
    collectgarbage() -- the results, and with the last one the notice sink, go now
    collectgarbage()
  end)
end)
