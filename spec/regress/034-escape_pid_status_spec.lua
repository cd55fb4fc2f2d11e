-- New Connection members (API §3): conn:escape_literal(s) and conn:escape_identifier(s)
-- (libpq's PQescapeLiteral/PQescapeIdentifier, quotes included), conn.pid (the
-- backend's process id, nil when not connected) and conn.transaction_status.
local momoko = require "momoko"
local H = require "helper"

describe("regress 034: escape_literal, escape_identifier, pid, transaction_status", function()
  local dsn, app = H.app_dsn("regress_034")
  local conn
  H.block_connection(dsn, function(c) conn = c end)

  it("escape_literal quotes for this connection; the server reads back the same string", function()
    assert.equal("'it''s'", conn:escape_literal("it's"))
    assert.equal("''", conn:escape_literal(""))
    for _, s in ipairs({"plain", "it's", [[back\slash]], "new\nline", "ünïcödé 🐘", "'; DROP TABLE x; --", "$$"}) do
      local lit = conn:escape_literal(s)
      assert.equal(s, conn:execute("SELECT " .. lit .. "::text"):await():fetchone()[1], lit)
      assert.same({true}, conn:execute("SELECT " .. lit .. " = $1::text", {s}):await():fetchone())
    end
  end)

  it("escape_identifier quotes an identifier the server accepts", function()
    assert.equal('"plain"', conn:escape_identifier("plain"))
    assert.equal('"we""ird"', conn:escape_identifier('we"ird'))
    local name = 'r034 "odd" Näme'
    local id = conn:escape_identifier(name)
    local tbl = H.scratch_table("r034", "v int")
    local ok, err = pcall(function()
      conn:execute("ALTER TABLE " .. tbl .. " RENAME COLUMN v TO " .. id):await()
      assert.equal(name, H.psql("SELECT attname FROM pg_attribute WHERE attrelid = '" .. tbl .. "'::regclass AND attnum = 1"))
      conn:execute("INSERT INTO " .. tbl .. " (" .. id .. ") VALUES (7)"):await()
      assert.same({{7}}, conn:execute("SELECT " .. id .. " FROM " .. tbl):await():fetchall())
    end)
    H.drop_table(tbl)
    assert(ok, err)
  end)

  it("refuses non-strings, NUL bytes, invalid text and a connection that is not connected", function()
    for _, fn in ipairs({conn.escape_literal, conn.escape_identifier}) do
      for _, bad in ipairs({5, true, {}}) do
        assert.matches("string expected", H.interface_error(fn, conn, bad).message)
      end
      H.interface_error(fn, conn)
      assert.matches("NUL", H.interface_error(fn, conn, "a\0b").message)
      H.interface_error(fn, conn, "broken \xe4")
      local fresh = momoko.Connection(H.dsn)
      assert.matches("not connected", H.interface_error(fn, fresh, "x").message)
      fresh:close()
    end
    assert.equal("'still fine'", conn:escape_literal("still fine"))
  end)

  it("pid is the backend's process id; nil when not connected", function()
    local pid = conn.pid
    assert.equal("integer", math.type(pid))
    assert.equal(pid, conn:execute("SELECT pg_backend_pid()"):await():fetchone()[1])
    assert.same({pid}, H.pids_of(app))
    local dsn2, app2 = H.app_dsn("regress_034b")
    local c2 = momoko.Connection(dsn2)
    assert.is_nil(c2.pid)
    c2:connect():await()
    assert.same({c2.pid}, H.pids_of(app2))
    assert.are_not.equal(pid, c2.pid)
    c2:close()
    assert.is_nil(c2.pid)
    assert.is_true(H.no_backends(app2))
  end)

  it("transaction_status follows the session on a getconn'd connection", function()
    local pool = momoko.Pool{dsn = H.dsn}
    pool:connect():await()
    local ok, err = pcall(function()
      local c <close> = pool:getconn():await()
      assert.equal("idle", c.transaction_status)
      c:execute("BEGIN"):await()
      assert.equal("intrans", c.transaction_status)
      assert.equal("t", H.psql("SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = " .. c.pid ..
        " AND state = 'idle in transaction'"))
      local f = c:execute("SELECT 1/0")
      assert.is_false(pcall(f.await, f))
      assert.equal("inerror", c.transaction_status)
      assert.equal("t", H.psql("SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = " .. c.pid ..
        " AND state = 'idle in transaction (aborted)'"))
      c:execute("ROLLBACK"):await()
      assert.equal("idle", c.transaction_status)
    end)
    pool:close()
    assert(ok, err)
  end)

  it("transaction_status is active while a query runs, unknown once closed", function()
    local c2 = momoko.connect(H.dsn):await()
    local f = c2:execute("SELECT pg_sleep(0.3)")
    assert.equal("active", c2.transaction_status)
    f:await()
    assert.equal("idle", c2.transaction_status)
    c2:close()
    assert.equal("unknown", c2.transaction_status)
  end)
end)
