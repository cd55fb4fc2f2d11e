-- Regression: SQL with a $n beyond the parameters given, named parameters for $n SQL
-- and positional ones for :name SQL were sent, and failed on the server with a protocol
-- error (08P01) or a syntax error. They are InterfaceErrors at the call now, naming the
-- problem, and nothing is sent.
local momoko = require "momoko"
local H = require "helper"

describe("regress 032: placeholders are checked against the parameters at the call", function()
  local dsn, app = H.app_dsn("regress_032")
  local conn
  H.block_connection(dsn, function(c)
    conn = c
    conn:execute("SELECT 'r032 start'"):await()
  end)

  -- Nothing was sent since the marker query: the backend's last statement is still it.
  local function nothing_sent(marker)
    assert.equal(marker, H.psql("SELECT query FROM pg_stat_activity WHERE application_name = '" .. app .. "'"))
  end

  it("a $n beyond the parameters given", function()
    local marker = "SELECT 'r032 a'"
    conn:execute(marker):await()
    local err = H.interface_error(conn.execute, conn, "SELECT $1::int, $2::int", {1})
    assert.matches("$2", err.message, 1, true)
    assert.matches("1 parameter", err.message, 1, true)
    err = H.interface_error(conn.execute, conn, "SELECT $1::int + $3::int", {1, 2})
    assert.matches("$3", err.message, 1, true)
    H.interface_error(conn.transaction, conn, {"SELECT 1", {"SELECT $2::int", {1}}})
    H.interface_error(conn.mogrify, conn, "SELECT $2", {1})
    err = H.interface_error(conn.execute, conn, "SELECT $0", {1})
    assert.matches("$0", err.message, 1, true)
    H.interface_error(conn.execute, conn, "SELECT $65536", {1})
    nothing_sent(marker)
    assert.same({3}, conn:execute("SELECT $1::int + 2", {1}):await():fetchone())
  end)

  it("named parameters for $n SQL, and $n mixed with :names", function()
    local marker = "SELECT 'r032 b'"
    conn:execute(marker):await()
    local err = H.interface_error(conn.execute, conn, "SELECT $1::int", {a = 1})
    assert.matches("names", err.message, 1, true)
    assert.matches("$1", err.message, 1, true)
    err = H.interface_error(conn.execute, conn, "SELECT :a::int + $1::int", {a = 1})
    assert.matches("mixes", err.message, 1, true)
    nothing_sent(marker)
  end)

  it("positional parameters for :name SQL", function()
    local marker = "SELECT 'r032 c'"
    conn:execute(marker):await()
    local err = H.interface_error(conn.execute, conn, "SELECT :a::int", {1})
    assert.matches(":name", err.message, 1, true)
    H.interface_error(conn.execute, conn, "SELECT :a::int, :b::int", table.pack(1, 2))
    nothing_sent(marker)
  end)

  it("placeholders in literals, comments and dollar quotes do not count", function()
    local r = conn:execute("SELECT $1::int, '$2', $$ $3 $$, \"$4\" -- $5\n /* $6 */ FROM (SELECT 1 AS \"$4\") s",
      {7}):await():fetchone()
    assert.same({7, "$2", " $3 ", 1}, r)
    assert.same({5}, conn:execute("SELECT :a::int /* $9 */", {a = 5}):await():fetchone())
    -- a trailing NULL counted by params.n is a parameter like any other
    assert.same({1, momoko.null}, conn:execute("SELECT $1::int, $2::int", table.pack(1, nil)):await():fetchone())
  end)

  it("on a Pool the same errors raise at the call", function()
    local pool = momoko.Pool{dsn = H.dsn}
    pool:connect():await()
    local ok, err = pcall(function()
      H.interface_error(pool.execute, pool, "SELECT $2", {1})
      H.interface_error(pool.execute, pool, "SELECT :x", {1})
      H.interface_error(pool.mogrify, pool, "SELECT $1", {x = 1})
      assert.same({2}, pool:execute("SELECT $1::int", {2}):await():fetchone())
    end)
    pool:close()
    assert(ok, err)
  end)
end)
