-- Regression: a DSN with a NUL byte was parsed (and later connected) only up to it:
-- momoko.Connection(dsn .. "\0 port=1") silently dropped "port=1", and the same for a
-- Pool's dsn and its replicas. Such a DSN is an InterfaceError at the call now.
local momoko = require "momoko"
local H = require "helper"

describe("regress 167: a DSN with a NUL byte is refused at the call", function()
  it("for Connection, connect, Pool and replicas", function()
    local bad = H.dsn .. "\0 port=1"
    local cases = {
      {function() return momoko.Connection(bad) end, "Connection: dsn contains a NUL byte"},
      {function() return momoko.Connection{dsn = bad} end, "Connection: dsn contains a NUL byte"},
      {function() return momoko.connect(bad) end, "Connection: dsn contains a NUL byte"},
      {function() return momoko.Pool{dsn = bad} end, "Pool: dsn contains a NUL byte"},
      {function() return momoko.Pool{dsn = H.dsn, replicas = {H.dsn, bad}} end, "Pool: replicas[2] contains a NUL byte"},
    }
    for i, case in ipairs(cases) do
      local err = H.interface_error(case[1])
      assert.equal(case[2], err.message, "case " .. i)
    end
  end)
end)
