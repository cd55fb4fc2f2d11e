-- Regression (found by the full suite on the merge of the soak and stress work: regress
-- 151 failed once, a channel unlistened during the churn still delivering): while the
-- pool's listener was being opened or reopened, pool:unlisten could only take the
-- channel out of the pool's table, since it had no listener to send UNLISTEN on, and
-- resolved at once. The reopen looked at that table only right after each channel's own
-- LISTEN, so a channel unlistened after that (by an on_reconnect, or by anyone while the
-- later channels were listened to again) stayed listened to on the new listener, and
-- its fn went on getting notifications. The fix: while the listener is set up (once
-- connected), pool:unlisten sends its UNLISTEN on that connection, and its future
-- resolves once that ran, as documented.
--
-- Deterministic: on_reconnect(channel) runs while the listener is still being set up; it
-- unlistens that very channel, awaits that, and notifies it: nothing may arrive.
local momoko = require "momoko"
local H = require "helper"

describe("regress 173: pool:unlisten while the listener is reopened", function()
  it("from on_reconnect: the channel is not listened to on the new listener", function()
    local dsn, app = H.app_dsn("regress173")
    local pool = momoko.Pool{ dsn = dsn, size = 1, reconnect_interval = 50 }
    pool:connect():await()
    H.close_after(pool, app, function()
      local got, reconnected, unlistened = {}, 0, false
      local function fn(ch, p) got[#got + 1] = ch .. "=" .. p end
      pool:listen("r173_keep", fn):await()
      pool:listen("r173_drop", fn, { on_reconnect = function(ch)
        reconnected = reconnected + 1
        pool:unlisten(ch):await()
        pool:notify(ch, "after unlisten"):await()
        unlistened = true
      end }):await()
      local old = H.listener_pid(app)
      H.psql("SELECT pg_terminate_backend(" .. old .. ")")
      assert.is_true(H.wait_until(function() return reconnected == 1 and unlistened end, 10000))
      -- the listener is back (r173_keep delivers), and r173_drop is not listened to
      assert.is_true(H.wait_until(function()
        pool:notify("r173_keep", "ping"):await()
        return #got > 0
      end, 10000))
      pool:notify("r173_drop", "late"):await()
      pool:notify("r173_keep", "last"):await()
      assert.is_true(H.wait_until(function() return got[#got] == "r173_keep=last" end, 5000))
      for _, g in ipairs(got) do assert.is_nil(g:find("r173_drop", 1, true), "delivered: " .. g) end
      -- one new listener beside the pool's connection; the killed one is gone
      assert.equal(2, H.backends(app))
      assert.equal("0", H.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = " .. old))
    end)
  end)
end)
