-- Regression (issue "Foundation", item 7): a Pool's on_notice was called with the Pool
-- instead of a Connection. API §3/§6: on_notice is fn(conn, message), applied to each
-- of the pool's connections. A notice on a connection that getconn lent (or that a
-- connection_factory is setting up) now passes that very Connection; a notice on a
-- connection the pool runs its own requests on passes a stand-in Connection of the
-- pool, which runs nothing.
local momoko = require "momoko"
local H = require "helper"

local function raise_notice(text)
  return "DO $$BEGIN RAISE NOTICE '" .. text .. "'; END$$"
end

describe("regress 018: pool notices call on_notice(conn, message)", function()
  it("with the lent Connection, the factory's Connection, or a stand-in Connection", function()
    local dsn, app = H.app_dsn("r018")
    local seen = {}
    local factory_conn
    local pool = momoko.Pool{
      dsn = dsn, size = 1,
      on_notice = function(conn, msg) seen[#seen + 1] = {conn = conn, msg = msg} end,
      connection_factory = function(conn)
        factory_conn = conn
        conn:execute(raise_notice("from the factory")):await()
      end,
    }
    H.close_after(pool, app, function()
      pool:connect():await()
      assert.equal(1, #seen)
      assert.is_true(rawequal(factory_conn, seen[1].conn))
      assert.equal("NOTICE:  from the factory", seen[1].msg)

      pool:execute(raise_notice("from a pool request")):await()
      assert.equal(2, #seen)
      local standin = seen[2].conn
      assert.is_false(rawequal(pool, standin))
      assert.matches("^<momoko%.Connection ", tostring(standin))
      assert.equal(getmetatable(factory_conn), getmetatable(standin))
      assert.equal("NOTICE:  from a pool request", seen[2].msg)
      assert.is_true(standin.closed) -- it runs nothing: the pool uses that connection
      H.assert_kind("InterfaceError", H.error_of(standin.execute, standin, "SELECT 1"))

      local lent = pool:getconn():await()
      lent:execute(raise_notice("from a lent connection")):await()
      assert.equal(3, #seen)
      assert.is_true(rawequal(lent, seen[3].conn))
      assert.equal("NOTICE:  from a lent connection", seen[3].msg)
      pool:putconn(lent)

      pool:execute(raise_notice("after putconn")):await()
      assert.equal(4, #seen)
      assert.is_false(rawequal(lent, seen[4].conn))
      assert.matches("^<momoko%.Connection ", tostring(seen[4].conn))
    end)
  end)
end)
