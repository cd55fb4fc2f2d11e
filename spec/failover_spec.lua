-- API §9 "Failover", on real servers (spec/support/cluster.lua): a primary with a
-- synchronous streaming standby, a Pool on a DSN that names both with
-- target_session_attrs=read-write, and 50 coroutines inserting rows as fast as they
-- can. The primary is killed (pg_ctl stop -m immediate), and after a moment with no
-- primary at all the standby is promoted. Then:
--   * writes resume on the promoted standby within reconnect_interval + 1 s of the
--     promotion, with no change to the pool or its DSN;
--   * every request ends: with its row, or with a typed momoko error (the writers'
--     loops end within a bounded wait once told to stop, so none hangs);
--   * every acknowledged write is on the new primary (synchronous commit: the standby
--     had it before the primary said so), counted there with psql;
--   * the pool's connections end up on the new primary (pg_stat_activity there).
-- The gap (last acknowledged write on the old primary to the first on the new one) and
-- the counts are printed as TAP comments ("# failover: ...").
--
-- This file starts two servers of its own and takes some seconds: scripts/test leaves it
-- out unless named (scripts/test-cluster, the CI phase "cluster", runs it).
local momoko = require "momoko"
local H = require "helper"
local Cluster = require "cluster"

local RECONNECT = 200 -- reconnect_interval (ms) of the pool
local WRITERS = 50
local SIZE = 10
local OUTAGE = 300    -- ms between the kill and the promotion: no primary at all
local AFTER = 1000    -- ms of writes on the new primary before the writers stop

local function sleep(ms) momoko.sleep(ms):await() end

