-- Regression: every Lua integer was sent as int8, so functions and operators that take
-- an int (f(int, int), date + int, jsonb -> int, substr, lpad) were not found (42883).
-- Integers now go as int4 when they fit in 32 bits, else int8 (API §4); integer arrays
-- as int4[] when every element fits, else int8[].
local momoko = require "momoko"
local H = require "helper"

local INT4_MAX, INT4_MIN = 2147483647, -2147483648

describe("regress 030: integers are sent as int4 when they fit", function()
  local conn, fn

  lazy_setup(function()
    fn = string.format("r030_add_%d", math.random(1, 1e9))
    H.psql("CREATE FUNCTION " .. fn .. "(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a + b'")
    conn = momoko.connect(H.dsn):await()
  end)

  lazy_teardown(function()
    if conn then conn:close() end
    H.psql("DROP FUNCTION IF EXISTS " .. fn .. "(int, int)")
  end)

  local function row(sql, params)
    return conn:execute(sql, params):await():fetchone()
  end

  it("callproc finds f(int, int)", function()
    local cur = conn:callproc(fn, {1, 2}):await()
    assert.same({3}, cur:fetchone())
    assert.equal("integer", row("SELECT pg_typeof(" .. fn .. "($1, $2))::text", {40, 2})[1])
    assert.same({42}, row("SELECT " .. fn .. "($1, $2)", {40, 2}))
  end)

  it("date + $1, jsonb -> $1, substr and lpad take the integer", function()
    assert.same({"2020-01-04"}, row("SELECT ('2020-01-01'::date + $1)::text", {3}))
    assert.same({"20"}, row([[SELECT ('{"a": [10, 20, 30]}'::jsonb -> 'a' -> $1)::text]], {1}))
    assert.same({"cdef", "**x"}, row("SELECT substr('abcdef', $1), lpad('x', $1, '*')", {3}))
  end)

  it("int4 where it fits, int8 beyond, and both round-trip exactly", function()
    local cases = {
      {0, "integer"}, {INT4_MAX, "integer"}, {INT4_MIN, "integer"},
      {INT4_MAX + 1, "bigint"}, {INT4_MIN - 1, "bigint"},
      {math.maxinteger, "bigint"}, {math.mininteger, "bigint"},
    }
    for _, c in ipairs(cases) do
      local r = row("SELECT $1, pg_typeof($1)::text, $1::text", {c[1]})
      assert.equal(c[1], r[1])
      assert.equal("integer", math.type(r[1]))
      assert.equal(c[2], r[2], tostring(c[1]))
      assert.equal(string.format("%d", c[1]), r[3])
    end
    -- an int4 is widened by the server where a bigint is needed
    assert.same({INT4_MAX + 1}, row("SELECT $1::int8 + 1", {INT4_MAX}))
    assert.same({"bigint"}, row("SELECT pg_typeof($1 + 1::int8)::text", {1}))
  end)

  it("integer arrays are int4[] when every element fits, else int8[]", function()
    local r = row("SELECT $1, pg_typeof($1)::text", {{1, INT4_MAX, INT4_MIN}})
    assert.same({{1, INT4_MAX, INT4_MIN}, "integer[]"}, r)
    r = row("SELECT $1, pg_typeof($1)::text", {{1, INT4_MAX + 1}})
    assert.same({{1, INT4_MAX + 1}, "bigint[]"}, r)
    r = row("SELECT $1, pg_typeof($1)::text", {{{INT4_MIN - 1}, {math.maxinteger}}})
    assert.same({{{INT4_MIN - 1}, {math.maxinteger}}, "bigint[]"}, r)
    r = row("SELECT $1, pg_typeof($1)::text", {{momoko.null, 7}})
    assert.same({{momoko.null, 7}, "integer[]"}, r)
    -- array_position(int[], int) needs both sides int
    assert.same({2}, row("SELECT array_position($1, $2)", {{5, 6, 7}, 6}))
  end)

  it("mogrify types int4 arrays the same way", function()
    assert.equal("SELECT '{1,2}'::int4[], '{1,2147483648}'::int8[], 5, (-5)",
      conn:mogrify("SELECT $1, $2, $3, $4", {{1, 2}, {1, INT4_MAX + 1}, 5, -5}))
    assert.same({"integer[]"}, row(conn:mogrify("SELECT pg_typeof($1)::text", {{1, 2}})))
  end)
end)
