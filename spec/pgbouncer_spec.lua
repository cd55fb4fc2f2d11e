-- momoko through PgBouncer in transaction mode (spec/support/pgbouncer.lua), with
-- default_pool_size = 3 against 4 pools of 3 connections each (12 clients), so that
-- requests of one client connection land on different server sessions. With
-- pgbouncer = true: execute (with params, many distinct statements, repeated),
-- transaction, pipeline mode, streams and COPY give the right values and no "prepared
-- statement ... does not exist"; listen fails with NotSupportedError. Without it (the
-- statement cache on), a cached statement landing on another server session fails
-- with an error that names the cause and the switch (regress 135 has the wrong-results
-- side). Its own CI phase (.ci/run: pgbouncer); scripts/test leaves it out by default.
local momoko = require "momoko"
local H = require "helper"
local B = require "pgbouncer"

local NPOOLS, SIZE = 4, 3

describe("PgBouncer in transaction mode (pgbouncer = true)", function()
  local bouncer
  local requests = 0 -- momoko requests sent through PgBouncer by this file

  lazy_setup(function()
    bouncer = B.start{pool_size = 3}
  end)
  lazy_teardown(function()
    if bouncer then
      local st = bouncer:stats()
      print(string.format("# pgbouncer: %d momoko requests, PgBouncer counted %d queries in %d transactions",
        requests, st.total_query_count, st.total_xact_count))
      bouncer:stop()
    end
  end)

  -- NPOOLS connected pools through PgBouncer, with these extra options.
  local function pools(opts)
    local out = {}
    for i = 1, NPOOLS do
      local o = {dsn = bouncer.dsn, size = SIZE, pgbouncer = true}
      for k, v in pairs(opts or {}) do o[k] = v end
      out[i] = momoko.Pool(o)
    end
    for i = 1, NPOOLS do out[i]:connect():await() end
    return out
  end

  local function close_all(list)
    for _, p in ipairs(list) do p:close() end
  end

  -- Server sessions PgBouncer holds for momoko_test (it never opens more than the pool size).
  local function server_sessions()
    local n = 0
    for _, row in ipairs(bouncer:show("SERVERS")) do
      if row.database == "momoko_test" then n = n + 1 end
    end
    return n
  end

  it("turns the statement cache off, and refuses a cache size with it", function()
    H.async(function()
      -- straight to PostgreSQL, to look at the session: nothing is prepared
      local conn = momoko.connect(H.dsn, {pgbouncer = true}):await()
      for _ = 1, 5 do assert.equal(7, conn:execute("SELECT $1::int + 2", {5}):await():fetchone()[1]) end
      assert.equal(0, H.prepared_count(conn))
      conn:close()
    end)
    local e = H.interface_error(momoko.Connection, H.dsn, {pgbouncer = true, statement_cache_size = 10})
    assert.matches("statement_cache_size must be 0 with pgbouncer = true", e.message)
    H.interface_error(momoko.Pool, {dsn = H.dsn, pgbouncer = true, statement_cache_size = 1})
    H.interface_error(momoko.Connection, H.dsn, {pgbouncer = "yes"})
    local c = momoko.Connection(H.dsn, {pgbouncer = true, statement_cache_size = 0})
    c:close()
    momoko.Pool{dsn = H.dsn, pgbouncer = false}:close()
  end)

  for _, pipeline in ipairs({false, true}) do
    local mode = pipeline and "pipeline = true" or "no pipeline"

    it("execute with params from 4 pools at once: 60 distinct statements, each 4 times (" .. mode .. ")", function()
      H.async(function()
        local list = pools{pipeline = pipeline}
        local max_servers = 0
        local futures, want = {}, {}
        for round = 1, 4 do
          for p = 1, NPOOLS do
            for k = 1, 60 do
              futures[#futures + 1] = list[p]:execute("SELECT $1::int * " .. k .. " + $2::int", {round, p})
              want[#futures] = round * k + p
            end
          end
          max_servers = math.max(max_servers, server_sessions())
        end
        local errors, wrong = {}, 0
        for i, f in ipairs(futures) do
          local ok, cur = pcall(f.await, f)
          if not ok then errors[#errors + 1] = tostring(cur)
          elseif cur:fetchone()[1] ~= want[i] then wrong = wrong + 1 end
        end
        requests = requests + #futures
        assert.same({}, errors)
        assert.equal(0, wrong)
        assert.equal(960, #futures)
        assert.is_true(max_servers <= 3, "server sessions: " .. max_servers)
        close_all(list)
      end)
    end)

    it("transactions from 4 pools at once see one server session each (" .. mode .. ")", function()
      local t = H.scratch_table("pgb_txn", "pool int, n int, xid bigint")
      H.async(function()
        local list = pools{pipeline = pipeline}
        local futures = {}
        for p = 1, NPOOLS do
          for n = 1, 15 do
            futures[#futures + 1] = list[p]:transaction{
              {"INSERT INTO " .. t .. " VALUES ($1, $2, txid_current())", {p, n}},
              "SELECT txid_current(), pg_backend_pid()",
              {"SELECT count(*) FROM " .. t .. " WHERE pool = $1 AND n = $2 AND xid = txid_current()", {p, n}},
            }
          end
        end
        for _, f in ipairs(futures) do
          local curs = f:await()
          assert.equal(1, curs[3]:fetchone()[1]) -- the row of this transaction, seen inside it
        end
        requests = requests + #futures
        close_all(list)
      end)
      assert.equal("60", H.psql("SELECT count(*) FROM " .. t))
      assert.equal("60", H.psql("SELECT count(DISTINCT xid) FROM " .. t))
      H.drop_table(t)
    end)

    it("streams (pool:stream and conn:stream) from 4 pools at once (" .. mode .. ")", function()
      H.async(function()
        local list = pools{pipeline = pipeline}
        local futures = {}
        for p = 1, NPOOLS do
          futures[#futures + 1] = momoko.spawn(function()
            local sum, n = 0, 0
            local s <close> = list[p]:stream("SELECT g, g * $1::int FROM generate_series(1, 3000) g", {p}, {chunk = 100})
            for row in s:rows() do
              n = n + 1
              assert.equal(row[1] * p, row[2])
              sum = sum + row[1]
            end
            return n, sum
          end)
          futures[#futures + 1] = momoko.spawn(function()
            local conn <close> = list[p]:getconn():await()
            local sum, n = 0, 0
            local s <close> = conn:stream("SELECT g FROM generate_series(1, $1::int) g", {1000 * p})
            for row in s:rows() do
              n = n + 1
              sum = sum + row[1]
            end
            return n, sum
          end)
        end
        for i, f in ipairs(futures) do
          local n, sum = f:await()
          local p = (i + 1) // 2
          local rows = i % 2 == 1 and 3000 or 1000 * p
          assert.equal(rows, n)
          assert.equal(rows * (rows + 1) // 2, sum)
        end
        requests = requests + #futures
        close_all(list)
      end)
    end)

    it("COPY in and out from 4 pools at once (" .. mode .. ")", function()
      local t = H.scratch_table("pgb_copy", "pool int, n int, s text")
      H.async(function()
        local list = pools{pipeline = pipeline}
        local futures = {}
        for p = 1, NPOOLS do
          local rows = {}
          for n = 1, 500 do rows[n] = {p, n, "row\t" .. n} end
          futures[#futures + 1] = list[p]:copy_from("COPY " .. t .. " FROM STDIN", rows)
        end
        for _, f in ipairs(futures) do assert.equal(500, f:await()) end
        futures = {}
        for p = 1, NPOOLS do
          futures[p] = list[p]:copy_to("COPY (SELECT n, s FROM " .. t .. " WHERE pool = " .. p .. " ORDER BY n) TO STDOUT")
        end
        for _, f in ipairs(futures) do
          local data = f:await()
          local n = 0
          for line in data:gmatch("[^\n]+") do
            n = n + 1
            assert.equal(n .. "\trow\\t" .. n, line)
          end
          assert.equal(500, n)
        end
        requests = requests + 2 * NPOOLS
        close_all(list)
      end)
      assert.equal("2000", H.psql("SELECT count(*) FROM " .. t))
      H.drop_table(t)
    end)
  end

  it("listen fails with NotSupportedError naming pgbouncer, on a Connection and a Pool", function()
    H.async(function()
      local conn = momoko.connect(bouncer.dsn, {pgbouncer = true}):await()
      local pool = momoko.Pool{dsn = bouncer.dsn, pgbouncer = true}
      pool:connect():await()
      for _, owner in ipairs({conn, pool}) do
        local e = H.failure(owner:listen("jobs", function() end))
        H.assert_kind("NotSupportedError", e)
        assert.matches("pgbouncer = true", e.message, 1, true)
      end
      -- notify runs in one transaction: it goes through
      conn:notify("jobs", "x"):await()
      pool:notify("jobs", "y"):await()
      requests = requests + 2
      conn:close()
      pool:close()
    end)
  end)

  it("setsession of a parameter PgBouncer tracks (TimeZone) follows each client connection", function()
    H.async(function()
      local tokyo = momoko.Pool{dsn = bouncer.dsn, size = SIZE, pgbouncer = true,
        setsession = {"SET TimeZone = 'Asia/Tokyo'"}}
      local plain = momoko.Pool{dsn = bouncer.dsn, size = SIZE, pgbouncer = true}
      tokyo:connect():await()
      plain:connect():await()
      local futures = {}
      for i = 1, 60 do
        futures[i] = (i % 2 == 0 and tokyo or plain):execute("SELECT current_setting('TimeZone')")
      end
      for i, f in ipairs(futures) do
        assert.equal(i % 2 == 0 and "Asia/Tokyo" or "UTC", f:await():fetchone()[1], "request " .. i)
      end
      requests = requests + #futures
      tokyo:close()
      plain:close()
    end)
  end)

  it("without the switch, a cached statement on another server session fails with an error naming the cause", function()
    H.async(function()
      local list = {}
      for i = 1, NPOOLS do
        list[i] = momoko.Pool{dsn = bouncer.dsn, size = SIZE}
        list[i]:connect():await()
      end
      local changed, other, wrong, n = 0, {}, 0, 0
      -- bounded: 12 clients on 3 server sessions switch sessions within the first rounds
      for round = 1, 40 do
        local futures, want = {}, {}
        for p = 1, NPOOLS do
          for k = 1, 6 do
            futures[#futures + 1] = list[p]:execute("SELECT $1::int * " .. k, {round})
            want[#futures] = round * k
          end
        end
        for i, f in ipairs(futures) do
          local ok, cur = pcall(f.await, f)
          n = n + 1
          if ok then
            if cur:fetchone()[1] ~= want[i] then wrong = wrong + 1 end
          elseif cur.sqlstate == "26000" and cur.message:find("pgbouncer = true", 1, true)
              and cur.message:find("server session changed", 1, true) then
            changed = changed + 1
          else
            other[#other + 1] = tostring(cur)
          end
        end
        if changed > 0 and round >= 10 then break end
      end
      requests = requests + n
      assert.equal(0, wrong)
      assert.same({}, other)
      assert.is_true(changed > 0, "no request landed on another server session in " .. n)
      print(string.format("# pgbouncer without the switch: %d requests, %d failed with the session-changed error", n, changed))
      close_all(list)
    end)
  end)
end)
