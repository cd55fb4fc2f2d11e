-- Regression (issue 13, stress): the pool's listening connection, once open, listened to
-- every channel of the pool with a pairs() loop that awaited each LISTEN; a pool:listen
-- or pool:unlisten meanwhile changed that table during the traversal, so the loop raised
-- "invalid key to 'next'" (a plain string, not a momoko.Error): the listener did not
-- open and every pending pool:listen future failed with it. The loop now goes over a
-- snapshot of the channels, skips one unlistened meanwhile, and unlistens one that was
-- unlistened while its LISTEN ran (else it kept delivering).
local momoko = require "momoko"
local H = require "helper"

describe("regress 151: pool:listen and unlisten while the listener listens again", function()
  it("leave the listener open, listening to the channels the pool has", function()
    local dsn, app = H.app_dsn("regress151")
    local pool = momoko.Pool{ dsn = dsn, size = 1 }
    pool:connect():await()
    local got, futures = {}, {}
    local function fn(ch, payload) got[#got + 1] = ch .. "=" .. payload end
    for i = 1, 100 do futures[#futures + 1] = pool:listen("first " .. i, fn) end
    local churn = momoko.spawn(function() -- while the LISTENs run: remove them, add others
      local round = 0
      while not futures[1]:done() and round < 2000 do
        round = round + 1
        for i = 1, 100 do pool:unlisten("first " .. i) end
        for i = 1, 50 do pool:unlisten("round " .. (round - 1) .. " " .. i) end
        for i = 1, 50 do futures[#futures + 1] = pool:listen("round " .. round .. " " .. i, fn) end
        momoko.sleep(1):await()
      end
      return round
    end)
    local rounds = churn:await()
    assert.is_true(rounds < 2000)
    for i, f in ipairs(futures) do
      local ok, err = pcall(f.await, f)
      assert(ok, "pool:listen " .. i .. ": " .. tostring(err))
    end
    for i = 1, 50 do pool:unlisten("round " .. rounds .. " " .. i):await() end
    pool:listen("last", fn):await()
    -- every channel but "last" was unlistened (some while their LISTEN ran): none delivers
    pool:execute("SELECT count(pg_notify('first ' || i, 'late')) FROM generate_series(1, 100) i"):await()
    pool:execute("SELECT count(pg_notify('round ' || r || ' ' || i, 'late')) FROM generate_series(1, $1::int) r, "
      .. "generate_series(1, 50) i", { rounds }):await()
    pool:notify("last", "x"):await()
    assert.is_true(H.wait_until(function() return #got > 0 end))
    momoko.sleep(50):await()
    assert.same({ "last=x" }, got)
    pool:close()
    assert.is_true(H.no_backends(app))
  end)
end)
