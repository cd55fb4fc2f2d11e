-- Bad input and security: each case ends with a clear, typed error and a connection
-- that still works (or is cleanly closed); passwords never leak; TLS works.
local momoko = require "momoko"
local H = require "helper"

local scram_user = assert(os.getenv("MOMOKO_TEST_SCRAM_USER"), "scripts/pg-env sets up the SCRAM role")
local scram_password = assert(os.getenv("MOMOKO_TEST_SCRAM_PASSWORD"))

-- The DSN of the SCRAM role with a given password.
local function scram_dsn(password)
  return H.dsn:gsub("user=%S+", "user=" .. scram_user) .. " password=" .. password
end

local function failure(f)
  local ok, err = pcall(f)
  assert.is_false(ok, "expected a failure")
  return err
end

-- Everything a user could see of an object or an error, as one string.
local function visible(...)
  local out = {}
  for _, v in ipairs{...} do
    out[#out + 1] = tostring(v)
    if type(v) == "table" then
      for k, x in pairs(v) do out[#out + 1] = tostring(k) .. "=" .. tostring(x) end
    end
  end
  return table.concat(out, "\n")
end

describe("authentication", function()
  it("logs in with the right SCRAM password, over TLS by default; the password shows nowhere", function()
    local notices = {}
    local conn = momoko.connect(scram_dsn(scram_password), {
      on_notice = function(_, msg) notices[#notices + 1] = msg end,
    }):await()
    local row = conn:execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"):await():fetchone()
    assert.same({scram_user, true}, row)
    conn:execute("DO $$ BEGIN RAISE NOTICE 'connected as %', current_user; END $$"):await()
    assert.equal(1, #notices)
    assert.matches(scram_user, notices[1])
    local err = failure(function() return conn:execute("SELECT no_such_column"):await() end)
    assert.is_nil(visible(conn, err, table.concat(notices, "\n")):find(scram_password, 1, true))
    conn:close()
  end)

  it("fails a wrong password with OperationalError that never shows the password", function()
    local wrong = "wrong-" .. scram_password
    local conn = momoko.Connection(scram_dsn(wrong))
    local err = failure(function() return conn:connect():await() end)
    assert.is_true(momoko.is(err, "OperationalError"))
    assert.matches("password authentication failed", err.message)
    assert.is_true(conn.closed)
    assert.is_nil(visible(err, conn):find(wrong, 1, true))
    assert.is_nil(visible(err, conn):find(scram_password, 1, true))
  end)

  it("keeps the password out of a pool's tostring and errors", function()
    local wrong = "pool-wrong-" .. scram_password
    local pool = momoko.Pool{dsn = scram_dsn(wrong), size = 2, reconnect_interval = 50}
    local err = failure(function() return pool:connect():await() end)
    assert.is_true(momoko.is(err, "PartiallyConnectedError"))
    local err2 = failure(function() return pool:execute("SELECT 1"):await() end)
    assert.is_true(momoko.is(err2, "DatabaseNotAvailable"))
    assert.is_nil(visible(pool, err, err2):find(wrong, 1, true))
    pool:close()
  end)

  it("fails an unknown database with OperationalError", function()
    local err = failure(function()
      return momoko.connect((H.dsn:gsub("dbname=%S+", "dbname=no_such_db_here"))):await()
    end)
    assert.is_true(momoko.is(err, "OperationalError"))
    assert.matches("no_such_db_here", err.message)
  end)

  it("refuses a malformed DSN at the call", function()
    for _, dsn in ipairs{"foo=bar", "host='unterminated", "nokey", "postgresql://[::1"} do
      local err = failure(function() return momoko.Connection(dsn) end)
      assert.is_true(momoko.is(err, "InterfaceError"), dsn)
    end
  end)
end)

describe("bad input on a working connection", function()
  local conn

  lazy_setup(function() conn = momoko.connect(H.dsn):await() end)
  lazy_teardown(function() conn:close() end)

  local function still_works()
    assert.equal(7, conn:execute("SELECT $1::int", {7}):await():fetchone()[1])
  end

  it("sends a 100 MB query text and gets its result", function()
    local n = 100 * 1024 * 1024
    local sql = "SELECT length('" .. string.rep("x", n) .. "')"
    assert.equal(n, conn:execute(sql):await():fetchone()[1])
    still_works()
  end)

  it("fails invalid UTF-8 in a text parameter with DataError", function()
    local err = failure(function() return conn:execute("SELECT $1::text", {"abc\xff\xfe"}):await() end)
    assert.is_true(momoko.is(err, "DataError"))
    assert.equal("22021", err.sqlstate)
    still_works()
  end)

  it("refuses a NUL byte in a text parameter before sending", function()
    local err = failure(function() return conn:execute("SELECT $1::text", {"a\0b"}) end)
    assert.is_true(momoko.is(err, "InterfaceError"))
    still_works()
  end)

  it("refuses 65,536 parameters before sending", function()
    local params = {}
    for i = 1, 65536 do params[i] = i end
    local err = failure(function() return conn:execute("SELECT 1", params) end)
    assert.is_true(momoko.is(err, "InterfaceError"))
    assert.matches("65535", err.message)
    still_works()
  end)

  it("refuses arrays nested deeper than PostgreSQL allows", function()
    local deep = {1}
    for _ = 1, 7 do deep = {deep} end
    local err = failure(function() return conn:execute("SELECT $1::int[]", {deep}) end)
    assert.is_true(momoko.is(err, "InterfaceError"))
    still_works()
  end)

  it("returns a 1,000,000-row result", function()
    local cur = conn:execute("SELECT g FROM generate_series(1, 1000000) g"):await()
    assert.equal(1000000, #cur)
    cur:scroll(999999, "absolute")
    assert.equal(1000000, cur:fetchone()[1])
    cur:close()
    still_works()
  end)

  it("returns a 10 MB value over TLS (sslmode=require)", function()
    local tls = momoko.connect(H.dsn .. " sslmode=require"):await()
    assert.is_true(tls:execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"):await():fetchone()[1])
    local n = 10 * 1024 * 1024
    local v = tls:execute("SELECT repeat('z', $1::int)", {n}):await():fetchone()[1]
    assert.equal(n, #v)
    assert.equal(string.rep("z", 16), v:sub(-16))
    tls:close()
  end)
end)

describe("a storm of 1,000 cancels", function()
  it("ends every request exactly once, typed, and leaves the pool usable", function()
    local dsn, app = H.app_dsn("storm")
    local pool = momoko.Pool{dsn = dsn, size = 4}
    pool:connect():await()
    local ends, canceled, succeeded = 0, 0, 0
    local futures = {}
    for i = 1, 1000 do
      local f = pool:execute("SELECT $1::int, pg_sleep(0.001)", {i})
      futures[i] = f
      f:add_done_callback(function(d)
        ends = ends + 1
        if d:error() == nil then
          assert(d:result():fetchone()[1] == i)
          succeeded = succeeded + 1
        elseif momoko.is(d:error(), "QueryCanceledError") then
          canceled = canceled + 1
        end
      end)
    end
    for i = 1, 1000 do futures[i]:cancel() end
    momoko.all(futures):add_done_callback(function() end)
    assert.is_true(H.wait_until(function() return ends == 1000 end, 30000))
    assert.equal(1000, canceled + succeeded)
    assert.is_true(canceled > 0)
    -- no late cancel hits the requests that come after
    local fs = {}
    for i = 1, 100 do fs[i] = pool:execute("SELECT $1::int", {i}) end
    local rs = momoko.all(fs):await()
    for i = 1, 100 do assert.equal(i, rs[i]:fetchone()[1]) end
    pool:close()
    assert.is_true(H.no_backends(app))
  end)
end)
