-- Regression: arrays of types outside a short list (aclitem[], point[], box[], the
-- hstore[] of an extension, whose OID is not fixed) came back as one literal string.
-- Every array now decodes to a Lua array (API §5): elements in their text form, split
-- with the element type's own delimiter (';' for box), or decoded by the element
-- type's registered decoder. Array types beyond the built-in ones are looked up in
-- pg_type once per Connection or Pool, before the first result that has one resolves;
-- built-in types never cost a lookup.
local momoko = require "momoko"
local H = require "helper"

local null = momoko.null
local LOOKUP = "FROM pg_catalog.pg_type a JOIN pg_catalog.pg_type e"

-- The last statement the backend of app ran (its query text in pg_stat_activity).
local function last_query(app)
  return H.psql("SELECT query FROM pg_stat_activity WHERE application_name = '" .. app .. "'")
end

describe("regress 031: arrays of every type decode to Lua arrays", function()
  local dsn, app = H.app_dsn("regress_031")
  local conn
  H.block_connection(dsn, function(c) conn = c end)

  local function row(sql, params)
    return conn:execute(sql, params):await():fetchone()
  end

  it("aclitem[] and point[] (built in, no lookup)", function()
    local sql = "SELECT '{=r/postgres,postgres=arwdDxt/postgres}'::aclitem[], " ..
      "ARRAY[point(1, 2), point(-3.5, 4)], ARRAY[lseg(point(0, 0), point(1, 1))], " ..
      "ARRAY['<(1,2),3>'::circle], ARRAY['[1,3)'::int4range, 'empty']"
    local r = row(sql)
    assert.same({"=r/postgres", "postgres=arwdDxt/postgres"}, r[1])
    assert.same({"(1,2)", "(-3.5,4)"}, r[2])
    assert.same({"[(0,0),(1,1)]"}, r[3])
    assert.same({"<(1,2),3>"}, r[4])
    assert.same({"[1,3)", "empty"}, r[5])
    -- nothing ran after the query itself: no catalog lookup for built-in types
    assert.equal(sql, last_query(app))
  end)

  it("box[] splits on ';', also nested, with NULLs and empty arrays", function()
    local r = row("SELECT ARRAY[box(point(1, 1), point(0, 0)), box(point(3, 3), point(2, 2))], " ..
      "ARRAY[ARRAY[box(point(1, 1), point(0, 0)), NULL], ARRAY[NULL, box(point(5, 5), point(4, 4))]], " ..
      "'{}'::box[], ARRAY[NULL::box]")
    assert.same({"(1,1),(0,0)", "(3,3),(2,2)"}, r[1])
    assert.same({{"(1,1),(0,0)", null}, {null, "(5,5),(4,4)"}}, r[2])
    assert.same({}, r[3])
    assert.same({null}, r[4])
  end)

  it("nested point[] with NULL elements and other lower bounds", function()
    local r = row("SELECT ARRAY[ARRAY[point(1, 2), NULL], ARRAY[NULL, point(3, 4)]], " ..
      "'[0:1]={\"(1,1)\",\"(2,2)\"}'::point[], '{}'::point[], '{}'::aclitem[]")
    assert.same({{"(1,2)", null}, {null, "(3,4)"}}, r[1])
    assert.same({"(1,1)", "(2,2)"}, r[2])
    assert.same({}, r[3])
    assert.same({}, r[4])
  end)

  it("an element type's registered decoder decodes the elements", function()
    momoko.register_type(600, function(text)
      local x, y = text:match("^%(([^,]+),([^)]+)%)$")
      return {x = tonumber(x), y = tonumber(y)}
    end)
    local ok, r = pcall(row, "SELECT ARRAY[point(1, 2), NULL, point(3, 4)]")
    momoko.register_type(600, nil)
    assert(ok, r)
    assert.same({{{x = 1, y = 2}, null, {x = 3, y = 4}}}, r)
  end)

  it("unregistered hstore[] (an extension's type): looked up once, elements as text", function()
    local sql = [==[SELECT ARRAY['a=>1'::hstore, NULL, 'b=>"x,y"'], '{}'::hstore[] /* r031 first */]==]
    local r = row(sql)
    assert.same({'"a"=>"1"', null, '"b"=>"x,y"'}, r[1])
    assert.same({}, r[2])
    -- the lookup ran after the query, on the same connection
    assert.truthy(last_query(app):find(LOOKUP, 1, true), last_query(app))
    -- learnt: the next such result costs no lookup
    local again = [==[SELECT ARRAY[ARRAY['k=>v'::hstore], ARRAY[NULL::hstore]] /* r031 again */]==]
    assert.same({{{'"k"=>"v"'}, {null}}}, row(again))
    assert.equal(again, last_query(app))
  end)

  it("registered hstore[] decodes to tables; a registered hstore alone decodes the elements too", function()
    local c2 = momoko.connect(H.dsn):await()
    local ok, err = pcall(function()
      c2:register_hstore():await()
      local r = c2:execute("SELECT ARRAY['a=>1, b=>NULL'::hstore, NULL]"):await():fetchone()
      assert.same({{{a = "1", b = null}, null}}, r)
    end)
    c2:close()
    assert(ok, err)
    local oid = tonumber(H.psql("SELECT 'hstore'::regtype::oid"))
    momoko.register_type(oid, require("momoko.core").hstore_decode)
    local c3 = momoko.connect(H.dsn):await()
    ok, err = pcall(function()
      local r = c3:execute("SELECT ARRAY[ARRAY['x=>y'::hstore], ARRAY[''::hstore]]"):await():fetchone()
      assert.same({{{{x = "y"}}, {{}}}}, r)
    end)
    momoko.register_type(oid, nil)
    c3:close()
    assert(ok, err)
  end)

  it("arrays of a table's row type and of an enum, on a Pool", function()
    local tbl = H.scratch_table("r031", "a int, b text")
    local enum = "r031_mood_" .. math.random(1, 1e9)
    H.psql("CREATE TYPE " .. enum .. " AS ENUM ('sad', 'ok')")
    local pool = momoko.Pool{dsn = H.dsn, size = 1}
    local ok, err = pcall(function()
      pool:connect():await()
      local r = pool:execute("SELECT ARRAY[ROW(1, 'x,y')::" .. tbl .. ", NULL], " ..
        "ARRAY['sad', 'ok']::" .. enum .. "[]"):await():fetchone()
      assert.same({'(1,"x,y")', null}, r[1])
      assert.same({"sad", "ok"}, r[2])
      -- a connection lent by the pool knows what the pool learnt
      local c <close> = pool:getconn():await()
      assert.same({{{"ok"}}}, c:execute("SELECT ARRAY['ok']::" .. enum .. "[]"):await():fetchall())
    end)
    pool:close()
    H.drop_table(tbl)
    H.psql("DROP TYPE " .. enum)
    assert(ok, err)
  end)

  it("a failed lookup leaves the text form and does not fail the request", function()
    local c2 = momoko.connect(H.dsn):await()
    -- inside a failed transaction the lookup cannot run; the query before it could
    c2:execute("BEGIN"):await()
    local f = c2:execute("SELECT ARRAY['a=>1'::hstore]")
    local bad = c2:execute("SELECT 1/0")
    local r = f:await():fetchone()
    local ok = pcall(bad.await, bad)
    assert.is_false(ok)
    assert.same({'{"\\"a\\"=>\\"1\\""}'}, r)
    c2:execute("ROLLBACK"):await()
    -- and it is tried again later
    assert.same({{'"a"=>"1"'}}, c2:execute("SELECT ARRAY['a=>1'::hstore]"):await():fetchone())
    c2:close()
  end)
end)
