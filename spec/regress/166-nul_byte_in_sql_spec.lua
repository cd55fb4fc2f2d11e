-- Regression: SQL text with a NUL byte was sent cut short at it (libpq takes C strings):
-- execute("SELECT 1\0; DROP ...") ran "SELECT 1" and succeeded, and the same for
-- stream, transaction, mogrify, copy_from/copy_to (whose options after the NUL were
-- dropped) on a Connection and a Pool. Such SQL is an InterfaceError at the call now
-- (the parameter check), and nothing is sent.
local momoko = require "momoko"
local H = require "helper"

describe("regress 166: SQL with a NUL byte is refused at the call", function()
  local MSG = "sql contains a NUL byte (libpq would send only the text before it)"

  it("on every method that takes SQL, sending nothing", function()
    local dsn, app = H.app_dsn("regress_166")
    local conn = momoko.connect(dsn):await()
    local pool = momoko.Pool{dsn = dsn, size = 1}
    pool:connect():await()
    local marker = "SELECT 'r166 marker'"
    conn:execute(marker):await()
    pool:execute(marker):await()
    local calls = {
      function() return conn:execute("SELECT 1\0; SELECT 1/0") end,
      function() return conn:execute("SELECT $1::int\0 + 1", {1}) end,
      function() return conn:execute("SELECT :a::int\0", {a = 1}) end,
      function() return conn:stream("SELECT 1\0x") end,
      function() return conn:transaction({"SELECT 1", "SELECT 2\0x"}) end,
      function() return conn:mogrify("SELECT $1\0", {1}) end,
      function() return conn:copy_from("COPY (SELECT 1) TO STDOUT\0", "") end,
      function() return conn:copy_to("COPY (SELECT 1) TO STDOUT\0 WITH (FORMAT csv)") end,
      function() return pool:execute("SELECT 1\0x") end,
      function() return pool:stream("SELECT 1\0x") end,
      function() return pool:transaction({"SELECT 1\0x"}) end,
      function() return pool:mogrify("SELECT 1\0x") end,
    }
    for i, call in ipairs(calls) do
      local ok, err = pcall(call)
      assert.is_false(ok, "call " .. i .. " was not refused")
      H.assert_kind("InterfaceError", err)
      assert.equal(MSG, err.message, "call " .. i)
    end
    assert.same({marker, marker}, (function()
      local t = {}
      for q in H.psql("SELECT query FROM pg_stat_activity WHERE application_name = '" .. app .. "'"):gmatch("[^\n]+") do
        t[#t + 1] = q
      end
      return t
    end)())
    assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
    conn:close()
    pool:close()
    assert.is_true(H.no_backends(app))
  end)
end)
