-- Regression: a decoder (momoko.register_type) runs while a row is being built, and may
-- call fetchone/fetchall/scroll/close on the very cursor. Such a call could move the
-- position past the last row (the outer fetch then returned rows of NULLs read out of
-- range) or free the result under the row builder (a use-after-free, caught by ASan
-- while an array's elements were still being parsed). Now every fetch reads the
-- cursor's state again after any Lua code ran: rows taken by the nested call are not
-- returned twice, and a cursor closed mid-row raises InterfaceError.
local momoko = require "momoko"
local H = require "helper"

local POINT = 600

describe("regress 033: fetches are safe against re-entrant fetches from decoders", function()
  local conn
  H.block_connection(H.dsn, function(c) conn = c end)

  after_each(function()
    momoko.register_type(POINT, nil)
  end)

  -- Registers a point decoder that runs action(cur) once, at its first call; returns a
  -- function that sets the cursor.
  local function decoder_once(action)
    local cur, done = nil, false
    momoko.register_type(POINT, function(text)
      if not done and cur then
        done = true
        action(cur)
      end
      return "p" .. text
    end)
    return function(c) cur = c end
  end

  it("close() inside an array element's decoder raises InterfaceError", function()
    local set = decoder_once(function(cur) cur:close() end)
    local cur = conn:execute("SELECT ARRAY[point(1, 1), point(2, 2), point(3, 3), point(4, 4)] || " ..
      "array_agg(point(g, g)) FROM generate_series(1, 200) g"):await()
    set(cur)
    local err = H.error_of(cur.fetchone, cur)
    H.assert_kind("InterfaceError", err)
    assert.matches("closed", err.message)
    assert.is_true(momoko.is(H.error_of(cur.fetchone, cur), "InterfaceError"))
    assert.same({1}, conn:execute("SELECT 1"):await():fetchone())
  end)

  it("close() inside register_json's loads, mid json[], raises InterfaceError", function()
    -- json[] elements were parsed straight out of the result: closing it in loads freed
    -- the text still being parsed (heap-use-after-free under ASan)
    local cur
    local c2 = momoko.connect(H.dsn):await()
    c2:register_json({loads = function(s)
      if cur then cur:close() end
      return "j" .. s
    end}):await()
    local ok, err = pcall(function()
      cur = c2:execute("SELECT array_agg(json_build_object('k', repeat('x', 64), 'g', g)) " ..
        "FROM generate_series(1, 300) g"):await()
      local e = H.error_of(cur.fetchone, cur)
      H.assert_kind("InterfaceError", e)
      assert.matches("closed", e.message)
    end)
    c2:close()
    assert(ok, err)
  end)

  it("close() inside a decoder of a dict row's first column raises InterfaceError", function()
    local set = decoder_once(function(cur) cur:close() end)
    local cur = conn:execute("SELECT point(1, 2) AS p, 'after' AS t", nil,
      {cursor_factory = momoko.cursors.dict}):await()
    set(cur)
    local err = H.error_of(cur.fetchone, cur)
    H.assert_kind("InterfaceError", err)
    assert.equal("closed", tostring(cur):match("closed"))
  end)

  it("close() during fetchall raises instead of reading a freed result", function()
    local set = decoder_once(function(cur) cur:close() end)
    local cur = conn:execute("SELECT g, point(g, g) FROM generate_series(1, 5) g"):await()
    set(cur)
    local err = H.error_of(cur.fetchall, cur)
    H.assert_kind("InterfaceError", err)
    assert.equal(0, #cur)
  end)

  it("a nested fetchall takes the rest; the outer fetchall returns no extra rows", function()
    local nested
    local set = decoder_once(function(cur) nested = cur:fetchall() end)
    local cur = conn:execute("SELECT g, point(g, 0) FROM generate_series(1, 3) g"):await()
    set(cur)
    local rows = cur:fetchall()
    assert.same({{1, "p(1,0)"}}, rows)
    assert.same({{2, "p(2,0)"}, {3, "p(3,0)"}}, nested)
    assert.equal(3, cur.rownumber)
    assert.is_nil(cur:fetchone())
  end)

  it("a nested scroll to the end stops fetchmany; a nested fetchone is not returned twice", function()
    local set = decoder_once(function(cur) cur:scroll(3, "absolute") end)
    local cur = conn:execute("SELECT g, point(g, 0) FROM generate_series(1, 3) g"):await()
    set(cur)
    assert.same({{1, "p(1,0)"}}, cur:fetchmany(3))
    assert.equal(3, cur.rownumber)

    local inner
    set = decoder_once(function(c) inner = c:fetchone() end)
    cur = conn:execute("SELECT g, point(g, 0) FROM generate_series(1, 3) g"):await()
    set(cur)
    local got = {}
    for row in cur:rows() do got[#got + 1] = row[1] end
    assert.same({1, 3}, got)
    assert.same({2, "p(2,0)"}, inner)
  end)

  it("a nested scroll back re-reads rows without going out of range", function()
    local set = decoder_once(function(cur) cur:scroll(0, "absolute") end)
    local cur = conn:execute("SELECT g, point(g, 0) FROM generate_series(1, 2) g"):await()
    set(cur)
    assert.same({{1, "p(1,0)"}, {1, "p(1,0)"}}, cur:fetchmany(2))
    assert.same({{2, "p(2,0)"}}, cur:fetchall())
    assert.equal(2, cur.rownumber)
  end)
end)
