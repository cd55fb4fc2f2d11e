-- Regression (issue 13, found by the soak): a pool's listener that died while it was
-- being reopened (its connection open, the channels being listened to again) was
-- reopened twice: its on_lost started a second reopen loop while the first one, whose
-- LISTEN failed, tried again on its own. Both loops opened a listener; the pool kept
-- one and the other stayed open and listening, so every notification was handed out
-- twice and a backend leaked until the pool closed. The fix: on_lost reopens only the
-- listener the pool had installed; a connection still being set up is retried by its
-- own loop alone.
--
-- And (the second test, found by the soak too): after a pool's listener was reopened, a
-- notification that arrived together with the answer to its LISTEN was handed to the
-- channel's fn before on_reconnect(channel) was called: the core hands notifications
-- out as it parses them, before the LISTEN's future resolved, and on_reconnect ran
-- only once that future was awaited. An application whose on_reconnect resyncs (drops
-- a cache, reloads state) then applied a notification of the new session before it.
-- The fix: while a channel is listened to again, its notifications are held and
-- handed to fn right after on_reconnect(channel) was called.
--
-- Deterministic: on_reconnect of the first channel yields (sleep 0), so the LISTEN of
-- the second goes out, then blocks the loop in psql until the server answered that
-- LISTEN and sent a notification on it: both reach the client in one read.
local momoko = require "momoko"
local H = require "helper"

local function listeners(app)
  return tonumber(H.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app ..
    "' AND query LIKE 'LISTEN%'"))
end

describe("regress 161: a pool's listener reopened", function()
  it("when it dies while it is reopened, is reopened once: one listening backend, each notification handed out once", function()
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
          local pid = H.listener_pid(app)
          H.psql("SELECT pg_terminate_backend(" .. pid .. ")")
          assert(H.wait_until(function()
            return H.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = " .. pid) == "0"
          end, 5000))
        end
      end }
      for i = 1, 10 do
        pool:listen("r161_" .. i, function(_, p) got[#got + 1] = p end, opts):await()
      end
      H.psql("SELECT pg_terminate_backend(" .. H.listener_pid(app) .. ")")
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

  it("hands a notification that comes with the LISTEN's answer to fn after on_reconnect(channel)", function()
    local dsn, app = H.app_dsn("regress162")
    -- no TLS: with it, the notification is a TLS record of its own, read after the answer
    local pool = momoko.Pool{ dsn = dsn .. " sslmode=disable", size = 1, reconnect_interval = 50 }
    pool:connect():await()
    H.close_after(pool, app, function()
      local channels = { "r162_a", "r162_b" }
      local events, first = {}, nil
      local function handler(channel, payload) events[#events + 1] = "notify " .. channel .. " " .. payload end
      local opts = { on_reconnect = function(channel)
        events[#events + 1] = "reconnect " .. channel
        if first then return end
        first = channel
        local other = channel == channels[1] and channels[2] or channels[1]
        momoko.sleep(0):await() -- the LISTEN of the other channel goes out meanwhile
        -- the loop is blocked here: wait for the server to answer that LISTEN, then notify
        H.psql(string.format([[DO 'BEGIN
          FOR i IN 1..250 LOOP
            PERFORM pg_stat_clear_snapshot();
            EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = ''%s''
                              AND query LIKE ''LISTEN %%%s%%'' AND state = ''idle'');
            PERFORM pg_sleep(0.02);
          END LOOP; END'; NOTIFY %s, 'early']], app, other, other))
      end }
      for _, channel in ipairs(channels) do pool:listen(channel, handler, opts):await() end
      H.psql("SELECT pg_terminate_backend(" .. H.listener_pid(app) .. ")")
      assert.is_true(H.wait_until(function() return #events >= 3 end, 10000))
      momoko.sleep(200):await()
      local other = first == channels[1] and channels[2] or channels[1]
      assert.same({ "reconnect " .. first, "reconnect " .. other, "notify " .. other .. " early" }, events)
    end)
  end)
end)
