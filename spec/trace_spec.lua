-- API §10: trace = fn(event) on a Connection and a Pool. Query events carry the SQL
-- text, never a parameter value; the pool reports connect, lost, reconnect, grow,
-- shrink, acquire_timeout and retry; a raising trace function goes to on_error and
-- later events still arrive.
local momoko = require "momoko"
local H = require "helper"

local SECRET = "s3cr3t-param-value-" .. math.random(1, 1e9)

-- A trace function recording every event, and the list it fills.
local function recorder()
  local events = {}
  return events, function(ev) events[#events + 1] = ev end
end

local function of_type(events, t)
  local out = {}
  for _, ev in ipairs(events) do
    if ev.type == t then out[#out + 1] = ev end
  end
  return out
end

-- Asserts that no field of any event holds s (or a string containing it).
local function never_contains(events, s)
  for _, ev in ipairs(events) do
    for k, v in pairs(ev) do
      assert.is_falsy(tostring(v):find(s, 1, true), "event field " .. k .. " holds it")
    end
  end
end

local function kill(pid)
  assert.equal("t", H.psql("SELECT pg_terminate_backend(" .. pid .. ")"))
end

describe("trace", function()
  local reported = H.collect_reports()

  it("must be a function or nil", function()
    local err = H.interface_error(momoko.Connection, H.dsn, {trace = 42})
    assert.matches("trace must be a function", err.message)
    err = H.interface_error(momoko.Pool, {dsn = H.dsn, trace = "yes"})
    assert.matches("Pool: trace must be a function", err.message)
  end)

  it("reports a Connection's connect and each query: sql text, ms, rows, never parameters", function()
    local events, trace = recorder()
    local conn = momoko.Connection(H.dsn, {trace = trace})
    conn:connect():await()
    assert.equal(1, #events)
    assert.equal("connect", events[1].type)
    assert.is_true(events[1].ms >= 0)
    assert.is_nil(events[1].error)
    local cur = conn:execute("SELECT $1::text AS v FROM generate_series(1, 3)", {SECRET}):await()
    assert.equal(SECRET, cur:fetchone()[1])
    conn:execute("SELECT 1 WHERE $1::text = 'x'", {SECRET}):await()
    local q = of_type(events, "query")
    assert.equal(2, #q)
    assert.equal("SELECT $1::text AS v FROM generate_series(1, 3)", q[1].sql)
    assert.equal(3, q[1].rows)
    assert.equal(0, q[2].rows)
    assert.equal("float", math.type(q[1].ms))
    assert.is_true(q[1].ms >= 0)
    assert.is_nil(q[1].error)
    assert.equal(H.dsn:match("host=(%S+)"), q[1].host)
    never_contains(events, SECRET)
    conn:close()
  end)

  it("reports a failing query with its error, callproc, ping and a transaction", function()
    local events, trace = recorder()
    local conn = momoko.Connection(H.dsn, {trace = trace})
    conn:connect():await()
    local err = H.failure(conn:execute("SELECT * FROM no_such_table_trace WHERE x = $1", {SECRET}))
    H.assert_kind("ProgrammingError", err)
    conn:callproc("lower", {SECRET}):await()
    conn:ping():await()
    conn:transaction{"SELECT 1", {"SELECT $1::text", {SECRET}}}:await()
    local q = of_type(events, "query")
    assert.equal(4, #q)
    assert.equal("SELECT * FROM no_such_table_trace WHERE x = $1", q[1].sql)
    H.assert_kind("ProgrammingError", q[1].error)
    assert.equal("42P01", q[1].error.sqlstate)
    assert.is_nil(q[1].rows)
    assert.equal("SELECT * FROM lower($1)", q[2].sql)
    assert.equal(1, q[2].rows)
    assert.equal("SELECT 1", q[3].sql)
    assert.equal("SELECT 1; SELECT $1::text", q[4].sql)
    assert.equal(2, q[4].rows)
    never_contains(events, SECRET)
    conn:close()
  end)

  it("reports a Connection's failed connect with its error, and its lost connection", function()
    local events, trace = recorder()
    local bad = momoko.Connection("host=127.0.0.1 port=" .. H.closed_port() .. " dbname=x connect_timeout=2",
                                  {trace = trace})
    H.assert_kind("OperationalError", H.failure(bad:connect()))
    assert.equal(1, #events)
    assert.equal("connect", events[1].type)
    H.assert_kind("OperationalError", events[1].error)
    assert.equal("127.0.0.1", events[1].host)
    local dsn, app = H.app_dsn("trace_conn_lost")
    local conn = momoko.Connection(dsn, {trace = trace})
    conn:connect():await()
    kill(conn.pid)
    assert.is_true(H.wait_until(function() return #of_type(events, "lost") == 1 end, 5000))
    assert.is_true(conn.closed)
    assert.equal(2, #of_type(events, "connect"))
    assert.is_true(H.no_backends(app))
  end)

  it("runs after the future is settled; a raising one reaches on_error and later events still arrive", function()
    local n, seen_done = 0, nil
    local f
    local conn = momoko.Connection(H.dsn, {trace = function(ev)
      if ev.type ~= "query" then return end
      n = n + 1
      seen_done = f and f:done()
      if n == 1 then error("trace boom") end
      if n == 2 then coroutine.yield() end -- no coroutine to yield from: on_error too
    end})
    conn:connect():await()
    f = conn:execute("SELECT 1")
    assert.equal(1, f:await():fetchone()[1])
    assert.is_true(seen_done)
    conn:execute("SELECT 2"):await()
    conn:execute("SELECT 3"):await()
    assert.equal(3, n)
    assert.equal(2, #reported)
    assert.matches("trace boom", tostring(reported[1]))
    assert.matches("yield", tostring(reported[2]))
    conn:close()
  end)

  it("is not called, nor anything built for it, without a trace function", function()
    -- every function call (Lua and C) during one execute + await, counted by a hook
    local function calls_during(conn)
      local n = 0
      debug.sethook(function() n = n + 1 end, "c")
      conn:execute("SELECT 1"):await()
      debug.sethook()
      return n
    end
    local noop_calls = 0
    local plain = momoko.Connection(H.dsn)
    local traced = momoko.Connection(H.dsn, {trace = function() noop_calls = noop_calls + 1 end})
    plain:connect():await()
    traced:connect():await()
    noop_calls = 0
    calls_during(plain) -- warm both up (type lookups, caches)
    calls_during(traced)
    local without, with = calls_during(plain), calls_during(traced)
    assert.equal(2, noop_calls)
    assert.is_true(with > without, with .. " vs " .. without)
    plain:close()
    traced:close()
  end)

  describe("a Pool", function()
    it("reports connect, grow and its queries (size 1, max_size 2)", function()
      local events, trace = recorder()
      local dsn, app = H.app_dsn("trace_grow")
      local pool = momoko.Pool{dsn = dsn, size = 1, max_size = 2, trace = trace}
      pool:connect():await()
      assert.equal(1, #of_type(events, "connect"))
      local a = pool:execute("SELECT pg_sleep(0.2)")
      local b = pool:execute("SELECT $1::text", {SECRET})
      a:await()
      b:await()
      local g = of_type(events, "grow")
      assert.equal(1, #g)
      assert.is_true(g[1].ms >= 0)
      assert.equal(2, #of_type(events, "connect"))
      assert.equal(2, H.backends(app))
      local q = of_type(events, "query")
      assert.equal(2, #q)
      never_contains(events, SECRET)
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("reports shrink", function()
      local events, trace = recorder()
      local dsn, app = H.app_dsn("trace_shrink")
      local pool = momoko.Pool{dsn = dsn, size = 1, max_size = 2, auto_shrink = true, shrink_delay = 0,
                               shrink_period = 50, trace = trace}
      pool:connect():await()
      local a, b = pool:execute("SELECT pg_sleep(0.1)"), pool:execute("SELECT 1")
      a:await()
      b:await()
      assert.is_true(H.wait_until(function() return #of_type(events, "shrink") == 1 end, 3000))
      assert.is_true(H.wait_until(function() return H.backends(app) == 1 end, 3000))
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("reports lost then reconnect when an idle backend is killed", function()
      local events, trace = recorder()
      local dsn, app = H.app_dsn("trace_lost")
      local pool = momoko.Pool{dsn = dsn, size = 1, reconnect_interval = 50, trace = trace}
      pool:connect():await()
      local pid = H.psql("SELECT pid FROM pg_stat_activity WHERE application_name = '" .. app .. "'")
      kill(pid)
      assert.is_true(H.wait_until(function() return #of_type(events, "reconnect") == 1 end, 5000))
      local order = {}
      for _, ev in ipairs(events) do
        if ev.type == "lost" or ev.type == "reconnect" then order[#order + 1] = ev.type end
      end
      assert.same({"lost", "reconnect"}, order)
      assert.is_true(of_type(events, "reconnect")[1].ms >= 0)
      assert.equal(1, pool:stats().reconnects)
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("reports retry (retry = 'safe', a statement killed before any result), with its error", function()
      local events, trace = recorder()
      local dsn, app = H.app_dsn("trace_retry")
      local pool = momoko.Pool{dsn = dsn, size = 1, trace = trace}
      pool:connect():await()
      local f = pool:execute("SELECT pg_sleep(1)")
      kill(H.running_pid(app, "pg_sleep"))
      f:await()
      local r = of_type(events, "retry")
      assert.equal(1, #r)
      H.assert_kind("OperationalError", r[1].error)
      assert.equal("57P01", r[1].error.sqlstate)
      assert.equal(1, #of_type(events, "lost"))
      assert.equal(1, pool:stats().retries)
      local q = of_type(events, "query")
      assert.equal(1, #q) -- one request, one event
      assert.is_nil(q[1].error)
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("reports acquire_timeout", function()
      local events, trace = recorder()
      local dsn, app = H.app_dsn("trace_timeout")
      local pool = momoko.Pool{dsn = dsn, size = 1, acquire_timeout = 50, trace = trace}
      pool:connect():await()
      local a = pool:execute("SELECT pg_sleep(0.3)")
      local err = H.failure(pool:execute("SELECT 1"))
      H.assert_kind("TimeoutError", err)
      a:await()
      local t = of_type(events, "acquire_timeout")
      assert.equal(1, #t)
      assert.equal(50, t[1].ms)
      H.assert_kind("TimeoutError", t[1].error)
      pool:close()
      assert.is_true(H.no_backends(app))
    end)

    it("a raising trace function reaches on_error and pool events still arrive", function()
      local n = 0
      local dsn, app = H.app_dsn("trace_raise")
      local pool = momoko.Pool{dsn = dsn, size = 2, trace = function(ev)
        if ev.type == "connect" then n = n + 1; error("connect trace " .. n) end
      end}
      pool:connect():await()
      assert.equal(2, n)
      assert.equal(2, #reported)
      assert.matches("connect trace 1", tostring(reported[1]))
      assert.matches("connect trace 2", tostring(reported[2]))
      assert.equal(1, pool:execute("SELECT 1"):await():fetchone()[1])
      pool:close()
      assert.is_true(H.no_backends(app))
    end)
  end)
end)
