-- Regression (issue 13, found by the soak): a pool's listener that died while it was
-- being reopened (its connection open, the channels being listened to again) was
-- reopened twice: its on_lost started a second reopen loop while the first one, whose
-- LISTEN failed, tried again on its own. Both loops opened a listener; the pool kept
-- one and the other stayed open and listening, so every notification was handed out
-- twice and a backend leaked until the pool closed. The fix: on_lost reopens only the
-- listener the pool had installed; a connection still being set up is retried by its
-- own loop alone.
local momoko = require "momoko"
local H = require "helper"

local function listeners(app)
  return tonumber(H.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app ..
    "' AND query LIKE 'LISTEN%'"))
end

local function listener_pid(app)
  return tonumber(H.psql("SELECT pid FROM pg_stat_activity WHERE application_name = '" .. app ..
    "' AND query LIKE 'LISTEN%' LIMIT 1"))
end

describe("regress 161: a listener that dies while it is reopened", function()
  it("is reopened once: one listening backend, each notification handed out once", function()
    local dsn, app = H.app_dsn("regress161")
    local pool = momoko.Pool{ dsn = dsn, size = 1, reconnect_interval = 50 }
    pool:connect():await()
    H.close_after(pool, app, function()
      local got, calls, killed = {}, 0, false
      local opts = { on_reconnect = function()
        calls = calls + 1
        if not killed then
          -- the first channel listens again, the others not yet: the new listener dies
          killed = true
          local pid = listener_pid(app)
          H.psql("SELECT pg_terminate_backend(" .. pid .. ")")
          assert(H.wait_until(function()
            return H.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = " .. pid) == "0"
          end, 5000))
        end
      end }
      for i = 1, 10 do
        pool:listen("r161_" .. i, function(_, p) got[#got + 1] = p end, opts):await()
      end
      H.psql("SELECT pg_terminate_backend(" .. listener_pid(app) .. ")")
      -- the kill inside on_reconnect, then one complete reopen: 1 + 10 calls
      assert.is_true(H.wait_until(function() return calls >= 11 end, 10000))
      momoko.sleep(500):await() -- a second reopen, if any, ends meanwhile
      assert.equal(11, calls)
      assert.equal(1, listeners(app))
      assert.equal(2, H.backends(app)) -- the pool's connection and the listener
      H.psql("NOTIFY r161_3, 'once'")
      assert.is_true(H.wait_until(function() return #got >= 1 end, 5000))
      momoko.sleep(200):await()
      assert.same({ "once" }, got)
    end)
  end)
end)
