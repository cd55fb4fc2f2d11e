-- Regression (issue 12, failover): after an outage, the connections that reopened a
-- pool to its size were counted as growth, not as reconnects. While the server was
-- unreachable the pool tried one connection at a time; when one opened with requests
-- waiting, the dispatch that followed opened the other missing ones through grow(),
-- which labelled every connection it opened "grown": stats().reconnects counted 1 of
-- the size connections reopened, and the trace reported "grow" events (documented as
-- connections opened past size) for the rest. grow() now opens a connection as a
-- replacement while the pool is below size, and as growth only past it.
--
-- The outage is made with setsession: a function that fails while a flag says so (the
-- pool goes down and retries every reconnect_interval), then sleeps (the attempt that
-- will succeed is in flight long enough for requests to queue behind it).
local momoko = require "momoko"
local H = require "helper"

local SIZE = 3

describe("regress 130: connections reopened after an outage", function()
  local gate = "regress130_gate_" .. math.random(1, 1e9)

  lazy_setup(function()
    H.psql("CREATE TABLE " .. gate .. " (state text NOT NULL); INSERT INTO " .. gate .. " VALUES ('open')")
    H.psql("CREATE FUNCTION " .. gate .. "_enter() RETURNS void LANGUAGE plpgsql AS ' BEGIN "
      .. "IF (SELECT state FROM " .. gate .. ") = ''fail'' THEN RAISE EXCEPTION ''regress130: refused''; END IF; "
      .. "IF (SELECT state FROM " .. gate .. ") = ''slow'' THEN PERFORM pg_sleep(0.4); END IF; END'")
  end)

  lazy_teardown(function()
    H.psql("DROP FUNCTION IF EXISTS " .. gate .. "_enter(); DROP TABLE IF EXISTS " .. gate)
  end)

  it("count as reconnects, and none as growth", function()
    local dsn, app = H.app_dsn("regress130")
    local events = {}
    local pool = momoko.Pool{dsn = dsn, size = SIZE, reconnect_interval = 100,
      setsession = {"SELECT " .. gate .. "_enter()"},
      trace = function(ev) events[#events + 1] = ev.type end}
    H.close_after(pool, app, function()
      pool:connect():await()
      assert.equal(SIZE, H.backends(app))
      H.psql("UPDATE " .. gate .. " SET state = 'fail'")
      H.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '" .. app .. "'")
      assert.is_true(H.wait_until(function()
        local s = pool:stats()
        return s.size == 0 and s.dead == SIZE
      end, 5000), "the pool did not lose its connections")
      H.psql("UPDATE " .. gate .. " SET state = 'slow'")
      -- the attempt that succeeds: its setsession sleeps on the server
      assert.is_true(H.wait_until(function()
        return H.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app
          .. "' AND wait_event = 'PgSleep'") == "1"
      end, 5000), "no reconnect attempt reached the server")
      assert.equal(1, pool:stats().connecting)
      local futures = {}
      for i = 1, 2 * SIZE do futures[i] = pool:execute("SELECT $1::int", {i}) end
      assert.equal(2 * SIZE, pool:stats().waiting)
      for i, f in ipairs(futures) do assert.equal(i, f:await():fetchone()[1]) end
      assert.is_true(H.wait_until(function() return pool:stats().size == SIZE end, 5000))
      local s = pool:stats()
      local counts = {}
      for _, t in ipairs(events) do counts[t] = (counts[t] or 0) + 1 end
      assert.equal(SIZE, s.reconnects)
      assert.equal(SIZE, counts.reconnect)
      assert.is_nil(counts.grow)
      assert.equal(SIZE, H.backends(app))
    end)
  end)
end)
