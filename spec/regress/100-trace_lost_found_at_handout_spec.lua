-- Regression (issue "Streams, LISTEN/NOTIFY, COPY and tracing", tracing): a free
-- connection whose death the pool found itself — the probe at handout, after a callback
-- that blocked in the same loop turn as the kill, or a getconn{ping = true} whose ping
-- met the dead socket — was discarded and replaced without a "lost" trace event: the
-- pool took it off its lists before the connection reported its death, so nobody did.
local momoko = require "momoko"
local H = require "helper"

local function lost_events(events)
  local n = 0
  for _, ev in ipairs(events) do
    if ev.type == "lost" then n = n + 1 end
  end
  return n
end

-- A pool of one whose connection's backend is killed now, with the loop not running:
-- the pool has not noticed when the next call comes.
local function pool_with_killed_backend(prefix)
  local events = {}
  local dsn, app = H.app_dsn(prefix)
  local pool = momoko.Pool{dsn = dsn, size = 1, reconnect_interval = 50,
                           trace = function(ev) events[#events + 1] = ev end}
  pool:connect():await()
  local pid = H.psql("SELECT pid FROM pg_stat_activity WHERE application_name = '" .. app .. "'")
  -- H.psql blocks: the loop does not run until the backend is gone (pg_terminate_backend
  -- only signals it; it sends its FATAL and exits a moment later)
  assert.equal("t", H.psql("SELECT pg_terminate_backend(" .. pid .. ")"))
  H.psql("DO 'BEGIN FOR i IN 1..500 LOOP EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity" ..
         " WHERE pid = " .. pid .. "); PERFORM pg_sleep(0.01); END LOOP; END'")
  assert.equal("0", H.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = " .. pid))
  return pool, events, app
end

describe("regress 100: a dead free connection the pool finds itself", function()
  it("is traced as lost when the handout probe finds it", function()
    local pool, events, app = pool_with_killed_backend("regress100_probe")
    assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
    assert.is_true(H.wait_until(function() return lost_events(events) == 1 end, 2000))
    assert.equal(1, lost_events(events))
    pool:close()
    assert.is_true(H.no_backends(app))
  end)

  it("is traced as lost when a getconn ping finds it", function()
    local pool, events, app = pool_with_killed_backend("regress100_ping")
    local conn = pool:getconn{ping = true}:await()
    assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
    pool:putconn(conn)
    assert.is_true(H.wait_until(function() return lost_events(events) == 1 end, 2000))
    assert.equal(1, lost_events(events))
    pool:close()
    assert.is_true(H.no_backends(app))
  end)
end)
