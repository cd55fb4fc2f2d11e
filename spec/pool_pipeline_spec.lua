-- API §6 "Pipelining in the pool": with pipeline = true, a request that finds no free
-- connection joins the least loaded busy one (at most pipeline_depth requests on it)
-- instead of waiting; growth to max_size comes first; transaction(), getconn and
-- requests that open a transaction take a connection of their own; a connection that
-- dies with several requests on it ends each of them exactly once, replayed or failed
-- on its own. Without pipeline, requests wait as before.
--
-- These specs hold on today's request engine (requests on one connection run one after
-- the other) and on the pipelined one (they are in flight together): they count
-- placement (stats, backends), results and server state, never timings.
local momoko = require "momoko"
local H = require "helper"

local SLEEP = "SELECT pg_sleep(0.1), $1::int, pg_backend_pid()"

local function new_pool(opts)
  local dsn, app = H.app_dsn("ppl")
  opts.dsn = dsn
  local pool = momoko.Pool(opts)
  assert.equal(pool, pool:connect():await())
  assert.equal(opts.size, pool:stats().free)
  return pool, app
end

local function finish(pool, app)
  pool:close()
  assert.is_true(H.no_backends(app), "backends of " .. app .. " left")
end

-- Issues n requests of SQL with values 1..n, each with a done callback that records,
-- in completion order, its index and what stats() said then. Returns the futures and
-- the record.
local function issue(pool, n, sql)
  local fs, log = {}, {}
  for i = 1, n do
    fs[i] = pool:execute(sql or SLEEP, {i})
    fs[i]:add_done_callback(function(f)
      log[#log + 1] = {i = i, waiting = pool:stats().waiting, ok = f:error() == nil}
    end)
  end
  return fs, log
end

-- Awaits every future (each must succeed): returns pid -> the indexes run on that
-- backend, after checking each result carries its own value.
local function by_backend(fs)
  local pids = {}
  for i, f in ipairs(fs) do
    local row = f:await():fetchone()
    assert.equal(i, row[2])
    pids[row[3]] = pids[row[3]] or {}
    table.insert(pids[row[3]], i)
  end
  return pids
end

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("pool pipelining", function()
  it("puts requests on busy connections instead of queueing them, least loaded first", function()
    local pool, app = new_pool{size = 2, pipeline = true}
    local fs, log = issue(pool, 20)
    local s = pool:stats()
    assert.equal(0, s.waiting)
    assert.equal(2, s.busy)
    assert.equal(0, s.free)
    assert.equal(2, s.size)
    local pids = by_backend(fs)
    -- both connections of the pool, ten requests each (never more than pipeline_depth)
    assert.same(H.pids_of(app), keys(pids))
    for _, list in pairs(pids) do assert.equal(10, #list) end
    -- each completed once; those on one connection in the order they were sent
    assert.equal(20, #log)
    local done_at = {}
    for n, e in ipairs(log) do
      assert.is_nil(done_at[e.i])
      assert.is_true(e.ok)
      assert.equal(0, e.waiting)
      done_at[e.i] = n
    end
    for _, list in pairs(pids) do
      for k = 2, #list do assert.is_true(done_at[list[k - 1]] < done_at[list[k]]) end
    end
    assert.equal(2, H.backends(app)) -- no connection was opened for them
    s = pool:stats()
    assert.equal(2, s.free)
    assert.equal(20, s.acquired)
    finish(pool, app)
  end)

  it("keeps each result with its own request in every coroutine", function()
    local pool, app = new_pool{size = 2, pipeline = true}
    local function worker(c)
      local fs = {}
      for k = 1, 5 do fs[k] = pool:execute("SELECT pg_sleep(0.02), $1::int", {c * 100 + k}) end
      local got = {}
      for k = 1, 5 do got[k] = fs[k]:await():fetchone()[2] end
      -- and again, each awaited before the next
      for k = 6, 8 do got[k] = pool:execute("SELECT $1::int", {c * 100 + k}):await():fetchone()[1] end
      return got
    end
    local ws = {}
    for c = 1, 4 do ws[c] = momoko.spawn(worker, c) end
    assert.equal(0, pool:stats().waiting)
    for c, got in ipairs(momoko.all(ws):await()) do
      assert.same({c * 100 + 1, c * 100 + 2, c * 100 + 3, c * 100 + 4, c * 100 + 5,
                   c * 100 + 6, c * 100 + 7, c * 100 + 8}, got)
    end
    finish(pool, app)
  end)

  it("queues what finds every connection at pipeline_depth, one joining per completion", function()
    local pool, app = new_pool{size = 2, pipeline = true, pipeline_depth = 3}
    local fs, log = issue(pool, 20)
    local s = pool:stats()
    assert.equal(14, s.waiting) -- 3 on each connection
    assert.equal(2, s.busy)
    local pids = by_backend(fs)
    assert.same(H.pids_of(app), keys(pids))
    assert.equal(20, #pids[keys(pids)[1]] + #pids[keys(pids)[2]])
    -- every completion makes room for the oldest waiter, at once
    assert.equal(20, #log)
    for n, e in ipairs(log) do assert.equal(math.max(0, 14 - n), e.waiting) end
    -- waiters went in FIFO order: the first six ran first, then 7, 8, ... in turn
    local first = {}
    for n = 1, 6 do first[log[n].i] = true end
    for i = 1, 6 do assert.is_true(first[i] ~= nil, "request " .. i .. " among the first six") end
    assert.equal(2, H.backends(app))
    finish(pool, app)
  end)

  it("queues requests on busy connections without pipeline, as before", function()
    local pool, app = new_pool{size = 2}
    local fs = issue(pool, 20, "SELECT pg_sleep(0.01), $1::int, pg_backend_pid()")
    assert.equal(18, pool:stats().waiting)
    local pids = by_backend(fs)
    assert.same(H.pids_of(app), keys(pids))
    finish(pool, app)
  end)

  it("grows to max_size before it stacks", function()
    local pool, app = new_pool{size = 1, max_size = 2, pipeline = true}
    local fs = issue(pool, 4, "SELECT pg_sleep(0.2), $1::int, pg_backend_pid()")
    local s = pool:stats()
    -- the second waits for the connection opened for it; the others join the first
    assert.equal(1, s.waiting)
    assert.equal(1, s.connecting)
    local pids = by_backend(fs)
    assert.equal(2, #keys(pids))
    assert.equal(2, H.backends(app))
    finish(pool, app)
  end)

  it("stacks requests past max_waiting (they do not wait)", function()
    local pool, app = new_pool{size = 1, pipeline = true, max_waiting = 0}
    local fs = issue(pool, 5, "SELECT pg_sleep(0.01), $1::int, pg_backend_pid()")
    assert.equal(0, pool:stats().waiting)
    assert.equal(1, #keys(by_backend(fs)))
    -- at pipeline_depth a request would wait: refused
    local deep, dapp = new_pool{size = 1, pipeline = true, max_waiting = 0, pipeline_depth = 2}
    local ok = issue(deep, 2, "SELECT pg_sleep(0.05), $1::int, pg_backend_pid()")
    local err = H.failure(deep:execute("SELECT 1"))
    H.assert_kind("PoolError", err)
    assert.matches("max_waiting", err.message)
    assert.equal(1, #keys(by_backend(ok)))
    finish(deep, dapp)
    finish(pool, app)
  end)

  it("gives a transaction a connection of its own, and stacks nothing onto it", function()
    local tbl = H.scratch_table("ppl_tx", "v int")
    local pool, app = new_pool{size = 2, pipeline = true}
    -- both connections busy: the transaction waits for one to be free, and what comes
    -- after it waits behind it (nothing overtakes it, so it cannot starve)
    local fs = issue(pool, 4, "SELECT pg_sleep(0.1), $1::int, pg_backend_pid()")
    assert.equal(0, pool:stats().waiting)
    local t = pool:transaction({{"INSERT INTO " .. tbl .. " (v) VALUES ($1)", {7}},
                                "SELECT pg_backend_pid(), txid_current()"})
    assert.equal(1, pool:stats().waiting)
    local after = pool:execute("SELECT pg_backend_pid(), $1::int", {5})
    assert.equal(2, pool:stats().waiting)
    by_backend(fs)
    local res = t:await()
    assert.equal(1, res[1].rowcount)
    assert.equal(5, after:await():fetchone()[2])
    assert.equal("7", H.psql("SELECT string_agg(v::text, ',') FROM " .. tbl))
    -- a running transaction takes no company: the next requests wait for a free one
    local one, oapp = new_pool{size = 1, pipeline = true}
    local tx = one:transaction({"SELECT pg_sleep(0.1)", {"INSERT INTO " .. tbl .. " (v) VALUES ($1)", {8}}})
    local later = issue(one, 3, "SELECT 0, $1::int, pg_backend_pid()")
    assert.equal(3, one:stats().waiting)
    assert.equal(2, #tx:await())
    assert.equal(1, #keys(by_backend(later)))
    assert.equal("7,8", H.psql("SELECT string_agg(v::text, ',' ORDER BY v) FROM " .. tbl))
    finish(one, oapp)
    finish(pool, app)
    H.drop_table(tbl)
  end)

  it("runs a request that opens a transaction alone, so that nothing joins it", function()
    local tbl = H.scratch_table("ppl_begin", "v int")
    local pool, app = new_pool{size = 1, pipeline = true}
    -- BEGIN on a pool leaves a transaction that the pool rolls back when the
    -- connection comes back: a request stacked behind it would be rolled back with it
    local b = pool:execute("  /* x */ begin isolation level read committed")
    local ins = pool:execute("INSERT INTO " .. tbl .. " (v) VALUES ($1)", {1})
    assert.equal(1, pool:stats().waiting)
    b:await()
    assert.equal(1, ins:await().rowcount)
    assert.equal("1", H.psql("SELECT count(*) FROM " .. tbl))
    -- start transaction alike; a word that only starts with one of them does not count
    local st = pool:execute("START TRANSACTION")
    local sel = pool:execute("SELECT 1")
    assert.equal(1, pool:stats().waiting)
    st:await()
    sel:await()
    local s1 = pool:execute("SELECT pg_sleep(0.05)")
    local bad = pool:execute("beginning")
    assert.equal(0, pool:stats().waiting)
    s1:await()
    H.assert_kind("ProgrammingError", H.failure(bad))
    finish(pool, app)
    H.drop_table(tbl)
  end)

  it("gives getconn a connection of its own", function()
    local pool, app = new_pool{size = 1, pipeline = true}
    local fs = issue(pool, 2, "SELECT pg_sleep(0.1), $1::int, pg_backend_pid()")
    local g = pool:getconn{ping = false}
    assert.is_false(g:done())
    assert.equal(1, pool:stats().waiting)
    by_backend(fs)
    local conn = g:await()
    -- while it is lent, pool requests wait: nothing joins a reserved connection
    local f = pool:execute("SELECT $1::int", {3})
    assert.equal(1, pool:stats().waiting)
    assert.equal(1, conn:execute("SELECT 1"):await():fetchone()[1])
    pool:putconn(conn)
    assert.equal(3, f:await():fetchone()[1])
    finish(pool, app)
  end)

  describe("a connection killed with several requests on it", function()
    local tbl

    before_each(function() tbl = H.scratch_table("ppl_kill", "v int") end)
    after_each(function() H.drop_table(tbl) end)

    local function rows()
      return tonumber(H.psql("SELECT count(*) FROM " .. tbl)),
             tonumber(H.psql("SELECT count(DISTINCT v) FROM " .. tbl))
    end

    -- One backend of app running the INSERTs (there are two: H.running_pid wants one).
    local function running_pid(app)
      local pid
      assert(H.wait_until(function()
        pid = tonumber(H.psql("SELECT min(pid) FROM pg_stat_activity WHERE application_name = '" .. app ..
                              "' AND state = 'active' AND query LIKE 'INSERT INTO ppl_kill%'"))
        return pid ~= nil
      end, 5000), "no backend of " .. app .. " runs the INSERTs")
      return pid
    end

    -- Ten INSERTs on a pool of two (five on each connection), one backend killed while
    -- they run. Returns pool, app and counts: ok (successes, less those that ended on the
    -- victim before the kill), errors, at_death (requests on the victim when it died).
    local function kill_one(retry)
      local pool, app = new_pool{size = 2, pipeline = true, retry = retry}
      local sql = "INSERT INTO " .. tbl .. " (v) SELECT $1::int FROM pg_sleep(0.4) RETURNING v, 0, pg_backend_pid()"
      local fs, ends = {}, {}
      for i = 1, 10 do
        fs[i] = pool:execute(sql, {i})
        ends[i] = 0
        fs[i]:add_done_callback(function() ends[i] = ends[i] + 1 end)
      end
      assert.equal(0, pool:stats().waiting)
      local victim = running_pid(app)
      assert.equal("t", H.psql("SELECT pg_terminate_backend(" .. victim .. ")"))
      -- none hangs
      assert.is_true(H.wait_until(function()
        for i = 1, 10 do if not fs[i]:done() then return false end end
        return true
      end, 10000), "a request never ended")
      local ok, errors, on_victim = 0, {}, 0
      for i = 1, 10 do
        assert.equal(1, ends[i], "request " .. i .. " ended " .. ends[i] .. " times")
        local e = fs[i]:error()
        if e then
          H.assert_kind("OperationalError", e)
          errors[#errors + 1] = e
        else
          local row = fs[i]:result():fetchone()
          assert.equal(i, row[1])
          if row[3] == victim then on_victim = on_victim + 1 end -- it ended before the kill
          ok = ok + 1
        end
      end
      assert.equal(10, ok + #errors)
      -- each success ran once, each failure not at all (rolled back or never sent)
      local n, distinct = rows()
      assert.equal(ok, n)
      assert.equal(n, distinct)
      -- the pool goes back to its size
      assert.is_true(H.wait_until(function()
        local s = pool:stats()
        return s.size == 2 and s.free == 2 and s.connecting == 0 and H.backends(app) == 2
      end, 5000))
      assert.equal(1, pool:stats().reconnects)
      -- five went to each connection; those of the victim that ended before the kill
      -- do not count
      local at_death = 5 - on_victim
      assert.is_true(at_death >= 2, "only " .. at_death .. " requests were on the victim when it died")
      return pool, app, {ok = ok - on_victim, errors = #errors, at_death = at_death}
    end

    it("ends each exactly once, replayed on its own may_have_run (retry = 'safe')", function()
      local pool, app, n = kill_one("safe")
      -- the five on the other connection succeed; of the victim's, those that cannot
      -- have run were replayed (and succeeded), the others failed
      assert.equal(n.at_death, n.ok - 5 + n.errors)
      assert.equal(n.ok - 5, pool:stats().retries)
      finish(pool, app)
    end)

    it("ends each exactly once, none replayed (retry = 'never')", function()
      local pool, app, n = kill_one("never")
      assert.equal(5, n.ok)
      assert.equal(n.at_death, n.errors)
      assert.equal(0, pool:stats().retries)
      finish(pool, app)
    end)
  end)
end)
