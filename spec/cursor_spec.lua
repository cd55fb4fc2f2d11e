-- Cursors (API §5): fetching, scrolling, the attributes, closing, every
-- PostgreSQL -> Lua conversion, row shapes and registered decoders.
local momoko = require "momoko"
local H = require "helper"

local null = momoko.null

local function is_interface_error(err)
  return err ~= nil and momoko.is(err, "InterfaceError")
end

describe("cursor", function()
  local conn
  H.block_connection(H.dsn, function(c) conn = c end)

  local function query(sql, params, opts)
    return conn:execute(sql, params, opts):await()
  end

  local function one(sql, params, opts)
    return query(sql, params, opts):fetchone()
  end

  describe("fetching", function()
    local SQL = "SELECT g AS n, 'r' || g AS s FROM generate_series(1, 5) g ORDER BY g"

    it("fetchone returns rows in order, then nil", function()
      local cur = query(SQL)
      for i = 1, 5 do
        assert.same({i, "r" .. i}, cur:fetchone())
        assert.equal(i, cur.rownumber)
      end
      assert.is_nil(cur:fetchone())
      assert.is_nil(cur:fetchone())
      assert.equal(5, cur.rownumber)
    end)

    it("fetchmany(n) returns up to n rows", function()
      local cur = query(SQL)
      assert.same({{1, "r1"}, {2, "r2"}}, cur:fetchmany(2))
      assert.same({}, cur:fetchmany(0))
      assert.same({{3, "r3"}, {4, "r4"}, {5, "r5"}}, cur:fetchmany(10))
      assert.same({}, cur:fetchmany(3))
    end)

    it("fetchmany() uses arraysize (default 1)", function()
      local cur = query(SQL)
      assert.equal(1, cur.arraysize)
      assert.same({{1, "r1"}}, cur:fetchmany())
      cur.arraysize = 3
      assert.equal(3, cur.arraysize)
      assert.same({{2, "r2"}, {3, "r3"}, {4, "r4"}}, cur:fetchmany())
      assert.same({{5, "r5"}}, cur:fetchmany())
    end)

    it("refuses a bad fetchmany count and a bad arraysize", function()
      local cur = query(SQL)
      assert.is_true(is_interface_error(H.error_of(cur.fetchmany, cur, -1)))
      assert.is_true(is_interface_error(H.error_of(cur.fetchmany, cur, 1.5)))
      assert.is_true(is_interface_error(H.error_of(cur.fetchmany, cur, "2")))
      assert.is_true(is_interface_error(H.error_of(function() cur.arraysize = 0 end)))
      assert.is_true(is_interface_error(H.error_of(function() cur.arraysize = "x" end)))
      assert.same({{1, "r1"}, {2, "r2"}}, cur:fetchmany(2.0))
    end)

    it("refuses writes to read-only fields", function()
      local cur = query(SQL)
      local err = H.error_of(function() cur.rowcount = 3 end)
      assert.is_true(is_interface_error(err))
      assert.matches("rowcount", err.message)
      assert.equal(5, cur.rowcount)
    end)

    it("fetchall returns the remaining rows", function()
      local cur = query(SQL)
      cur:fetchone()
      assert.same({{2, "r2"}, {3, "r3"}, {4, "r4"}, {5, "r5"}}, cur:fetchall())
      assert.same({}, cur:fetchall())
      assert.equal(5, cur.rownumber)
    end)

    it("rows() iterates over the remaining rows", function()
      local cur = query(SQL)
      cur:fetchone()
      local seen = {}
      for r in cur:rows() do seen[#seen + 1] = r[1] end
      assert.same({2, 3, 4, 5}, seen)
    end)

    it("scrolls relative and absolute", function()
      local cur = query(SQL)
      cur:scroll(2)
      assert.equal(2, cur.rownumber)
      assert.same({3, "r3"}, cur:fetchone())
      cur:scroll(-2)
      assert.same({2, "r2"}, cur:fetchone())
      cur:scroll(0, "relative")
      assert.same({3, "r3"}, cur:fetchone())
      cur:scroll(0, "absolute")
      assert.same({1, "r1"}, cur:fetchone())
      cur:scroll(4, "absolute")
      assert.same({5, "r5"}, cur:fetchone())
      cur:scroll(5, "absolute") -- just past the last row: nothing left
      assert.is_nil(cur:fetchone())
    end)

    it("raises ProgrammingError when scrolling out of range, without moving", function()
      local cur = query(SQL)
      cur:scroll(2)
      for _, args in ipairs({{-3}, {4}, {6, "absolute"}, {-1, "absolute"},
                             {math.maxinteger}, {math.mininteger}, {math.mininteger, "absolute"}}) do
        local err = H.error_of(cur.scroll, cur, table.unpack(args))
        assert.is_not_nil(err, "scroll(" .. tostring(args[1]) .. ") should fail")
        assert.is_true(momoko.is(err, "ProgrammingError"), tostring(err))
        assert.equal(2, cur.rownumber)
      end
      assert.same({3, "r3"}, cur:fetchone())
    end)

    it("refuses a bad scroll mode or count", function()
      local cur = query(SQL)
      assert.is_true(is_interface_error(H.error_of(cur.scroll, cur, 1, "sideways")))
      assert.is_true(is_interface_error(H.error_of(cur.scroll, cur, 1, 2)))
      assert.is_true(is_interface_error(H.error_of(cur.scroll, cur, "1")))
      assert.is_true(is_interface_error(H.error_of(cur.scroll, cur, 0.5)))
      assert.equal(0, cur.rownumber)
    end)
  end)

  describe("attributes", function()
    it("describe a SELECT", function()
      local sql = "SELECT 1::int4 AS a, 'x'::text AS b, 2::int8 AS c FROM generate_series(1, 3)"
      local cur = query(sql)
      assert.equal(3, cur.rowcount)
      assert.equal(3, #cur)
      assert.equal(0, cur.rownumber)
      assert.equal("SELECT 3", cur.statusmessage)
      assert.equal(sql, cur.query)
      assert.same({{name = "a", type_code = 23}, {name = "b", type_code = 25}, {name = "c", type_code = 20}},
        cur.description)
      assert.matches("^<momoko%.Cursor rows=3 rownumber=0>$", tostring(cur))
    end)

    it("describe a SELECT without rows", function()
      local cur = query("SELECT 1 AS one WHERE false")
      assert.equal(0, cur.rowcount)
      assert.equal(0, #cur)
      assert.same({{name = "one", type_code = 23}}, cur.description)
      assert.is_nil(cur:fetchone())
      assert.same({}, cur:fetchall())
    end)

    it("count rows affected by INSERT, UPDATE and DELETE", function()
      local cur = query("CREATE TEMP TABLE cur_rc (id int PRIMARY KEY, v text)")
      assert.equal(-1, cur.rowcount)
      assert.is_nil(cur.description)
      assert.equal("CREATE TABLE", cur.statusmessage)
      assert.equal(0, #cur)
      assert.is_nil(cur:fetchone())

      cur = query("INSERT INTO cur_rc SELECT g, 'v' || g FROM generate_series(1, 4) g")
      assert.equal(4, cur.rowcount)
      assert.equal("INSERT 0 4", cur.statusmessage)
      assert.is_nil(cur.description)

      cur = query("UPDATE cur_rc SET v = 'w' WHERE id > $1", {1})
      assert.equal(3, cur.rowcount)
      assert.equal("UPDATE 3", cur.statusmessage)

      cur = query("DELETE FROM cur_rc WHERE id IN (1, 2)")
      assert.equal(2, cur.rowcount)
      assert.equal("DELETE 2", cur.statusmessage)

      cur = query("INSERT INTO cur_rc VALUES (10, 'ten') RETURNING id, v")
      assert.equal(1, cur.rowcount)
      assert.equal("INSERT 0 1", cur.statusmessage)
      assert.same({{name = "id", type_code = 23}, {name = "v", type_code = 25}}, cur.description)
      assert.same({10, "ten"}, cur:fetchone())

      cur = query("DROP TABLE cur_rc")
      assert.equal(-1, cur.rowcount)
      assert.equal("DROP TABLE", cur.statusmessage)
    end)

    it("report -1 for commands such as SET", function()
      local cur = query("SET application_name TO 'cursor_spec'")
      assert.equal(-1, cur.rowcount)
      assert.equal("SET", cur.statusmessage)
      assert.is_nil(cur.description)
    end)

    it("are nil for unknown fields", function()
      local cur = query("SELECT 1")
      assert.is_nil(cur.nonsense)
      assert.is_nil(cur[1])
    end)
  end)

  describe("close", function()
    it("frees the result; fetching then raises InterfaceError", function()
      local cur = query("SELECT 1 FROM generate_series(1, 3)")
      cur:fetchone()
      cur:close()
      for _, m in ipairs({"fetchone", "fetchmany", "fetchall", "rows"}) do
        local err = H.error_of(cur[m], cur)
        assert.is_true(is_interface_error(err), m .. ": " .. tostring(err))
        assert.matches("closed", err.message)
      end
      assert.is_true(is_interface_error(H.error_of(cur.scroll, cur, 0, "absolute")))
      assert.equal(0, #cur)
      assert.equal(-1, cur.rowcount)
      assert.is_nil(cur.description)
      assert.matches("closed>$", tostring(cur))
      cur:close() -- idempotent
    end)

    it("also makes a cursor of a command raise on fetch", function()
      local cur = query("SET application_name TO 'cursor_spec_close'")
      assert.is_nil(cur:fetchone())
      cur:close()
      assert.is_true(is_interface_error(H.error_of(cur.fetchone, cur)))
    end)

    it("works as a to-be-closed variable", function()
      local outer
      do
        local cur <close> = query("SELECT 1")
        outer = cur
      end
      assert.is_true(is_interface_error(H.error_of(outer.fetchone, outer)))
    end)
  end)

  describe("PostgreSQL -> Lua", function()
    it("NULL is momoko.null", function()
      local r = one("SELECT NULL, NULL::int, NULL::text[], NULL::bytea")
      assert.same({null, null, null, null}, r)
      assert.equal("userdata", type(r[1]))
    end)

    it("int2, int4, int8 and oid are integers, exactly", function()
      local r = one("SELECT 32767::int2, '-2147483648'::int4, 9223372036854775807::int8, " ..
        "'-9223372036854775808'::int8, 4294967295::oid, 0::int4")
      assert.same({32767, -2147483648, 9223372036854775807, math.mininteger, 4294967295, 0}, r)
      for i = 1, #r do assert.equal("integer", math.type(r[i])) end
      assert.equal(math.maxinteger, r[3])
    end)

    it("float4 and float8 are floats, with Infinity and NaN", function()
      local r = one("SELECT 1.5::float4, 0.1::float8, 'Infinity'::float8, '-Infinity'::float8, " ..
        "'NaN'::float8, 'Infinity'::float4, '-Infinity'::float4, 'NaN'::float4, 1e300::float8, 3::float8")
      assert.equal(1.5, r[1])
      assert.equal(0.1, r[2])
      assert.equal(math.huge, r[3])
      assert.equal(-math.huge, r[4])
      assert.is_true(r[5] ~= r[5])
      assert.equal(math.huge, r[6])
      assert.equal(-math.huge, r[7])
      assert.is_true(r[8] ~= r[8])
      assert.equal(1e300, r[9])
      for i = 1, #r do assert.equal("float", math.type(r[i])) end
    end)

    it("numeric is an exact string", function()
      assert.same({"123456789012345678901234567890.123", "-0.000000000000000000001", "NaN", "42"},
        one("SELECT 123456789012345678901234567890.123::numeric, -0.000000000000000000001::numeric, " ..
          "'NaN'::numeric, 42::numeric"))
    end)

    it("bool is a boolean", function()
      assert.same({true, false}, one("SELECT true, false"))
    end)

    it("bytea is the raw bytes", function()
      local r = one("SELECT '\\x00ff41'::bytea, ''::bytea, decode(repeat('ab', 1000), 'hex')")
      assert.equal("\0\255A", r[1])
      assert.equal("", r[2])
      assert.equal(string.rep("\171", 1000), r[3])
    end)

    it("bytea also decodes with bytea_output = escape", function()
      query("SET bytea_output = 'escape'")
      local ok, r = pcall(one, "SELECT '\\x00ff5c41'::bytea")
      query("RESET bytea_output")
      assert.is_true(ok, tostring(r))
      assert.equal("\0\255\\A", r[1])
    end)

    it("arrays of int, float, bool, text, numeric and bytea", function()
      local r = one("SELECT '{1,2,3}'::int4[], '{-1,9223372036854775807}'::int8[], '{1}'::int2[], " ..
        "'{1.5,Infinity,-Infinity}'::float8[], '{0.25}'::float4[], '{t,f}'::bool[], " ..
        "'{a,b}'::text[], '{1.10,2}'::numeric[], '{\"\\\\x00ff\",\"\\\\x41\"}'::bytea[], '{7}'::oid[]")
      assert.same({{1, 2, 3}, {-1, math.maxinteger}, {1}, {1.5, math.huge, -math.huge}, {0.25},
        {true, false}, {"a", "b"}, {"1.10", "2"}, {"\0\255", "A"}, {7}}, r)
      assert.equal("integer", math.type(r[1][1]))
      assert.equal("integer", math.type(r[2][2]))
      assert.equal("float", math.type(r[4][1]))
    end)

    it("a NaN element of a float array", function()
      local r = one("SELECT '{NaN}'::float8[]")
      assert.is_true(r[1][1] ~= r[1][1])
    end)

    it("multi-dimensional arrays, NULL and quoted elements", function()
      local r = one([==[SELECT '{{1,2},{3,NULL}}'::int[],
        ARRAY['a"b', 'c,d', 'e\f', '{g}', 'NULL', NULL, '', ' s '],
        '{{{1}},{{2}}}'::int[]]==])
      assert.same({{1, 2}, {3, null}}, r[1])
      assert.same({'a"b', "c,d", "e\\f", "{g}", "NULL", null, "", " s "}, r[2])
      assert.same({{{1}}, {{2}}}, r[3])
    end)

    it("empty arrays and arrays with other lower bounds", function()
      local r = one("SELECT '{}'::int[], '[0:1]={1,2}'::int[], '[-1:0][1:1]={{5},{6}}'::int[], '{}'::text[]")
      assert.same({{}, {1, 2}, {{5}, {6}}, {}}, r)
    end)

    it("arrays of other types have text elements", function()
      local r = one("SELECT ARRAY['2020-01-02'::date, NULL], " ..
        "ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid], '{\"{\\\"k\\\": 1}\"}'::json[]")
      assert.same({{"2020-01-02", null}, {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, {'{"k": 1}'}}, r)
    end)

    it("json and jsonb are text by default", function()
      assert.same({'{"a": [1, 2]}', '{"b": true}'}, one([[SELECT '{"a": [1, 2]}'::json, '{"b":true}'::jsonb]]))
    end)

    it("hstore is text by default", function()
      assert.same({'"a"=>"1"'}, one("SELECT 'a=>1'::hstore"))
    end)

    it("timestamps, dates, uuid and others are their text form", function()
      query("SET DateStyle TO ISO")
      query("SET TimeZone TO 'UTC'")
      local r = one("SELECT '2020-01-02 03:04:05.5'::timestamp, '2020-01-02'::date, " ..
        "'2020-01-02 03:04:05+00'::timestamptz, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, " ..
        "'1 day'::interval, point(1, 2), '10.0.0.1'::inet, 'x'::char(3)")
      assert.same({"2020-01-02 03:04:05.5", "2020-01-02", "2020-01-02 03:04:05+00",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "1 day", "(1,2)", "10.0.0.1", "x  "}, r)
    end)

    it("decodes a value at the largest size", function()
      local big = string.rep("x", 1 << 20)
      assert.equal(big, one("SELECT repeat('x', $1::int)", {1 << 20})[1])
    end)
  end)

  describe("row shapes", function()
    it("momoko.cursors.dict per query", function()
      local cur = query("SELECT 1 AS id, 'ada' AS name, NULL::int AS gone", nil,
        {cursor_factory = momoko.cursors.dict})
      local r = cur:fetchone()
      assert.same({id = 1, name = "ada", gone = null}, r)
      assert.is_nil(r[1])
      -- the connection's default is untouched
      assert.same({1}, one("SELECT 1 AS id"))
    end)

    it("momoko.cursors.dict as the connection option", function()
      local c2 = momoko.connect(H.dsn, {cursor_factory = momoko.cursors.dict}):await()
      local ok, err = pcall(function()
        assert.same({{a = 1, b = "x"}, {a = 2, b = "y"}},
          c2:execute("SELECT * FROM (VALUES (1, 'x'), (2, 'y')) v(a, b)"):await():fetchall())
        -- a per-query array factory overrides it
        assert.same({1}, c2:execute("SELECT 1 AS a", nil, {cursor_factory = momoko.cursors.array}):await():fetchone())
      end)
      c2:close()
      assert(ok, err)
    end)

    it("a function cursor_factory: the future resolves to its return value", function()
      local seen
      local v = conn:execute("SELECT 7 AS n", nil, {cursor_factory = function(cur)
        seen = cur
        return {n = cur:fetchone()[1], rows = #cur, kind = "custom"}
      end}):await()
      assert.same({n = 7, rows = 1, kind = "custom"}, v)
      assert.equal("SELECT 7 AS n", seen.query)
    end)

    it("a failing function cursor_factory fails the future", function()
      local f = conn:execute("SELECT 1", nil, {cursor_factory = function() error("factory broke") end})
      local err = H.error_of(f.await, f)
      assert.is_not_nil(err)
      assert.matches("factory broke", tostring(err))
      assert.same({2}, one("SELECT 2"))
    end)

    it("refuses a bad cursor_factory", function()
      assert.is_true(is_interface_error(H.error_of(conn.execute, conn, "SELECT 1", nil, {cursor_factory = "rows"})))
      assert.is_true(is_interface_error(H.error_of(conn.execute, conn, "SELECT 1", nil, {cursor_factory = 3})))
    end)
  end)

  describe("decoders", function()
    after_each(function()
      momoko.register_type(600, nil)
      momoko.register_type(700, nil)
      momoko.register_type(2950, nil)
    end)

    it("momoko.register_type decodes a type; nil removes it", function()
      momoko.register_type(600, function(text)
        local x, y = text:match("^%(([^,]+),([^)]+)%)$")
        return {x = tonumber(x), y = tonumber(y)}
      end)
      momoko.register_type(2950, string.upper)
      local r = one("SELECT point(1.5, -2), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, NULL::point")
      assert.same({{x = 1.5, y = -2}, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", null}, r)
      -- a cursor made before removal keeps the decoder it was made with
      local cur = query("SELECT point(0, 0)")
      momoko.register_type(600, nil)
      momoko.register_type(2950, nil)
      assert.same({{x = 0, y = 0}}, cur:fetchone())
      assert.same({"(1.5,-2)", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
        one("SELECT point(1.5, -2), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid"))
    end)

    it("register_type can override a built-in decoder", function()
      momoko.register_type(700, function(t) return "float4:" .. t end)
      local ok, r = pcall(one, "SELECT 1.5::float4, 1.5::float8")
      momoko.register_type(700, nil)
      assert(ok, r)
      assert.same({"float4:1.5", 1.5}, r)
      assert.same({1.5}, one("SELECT 1.5::float4"))
    end)

    it("a decoder error surfaces from fetchone", function()
      momoko.register_type(600, function() error("bad point") end)
      local cur = query("SELECT point(1, 2)")
      local err = H.error_of(cur.fetchone, cur)
      assert.matches("bad point", tostring(err))
    end)

    it("refuses a bad register_type call", function()
      local err = H.error_of(momoko.register_type, "point", print)
      assert.is_true(is_interface_error(err), tostring(err))
      assert.matches("oid", err.message)
      err = H.error_of(momoko.register_type, 600, "decode")
      assert.is_true(is_interface_error(err), tostring(err))
      assert.matches("fn", err.message)
    end)

    it("conn:register_json decodes json, jsonb and json[] on that connection", function()
      local c2 = momoko.connect(H.dsn):await()
      local ok, err = pcall(function()
        assert.equal(c2, c2:register_json():await())
        local r = c2:execute([[SELECT '{"a": [1, 2], "s": "x"}'::json, '{"b": true}'::jsonb,
          ARRAY['{"c": 1}'::json, NULL], ARRAY['[1]'::jsonb], NULL::json]]):await():fetchone()
        assert.equal(2, r[1].a[2])
        assert.equal("x", r[1].s)
        assert.is_true(r[2].b)
        assert.equal(1, r[3][1].c)
        assert.equal(null, r[3][2])
        assert.same({{1}}, r[4])
        assert.equal(null, r[5])
        -- another connection still gets text
        assert.same({'{"b": true}'}, one([[SELECT '{"b": true}'::jsonb]]))
      end)
      c2:close()
      assert(ok, err)
    end)

    it("conn:register_json with a custom loads", function()
      local c2 = momoko.connect(H.dsn):await()
      local ok, err = pcall(function()
        c2:register_json({loads = function(s) return "loaded:" .. s end}):await()
        assert.same({"loaded:[1]"}, c2:execute("SELECT '[1]'::json"):await():fetchone())
      end)
      c2:close()
      assert(ok, err)
    end)

    it("conn:register_hstore decodes hstore and hstore[], NULL values as momoko.null", function()
      local c2 = momoko.connect(H.dsn):await()
      local ok, err = pcall(function()
        assert.equal(c2, c2:register_hstore():await())
        local r = c2:execute([[SELECT 'a=>1, b=>NULL, "q\"k"=>"v,w"'::hstore,
          ARRAY['x=>y'::hstore, NULL, ''::hstore], NULL::hstore]]):await():fetchone()
        assert.same({a = "1", b = null, ['q"k'] = "v,w"}, r[1])
        assert.same({{x = "y"}, null, {}}, r[2])
        assert.equal(null, r[3])
        -- momoko.hstore round trip
        local t = {k = "v", ["with space"] = "a\\b", n = null}
        assert.same({t}, c2:execute("SELECT $1::hstore", {momoko.hstore(t)}):await():fetchone())
      end)
      c2:close()
      assert(ok, err)
    end)
  end)

  describe("large results", function()
    it("converts lazily: fetchone on 100000 rows", function()
      local cur = query("SELECT g, 'row ' || g, g * 0.5 FROM generate_series(1, 100000) g")
      assert.equal(100000, #cur)
      assert.equal(100000, cur.rowcount)
      assert.same({1, "row 1", "0.5"}, cur:fetchone())
      assert.equal(1, cur.rownumber)
      cur:scroll(99999, "absolute")
      assert.same({100000, "row 100000", "50000.0"}, cur:fetchone())
      cur:close()
    end)
  end)
end)

describe("a fetch of many rows", function()
  local conn
  H.block_connection(H.dsn, function(c) conn = c end)

  it("leaves the collector running after fetchall and fetchmany, as it was", function()
    local cur = conn:execute("SELECT g FROM generate_series(1, 3000) g"):await()
    assert.equal(1500, #cur:fetchmany(1500))
    assert.is_true(collectgarbage("isrunning"))
    assert.equal(1500, #cur:fetchall())
    assert.is_true(collectgarbage("isrunning"))
  end)

  it("leaves a collector the program stopped stopped", function()
    local cur = conn:execute("SELECT g FROM generate_series(1, 3000) g"):await()
    collectgarbage("stop")
    local rows = cur:fetchall()
    local running = collectgarbage("isrunning")
    collectgarbage("restart")
    assert.equal(3000, #rows)
    assert.is_false(running)
  end)

  it("restarts the collector when a decoder raises in the middle, and raises its error", function()
    local calls = 0
    momoko.register_type(25, function(s) -- text
      calls = calls + 1
      if calls == 2000 then error("decoder gave up at " .. s) end
      return s
    end)
    local ok, err = pcall(function()
      return conn:execute("SELECT g::text FROM generate_series(1, 3000) g"):await():fetchall()
    end)
    momoko.register_type(25, nil)
    assert.is_false(ok)
    assert.matches("decoder gave up at 2000", tostring(err))
    assert.is_true(collectgarbage("isrunning"))
  end)
end)
