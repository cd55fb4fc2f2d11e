-- Parameters and placeholders (API §4): positional and named placeholders, the simple
-- protocol, every Lua -> PostgreSQL conversion, and bad arguments raising at the call.
local momoko = require "momoko"
local H = require "helper"

local null = momoko.null

-- The first row of sql run with params on conn.
local function row(conn, sql, params, opts)
  return conn:execute(sql, params, opts):await():fetchone()
end

-- The error raised synchronously by conn:execute(...), checked to be an InterfaceError.
local function interface_error(conn, ...)
  local err = H.error_of(conn.execute, conn, ...)
  assert.is_not_nil(err, "expected execute to raise")
  assert.is_true(momoko.is(err, "InterfaceError"), "expected an InterfaceError, got " .. tostring(err))
  return err
end

describe("parameters", function()
  local conn
  H.block_connection(H.dsn, function(c) conn = c end)

  describe("positional $n", function()
    it("binds values in order, reusing a placeholder", function()
      assert.same({1, "b", 3}, row(conn, "SELECT $1::int4 + $1::int4 - 1, $2::text, $1::int4 * 1 + 2", {1, "b"}))
    end)

    it("honours params.n for trailing NULLs", function()
      local r = row(conn, "SELECT $1::int, $2::int IS NULL, $3::text IS NULL", table.pack(7, nil, nil))
      assert.same({7, true, true}, r)
    end)

    it("sends a trailing momoko.null", function()
      local r = row(conn, "SELECT $1::int, $2::text", {5, null})
      assert.equal(5, r[1])
      assert.equal(null, r[2])
    end)

    it("sends nil inside params.n as NULL", function()
      local r = row(conn, "SELECT $1::int IS NULL, $2::int", {n = 2, nil, 4})
      assert.same({true, 4}, r)
    end)

    it("raises InterfaceError at the call when a placeholder has no value (API §4)", function()
      local err = interface_error(conn, "SELECT $1::int, $2::int", {1})
      assert.is_false(momoko.is(err, "DatabaseError"), tostring(err))
      assert.is_nil(err.sqlstate)
      assert.matches("the SQL uses $2 but 1 parameter was given", err.message, 1, true)
    end)
  end)

  describe("named :name", function()
    it("rewrites names to $n and takes values by name", function()
      local cur = conn:execute("SELECT :a::int AS a, :b::text AS b", {a = 10, b = "x"}):await()
      assert.same({10, "x"}, cur:fetchone())
      assert.equal("SELECT $1::int AS a, $2::text AS b", cur.query)
    end)

    it("binds a repeated name once", function()
      local cur = conn:execute("SELECT :v::int + :v::int, :w::text, :v::int", {v = 21, w = "w"}):await()
      assert.same({42, "w", 21}, cur:fetchone())
      assert.equal("SELECT $1::int + $1::int, $2::text, $1::int", cur.query)
    end)

    it("numbers many distinct names in order of first use", function()
      local exprs, params = {}, {}
      for i = 1, 300 do
        exprs[i] = string.format(":p%d::int + :p%d::int", i, 301 - i)
        params["p" .. i] = i
      end
      local cur = conn:execute("SELECT " .. table.concat(exprs, ", "), params):await()
      local r = cur:fetchone()
      assert.equal(300, #r)
      for i = 1, 300 do assert.equal(301, r[i]) end
      -- p1 -> $1, p300 -> $2, p2 -> $3, p299 -> $4, ...; the last pair reuses $2 and $1
      assert.equal("SELECT $1::int + $2::int, $3::int + $4::int,", cur.query:sub(1, 44))
      assert.is_truthy(cur.query:find(", $299::int + $300::int, $300::int + $299::int, ", 1, true))
      assert.is_nil(cur.query:find("$301", 1, true))
      assert.equal("$2::int + $1::int", cur.query:sub(-17))
    end)

    it("leaves string literals, quoted identifiers, dollar quotes and comments alone", function()
      local sql = [[
        SELECT ':a' AS s1, E':a\' :a' AS s2, $$ :a $$ AS s3, $t$ :a $t$ AS s4,
               "q:a" AS q, :a::int AS v -- :a in a line comment
        /* :a in a /* nested */ block comment */
        FROM (SELECT 1 AS "q:a") sub]]
      local cur = conn:execute(sql, {a = 9}):await()
      assert.same({":a", ":a' :a", " :a ", " :a ", 1, 9}, cur:fetchone())
      -- exactly one placeholder was made, the last :a
      local _, dollars = cur.query:gsub("%$1", "")
      assert.equal(1, dollars)
      assert.is_truthy(cur.query:find("%$1::int AS v"))
      assert.is_truthy(cur.query:find("-- :a in a line comment", 1, true))
      assert.is_truthy(cur.query:find("/* :a in a /* nested */ block comment */", 1, true))
    end)

    it("leaves ::casts untouched", function()
      local cur = conn:execute("SELECT '5'::int4 + :n::int4, now()::date IS NOT NULL", {n = 1}):await()
      assert.same({6, true}, cur:fetchone())
      assert.equal("SELECT '5'::int4 + $1::int4, now()::date IS NOT NULL", cur.query)
    end)

    it("takes a lone {n = v} as the named parameter :n when the SQL has names", function()
      local cur = conn:execute("SELECT :n::int8, pg_typeof(:n)::text", {n = 5}):await()
      assert.same({5, "integer"}, cur:fetchone()) -- an int4: it fits in 32 bits
      assert.equal("SELECT $1::int8, pg_typeof($1)::text", cur.query)
      -- and as table.pack(nil) when it has none
      assert.same({true}, row(conn, "SELECT $1::int IS NULL", table.pack(nil)))
      -- with other names, n is just one more name
      assert.same({2, 3}, row(conn, "SELECT :n::int, :m::int", {n = 2, m = 3}))
    end)

    it("refuses a table mixing array items and names", function()
      local err = interface_error(conn, "SELECT $1::int, :a", {1, a = 2})
      assert.matches("params", err.message)
    end)

    it("accepts momoko.null as a named value", function()
      local r = row(conn, "SELECT :x::int IS NULL, :y::int", {x = null, y = 3})
      assert.same({true, 3}, r)
    end)

    it("raises InterfaceError naming a missing parameter", function()
      local err = interface_error(conn, "SELECT :present::int, :absent::int", {present = 1})
      assert.matches(":absent", err.message, 1, true)
      assert.is_nil(err.message:find(":present", 1, true))
    end)

    it("names the position of a bad named value", function()
      local err = interface_error(conn, "SELECT :a::int, :b", {a = 1, b = print})
      assert.matches("%$2", err.message)
    end)
  end)

  describe("without params (simple protocol)", function()
    it("runs several statements with nil params; the cursor holds the last result", function()
      local cur = conn:execute("SELECT 1; SELECT 2, 'two'"):await()
      assert.same({2, "two"}, cur:fetchone())
      assert.is_nil(cur:fetchone())
      assert.equal("SELECT 1; SELECT 2, 'two'", cur.query)
    end)

    it("treats an empty params table as no params", function()
      local cur = conn:execute("SELECT 3; SELECT 4", {}):await()
      assert.same({{4}}, cur:fetchall())
    end)

    it("does not take $1 in the text as a placeholder", function()
      -- a prepared statement would complain that $1 has no value; the simple protocol
      -- sends the text, where $1 is inside a literal
      assert.same({"$1"}, row(conn, "SELECT '$1'"))
    end)

    it("refuses several statements with params (server-side binding)", function()
      local err = H.error_of(function() return row(conn, "SELECT $1::int; SELECT 2", {1}) end)
      assert.is_true(momoko.is(err, "ProgrammingError"), tostring(err))
    end)
  end)

  describe("Lua -> PostgreSQL", function()
    it("sends booleans as bool", function()
      local cur = conn:execute("SELECT $1, $2, pg_typeof($1)::text", {true, false}):await()
      assert.same({true, false, "boolean"}, cur:fetchone())
    end)

    it("sends integers as int8, exactly, including the extremes", function()
      local r = row(conn, "SELECT $1, $2, $3, pg_typeof($1)::text, $1::text, $2::text",
        {math.maxinteger, math.mininteger, 0})
      assert.same({math.maxinteger, math.mininteger, 0, "bigint",
        "9223372036854775807", "-9223372036854775808"}, r)
      assert.equal("integer", math.type(r[1]))
      assert.equal("integer", math.type(r[2]))
    end)

    it("sends floats as float8, with inf, -inf and nan", function()
      local r = row(conn, "SELECT $1, $2, $3, $4, $5, $6, pg_typeof($1)::text",
        {1.5, 1e300, math.huge, -math.huge, 0 / 0, 0.1})
      assert.equal(1.5, r[1])
      assert.equal(1e300, r[2])
      assert.equal(math.huge, r[3])
      assert.equal(-math.huge, r[4])
      assert.is_true(r[5] ~= r[5], "NaN expected, got " .. tostring(r[5]))
      assert.equal(0.1, r[6]) -- 17 significant digits: the same double comes back
      assert.equal("double precision", r[7])
      assert.equal("float", math.type(r[1]))
    end)

    it("sends a float with an integral value as a float", function()
      local r = row(conn, "SELECT $1, pg_typeof($1)::text", {2.0})
      assert.equal("float", math.type(r[1]))
      assert.same({2.0, "double precision"}, r)
    end)

    it("sends strings as text, unchanged", function()
      local s = "it's \"quoted\" \\ back\nslash, {braces} and ünïcödé"
      assert.same({s, #s}, row(conn, "SELECT $1::text, octet_length($1::text)", {s}))
    end)

    it("sends the empty string (not NULL)", function()
      assert.same({"", false}, row(conn, "SELECT $1::text, $1::text IS NULL", {""}))
    end)

    it("refuses a string with a NUL byte, naming its position", function()
      local err = interface_error(conn, "SELECT $1::text, $2::text", {"ok", "a\0b"})
      assert.matches("%$2", err.message)
      assert.matches("NUL", err.message)
    end)

    it("round-trips every byte value through momoko.bytea", function()
      local t = {}
      for i = 0, 255 do t[#t + 1] = string.char(i) end
      local all = table.concat(t)
      local r = row(conn, "SELECT $1, octet_length($1), pg_typeof($1)::text, get_byte($1, 255)",
        {momoko.bytea(all)})
      assert.equal(256, #r[1])
      assert.equal(all, r[1])
      assert.same({256, "bytea", 255}, {r[2], r[3], r[4]})
    end)

    it("sends an empty momoko.bytea", function()
      assert.same({"", 0}, row(conn, "SELECT $1::bytea, octet_length($1::bytea)", {momoko.bytea("")}))
    end)

    it("refuses momoko.bytea of a non-string", function()
      local err = H.error_of(momoko.bytea, 42)
      assert.is_true(momoko.is(err, "InterfaceError"), tostring(err))
    end)

    describe("arrays", function()
      it("sends a 1-D array of integers as int8[]", function()
        local r = row(conn, "SELECT $1, pg_typeof($1)::text, array_length($1, 1)", {{1, 2, math.maxinteger}})
        assert.same({{1, 2, math.maxinteger}, "bigint[]", 3}, r)
      end)

      it("sends arrays of floats and of booleans", function()
        local r = row(conn, "SELECT $1, pg_typeof($1)::text, $2, pg_typeof($2)::text",
          {{1.5, -2, math.huge}, {true, false}})
        assert.same({{1.5, -2.0, math.huge}, "double precision[]", {true, false}, "boolean[]"}, r)
      end)

      it("sends a 2-D array", function()
        local r = row(conn, "SELECT $1::int[], array_dims($1::int[])", {{{1, 2, 3}, {4, 5, 6}}})
        assert.same({{{1, 2, 3}, {4, 5, 6}}, "[1:2][1:3]"}, r)
      end)

      it("sends NULL elements and strings that need quoting", function()
        local tricky = {'say "hi"', "back\\slash", "a,b", "{braces}", "NULL", "", " spaced "}
        local r = row(conn, "SELECT $1::text[], ($1::text[])[1][5] IS NULL, array_length($1::text[], 2)",
          {{tricky, {"x", null, "y", "z", null, "w", "v"}}})
        assert.same({tricky, {"x", null, "y", "z", null, "w", "v"}}, r[1])
        assert.is_false(r[2]) -- the string "NULL" stays a string
        assert.equal(7, r[3])
      end)

      it("sends nested arrays with NULL elements", function()
        local r = row(conn, "SELECT $1::int[], ($1::int[])[2][1] IS NULL", {{{1, null}, {null, 4}}})
        assert.same({{{1, null}, {null, 4}}, true}, r)
      end)

      it("sends an empty array", function()
        assert.same({{}, 0}, row(conn, "SELECT $1::int[], cardinality($1::int[])", {{}}))
      end)

      it("sends bytea elements", function()
        local r = row(conn, "SELECT $1::bytea[]", {{momoko.bytea("\0\255"), momoko.bytea("ab")}})
        assert.same({{"\0\255", "ab"}}, r)
      end)

      it("accepts 6 dimensions and refuses 7, naming the position", function()
        local six = {{{{{{1}}}}}}
        assert.same({six}, row(conn, "SELECT $1::int[]", {six}))
        local err = interface_error(conn, "SELECT $1, $2", {1, {{{{{{{1}}}}}}}})
        assert.matches("%$2", err.message)
      end)

      it("refuses a self-referencing table without looping", function()
        local t = {}
        t[1] = t
        local err = interface_error(conn, "SELECT $1", {t})
        assert.matches("%$1", err.message)
      end)

      it("refuses a non-array table, naming its position", function()
        local err = interface_error(conn, "SELECT $1, $2, $3", {1, 2, {a = 1}})
        assert.matches("%$3", err.message)
        err = interface_error(conn, "SELECT $1", {{[2] = "hole"}})
        assert.matches("%$1", err.message)
        err = interface_error(conn, "SELECT $1, $2", {1, {{1, 2}, {x = 1}}})
        assert.matches("%$2", err.message)
      end)

      it("refuses a function inside an array, naming its position", function()
        local err = interface_error(conn, "SELECT $1, $2", {1, {1, print}})
        assert.matches("%$2", err.message)
      end)

      it("refuses a string with a NUL byte inside an array", function()
        local err = interface_error(conn, "SELECT $1", {{"a\0"}})
        assert.matches("%$1", err.message)
      end)
    end)

    it("refuses functions, userdata and coroutines, naming the position", function()
      for _, v in ipairs({print, io.stdout, coroutine.create(print)}) do
        local err = interface_error(conn, "SELECT $1, $2, $3", {1, 2, v})
        assert.matches("%$3", err.message)
        assert.matches(type(v), err.message)
      end
    end)

    it("sends momoko.json(v) as json", function()
      local r = row(conn, "SELECT $1->>'name', ($1->'list'->>1)::int, pg_typeof($1)::text, $1->'nothing' IS NULL",
        {momoko.json({name = "ada", list = {1, 2, 3}, nothing = nil})})
      assert.same({"ada", 2, "json", true}, r)
      r = row(conn, "SELECT $1::jsonb = '{\"a\": [true, \"x\"]}'::jsonb", {momoko.json({a = {true, "x"}})})
      assert.same({true}, r)
    end)

    it("refuses momoko.json of something cjson cannot encode", function()
      local err = H.error_of(momoko.json, {f = print})
      assert.is_true(momoko.is(err, "InterfaceError"), tostring(err))
    end)

    it("sends momoko.hstore(t) as hstore", function()
      local r = row(conn, [[SELECT $1::hstore -> 'k', $1::hstore -> 'q"uote', $1::hstore -> 'n' IS NULL,
                                   exist($1::hstore, 'n'), $1::hstore -> 'num']],
        {momoko.hstore({k = "v", ['q"uote'] = "back\\slash", n = null, num = 12})})
      assert.same({"v", "back\\slash", true, true, "12"}, r)
      assert.same({true}, row(conn, "SELECT $1::hstore = ''::hstore", {momoko.hstore({})}))
    end)

    it("refuses bad momoko.hstore input", function()
      for _, bad in ipairs({"x", {[1] = "v"}, {k = {}}, {k = "a\0b"}, {["a\0"] = "v"}}) do
        local err = H.error_of(momoko.hstore, bad)
        assert.is_true(momoko.is(err, "InterfaceError"), tostring(err))
      end
    end)

    it("tags params: tostring names them", function()
      assert.equal("<momoko.bytea>", tostring(momoko.bytea("x")))
      assert.equal("<momoko.hstore>", tostring(momoko.hstore({})))
      assert.equal("<momoko.json>", tostring(momoko.json({})))
    end)
  end)

  describe("mogrify literals", function()
    it("inline integers and floats exactly, extremes included", function()
      for _, v in ipairs({math.maxinteger, math.mininteger, -5, 0}) do
        local sql = conn:mogrify("SELECT $1", {v})
        local r = row(conn, sql)
        assert.equal(v, r[1], sql)
        assert.equal("integer", math.type(r[1]), sql)
      end
      for _, v in ipairs({-0.25, 2.0, 1e300, -math.huge}) do
        local sql = conn:mogrify("SELECT -$1, pg_typeof($1)::text", {v})
        local r = row(conn, sql)
        assert.equal(-v, r[1], sql)
        assert.equal("float", math.type(r[1]), sql)
        assert.equal("double precision", r[2], sql)
      end
      assert.equal("SELECT 0-(-5)", conn:mogrify("SELECT 0-$1", {-5}))
    end)

    it("inline named parameters", function()
      assert.equal("SELECT 'a''b', 7, 7", conn:mogrify("SELECT :s, :n, :n", {s = "a'b", n = 7}))
    end)
  end)

  describe("bad arguments", function()
    it("refuses 65536 params before sending, and the connection still works", function()
      local big = {}
      for i = 1, 65536 do big[i] = i end
      local err = interface_error(conn, "SELECT $1", big)
      assert.matches("65536", err.message)
      assert.is_false(conn.closed)
      assert.same({1}, row(conn, "SELECT 1"))
    end)

    it("refuses 65536 distinct named params", function()
      local names, params = {}, {}
      for i = 1, 65536 do
        names[i] = ":p" .. i
        params["p" .. i] = i
      end
      local err = interface_error(conn, "SELECT " .. table.concat(names, ","), params)
      assert.matches("65536", err.message)
      assert.same({2}, row(conn, "SELECT 2"))
    end)

    it("refuses a huge or negative params.n", function()
      assert.matches("65535", interface_error(conn, "SELECT 1", {n = 1 << 40}).message)
      assert.matches("params.n", interface_error(conn, "SELECT 1", {n = -1}).message, 1, true)
      assert.matches("params.n", interface_error(conn, "SELECT 1", {n = "2"}).message, 1, true)
    end)

    it("refuses sql that is not a string", function()
      for _, bad in ipairs({42, {}, true}) do
        assert.matches("sql", interface_error(conn, bad).message)
      end
      assert.matches("sql", interface_error(conn, nil, {1}).message)
    end)

    it("refuses params that are not a table", function()
      local err = interface_error(conn, "SELECT 1", "nope")
      assert.matches("params", err.message)
    end)

    it("refuses a params table mixing non-string keys without an array part", function()
      local err = interface_error(conn, "SELECT 1", {[2] = "x"})
      assert.matches("params", err.message)
    end)

    it("leaves the connection usable after each bad call", function()
      interface_error(conn, "SELECT $1", {print})
      interface_error(conn, "SELECT :a", {b = 1})
      assert.same({3}, row(conn, "SELECT $1::int", {3}))
    end)
  end)
end)
