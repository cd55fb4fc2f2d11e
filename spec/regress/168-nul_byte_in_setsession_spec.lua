-- Regression: a setsession entry with a NUL byte was run cut short at it, so what came
-- after the NUL never ran and connect() succeeded: {"SET ...\0; SELECT 1/0"} connected.
-- Such an entry is an InterfaceError at the call (Connection, Pool) now.
local momoko = require "momoko"
local H = require "helper"

describe("regress 168: a setsession entry with a NUL byte is refused at the call", function()
  it("on a Connection and a Pool, opening nothing", function()
    local dsn, app = H.app_dsn("regress_168")
    local setsession = {"SET TIME ZONE 'UTC'", "SET application_name = 'x'\0; SELECT 1/0"}
    local err = H.interface_error(momoko.connect, dsn, {setsession = setsession})
    assert.equal("Connection: setsession[2] contains a NUL byte", err.message)
    err = H.interface_error(momoko.Pool, {dsn = dsn, setsession = setsession})
    assert.equal("Pool: setsession[2] contains a NUL byte", err.message)
    assert.equal(0, H.backends(app))
  end)
end)