-- Wall clock in milliseconds (the servers' clock_timestamp() is on the same clock).
local function now_ms()
  local p = assert(io.popen("date +%s%3N"))
  local v = tonumber(p:read("l"))
  p:close()
  return v
end

local function note(fmt, ...)
  io.stdout:write("# failover: ", string.format(fmt, ...), "\n")
  io.stdout:flush()
end

describe("failover to a promoted standby", function()
  local cl, pool

  lazy_setup(function()
    cl = Cluster.start{sleep = sleep}
  end)

  lazy_teardown(function()
    if pool then pool:close() end
    if cl then cl:destroy() end
  end)

  it("resumes writes on the promoted standby; every request ends, typed; no acknowledged write is lost", function()
    H.async(function()
      local P1, P2 = cl.primary.port, cl.standby.port
      cl.primary:psql("CREATE TABLE failover_writes (id bigint PRIMARY KEY, writer int NOT NULL)")
      local app = "failover_" .. math.random(1, 1e9)
      pool = momoko.Pool{
        dsn = cl:dsn("target_session_attrs=read-write connect_timeout=2 application_name=" .. app),
        size = SIZE, reconnect_interval = RECONNECT,
      }
      pool:connect():await()
      assert.equal(SIZE, tonumber(cl.primary:psql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app .. "'")))

      local next_id, stop = 0, false
      local acked = {}       -- {id =, at = server ms, port =} per acknowledged write
      local kinds = {}       -- error kind -> count
      local samples = {}     -- error kind -> one message
      local untyped = {}     -- errors that are not momoko errors
      local started, ended = 0, 0
      local writers_done = 0

      local function writer(w)
        while not stop do
          next_id = next_id + 1
          local id = next_id
          started = started + 1
          local ok, res = pcall(function()
            return pool:execute("INSERT INTO failover_writes (id, writer) VALUES ($1, $2) "
              .. "RETURNING (extract(epoch FROM clock_timestamp()) * 1000)::float8, inet_server_port()",
              {id, w}):await():fetchone()
          end)
          ended = ended + 1
          if ok then
            acked[#acked + 1] = {id = id, at = res[1], port = res[2]}
          else
            if getmetatable(res) == momoko.Error then
              kinds[res.kind] = (kinds[res.kind] or 0) + 1
              samples[res.kind] = samples[res.kind] or res.message:gsub("%s+", " ")
            else
              untyped[#untyped + 1] = tostring(res)
            end
            sleep(10) -- as a client would: a refused request fails at once
          end
        end
        writers_done = writers_done + 1
      end

      for w = 1, WRITERS do momoko.spawn(writer, w) end
      assert.is_true(H.wait_until(function() return #acked >= 500 end, 20000),
        "the writers did not get going: " .. #acked .. " writes acknowledged")

      local t_kill = cl.primary:kill()
      local acked_at_kill = #acked
      sleep(OUTAGE)
      local t_promoted = cl.standby:promote()

      local first_new
      assert.is_true(H.wait_until(function()
        for i = acked_at_kill + 1, #acked do
          if acked[i].port == P2 then first_new = acked[i]; return true end
        end
        return false
      end, 15000), "no write acknowledged by the promoted standby within 15 s of the promotion")
      sleep(AFTER)
      stop = true
      assert.is_true(H.wait_until(function() return writers_done == WRITERS end, 15000),
        string.format("%d of %d writers still wait for a request (%d started, %d ended): a hang",
          WRITERS - writers_done, WRITERS, started, ended))
      assert.equal(started, ended)

      -- the errors: typed, and what a failover may bring (no duplicate key: nothing that
      -- had run was replayed)
      assert.same({}, untyped)
      for kind in pairs(kinds) do
        assert.is_true(kind == "OperationalError" or kind == "DatabaseNotAvailable",
          "unexpected error kind " .. kind .. ": " .. samples[kind])
      end

      -- where each write went, and the gap
      local last_old, first_on_new = -math.huge, math.huge
      for _, a in ipairs(acked) do
        assert.is_true(a.port == P1 or a.port == P2, "acknowledged by port " .. tostring(a.port))
        if a.port == P1 then
          last_old = math.max(last_old, a.at)
          assert.is_true(a.at <= t_kill, "a write on the old primary after it was killed")
        else
          first_on_new = math.min(first_on_new, a.at)
        end
      end
      assert.is_true(first_on_new >= t_kill)

      -- every acknowledged write is on the new primary
      local found = {}
      for id in cl.standby:psql("SELECT id FROM failover_writes"):gmatch("%d+") do found[tonumber(id)] = true end
      local nfound, missing = 0, {}
      for _ in pairs(found) do nfound = nfound + 1 end
      for _, a in ipairs(acked) do
        if not found[a.id] then missing[#missing + 1] = a.id end
      end

      local errs = {}
      for kind, n in pairs(kinds) do errs[#errs + 1] = string.format("%s %d (%s)", kind, n, samples[kind]) end
      table.sort(errs)
      note("gap %.0f ms from the last write acknowledged by the old primary to the first by the new one",
        first_on_new - last_old)
      note("killed %d ms after that last write; promoted %d ms after the kill; first write %.0f ms after the promotion (reconnect_interval %d)",
        t_kill - math.floor(last_old), t_promoted - t_kill, first_on_new - t_promoted, RECONNECT)
      note("%d requests: %d acknowledged (%d before the kill), %d rows found on the new primary, %d acknowledged but missing",
        started, #acked, acked_at_kill, nfound, #missing)
      note("errors: %s", #errs > 0 and table.concat(errs, "; ") or "none")
      local stats = pool:stats()
      note("pool stats: reconnects %d, retries %d", stats.reconnects, stats.retries)

      assert.same({}, missing)
      assert.is_true(nfound >= #acked)
      assert.is_true(first_on_new - t_promoted <= RECONNECT + 1000,
        string.format("writes resumed %.0f ms after the promotion", first_on_new - t_promoted))
      assert.is_true(stats.reconnects > 0)

      -- the pool's connections are on the new primary, and close there
      local function backends()
        return tonumber(cl.standby:psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app .. "'"))
      end
      assert.is_true(H.wait_until(function() return backends() == SIZE end, 10000),
        "backends of the pool on the new primary: " .. backends())
      pool:close()
      pool = nil
      assert.is_true(H.wait_until(function() return backends() == 0 end, 5000))
    end)
  end)
end)
