-- Regression: callproc's name check let the server cut a name part longer than 63 bytes
-- (NAMEDATALEN - 1) to 63, so callproc of a 64-byte name silently ran the routine named
-- by its first 63 bytes; and a name with a NUL byte was refused with a message cut at
-- the NUL ("'now' is not a routine name", naming a valid routine). Parts over 63 bytes
-- are not routine names now (the C core's check), the message says what a routine name
-- is, and a NUL byte has a message of its own.
local momoko = require "momoko"
local H = require "helper"

describe("regress 169: callproc refuses name parts over 63 bytes and names a NUL byte", function()
  local name63 = "r169_" .. string.rep("f", 58)

  lazy_setup(function()
    H.psql("CREATE OR REPLACE FUNCTION " .. name63 .. "() RETURNS int LANGUAGE sql AS 'SELECT 169'")
  end)
  lazy_teardown(function()
    H.psql("DROP FUNCTION IF EXISTS " .. name63 .. "()")
  end)

  it("runs the 63-byte name and refuses one byte more, plain or quoted", function()
    local conn <close> = momoko.connect(H.dsn):await()
    assert.equal(169, conn:callproc(name63):await():fetchone()[1])
    assert.equal(169, conn:callproc('public."' .. name63 .. '"'):await():fetchone()[1])
    for _, name in ipairs{name63 .. "x", 'public."' .. name63 .. 'x"'} do
      local err = H.interface_error(conn.callproc, conn, name)
      assert.equal("callproc: '" .. name .. "' is not a routine name (one to three dot-separated identifiers, " ..
        "plain or double-quoted, of at most 63 bytes each)", err.message)
    end
  end)

  it("says a NUL byte is why", function()
    local conn <close> = momoko.connect(H.dsn):await()
    local err = H.interface_error(conn.callproc, conn, "now\0; DROP TABLE x")
    assert.equal("callproc: name contains a NUL byte", err.message)
  end)
end)
