-- Adversarial specs of the request engine in pipeline mode (docs/api.md "Pipeline mode",
-- "The statement cache"): re-entrant callbacks while results are being read, GC with
-- requests in flight, cancels and timeouts deep in a pipeline, killed backends, notices,
-- requests that cannot be pipelined, a parameter bigger than libpq's buffer, cache churn
-- and a failed block left open. Every request must end exactly once, typed, and the
-- connection must stay usable or be closed cleanly with no backend left.
local momoko = require "momoko"
local H = require "helper"

local failure, assert_kind = H.failure, H.assert_kind

local count_ends, all_once, connect, prepared = H.count_ends, H.assert_each_once, H.pipelined_connection,
  H.prepared_count

describe("pipeline adversarial: re-entrant done callbacks", function()
  it("close() from the done callback of request 20 of 50: 1..20 succeed, 21..50 fail closed, once each", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local fs = {}
      for i = 1, 50 do fs[i] = conn:execute("SELECT $1::int", {i}) end
      local ends = count_ends(fs)
      fs[20]:add_done_callback(function() conn:close() end)
      for i = 1, 20 do assert.equal(i, fs[i]:await():fetchone()[1]) end
      for i = 21, 50 do H.assert_closed_error(fs[i], "request " .. i) end
      momoko.sleep(20):await()
      all_once(ends, 50)
      assert.is_true(conn.closed)
    end)
  end)

  it("close() from a done callback while the next request runs on the server leaves no backend busy", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local first = conn:execute("SELECT $1::int", {1})
      local long = conn:execute("SELECT pg_sleep(30), $1::int", {2})
      first:add_done_callback(function() conn:close() end)
      assert.equal(1, first:await():fetchone()[1])
      H.assert_closed_error(long, "long")
      assert.is_true(H.no_backends(app))
    end)
  end)

  it("cancel() of the next request from each done callback: every request ends once, typed", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local fs = {}
      for i = 1, 60 do
        fs[i] = conn:execute("SELECT $1::int FROM pg_sleep(CASE WHEN $1::int % 3 = 0 THEN 0.05 ELSE 0 END)", {i})
      end
      local ends = count_ends(fs)
      for i = 1, 59 do
        if i % 2 == 1 then fs[i]:add_done_callback(function() fs[i + 1]:cancel() end) end
      end
      local ok_n, canceled = 0, 0
      for i = 1, 60 do
        local ok, err = pcall(fs[i].await, fs[i])
        if ok then
          assert.equal(i, err:fetchone()[1])
          ok_n = ok_n + 1
        else
          assert.is_true(i % 2 == 0, "only an even request was cancelled: " .. i .. " " .. tostring(err))
          assert_kind("QueryCanceledError", err)
          canceled = canceled + 1
        end
      end
      momoko.sleep(20):await()
      all_once(ends, 60)
      assert.equal(60, ok_n + canceled)
      assert.is_true(ok_n >= 30)
      assert.is_false(conn.closed)
      assert.equal("idle", conn.transaction_status)
      assert.equal(7, conn:execute("SELECT $1::int", {7}):await():fetchone()[1])
    end)
  end)

  it("execute()s and a transaction() issued from done callbacks while results are read keep call order", function()
    local conn, app = connect()
    local t = H.scratch_table("padv_reent", "seq serial, v int")
    H.close_after(conn, app, function()
      local order, issued = {}, {}
      local function note(v) return function(f) if not f:error() then order[#order + 1] = v end end end
      local fs = {}
      for i = 1, 20 do
        fs[i] = conn:execute("INSERT INTO " .. t .. " (v) VALUES ($1)", {i})
        fs[i]:add_done_callback(note(i))
        fs[i]:add_done_callback(function()
          if i % 5 == 0 then
            local tx = conn:transaction({
              {"INSERT INTO " .. t .. " (v) VALUES ($1)", {1000 + i}},
              {"INSERT INTO " .. t .. " (v) VALUES ($1)", {2000 + i}},
            })
            tx:add_done_callback(note(1000 + i))
            issued[#issued + 1] = tx
            local e = conn:execute("INSERT INTO " .. t .. " (v) VALUES ($1)", {3000 + i})
            e:add_done_callback(note(3000 + i))
            issued[#issued + 1] = e
          end
        end)
      end
      for i = 1, 20 do fs[i]:await() end
      assert.is_true(H.wait_until(function() return #order == 28 end, 5000))
      for _, f in ipairs(issued) do f:await() end
      -- the first 20 in call order; each callback's two requests after the ones issued
      -- before them: the server's insertion order (serial) says the same
      local rows = conn:execute("SELECT v FROM " .. t .. " ORDER BY seq"):await():fetchall()
      local seq = {}
      for _, r in ipairs(rows) do seq[#seq + 1] = r[1] end
      assert.equal(32, #seq)
      for i = 1, 20 do assert.equal(i, seq[i]) end
      local k = 21
      for i = 5, 20, 5 do
        assert.same({1000 + i, 2000 + i, 3000 + i}, {seq[k], seq[k + 1], seq[k + 2]})
        k = k + 3
      end
      local expect = {}
      for i = 1, 20 do expect[#expect + 1] = i end
      for i = 5, 20, 5 do expect[#expect + 1] = 1000 + i; expect[#expect + 1] = 3000 + i end
      assert.same(expect, order)
      assert.equal("idle", conn.transaction_status)
    end)
    H.drop_table(t)
  end)
end)

describe("pipeline adversarial: GC", function()
  it("a Connection nobody references with 100 requests in flight finishes them all, then is collected", function()
    local dsn, app = H.app_dsn("padv_gc")
    local fs = {}
    do
      local conn = momoko.connect(dsn, {pipeline = true}):await()
      for i = 1, 100 do fs[i] = conn:execute("SELECT $1::int, pg_sleep(0.002)", {i}) end
    end
    local ends = count_ends(fs)
    collectgarbage()
    collectgarbage()
    for i = 1, 100 do assert.equal(i, fs[i]:await():fetchone()[1]) end
    all_once(ends, 100)
    fs = nil
    H.collect_garbage(3, 20)
    assert.is_true(H.no_backends(app), "the collected connection was closed")
  end)
end)

describe("pipeline adversarial: transactions and cancels", function()
  it("a transaction cancelled from the done callback of the request before it: rolled back, the rest unaffected", function()
    local conn, app = connect()
    local t = H.scratch_table("padv_txc", "id int")
    H.close_after(conn, app, function()
      -- before runs a moment on the server, so that the backend has tx's bytes by then:
      -- a cancel that reaches a backend while it reads its next command is dropped
      local before = conn:execute("SELECT $1::int FROM pg_sleep(0.05)", {1})
      local tx = conn:transaction({
        {"INSERT INTO " .. t .. " VALUES ($1)", {1}},
        {"SELECT pg_sleep($1::float8)", {30}},
        {"INSERT INTO " .. t .. " VALUES ($1)", {2}},
      })
      local after = conn:execute("INSERT INTO " .. t .. " VALUES ($1)", {3})
      local ends = count_ends({before, tx, after})
      before:add_done_callback(function() assert.is_true(tx:cancel()) end)
      assert.equal(1, before:await():fetchone()[1])
      assert_kind("QueryCanceledError", failure(tx))
      assert.equal(1, after:await().rowcount)
      momoko.sleep(20):await()
      assert.same({1, 1, 1}, ends)
      assert.equal("3", H.psql("SELECT string_agg(id::text, ',') FROM " .. t))
      assert.equal("idle", conn.transaction_status)
    end)
    H.drop_table(t)
  end)

  it("requests behind a transaction whose callbacks cancel it: it is not sent yet for them, they end after it", function()
    local conn, app = connect()
    local t = H.scratch_table("padv_txb", "id int")
    H.close_after(conn, app, function()
      local tx = conn:transaction({
        {"INSERT INTO " .. t .. " VALUES ($1)", {1}},
        {"SELECT pg_sleep($1::float8)", {0.2}},
      })
      local behind = {}
      for i = 1, 5 do
        behind[i] = conn:execute("SELECT $1::int", {i})
        behind[i]:add_done_callback(function() tx:cancel() end) -- tx is over by then: false
      end
      local ends = count_ends(behind)
      assert.equal(2, #tx:await())
      for i = 1, 5 do assert.equal(i, behind[i]:await():fetchone()[1]) end
      momoko.sleep(20):await()
      all_once(ends, 5)
      assert.is_false(tx:cancel())
      assert.equal("1", H.psql("SELECT count(*) FROM " .. t))
    end)
    H.drop_table(t)
  end)
end)

describe("pipeline adversarial: timeouts and cancels deep in a pipeline", function()
  it("ten timeouts behind a head that ends at their expiry: each TimeoutError, the rest succeed, the connection stays", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local fs = {conn:execute("SELECT pg_sleep(0.3), $1::int", {0})}
      for i = 1, 10 do fs[#fs + 1] = conn:execute("SELECT pg_sleep(30), $1::int", {i}, {timeout = 300}) end
      fs[#fs + 1] = conn:execute("SELECT $1::int", {99})
      local ends = count_ends(fs)
      assert.equal(0, fs[1]:await():fetchone()[2])
      for i = 2, 11 do assert_kind("TimeoutError", failure(fs[i])) end
      assert.equal(99, fs[12]:await():fetchone()[1])
      momoko.sleep(20):await()
      all_once(ends, 12)
      assert.is_false(conn.closed)
      assert.equal("idle", conn.transaction_status)
      assert.equal(1, H.backends(app))
    end)
  end)

  it("timeouts racing the end of their request: each runs once (success or TimeoutError, its row or none)", function()
    local conn, app = connect()
    local t = H.scratch_table("padv_race", "id int")
    H.close_after(conn, app, function()
      local inserted = 0
      for round = 1, 12 do
        local head = conn:execute("SELECT pg_sleep(0.1), $1::int", {round})
        local racer = conn:execute("INSERT INTO " .. t .. " SELECT $1::int FROM pg_sleep(0.05)", {round},
          {timeout = 130 + round * 2})
        local tail = conn:execute("INSERT INTO " .. t .. " VALUES ($1)", {1000 + round})
        local ends = count_ends({head, racer, tail})
        head:await()
        local ok, err = pcall(racer.await, racer)
        if ok then inserted = inserted + 1 else assert_kind("TimeoutError", err) end
        assert.equal(1, tail:await().rowcount)
        momoko.sleep(5):await()
        assert.same({1, 1, 1}, ends)
      end
      assert.equal(tostring(inserted), H.psql("SELECT count(*) FROM " .. t .. " WHERE id < 1000"))
      assert.equal("12", H.psql("SELECT count(DISTINCT id) FROM " .. t .. " WHERE id > 1000"))
      assert.equal("12", H.psql("SELECT count(*) FROM " .. t .. " WHERE id > 1000"))
    end)
    H.drop_table(t)
  end)

  it("a cancel storm over 200 pipelined inserts: each ends once, a row exactly for each success, no backend left", function()
    local conn, app = connect()
    local t = H.scratch_table("padv_storm", "id int")
    H.close_after(conn, app, function()
      for round = 1, 3 do
        local fs = {}
        for i = 1, 200 do
          local sql = i % 10 == 0 and "INSERT INTO " .. t .. " SELECT $1::int FROM pg_sleep(0.01)"
            or "INSERT INTO " .. t .. " VALUES ($1)"
          fs[i] = conn:execute(sql, {round * 1000 + i})
        end
        local ends = count_ends(fs)
        local step = round == 2 and 1 or 2 -- every other one, then all of them
        for i = round == 3 and 2 or 1, 200, step do fs[i]:cancel() end
        local ok_n = 0
        for i = 1, 200 do
          local ok, err = pcall(fs[i].await, fs[i])
          if ok then
            ok_n = ok_n + 1
          else
            assert_kind("QueryCanceledError", err)
            assert.is_true(step == 1 or i % 2 == (round == 3 and 0 or 1), "not cancelled: " .. i)
          end
        end
        momoko.sleep(30):await()
        all_once(ends, 200)
        assert.equal(tostring(ok_n), H.psql("SELECT count(*) FROM " .. t .. " WHERE id / 1000 = " .. round))
        assert.equal(tostring(ok_n), H.psql("SELECT count(DISTINCT id) FROM " .. t .. " WHERE id / 1000 = " .. round))
        assert.is_false(conn.closed)
        assert.equal("idle", conn.transaction_status)
      end
      assert.equal(1, H.backends(app))
    end)
    H.drop_table(t)
  end)
end)

describe("pipeline adversarial: killed backends", function()
  it("Pool with pipeline = true: a transaction killed mid-way is never replayed, a plain request killed running is, once", function()
    local dsn, app = H.app_dsn("padv_pool")
    local t = H.scratch_table("padv_pool", "id int")
    -- pipeline_depth = 1: nothing is stacked behind the killed requests, so the one
    -- replay counted is the plain request's (stacked ones are pool_pipeline_spec's)
    local pool = momoko.Pool{dsn = dsn, size = 3, pipeline = true, pipeline_depth = 1, reconnect_interval = 100}
    pool:connect():await()
    H.close_after(pool, app, function()
      local tx = pool:transaction({
        {"INSERT INTO " .. t .. " VALUES ($1)", {1}},
        {"SELECT pg_sleep($1::float8) /* padv_tx */", {30}},
        {"INSERT INTO " .. t .. " VALUES ($1)", {2}},
      })
      local plain = pool:execute("INSERT INTO " .. t .. " SELECT $1::int FROM pg_sleep(2) /* padv_plain */", {3})
      local quick = {}
      for i = 1, 5 do quick[i] = pool:execute("INSERT INTO " .. t .. " VALUES ($1)", {10 + i}) end
      local ends = count_ends({tx, plain, table.unpack(quick)})
      H.running_pid(app, "padv_plain")
      H.running_pid(app, "padv_tx")
      H.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '" .. app ..
        "' AND query LIKE '%pg_sleep%'")
      local err = failure(tx)
      assert_kind("OperationalError", err)
      assert.equal(1, plain:await().rowcount)
      for i = 1, 5 do assert.equal(1, quick[i]:await().rowcount) end
      momoko.sleep(20):await()
      all_once(ends, 7)
      assert.equal(1, pool:stats().retries)
      assert.equal("3,11,12,13,14,15", H.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM " .. t))
    end)
    H.drop_table(t)
  end)
end)

describe("pipeline adversarial: notices, unpipelinable SQL, big parameters", function()
  it("on_notice hears every notice of a 100-deep pipeline in order, each before its request's done callback", function()
    local got, seen_at_done = {}, {}
    local conn, app = connect({on_notice = function(_, m) got[#got + 1] = tonumber(m:match("n(%d+)")) end})
    H.close_after(conn, app, function()
      conn:execute("CREATE FUNCTION pg_temp.pnote(i int) RETURNS int LANGUAGE plpgsql AS " ..
        "$$ BEGIN RAISE NOTICE 'n%', i; RETURN i; END $$"):await()
      local fs, expect = {}, {}
      for i = 1, 100 do
        if i % 10 == 0 then -- several statements: not pipelined, two notices
          fs[i] = conn:execute("SELECT pg_temp.pnote(" .. i .. "); SELECT pg_temp.pnote(" .. (1000 + i) .. ")")
          expect[#expect + 1], expect[#expect + 2] = i, 1000 + i
        else
          fs[i] = conn:execute("SELECT pg_temp.pnote($1)", {i})
          expect[#expect + 1] = i
        end
        fs[i]:add_done_callback(function() seen_at_done[i] = got[#got] end)
      end
      for i = 1, 100 do fs[i]:await() end
      assert.same(expect, got)
      for i = 1, 100 do assert.equal(i % 10 == 0 and 1000 + i or i, seen_at_done[i]) end
    end)
  end)

  it("a notice hook closing the connection at request 50 ends 1..49 with results and 50..100 closed", function()
    local conn
    local opts = {on_notice = function(c, m) if m:match("n50$") or m:match("n50\n") then c:close() end end}
    local app
    conn, app = connect(opts)
    H.close_after(conn, app, function()
      conn:execute("CREATE FUNCTION pg_temp.pnote(i int) RETURNS int LANGUAGE plpgsql AS " ..
        "$$ BEGIN RAISE NOTICE 'n%', i; RETURN i; END $$"):await()
      local fs = {}
      for i = 1, 100 do fs[i] = conn:execute("SELECT pg_temp.pnote($1)", {i}) end
      local ends = count_ends(fs)
      for i = 1, 49 do assert.equal(i, fs[i]:await():fetchone()[1]) end
      for i = 50, 100 do
        failure(fs[i])
        H.assert_closed_error(fs[i], "request " .. i)
      end
      momoko.sleep(20):await()
      all_once(ends, 100)
    end)
  end)

  it("a setsession of three statements, then pipelined, multi-statement, COPY and transactions queued while connecting", function()
    local dsn, app = H.app_dsn("padv_mix")
    local conn = momoko.Connection(dsn, {pipeline = true,
      setsession = {"SET search_path = pg_catalog, public", "SET work_mem = '7MB'", "SET statement_timeout = 0"}})
    local connecting = conn:connect()
    local fs = {
      conn:execute("SELECT current_setting('search_path')"),
      conn:execute("SELECT $1::int", {2}),
      conn:execute("SELECT 3; SELECT current_setting('work_mem')"),
      conn:execute("COPY (SELECT 1) TO STDOUT"),
      conn:execute("SELECT $1::int", {5}),
      conn:transaction({"SELECT 6", {"SELECT $1::int", {7}}}),
      conn:execute("COPY pg_class FROM STDIN"),
      conn:execute("SET work_mem = '9MB'; SELECT 8"),
      conn:execute("SHOW work_mem"),
    }
    connecting:await()
    H.close_after(conn, app, function()
      assert.equal("pg_catalog, public", fs[1]:await():fetchone()[1])
      assert.equal(2, fs[2]:await():fetchone()[1])
      assert.equal("7MB", fs[3]:await():fetchone()[1])
      assert_kind("NotSupportedError", failure(fs[4]))
      assert.equal(5, fs[5]:await():fetchone()[1])
      assert.equal(7, fs[6]:await()[2]:fetchone()[1])
      assert_kind("NotSupportedError", failure(fs[7]))
      assert.equal(8, fs[8]:await():fetchone()[1])
      assert.equal("9MB", fs[9]:await():fetchone()[1])
      assert.equal("idle", conn.transaction_status)
    end)
  end)

  it("10 MB parameters inside a pipeline and a transaction, also through a proxy that stalls", function()
    local P = require "tcproxy_helper"
    local proxy = P.start{}
    local dsn, app = H.app_dsn("padv_big")
    dsn = proxy.dsn:gsub("application_name=%S+", "") .. " application_name=" .. app
    local conn = momoko.connect(dsn, {pipeline = true}):await()
    local big = string.rep("abcdefghij", 1024 * 1024)
    local md5 = H.psql("SELECT md5(repeat('abcdefghij', 1048576))")
    H.close_after(conn, app, function()
      for round = 1, 2 do
        local fs = {}
        for i = 1, 20 do
          if i % 10 == 5 then
            fs[i] = conn:execute("SELECT length($1::text), md5($1::text)", {big})
          else
            fs[i] = conn:execute("SELECT $1::int", {i})
          end
        end
        local tx = conn:transaction({{"SELECT length($1::text)", {big}}, {"SELECT length($1::text)", {big .. "x"}}})
        if round == 2 then
          proxy:cmd("stall on")
          momoko.sleep(200):await()
          proxy:cmd("stall off")
        end
        for i = 1, 20 do
          local row = fs[i]:await():fetchone()
          if i % 10 == 5 then
            assert.same({#big, md5}, row)
          else
            assert.equal(i, row[1])
          end
        end
        local curs = tx:await()
        assert.equal(#big, curs[1]:fetchone()[1])
        assert.equal(#big + 1, curs[2]:fetchone()[1])
      end
    end)
    proxy:stop()
  end)
end)

describe("pipeline adversarial: statement cache churn and failed blocks", function()
  it("statement_cache_size = 1, three statements 500 deep (taking turns, and in pairs): right results, at most 1 prepared after", function()
    local conn, app = connect({statement_cache_size = 1})
    H.close_after(conn, app, function()
      local sqls = {"SELECT $1::int + 1", "SELECT $1::int * 2", "SELECT $1::int - 3"}
      local function expect(k, v) return k == 1 and v + 1 or k == 2 and v * 2 or v - 3 end
      for _, pairs_of in ipairs({1, 2}) do
        local fs, ks = {}, {}
        for i = 1, 500 do
          ks[i] = ((i // pairs_of) % 3) + 1
          fs[i] = conn:execute(sqls[ks[i]], {i})
        end
        for i = 1, 500 do assert.equal(expect(ks[i], i), fs[i]:await():fetchone()[1]) end
        momoko.sleep(20):await()
        assert.is_true(prepared(conn) <= 1)
      end
    end)
  end)

  it("auto_rollback = false failing in a pipeline: the block stays failed, requests behind it get 25P02, as without pipeline", function()
    for _, pipe in ipairs({false, true}) do
      local conn, app = connect({pipeline = pipe})
      H.close_after(conn, app, function()
        local sql = "SELECT $1::int + 100"
        for i = 1, 2 do conn:execute(sql, {i}):await() end -- prepared now
        local tx = conn:transaction({{"SELECT $1::int", {1}}, "SELECT 1/0", {"SELECT $1::int", {3}}},
          {auto_rollback = false})
        local cached = conn:execute(sql, {3})
        local fresh = conn:execute("SELECT $1::int * 7", {4})
        local nested = conn:transaction({"SELECT 4"})
        local ends = count_ends({tx, cached, fresh, nested})
        assert_kind("DataError", failure(tx))
        for _, f in ipairs({cached, fresh, nested}) do
          local err = failure(f)
          assert.equal("25P02", err.sqlstate, "pipeline " .. tostring(pipe))
        end
        assert.equal("inerror", conn.transaction_status)
        conn:execute("ROLLBACK"):await()
        assert.equal("idle", conn.transaction_status)
        assert.equal(103, conn:execute(sql, {3}):await():fetchone()[1])
        assert.equal(28, conn:execute("SELECT $1::int * 7", {4}):await():fetchone()[1])
        assert.equal(28, conn:execute("SELECT $1::int * 7", {4}):await():fetchone()[1])
        momoko.sleep(10):await()
        assert.same({1, 1, 1, 1}, ends)
        assert.equal(2, prepared(conn))
      end)
    end
  end)
end)
