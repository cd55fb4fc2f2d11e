-- API §3 `pipeline = true`: requests queued on a connection go out together in libpq's
-- pipeline mode, each with a sync of its own, results matched in order; a transaction
-- is one group; cancel, timeout and a killed backend end each request exactly once.
local momoko = require "momoko"
local H = require "helper"
local P = require "tcproxy_helper"

local failure = H.failure

local count_ends = H.count_ends

local function connect(opts)
  return H.pipelined_connection(opts, "pipe")
end

-- A second connection holding the session advisory lock `key`, so that a statement
-- taking it blocks until release() (the unlock) runs.
local function hold_lock(key)
  local holder = momoko.connect(H.dsn):await()
  holder:execute("SELECT pg_advisory_lock(" .. key .. ")"):await()
  return function()
    holder:execute("SELECT pg_advisory_unlock(" .. key .. ")"):await()
    holder:close()
  end
end

-- Waits until a backend of app waits for an advisory lock.
local function wait_blocked(app)
  assert.is_true(H.wait_until(function()
    return H.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app ..
      "' AND wait_event_type = 'Lock' AND wait_event = 'advisory'") == "1"
  end, 5000), "no backend of " .. app .. " waits for the lock")
end

describe("pipeline = true", function()
  it("resolves 1,000 requests issued at once, each with its own value, in issue order", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local futures, order = {}, {}
      for i = 1, 1000 do
        futures[i] = conn:execute("SELECT $1::int AS i, repeat('x', $1::int % 7) AS s", {i})
        futures[i]:add_done_callback(function() order[#order + 1] = i end)
      end
      local ends = count_ends(futures)
      for i = 1, 1000 do
        local row = futures[i]:await():fetchone()
        assert.equal(i, row[1])
        assert.equal(string.rep("x", i % 7), row[2])
      end
      assert.equal(1000, #order)
      for i = 1, 1000 do
        assert.equal(i, order[i])
        assert.equal(1, ends[i])
      end
      assert.equal("idle", conn.transaction_status)
    end)
  end)

  it("sends queued requests while an earlier one still runs on the server (one round trip)", function()
    -- The first request blocks on a lock; what went up the wire meanwhile shows whether
    -- the nine behind it were sent without waiting for its answer.
    local pad = string.rep("p", 400)
    local function bytes_up_while_blocked(pipeline, key)
      local proxy = P.start{}
      local dsn, app = H.app_dsn("pipe_rt")
      dsn = proxy.dsn:gsub("application_name=%S+", "") .. " application_name=" .. app
      local conn = momoko.connect(dsn, {pipeline = pipeline, statement_cache_size = 0}):await()
      local release = hold_lock(key)
      local base = proxy:stats().bytes_up
      local futures = {conn:execute("SELECT pg_advisory_lock($1::bigint)", {key})}
      for i = 2, 10 do futures[i] = conn:execute("SELECT $1::int /* " .. pad .. " */", {i}) end
      wait_blocked(app)
      momoko.sleep(50):await() -- anything the client still had to send is sent by now
      local up = proxy:stats().bytes_up - base
      release()
      for i = 2, 10 do assert.equal(i, futures[i]:await():fetchone()[1]) end
      futures[1]:await()
      conn:close()
      proxy:stop()
      assert.is_true(H.no_backends(app))
      return up
    end
    local plain = bytes_up_while_blocked(false, 910001)
    local piped = bytes_up_while_blocked(true, 910002)
    assert.is_true(plain < #pad, "without pipeline only the first request went up: " .. plain)
    assert.is_true(piped > plain + 9 * #pad, "in a pipeline all ten went up: " .. piped .. " vs " .. plain)
  end)

  it("fails only the request that failed: the others around it succeed and commit", function()
    local conn, app = connect()
    local t = H.scratch_table("pipe_iso", "id int PRIMARY KEY")
    H.close_after(conn, app, function()
      local futures = {}
      for i = 1, 9 do
        if i == 5 then
          futures[i] = conn:execute("INSERT INTO " .. t .. " VALUES (1 / ($1::int - 5))", {i})
        else
          futures[i] = conn:execute("INSERT INTO " .. t .. " VALUES ($1)", {i})
        end
      end
      local ends = count_ends(futures)
      for i = 1, 9 do
        if i == 5 then
          H.assert_kind("DataError", failure(futures[i]))
        else
          assert.equal(1, futures[i]:await().rowcount)
        end
      end
      for i = 1, 9 do assert.equal(1, ends[i]) end
      assert.equal("1,2,3,4,6,7,8,9", H.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM " .. t))
      assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
    end)
    H.drop_table(t)
  end)

  it("runs a transaction as one group: all or nothing, rolled back on failure, requests behind it unaffected", function()
    local conn, app = connect()
    local t = H.scratch_table("pipe_tx", "id int PRIMARY KEY, v text")
    H.close_after(conn, app, function()
      local before = conn:execute("INSERT INTO " .. t .. " VALUES ($1, 'before')", {1})
      local bad = conn:transaction({
        {"INSERT INTO " .. t .. " VALUES ($1, 'tx')", {2}},
        {"INSERT INTO " .. t .. " VALUES ($1, 'tx')", {1}}, -- duplicate key
        {"INSERT INTO " .. t .. " VALUES ($1, 'tx')", {3}},
      })
      local after = conn:execute("INSERT INTO " .. t .. " VALUES ($1, 'after')", {4})
      local ends = count_ends({before, bad, after})
      assert.equal(1, before:await().rowcount)
      local err = failure(bad)
      -- the statement's own error, never the skipped commands' "pipeline aborted"
      H.assert_kind("IntegrityError", err)
      assert.equal("23505", err.sqlstate)
      assert.equal(1, after:await().rowcount)
      assert.same({1, 1, 1}, ends)
      assert.equal("1:before,4:after", H.psql("SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM " .. t))
      assert.equal("idle", conn.transaction_status)
      local curs = conn:transaction({
        {"INSERT INTO " .. t .. " VALUES ($1, 'ok')", {5}},
        "UPDATE " .. t .. " SET v = 'ok2' WHERE id = 5",
        {"SELECT v FROM " .. t .. " WHERE id = $1", {5}},
      }):await()
      assert.equal(3, #curs)
      assert.equal("INSERT 0 1", curs[1].statusmessage)
      assert.equal(1, curs[2].rowcount)
      assert.equal("ok2", curs[3]:fetchone()[1])
      assert.equal("idle", conn.transaction_status)
      assert.equal("ok2", H.psql("SELECT v FROM " .. t .. " WHERE id = 5"))
    end)
    H.drop_table(t)
  end)

  it("sends a whole transaction, COMMIT included, before its first answer", function()
    local proxy = P.start{}
    local dsn, app = H.app_dsn("pipe_txrt")
    dsn = proxy.dsn:gsub("application_name=%S+", "") .. " application_name=" .. app
    local conn = momoko.connect(dsn, {pipeline = true, statement_cache_size = 0}):await()
    local t = H.scratch_table("pipe_txrt", "id int")
    local release = hold_lock(910003)
    local base = proxy:stats().bytes_up
    local pad = string.rep("q", 300)
    local f = conn:transaction({
      {"SELECT pg_advisory_xact_lock($1::bigint)", {910003}},
      {"INSERT INTO " .. t .. " SELECT $1::int /* " .. pad .. " */", {1}},
      {"INSERT INTO " .. t .. " SELECT $1::int /* " .. pad .. " */", {2}},
    })
    wait_blocked(app)
    momoko.sleep(50):await()
    local up = proxy:stats().bytes_up - base
    release()
    assert.equal(3, #f:await())
    assert.is_true(up > 2 * #pad, "both inserts went up with the lock: " .. up)
    assert.equal("2", H.psql("SELECT count(*) FROM " .. t))
    conn:close()
    proxy:stop()
    H.drop_table(t)
    assert.is_true(H.no_backends(app))
  end)

  it("cancels the request it was asked for, also behind a running one", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local first = conn:execute("SELECT pg_sleep(0.3), $1::int", {1})
      local victim = conn:execute("SELECT pg_sleep(30), $1::int", {2})
      local last = conn:execute("SELECT $1::int", {3})
      local ends = count_ends({first, victim, last})
      H.running_pid(app, "pg_sleep(0.3)")
      assert.is_true(victim:cancel())
      assert.equal(1, first:await():fetchone()[2])
      H.assert_kind("QueryCanceledError", failure(victim))
      assert.equal(3, last:await():fetchone()[1])
      assert.same({1, 1, 1}, ends)
      assert.is_false(conn.closed)
      assert.equal(4, conn:execute("SELECT $1::int", {4}):await():fetchone()[1])
    end)
  end)

  it("runs again a request that a cancel meant for the one before it hit", function()
    -- The cancel of a fast request reaches the server after that request ended, while
    -- the next request of the pipeline runs: that one was not cancelled by anybody and
    -- is run again, once; it took no effect (it was rolled back with its sync).
    local conn, app = connect()
    local t = H.scratch_table("pipe_stray", "id int")
    H.close_after(conn, app, function()
      for round = 1, 5 do
        local fast = conn:execute("SELECT $1::int", {round})
        local next_one = conn:execute("INSERT INTO " .. t .. " SELECT $1::int FROM pg_sleep(0.3)", {round})
        fast:cancel()
        local ok, err = pcall(fast.await, fast)
        if not ok then H.assert_kind("QueryCanceledError", err) end
        assert.equal(1, next_one:await().rowcount)
      end
      assert.equal("1,2,3,4,5", H.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM " .. t))
    end)
    H.drop_table(t)
  end)

  it("times out the request whose timeout expired, not its neighbours", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      -- the timeout expires while the request waits behind the first: its cancel
      -- request goes once it runs, and cannot hit the first
      local first = conn:execute("SELECT pg_sleep(0.5), $1::int", {1})
      local slow = conn:execute("SELECT pg_sleep(30), $1::int", {2}, {timeout = 200})
      local last = conn:execute("SELECT $1::int", {3})
      local ends = count_ends({first, slow, last})
      assert.equal(1, first:await():fetchone()[2])
      local err = failure(slow)
      H.assert_kind("TimeoutError", err)
      assert.equal(3, last:await():fetchone()[1])
      assert.same({1, 1, 1}, ends)
      assert.is_false(conn.closed)
    end)
  end)

  it("fails every sent and queued request exactly once, typed, when the backend is killed mid-pipeline", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local futures = {conn:execute("SELECT pg_sleep(30), $1::int", {0})}
      for i = 1, 30 do futures[#futures + 1] = conn:execute("SELECT $1::int", {i}) end
      local ends = count_ends(futures)
      local pid = H.running_pid(app, "pg_sleep(30)")
      H.psql("SELECT pg_terminate_backend(" .. pid .. ")")
      for i, f in ipairs(futures) do
        local err = failure(f)
        assert.is_true(momoko.is(err, "OperationalError"), i .. ": " .. tostring(err))
      end
      momoko.sleep(20):await()
      for i = 1, #futures do assert.equal(1, ends[i]) end
      assert.is_true(conn.closed)
    end)
  end)

  it("drains the pipeline for SQL that cannot be pipelined (several statements, COPY) and goes on after it", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      local a = conn:execute("SELECT $1::int", {1})
      local multi = conn:execute("SELECT 2; SELECT 3 AS three")
      local copy = conn:execute("COPY (SELECT 1) TO STDOUT")
      local b = conn:execute("SELECT $1::int", {4})
      local c = conn:execute("SELECT 5")
      assert.equal(1, a:await():fetchone()[1])
      local cur = multi:await()
      assert.equal("three", cur.description[1].name)
      assert.equal(3, cur:fetchone()[1])
      H.assert_kind("NotSupportedError", failure(copy))
      assert.equal(4, b:await():fetchone()[1])
      assert.equal(5, c:await():fetchone()[1])
    end)
  end)

  it("keeps the FIFO with requests issued from inside done callbacks", function()
    local conn, app = connect()
    H.close_after(conn, app, function()
      -- two chains, each issuing its next request from the done callback of the last
      local got = {}
      local function chain(i, stop)
        conn:execute("SELECT $1::int", {i}):add_done_callback(function(done)
          got[#got + 1] = done:result():fetchone()[1]
          if i < stop then chain(i + 1, stop) end
        end)
      end
      chain(1, 50)
      chain(1001, 1050)
      assert.is_true(H.wait_until(function() return #got == 100 end, 10000))
      local a, b = {}, {}
      for _, v in ipairs(got) do
        if v > 1000 then b[#b + 1] = v - 1000 else a[#a + 1] = v end
      end
      for i = 1, 50 do
        assert.equal(i, a[i])
        assert.equal(i, b[i])
      end
    end)
  end)

  it("accepts only a boolean", function()
    local err = H.interface_error(momoko.Connection, H.dsn, {pipeline = "yes"})
    assert.matches("pipeline must be a boolean", err.message)
    err = H.interface_error(momoko.Pool, {dsn = H.dsn, pipeline_depth = 0})
    assert.matches("pipeline_depth", err.message)
  end)
end)
