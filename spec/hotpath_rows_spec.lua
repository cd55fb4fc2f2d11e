-- The exact values of decoded rows where the row builder takes fast paths (issue 9 §3):
-- integers and floats read straight from the result's text, NULL told apart from the
-- empty string, per-cursor column state hoisted out of the row loop, dict rows with
-- duplicate names, and rows built across GC steps. Reference values come from the
-- server's own text of the same value, read by Lua's tonumber (C strtod/strtoll), so a
-- fast path that rounds differently from strtod fails here.
local momoko = require "momoko"
local H = require "helper"

local null = momoko.null

-- The bits of a float, so that -0 and 0 (and NaN payloads) differ.
local function bits(x)
  return string.unpack("<i8", string.pack("<d", x))
end

describe("hot path rows", function()
  local conn
  H.block_connection(H.dsn, function(c) conn = c end)

  local function all(sql, params, opts)
    return conn:execute(sql, params, opts):await():fetchall()
  end

  it("int2, int4, int8 and oid at their limits, and -0", function()
    local r = all([=[SELECT '-32768'::int2, 32767::int2, '-2147483648'::int4, 2147483647::int4,
      '-9223372036854775808'::int8, 9223372036854775807::int8, '-0'::int8, 0::oid,
      4294967295::oid, '-9223372036854775807'::int8, 1000000000000000000::int8, -1::int2]=])[1]
    assert.same({-32768, 32767, -2147483648, 2147483647, math.mininteger, math.maxinteger, 0, 0,
      4294967295, -math.maxinteger, 1000000000000000000, -1}, r)
    for i = 1, #r do assert.equal("integer", math.type(r[i])) end
  end)

  it("every int8 matches the server's text of it", function()
    local rows = all([=[SELECT v, v::text FROM (
      SELECT (CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END) * (floor(random() * 10 ^ (g % 19)))::int8 AS v
      FROM generate_series(1, 2000) g) s]=])
    assert.equal(2000, #rows)
    for _, row in ipairs(rows) do
      assert.equal("integer", math.type(row[1]))
      assert.equal(math.tointeger(tonumber(row[2])), row[1])
    end
  end)

  it("float8 specials: -0, infinities, NaN, the extremes, the smallest denormal", function()
    local r = all([=[SELECT '-0'::float8, 0::float8, 'Infinity'::float8, '-Infinity'::float8,
      'NaN'::float8, 1.7976931348623157e308::float8, -1.7976931348623157e308::float8,
      2.2250738585072014e-308::float8, 5e-324::float8, -5e-324::float8, 1e22::float8,
      1e23::float8, 9007199254740993::float8, 0.1::float8, 1::float8 / 3, -1.5e-7::float8,
      123456789012345680000::float8, '-0.0'::float4, 0.1::float4, 3.4028235e38::float4,
      '-Infinity'::float4, 'NaN'::float4, 1.4e-45::float4]=])[1]
    assert.equal(bits(-0.0), bits(r[1]))
    assert.equal(bits(0.0), bits(r[2]))
    assert.equal(math.huge, r[3])
    assert.equal(-math.huge, r[4])
    assert.is_true(r[5] ~= r[5])
    assert.equal(1.7976931348623157e308, r[6])
    assert.equal(-1.7976931348623157e308, r[7])
    assert.equal(2.2250738585072014e-308, r[8])
    assert.equal(5e-324, r[9])
    assert.equal(-5e-324, r[10])
    assert.equal(1e22, r[11])
    assert.equal(1e23, r[12])
    assert.equal(9007199254740992.0, r[13])
    assert.equal(0.1, r[14])
    assert.equal(1 / 3, r[15])
    assert.equal(-1.5e-7, r[16])
    assert.equal(123456789012345680000.0, r[17])
    assert.equal(bits(-0.0), bits(r[18]))
    assert.equal(0.1, r[19]) -- the text "0.1" of the float4, read as a double
    assert.equal(3.4028235e38, r[20])
    assert.equal(-math.huge, r[21])
    assert.is_true(r[22] ~= r[22])
    assert.equal(1e-45, r[23])
    for i = 1, #r do assert.equal("float", math.type(r[i])) end
  end)

  it("every float8 and float4 matches the server's text of it, bit for bit", function()
    -- magnitudes 1e-30 .. 1e30, some with few digits (the common fast case), some with 17
    local rows = all([=[SELECT v, v::text, v::float4, v::float4::text FROM (
      SELECT (CASE WHEN g % 3 = 0 THEN -1 ELSE 1 END) *
        (CASE WHEN g % 2 = 0 THEN round((random() * 10000)::numeric, g % 7)::float8
              ELSE random() END) * 10 ^ ((g % 61) - 30) AS v
      FROM generate_series(1, 3000) g) s]=])
    assert.equal(3000, #rows)
    for _, row in ipairs(rows) do
      assert.equal("float", math.type(row[1]))
      assert.equal(bits(tonumber(row[2])), bits(row[1]))
      assert.equal(bits(tonumber(row[4])), bits(row[3]))
    end
  end)

  it("NULL of every kind is momoko.null, the empty string is not NULL", function()
    local rows = all([=[SELECT * FROM (VALUES
      (NULL::int4, NULL::int8, NULL::float8, NULL::bool, NULL::text, NULL::bytea, NULL::int4[]),
      (1, 2, 3.5, true, '', ''::bytea, '{}'::int4[]),
      (NULL, 0, NULL, false, NULL, NULL, '{NULL}'::int4[])) v]=])
    assert.same({null, null, null, null, null, null, null}, rows[1])
    assert.same({1, 2, 3.5, true, "", "", {}}, rows[2])
    assert.same({null, 0, null, false, null, null, {null}}, rows[3])
    assert.equal("", rows[2][5])
  end)

  it("arrays of numbers keep their exact elements", function()
    local r = all([=[SELECT '{-9223372036854775808,9223372036854775807,NULL,0}'::int8[],
      '{-0,Infinity,-Infinity,NaN,0.1,5e-324}'::float8[], '{{1,2},{3,4}}'::int2[],
      '{t,f,NULL}'::bool[]]=])[1]
    assert.same({math.mininteger, math.maxinteger, null, 0}, r[1])
    assert.equal(bits(-0.0), bits(r[2][1]))
    assert.equal(math.huge, r[2][2])
    assert.equal(-math.huge, r[2][3])
    assert.is_true(r[2][4] ~= r[2][4])
    assert.equal(0.1, r[2][5])
    assert.equal(5e-324, r[2][6])
    assert.same({{1, 2}, {3, 4}}, r[3])
    assert.same({true, false, null}, r[4])
  end)

  it("dict rows: the last of duplicate column names wins, NULL values are kept", function()
    local rows = all("SELECT 1 AS a, 2 AS a, 'x' AS b, NULL::int AS c, 3 AS b, 4 AS \"A\"", nil,
      {cursor_factory = "dict"})
    assert.same({{a = 2, b = 3, c = null, A = 4}}, rows)
    local cur = conn:execute("SELECT 1, 2 AS \"?column?\", 'z'", nil, {cursor_factory = "dict"}):await()
    assert.same({["?column?"] = "z"}, cur:fetchone())
  end)

  it("rows without columns, and one cursor fetched by every method", function()
    assert.same({{}, {}, {}}, all("SELECT FROM generate_series(1, 3)"))
    local cur = conn:execute("SELECT g, g::text, g * 0.5::float8 FROM generate_series(1, 10) g"):await()
    local got = {cur:fetchone()}
    for _, row in ipairs(cur:fetchmany(3)) do got[#got + 1] = row end
    for row in cur:rows() do
      got[#got + 1] = row
      if #got == 7 then break end
    end
    for _, row in ipairs(cur:fetchall()) do got[#got + 1] = row end
    assert.equal(10, #got)
    for i = 1, 10 do assert.same({i, tostring(i), i * 0.5}, got[i]) end
    assert.is_nil(cur:fetchone())
  end)

  it("registered decoders still run per column, array and dict rows alike", function()
    local seen = 0
    local upper = function(s) seen = seen + 1; return s:upper() end
    momoko.register_type(25, upper) -- text
    local ok, err = pcall(function()
      local rows = conn:execute("SELECT 'a'::text AS t, 1 AS n, NULL::text AS z, 'b'::text AS t2"):await():fetchall()
      assert.same({{"A", 1, null, "B"}}, rows)
      rows = conn:execute("SELECT 'c'::text AS t, 2 AS n FROM generate_series(1, 3)", nil,
        {cursor_factory = "dict"}):await():fetchall()
      assert.same({{t = "C", n = 2}, {t = "C", n = 2}, {t = "C", n = 2}}, rows)
    end)
    momoko.register_type(25, nil)
    assert.is_true(ok, tostring(err))
    assert.equal(5, seen)
  end)

  it("100k rows of (int, text, float8, timestamptz) survive the GC steps they cause", function()
    local rows = all([=[SELECT g, 'name-' || g, g * 0.25::float8,
      timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
      FROM generate_series(1, 100000) g]=])
    assert.equal(100000, #rows)
    collectgarbage()
    for i = 1, 100000, 997 do
      local row = rows[i]
      assert.equal(i, row[1])
      assert.equal("name-" .. i, row[2])
      assert.equal(i * 0.25, row[3])
      assert.equal("string", type(row[4]))
    end
    assert.same({100000, "name-100000", 25000.0}, {rows[100000][1], rows[100000][2], rows[100000][3]})
  end)
end)
