-- Regression: conn:listen (and pool:listen, unlisten) took a channel name longer than
-- PostgreSQL's 63 bytes (NAMEDATALEN - 1): the server cut it to 63 bytes with a NOTICE
-- and listened on that, so a NOTIFY of the name given (pg_notify refuses it with "channel
-- name too long") never reached the handler; an empty name went to the server as a syntax
-- error. Channel names are checked at the call now: 1 to 63 bytes, InterfaceError
-- otherwise, and nothing is sent.
local momoko = require "momoko"
local H = require "helper"

describe("regress 165: channel names longer than 63 bytes or empty are refused at the call", function()
  it("listen, unlisten and notify refuse 64 bytes and more, listen nothing on the server", function()
    local dsn, app = H.app_dsn("regress_165")
    local conn = momoko.connect(dsn):await()
    H.close_after(conn, app, function()
      local long = string.rep("c", 64)
      for _, call in ipairs{
        {"listen", function() return conn:listen(long, function() end) end},
        {"unlisten", function() return conn:unlisten(long) end},
        {"notify", function() return conn:notify(long, "x") end},
      } do
        local err = H.interface_error(call[2])
        assert.equal(call[1] .. ": channel is 64 bytes long; PostgreSQL allows at most 63", err.message)
      end
      local err = H.interface_error(conn.listen, conn, "", function() end)
      assert.equal("listen: channel must not be empty", err.message)
      local pool = momoko.Pool{dsn = dsn, size = 1}
      pool:connect():await()
      err = H.interface_error(pool.listen, pool, string.rep("p", 65536), function() end)
      assert.equal("listen: channel is 65536 bytes long; PostgreSQL allows at most 63", err.message)
      pool:close()
      -- nothing listens under the cut name
      assert.equal(0, conn:execute("SELECT count(*) FROM pg_listening_channels()"):await():fetchone()[1])
      -- 63 bytes is the longest name and works whole
      local name, got = string.rep("c", 63), nil
      conn:listen(name, function(ch) got = ch end):await()
      conn:notify(name):await()
      assert.is_true(H.wait_until(function() return got ~= nil end, 5000))
      assert.equal(name, got)
    end)
  end)
end)
