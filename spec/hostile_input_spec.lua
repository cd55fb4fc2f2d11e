-- Issue 13, "bad input": a table of hostile inputs, each row its own spec. A row says
-- what is passed and where, and what must come of it:
--   raises = {kind, message}  the call itself raises this momoko error, before anything
--                             is sent (message exact, as docs/api.md and errors.md give it)
--   fails  = {kind, message}  the call returns a future that fails with it (message: a
--                             fragment, since the server words some of them)
--   result = function(ctx, ...) for input that is legal but extreme: asserts the outcome
--                             (and the server state) the call's values give
--   raw_error = text           the call's future raises a value of the caller's own (a
--                             factory's error), unchanged: its tostring contains the text
-- and optionally check(ctx) (more server-side checks), reports (patterns, in order, of
-- what must reach momoko.on_error; nothing may, by default) and in_coroutine (run the
-- call in a coroutine of momoko.spawn rather than on the main thread).
-- After every row the shared Connection and Pool must still work and hold nothing: the
-- connection answers and is idle, the pool has nothing waiting or busy, and each has
-- exactly its own backends in pg_stat_activity. A row that makes objects of its own
-- closes them and checks that their backends are gone.
local momoko = require "momoko"
local H = require "helper"

local NAN, HUGE = 0 / 0, math.huge

-- A connection of a row's own, on a fresh application_name; returns it and the name.
local function own_conn(prefix, opts)
  local dsn, app = H.app_dsn(prefix)
  return momoko.connect(dsn, opts):await(), app
end

-- Closes c and asserts that no backend of app is left.
local function gone(c, app)
  c:close()
  assert.is_true(H.no_backends(app))
end

-- The first value of row 1 of sql on c.
local function one(c, sql, params)
  return c:execute(sql, params):await():fetchone()[1]
end

local function fs(n, c) return string.rep(c or "f", n) end

local function row_of(n)
  local r = {}
  for i = 1, n do r[i] = i end
  return r
end

-- A Pool of its own, connected; returns it and its application_name.
local function own_pool(prefix, opts)
  local dsn, app = H.app_dsn(prefix)
  opts.dsn = dsn
  local p = momoko.Pool(opts)
  p:connect():await()
  return p, app
end

local rows = {
  ---------------------------------------------------------------- Connection options
  {"dsn missing", "momoko.Connection{}", function() return momoko.Connection{} end,
    raises = {"InterfaceError", "Connection: dsn must be a string"}},
  {"dsn a number", "momoko.Connection(dsn)", function() return momoko.Connection(5432) end,
    raises = {"InterfaceError", "Connection: a dsn string or an options table expected, got number"}},
  {"dsn that is not a DSN", "momoko.Connection(dsn)", function() return momoko.Connection("this is not a dsn") end,
    raises = {"InterfaceError", 'Connection: invalid dsn: missing "=" after "this" in connection info string'}},
  {"dsn of 64 KB of one word", "momoko.Connection(dsn)", function() return momoko.Connection(fs(65536, "x")) end,
    raises = {"InterfaceError", 'Connection: invalid dsn: missing "=" after "' .. fs(65536, "x") .. '" in connection info string'}},
  {"dsn with an unknown keyword", "momoko.Connection(dsn)", function() return momoko.Connection("host=127.0.0.1 bogus=1") end,
    raises = {"InterfaceError", 'Connection: invalid dsn: invalid connection option "bogus"'}},
  {"dsn URI cut short", "momoko.Connection(dsn)", function() return momoko.Connection("postgresql://[::1") end,
    raises = {"InterfaceError", 'Connection: invalid dsn: end of string reached when looking for matching "]" in IPv6 host address in URI: "postgresql://[::1"'}},
  {"dsn with a NUL byte (libpq would read up to it only)", "momoko.Connection(dsn)",
    function() return momoko.Connection(H.dsn .. "\0 port=1") end,
    raises = {"InterfaceError", "Connection: dsn contains a NUL byte"}},
  {"dsn with a NUL byte, in opts", "momoko.connect{dsn}", function() return momoko.connect{dsn = "port=1\0" .. H.dsn} end,
    raises = {"InterfaceError", "Connection: dsn contains a NUL byte"}},
  {"an unknown option", "momoko.Connection(dsn, opts)", function() return momoko.Connection(H.dsn, {bogus = 1}) end,
    raises = {"InterfaceError", "Connection: unknown option 'bogus'"}},
  {"an option misspelt", "momoko.Connection(dsn, opts)", function() return momoko.Connection(H.dsn, {pipelines = true}) end,
    raises = {"InterfaceError", "Connection: unknown option 'pipelines'"}},
  {"setsession a string", "Connection{setsession}", function() return momoko.Connection(H.dsn, {setsession = "SET x = 1"}) end,
    raises = {"InterfaceError", "Connection: setsession must be an array of SQL strings"}},
  {"setsession item a number", "Connection{setsession}", function() return momoko.Connection(H.dsn, {setsession = {"SELECT 1", 2}}) end,
    raises = {"InterfaceError", "Connection: setsession[2] must be a string"}},
  {"setsession item with a NUL byte (the rest would be dropped)", "Connection{setsession}",
    function() return momoko.Connection(H.dsn, {setsession = {"SET application_name = 'a'\0; SELECT 1/0"}}) end,
    raises = {"InterfaceError", "Connection: setsession[1] contains a NUL byte"}},
  {"statement_cache_size -1", "Connection{statement_cache_size}", function() return momoko.Connection(H.dsn, {statement_cache_size = -1}) end,
    raises = {"InterfaceError", "Connection: statement_cache_size must be an integer from 0 to 100000"}},
  {"statement_cache_size NaN", "Connection{statement_cache_size}", function() return momoko.Connection(H.dsn, {statement_cache_size = NAN}) end,
    raises = {"InterfaceError", "Connection: statement_cache_size must be an integer from 0 to 100000"}},
  {"statement_cache_size 2.5", "Connection{statement_cache_size}", function() return momoko.Connection(H.dsn, {statement_cache_size = 2.5}) end,
    raises = {"InterfaceError", "Connection: statement_cache_size must be an integer from 0 to 100000"}},
  {"statement_cache_size 100001", "Connection{statement_cache_size}", function() return momoko.Connection(H.dsn, {statement_cache_size = 100001}) end,
    raises = {"InterfaceError", "Connection: statement_cache_size must be an integer from 0 to 100000"}},
  {"statement_cache_size a string", "Connection{statement_cache_size}", function() return momoko.Connection(H.dsn, {statement_cache_size = "10"}) end,
    raises = {"InterfaceError", "Connection: statement_cache_size must be an integer from 0 to 100000"}},
  {"command_timeout -1", "Connection{command_timeout}", function() return momoko.Connection(H.dsn, {command_timeout = -1}) end,
    raises = {"InterfaceError", "Connection: command_timeout must be an integer from 0 to 2147483647"}},
  {"command_timeout 2^31", "Connection{command_timeout}", function() return momoko.Connection(H.dsn, {command_timeout = 2 ^ 31}) end,
    raises = {"InterfaceError", "Connection: command_timeout must be an integer from 0 to 2147483647"}},
  {"command_timeout inf", "Connection{command_timeout}", function() return momoko.Connection(H.dsn, {command_timeout = HUGE}) end,
    raises = {"InterfaceError", "Connection: command_timeout must be an integer from 0 to 2147483647"}},
  {"pipeline a string", "Connection{pipeline}", function() return momoko.Connection(H.dsn, {pipeline = "yes"}) end,
    raises = {"InterfaceError", "Connection: pipeline must be a boolean"}},
  {"pgbouncer 1", "Connection{pgbouncer}", function() return momoko.Connection(H.dsn, {pgbouncer = 1}) end,
    raises = {"InterfaceError", "Connection: pgbouncer must be a boolean"}},
  {"pgbouncer with a statement cache", "Connection{pgbouncer, statement_cache_size}",
    function() return momoko.Connection(H.dsn, {pgbouncer = true, statement_cache_size = 10}) end,
    raises = {"InterfaceError", "Connection: statement_cache_size must be 0 with pgbouncer = true (PgBouncer in transaction mode keeps no prepared statement between requests)"}},
  {"trace a table", "Connection{trace}", function() return momoko.Connection(H.dsn, {trace = {}}) end,
    raises = {"InterfaceError", "Connection: trace must be a function"}},
  {"trace a string", "Connection{trace}", function() return momoko.Connection(H.dsn, {trace = "print"}) end,
    raises = {"InterfaceError", "Connection: trace must be a function"}},
  {"cursor_factory an unknown name", "Connection{cursor_factory}", function() return momoko.Connection(H.dsn, {cursor_factory = "tuple"}) end,
    raises = {"InterfaceError", "Connection: cursor_factory must be momoko.cursors.array, momoko.cursors.dict or a function"}},
  {"connection_factory a number", "Connection{connection_factory}", function() return momoko.Connection(H.dsn, {connection_factory = 5}) end,
    raises = {"InterfaceError", "Connection: connection_factory must be a function"}},
  {"on_notice a number", "Connection{on_notice}", function() return momoko.Connection(H.dsn, {on_notice = 5}) end,
    raises = {"InterfaceError", "Connection: on_notice must be a function"}},
  {"loop a string", "Connection{loop}", function() return momoko.Connection(H.dsn, {loop = "default"}) end,
    raises = {"InterfaceError", "Connection: loop must be a uv_loop_t* light userdata"}},
  {"opts a string", "momoko.Connection(dsn, opts)", function() return momoko.Connection(H.dsn, "sslmode=require") end,
    raises = {"InterfaceError", "Connection: opts must be a table"}},

  ---------------------------------------------------------------- Pool options
  {"pipeline_depth = 0", "momoko.Pool{pipeline_depth}", function() return momoko.Pool{dsn = H.dsn, pipeline = true, pipeline_depth = 0} end,
    raises = {"InterfaceError", "Pool: pipeline_depth must be an integer from 1 to 100000"}},
  {"pipeline_depth -1", "momoko.Pool{pipeline_depth}", function() return momoko.Pool{dsn = H.dsn, pipeline = true, pipeline_depth = -1} end,
    raises = {"InterfaceError", "Pool: pipeline_depth must be an integer from 1 to 100000"}},
  {"pipeline_depth NaN", "momoko.Pool{pipeline_depth}", function() return momoko.Pool{dsn = H.dsn, pipeline = true, pipeline_depth = NAN} end,
    raises = {"InterfaceError", "Pool: pipeline_depth must be an integer from 1 to 100000"}},
  {"pipeline_depth 1.5", "momoko.Pool{pipeline_depth}", function() return momoko.Pool{dsn = H.dsn, pipeline = true, pipeline_depth = 1.5} end,
    raises = {"InterfaceError", "Pool: pipeline_depth must be an integer from 1 to 100000"}},
  {"pipeline_depth maxinteger", "momoko.Pool{pipeline_depth}", function() return momoko.Pool{dsn = H.dsn, pipeline = true, pipeline_depth = math.maxinteger} end,
    raises = {"InterfaceError", "Pool: pipeline_depth must be an integer from 1 to 100000"}},
  {"pipeline_depth a string", "momoko.Pool{pipeline_depth}", function() return momoko.Pool{dsn = H.dsn, pipeline = true, pipeline_depth = "4"} end,
    raises = {"InterfaceError", "Pool: pipeline_depth must be an integer from 1 to 100000"}},
  {"size 0", "momoko.Pool{size}", function() return momoko.Pool{dsn = H.dsn, size = 0} end,
    raises = {"InterfaceError", "Pool: size must be an integer from 1 to 10000"}},
  {"size NaN", "momoko.Pool{size}", function() return momoko.Pool{dsn = H.dsn, size = NAN} end,
    raises = {"InterfaceError", "Pool: size must be an integer from 1 to 10000"}},
  {"size 10001", "momoko.Pool{size}", function() return momoko.Pool{dsn = H.dsn, size = 10001} end,
    raises = {"InterfaceError", "Pool: size must be an integer from 1 to 10000"}},
  {"max_size below size", "momoko.Pool{size, max_size}", function() return momoko.Pool{dsn = H.dsn, size = 3, max_size = 2} end,
    raises = {"InterfaceError", "Pool: max_size must not be below size"}},
  {"retry an unknown policy", "momoko.Pool{retry}", function() return momoko.Pool{dsn = H.dsn, retry = "maybe"} end,
    raises = {"InterfaceError", 'Pool: retry must be "safe", "always" or "never"'}},
  {"a replica that never answers (legal: readonly requests run on the primary)", "momoko.Pool{replicas}",
    function()
      local p, app = own_pool("hostile_deadreplica", {size = 1, reconnect_interval = 100,
        replicas = {"host=127.0.0.1 port=" .. H.closed_port()}})
      local v = p:execute("SELECT pg_is_in_recovery()::text || ' ' || 5", nil, {readonly = true}):await():fetchone()[1]
      return v, p:stats().replicas[1], p, app
    end,
    result = function(_, v, rs, p, app)
      assert.equal("false 5", v) -- the primary answered
      assert.equal(0, rs.free)
      gone(p, app)
    end},
  {"statement_cache_size 1 with statements taking turns (legal)", "Connection{statement_cache_size}",
    function()
      local c, app = own_conn("hostile_cache1", {statement_cache_size = 1})
      local sum = 0
      for i = 1, 6 do sum = sum + one(c, i % 2 == 0 and "SELECT $1::int" or "SELECT $1::int + 0", {i}) end
      return sum, H.prepared_count(c), c, app
    end,
    result = function(_, sum, prepared, c, app)
      assert.equal(21, sum)
      assert.is_true(prepared <= 1, "prepared: " .. prepared)
      gone(c, app)
    end},
  {"a done callback that closes a pipelined connection mid-pipeline", "Connection{pipeline}",
    function()
      local c, app = own_conn("hostile_pipe_close", {pipeline = true})
      local futures = {}
      for i = 1, 5 do futures[i] = c:execute("SELECT $1::int", {i}) end
      local ends = H.count_ends(futures)
      futures[2]:add_done_callback(function() c:close() end)
      local out = {}
      for i = 1, 5 do
        local ok, r = pcall(futures[i].await, futures[i])
        out[i] = ok and r:fetchone()[1] or r.message
      end
      return out, ends, app
    end,
    result = function(_, out, ends, app)
      assert.same({1, 2, "connection closed", "connection closed", "connection closed"}, out)
      H.assert_each_once(ends, 5)
      assert.is_true(H.no_backends(app))
    end},
  {"a trace function that raises on a failing connect", "Connection{trace}",
    function()
      local c = momoko.Connection("host=127.0.0.1 port=" .. H.closed_port(), {trace = function(ev) error("trace " .. ev.type, 0) end})
      return H.failure(c:connect())
    end,
    reports = {"^trace connect$"},
    result = function(_, err) H.assert_kind("OperationalError", err) end},
  {"an unknown option", "momoko.Pool{...}", function() return momoko.Pool{dsn = H.dsn, bogus = 1} end,
    raises = {"InterfaceError", "Pool: unknown option 'bogus'"}},
  {"a Connection-only misspelling", "momoko.Pool{...}", function() return momoko.Pool{dsn = H.dsn, pipline_depth = 2} end,
    raises = {"InterfaceError", "Pool: unknown option 'pipline_depth'"}},
  {"dsn with a NUL byte", "momoko.Pool{dsn}", function() return momoko.Pool{dsn = H.dsn .. "\0 port=1"} end,
    raises = {"InterfaceError", "Pool: dsn contains a NUL byte"}},
  {"setsession item with a NUL byte", "momoko.Pool{setsession}", function() return momoko.Pool{dsn = H.dsn, setsession = {"SELECT 1\0"}} end,
    raises = {"InterfaceError", "Pool: setsession[1] contains a NUL byte"}},
  {"a replica DSN that is not a DSN", "momoko.Pool{replicas}", function() return momoko.Pool{dsn = H.dsn, replicas = {"not a dsn"}} end,
    raises = {"InterfaceError", 'Pool: invalid replicas[1]: missing "=" after "not" in connection info string'}},
  {"a replica DSN with an unknown keyword", "momoko.Pool{replicas}", function() return momoko.Pool{dsn = H.dsn, replicas = {H.dsn, "host=x bogus=2"}} end,
    raises = {"InterfaceError", 'Pool: invalid replicas[2]: invalid connection option "bogus"'}},
  {"a replica DSN with a NUL byte", "momoko.Pool{replicas}", function() return momoko.Pool{dsn = H.dsn, replicas = {H.dsn .. "\0"}} end,
    raises = {"InterfaceError", "Pool: replicas[1] contains a NUL byte"}},
  {"replicas a string", "momoko.Pool{replicas}", function() return momoko.Pool{dsn = H.dsn, replicas = H.dsn} end,
    raises = {"InterfaceError", "Pool: replicas must be an array of dsn strings, got string"}},
  {"replicas item a number", "momoko.Pool{replicas}", function() return momoko.Pool{dsn = H.dsn, replicas = {1}} end,
    raises = {"InterfaceError", "Pool: replicas[1] must be a dsn string, got number"}},
  {"replicas a table of names", "momoko.Pool{replicas}", function() return momoko.Pool{dsn = H.dsn, replicas = {a = H.dsn}} end,
    raises = {"InterfaceError", "Pool: replicas must be an array of dsn strings (key a)"}},
  {"replica_size 0", "momoko.Pool{replica_size}", function() return momoko.Pool{dsn = H.dsn, replicas = {H.dsn}, replica_size = 0} end,
    raises = {"InterfaceError", "Pool: replica_size must be an integer from 1 to 10000"}},
  {"pgbouncer with a statement cache", "momoko.Pool{pgbouncer, statement_cache_size}",
    function() return momoko.Pool{dsn = H.dsn, pgbouncer = true, statement_cache_size = 10} end,
    raises = {"InterfaceError", "Pool: statement_cache_size must be 0 with pgbouncer = true (PgBouncer in transaction mode keeps no prepared statement between requests)"}},
  {"pgbouncer a string", "momoko.Pool{pgbouncer}", function() return momoko.Pool{dsn = H.dsn, pgbouncer = "yes"} end,
    raises = {"InterfaceError", "Pool: pgbouncer must be a boolean"}},
  {"trace a number", "momoko.Pool{trace}", function() return momoko.Pool{dsn = H.dsn, trace = 1} end,
    raises = {"InterfaceError", "Pool: trace must be a function"}},
  {"opts missing", "momoko.Pool()", function() return momoko.Pool() end,
    raises = {"InterfaceError", "Pool: an options table expected, got nil"}},

  ---------------------------------------------------------------- execute and parameters
  {"sql nil", "conn:execute", function(ctx) return ctx.conn:execute() end,
    raises = {"InterfaceError", "sql must be a string, got nil"}},
  {"sql a table", "pool:execute", function(ctx) return ctx.pool:execute({"SELECT 1"}) end,
    raises = {"InterfaceError", "sql must be a string, got table"}},
  {"a NUL byte in SQL (libpq would send it cut short)", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1\0; DROP TABLE x") end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"a NUL byte in SQL with params", "conn:execute", function(ctx) return ctx.conn:execute("SELECT $1::int\0 + 1", {1}) end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"a NUL byte in SQL", "pool:execute", function(ctx) return ctx.pool:execute("SELECT 1\0x") end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"a NUL byte in :name SQL", "pool:execute", function(ctx) return ctx.pool:execute("SELECT :a\0::int", {a = 1}) end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"params a string", "conn:execute", function(ctx) return ctx.conn:execute("SELECT $1", "x") end,
    raises = {"InterfaceError", "params must be a table, got string"}},
  {"a function as a parameter", "conn:execute", function(ctx) return ctx.conn:execute("SELECT $1", {print}) end,
    raises = {"InterfaceError", "parameter $1: cannot convert a function"}},
  {"a string parameter with a NUL byte", "conn:execute", function(ctx) return ctx.conn:execute("SELECT $1", {"a\0b"}) end,
    raises = {"InterfaceError", "parameter $1: a string with a NUL byte (use momoko.bytea(s) for binary data)"}},
  {"a NUL byte in a named parameter's key", "conn:execute", function(ctx) return ctx.conn:execute("SELECT :a", {["a\0"] = 1}) end,
    raises = {"InterfaceError", "missing parameter :a"}},
  {"params.n negative", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1", {n = -1}) end,
    raises = {"InterfaceError", "params.n must be a non-negative integer"}},
  {"params.n NaN", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1", {n = NAN}) end,
    raises = {"InterfaceError", "params.n must be a non-negative integer"}},
  {"65,536 parameters", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1", {n = 65536}) end,
    raises = {"InterfaceError", "too many parameters (65536; PostgreSQL allows 65535)"}},
  {"$0", "conn:execute", function(ctx) return ctx.conn:execute("SELECT $0", {1}) end,
    raises = {"InterfaceError", "invalid placeholder $0 in the SQL (placeholders are $1 to $65535)"}},
  {"65,535 parameters, all used (legal, the most there may be)", "conn:execute",
    function(ctx)
      local p, cols = {}, {}
      for i = 1, 65535 do p[i] = i; cols[i] = "($" .. i .. "::int)" end
      return ctx.conn:execute("SELECT sum(x)::int8 FROM (VALUES " .. table.concat(cols, ",") .. ") v(x)", p)
    end,
    result = function(_, cur) assert.equal(65535 * 65536 // 2, cur:fetchone()[1]) end},
  {"1 MB of SQL text (legal)", "conn:execute",
    function(ctx) return ctx.conn:execute("SELECT 42 /* " .. fs(1 << 20, "x") .. " */") end,
    result = function(_, cur) assert.equal(42, cur:fetchone()[1]) end},
  {"opts a number", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1", nil, 5) end,
    raises = {"InterfaceError", "execute: opts must be a table"}},
  {"opts.timeout -1", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1", nil, {timeout = -1}) end,
    raises = {"InterfaceError", "opts.timeout must be a non-negative integer (ms)"}},
  {"opts.timeout NaN", "pool:execute", function(ctx) return ctx.pool:execute("SELECT 1", nil, {timeout = NAN}) end,
    raises = {"InterfaceError", "opts.timeout must be a non-negative integer (ms)"}},
  {"opts.timeout 1.5", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1", nil, {timeout = 1.5}) end,
    raises = {"InterfaceError", "opts.timeout must be a non-negative integer (ms)"}},
  {"opts.timeout inf", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1", nil, {timeout = HUGE}) end,
    raises = {"InterfaceError", "opts.timeout must be a non-negative integer (ms)"}},
  {"opts.timeout maxinteger", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1", nil, {timeout = math.maxinteger}) end,
    raises = {"InterfaceError", "opts.timeout must be a non-negative integer (ms)"}},
  {"opts.readonly a string", "pool:execute", function(ctx) return ctx.pool:execute("SELECT 1", nil, {readonly = "yes"}) end,
    raises = {"InterfaceError", "execute: opts.readonly must be a boolean"}},
  {"opts.cursor_factory an unknown name", "conn:execute", function(ctx) return ctx.conn:execute("SELECT 1", nil, {cursor_factory = "tuple"}) end,
    raises = {"InterfaceError", "opts: cursor_factory must be momoko.cursors.array, momoko.cursors.dict or a function"}},
  {"a cursor_factory that raises", "conn:execute opts.cursor_factory",
    function(ctx) return ctx.conn:execute("SELECT 1", nil, {cursor_factory = function() error("factory boom", 0) end}) end,
    raw_error = "factory boom"},
  {"a cursor_factory that yields", "conn:execute opts.cursor_factory",
    function(ctx) return ctx.conn:execute("SELECT 1", nil, {cursor_factory = function() coroutine.yield() end}) end,
    raw_error = "attempt to yield from outside a coroutine"},
  {"a cursor_factory that closes the connection", "conn:execute opts.cursor_factory",
    function()
      local c, app = own_conn("hostile_cf_close")
      local v = c:execute("SELECT 1", nil, {cursor_factory = function(cur) c:close(); return cur:fetchone()[1] end}):await()
      return v, c, app
    end,
    result = function(_, v, c, app)
      assert.equal(1, v)
      assert.is_true(c.closed)
      assert.is_true(H.no_backends(app))
    end},
  {"a COPY statement", "conn:execute", function(ctx) return ctx.conn:execute("COPY (SELECT 1) TO STDOUT") end,
    fails = {"NotSupportedError", "copy_to"}},

  ---------------------------------------------------------------- callproc, transaction, mogrify, escapes
  {"a routine name with a NUL byte", "conn:callproc", function(ctx) return ctx.conn:callproc("now\0; DROP TABLE x") end,
    raises = {"InterfaceError", "callproc: name contains a NUL byte"}},
  {"a routine name with a NUL byte", "pool:callproc", function(ctx) return ctx.pool:callproc("pg_catalog.now\0") end,
    raises = {"InterfaceError", "callproc: name contains a NUL byte"}},
  {"a routine name of 64 bytes (the server would cut it to 63)", "conn:callproc", function(ctx) return ctx.conn:callproc(fs(64)) end,
    raises = {"InterfaceError", "callproc: '" .. fs(64) .. "' is not a routine name (one to three dot-separated identifiers, plain or double-quoted, of at most 63 bytes each)"}},
  {"a quoted routine name of 64 bytes", "conn:callproc", function(ctx) return ctx.conn:callproc('public."' .. fs(64) .. '"') end,
    raises = {"InterfaceError", "callproc: 'public.\"" .. fs(64) .. "\"' is not a routine name (one to three dot-separated identifiers, plain or double-quoted, of at most 63 bytes each)"}},
  {"a routine name of 63 bytes (legal: the server looks it up whole)", "conn:callproc", function(ctx) return ctx.conn:callproc(fs(63)) end,
    fails = {"ProgrammingError", "function " .. fs(63) .. "() does not exist"}},
  {"a routine name with SQL in it", "conn:callproc", function(ctx) return ctx.conn:callproc("now(); DROP TABLE x; --") end,
    raises = {"InterfaceError", "callproc: 'now(); DROP TABLE x; --' is not a routine name (one to three dot-separated identifiers, plain or double-quoted, of at most 63 bytes each)"}},
  {"an empty routine name", "conn:callproc", function(ctx) return ctx.conn:callproc("") end,
    raises = {"InterfaceError", "callproc: '' is not a routine name (one to three dot-separated identifiers, plain or double-quoted, of at most 63 bytes each)"}},
  {"a routine name a number", "conn:callproc", function(ctx) return ctx.conn:callproc(5) end,
    raises = {"InterfaceError", "callproc: name must be a string"}},
  {"named callproc arguments", "conn:callproc", function(ctx) return ctx.conn:callproc("abs", {x = 1}) end,
    raises = {"InterfaceError", "callproc: params must be an array (named arguments are not supported)"}},
  {"an empty transaction", "conn:transaction", function(ctx) return ctx.conn:transaction({}) end,
    raises = {"InterfaceError", "transaction: statements must be a non-empty array"}},
  {"a transaction statement a number", "pool:transaction", function(ctx) return ctx.pool:transaction({"SELECT 1", 2}) end,
    raises = {"InterfaceError", 'transaction: statement 2 must be "sql" or {"sql", params}'}},
  {"a NUL byte in a transaction's statement", "conn:transaction", function(ctx) return ctx.conn:transaction({"SELECT 1", {"SELECT $1::int\0", {1}}}) end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"a NUL byte in a pipelined transaction's statement", "pool:transaction", function(ctx) return ctx.pool:transaction({"SELECT 1\0"}) end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"a NUL byte in mogrify's SQL", "conn:mogrify", function(ctx) return ctx.conn:mogrify("SELECT $1\0", {1}) end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"a NUL byte in mogrify's SQL", "pool:mogrify", function(ctx) return ctx.pool:mogrify("SELECT $1\0", {1}) end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"mogrify on a connection never connected", "conn:mogrify", function() return momoko.Connection(H.dsn):mogrify("SELECT 1") end,
    raises = {"InterfaceError", "mogrify: connection is not connected"}},
  {"escape_literal with a NUL byte", "conn:escape_literal", function(ctx) return ctx.conn:escape_literal("a\0b") end,
    raises = {"InterfaceError", "escape_literal: the string contains a NUL byte"}},
  {"escape_identifier a number", "conn:escape_identifier", function(ctx) return ctx.conn:escape_identifier(5) end,
    raises = {"InterfaceError", "escape_identifier: a string expected, got number"}},
  {"escape_identifier of 64 KB (legal: quoted whole)", "conn:escape_identifier", function(ctx) return ctx.conn:escape_identifier(fs(65536)) end,
    result = function(_, s) assert.equal('"' .. fs(65536) .. '"', s) end},

  ---------------------------------------------------------------- streams
  {"a stream chunk of 0", "conn:stream opts.chunk", function(ctx) return ctx.conn:stream("SELECT 1", nil, {chunk = 0}) end,
    raises = {"InterfaceError", "stream: opts.chunk must be an integer from 1 to 1000000"}},
  {"a stream chunk of -1", "conn:stream opts.chunk", function(ctx) return ctx.conn:stream("SELECT 1", nil, {chunk = -1}) end,
    raises = {"InterfaceError", "stream: opts.chunk must be an integer from 1 to 1000000"}},
  {"a stream chunk of NaN", "pool:stream opts.chunk", function(ctx) return ctx.pool:stream("SELECT 1", nil, {chunk = NAN}) end,
    raises = {"InterfaceError", "stream: opts.chunk must be an integer from 1 to 1000000"}},
  {"a stream chunk of 2.5", "conn:stream opts.chunk", function(ctx) return ctx.conn:stream("SELECT 1", nil, {chunk = 2.5}) end,
    raises = {"InterfaceError", "stream: opts.chunk must be an integer from 1 to 1000000"}},
  {"a stream chunk of 1,000,001", "conn:stream opts.chunk", function(ctx) return ctx.conn:stream("SELECT 1", nil, {chunk = 1000001}) end,
    raises = {"InterfaceError", "stream: opts.chunk must be an integer from 1 to 1000000"}},
  {"a stream chunk a string", "conn:stream opts.chunk", function(ctx) return ctx.conn:stream("SELECT 1", nil, {chunk = "10"}) end,
    raises = {"InterfaceError", "stream: opts.chunk must be an integer from 1 to 1000000"}},
  {"a stream chunk of 1 (legal: one row held at a time)", "conn:stream opts.chunk",
    function(ctx)
      local s <close> = ctx.conn:stream("SELECT generate_series(1, 50)", nil, {chunk = 1})
      local sum = 0
      for r in s:rows() do sum = sum + r[1] end
      return sum
    end,
    in_coroutine = true, result = function(_, sum) assert.equal(1275, sum) end},
  {"a NUL byte in a stream's SQL", "conn:stream", function(ctx) return ctx.conn:stream("SELECT 1\0x") end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"a NUL byte in a stream's SQL", "pool:stream", function(ctx) return ctx.pool:stream("SELECT 1\0x") end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"next() while a next() waits", "s:next", function(ctx)
      local s <close> = ctx.conn:stream("SELECT pg_sleep(0.05), 1")
      local first = s:next()
      local ok, err = pcall(s.next, s)
      first:await()
      return ok, err
    end,
    result = function(_, ok, err)
      assert.is_false(ok)
      H.assert_kind("InterfaceError", err)
      assert.matches("next", err.message)
    end},
  {"a stream's cursor_factory that closes the connection", "conn:stream opts.cursor_factory",
    function()
      local c, app = own_conn("hostile_scf_close")
      -- chunk = 1: no row beyond the one handed out is held when the factory closes
      local s = c:stream("SELECT generate_series(1, 10)", nil, {chunk = 1, cursor_factory = function(cur)
        c:close()
        return cur:fetchone()[1]
      end})
      local first = s:next():await()
      local ok, err = pcall(function() return s:next():await() end)
      return first, ok, err, c, app
    end,
    result = function(_, first, ok, err, c, app)
      assert.equal(1, first)
      assert.is_false(ok)
      H.assert_kind("InterfaceError", err)
      assert.equal("connection closed", err.message)
      assert.is_true(c.closed)
      assert.is_true(H.no_backends(app))
    end},
  {"a stream's cursor_factory that raises", "conn:stream opts.cursor_factory",
    function(ctx) return ctx.conn:stream("SELECT 1", nil, {cursor_factory = function() error("stream factory boom", 0) end}):next() end,
    raw_error = "stream factory boom"},

  ---------------------------------------------------------------- LISTEN/NOTIFY
  {"a channel name of 64 KB", "conn:listen", function(ctx) return ctx.conn:listen(fs(65536, "c"), function() end) end,
    raises = {"InterfaceError", "listen: channel is 65536 bytes long; PostgreSQL allows at most 63"}},
  {"a channel name of 64 bytes (the server would cut it to 63)", "conn:listen", function(ctx) return ctx.conn:listen(fs(64, "c"), function() end) end,
    raises = {"InterfaceError", "listen: channel is 64 bytes long; PostgreSQL allows at most 63"}},
  {"a channel name of 64 bytes", "pool:listen", function(ctx) return ctx.pool:listen(fs(64, "c"), function() end) end,
    raises = {"InterfaceError", "listen: channel is 64 bytes long; PostgreSQL allows at most 63"}},
  {"a channel name of 64 bytes", "conn:unlisten", function(ctx) return ctx.conn:unlisten(fs(64, "c")) end,
    raises = {"InterfaceError", "unlisten: channel is 64 bytes long; PostgreSQL allows at most 63"}},
  {"a channel name of 64 KB", "conn:notify", function(ctx) return ctx.conn:notify(fs(65536, "c"), "x") end,
    raises = {"InterfaceError", "notify: channel is 65536 bytes long; PostgreSQL allows at most 63"}},
  {"a channel name of 64 bytes", "pool:notify", function(ctx) return ctx.pool:notify(fs(64, "c"), "x") end,
    raises = {"InterfaceError", "notify: channel is 64 bytes long; PostgreSQL allows at most 63"}},
  {"a channel name of 63 multibyte bytes (legal: delivered under that exact name)", "conn:listen",
    function()
      local c, app = own_conn("hostile_chan63")
      local name = string.rep("\u{e9}", 31) .. "x" -- 63 bytes of UTF-8
      local got = {}
      c:listen(name, function(ch, payload) got[#got + 1] = {ch, payload} end):await()
      c:notify(name, "p"):await()
      assert.is_true(H.wait_until(function() return #got == 1 end, 5000))
      assert.equal(name, one(c, "SELECT pg_listening_channels()"))
      return got, name, c, app
    end,
    result = function(_, got, name, c, app)
      assert.same({{name, "p"}}, got)
      gone(c, app)
    end},
  {"listen behind PgBouncer", "Connection{pgbouncer} conn:listen",
    function()
      local c, app = own_conn("hostile_bouncer", {pgbouncer = true})
      local err = H.failure(c:listen("ch", function() end))
      return err, c, app
    end,
    result = function(_, err, c, app)
      H.assert_kind("NotSupportedError", err)
      assert.matches("^listen: not supported with pgbouncer = true", err.message)
      assert.equal(0, one(c, "SELECT count(*) FROM pg_listening_channels()"))
      gone(c, app)
    end},
  {"listen behind PgBouncer", "momoko.Pool{pgbouncer} pool:listen",
    function()
      local p, app = own_pool("hostile_pbouncer", {size = 1, pgbouncer = true})
      return H.failure(p:listen("ch", function() end)), p, app
    end,
    result = function(_, err, p, app)
      H.assert_kind("NotSupportedError", err)
      assert.equal(1, H.backends(app)) -- no listening connection was opened
      gone(p, app)
    end},
  {"listen on a Connection never connected", "conn:listen", function() return momoko.Connection(H.dsn):listen("ch", print) end,
    raises = {"InterfaceError", "listen: connection is not connected"}},
  {"an empty channel name", "conn:listen", function(ctx) return ctx.conn:listen("", function() end) end,
    raises = {"InterfaceError", "listen: channel must not be empty"}},
  {"an empty channel name", "pool:notify", function(ctx) return ctx.pool:notify("") end,
    raises = {"InterfaceError", "notify: channel must not be empty"}},
  {"a channel name with a NUL byte", "conn:listen", function(ctx) return ctx.conn:listen("a\0b", function() end) end,
    raises = {"InterfaceError", "listen: channel contains a NUL byte"}},
  {"a channel name with a NUL byte", "pool:unlisten", function(ctx) return ctx.pool:unlisten("a\0b") end,
    raises = {"InterfaceError", "unlisten: channel contains a NUL byte"}},
  {"a channel name a number", "conn:notify", function(ctx) return ctx.conn:notify(5) end,
    raises = {"InterfaceError", "notify: channel must be a string, got number"}},
  {"a handler that is not a function", "conn:listen", function(ctx) return ctx.conn:listen("ch", "print") end,
    raises = {"InterfaceError", "listen: fn must be a function, got string"}},
  {"a payload with a NUL byte", "conn:notify", function(ctx) return ctx.conn:notify("ch", "a\0b") end,
    raises = {"InterfaceError", "parameter $2: a string with a NUL byte (use momoko.bytea(s) for binary data)"}},
  {"a payload a number", "pool:notify", function(ctx) return ctx.pool:notify("ch", 5) end,
    raises = {"InterfaceError", "notify: payload must be a string or nil, got number"}},
  {"a payload of 8000 bytes (the server's limit is below it)", "conn:notify", function(ctx) return ctx.conn:notify("ch", fs(8000, "p")) end,
    fails = {"DataError", "payload string too long"}},
  {"a payload of 7999 bytes (legal: delivered whole)", "conn:notify",
    function()
      local c, app = own_conn("hostile_payload")
      local got
      c:listen("ch_big", function(_, payload) got = payload end):await()
      c:notify("ch_big", fs(7999, "p")):await()
      assert.is_true(H.wait_until(function() return got ~= nil end, 5000))
      return got, c, app
    end,
    result = function(_, got, c, app)
      assert.equal(fs(7999, "p"), got)
      gone(c, app)
    end},
  {"a handler that raises", "conn:listen fn",
    function()
      local c, app = own_conn("hostile_handler")
      local calls = 0
      c:listen("ch_raise", function() calls = calls + 1; error("handler boom " .. calls, 0) end):await()
      c:notify("ch_raise"):await()
      c:notify("ch_raise"):await()
      assert.is_true(H.wait_until(function() return calls == 2 end, 5000))
      return one(c, "SELECT 5"), c, app
    end,
    reports = {"^handler boom 1$", "^handler boom 2$"},
    result = function(_, v, c, app) assert.equal(5, v); gone(c, app) end},
  {"a handler that closes its connection", "conn:listen fn",
    function()
      local c, app = own_conn("hostile_handler_close")
      local calls = 0
      c:listen("ch_close", function() calls = calls + 1; c:close() end):await()
      H.psql("NOTIFY ch_close")
      assert.is_true(H.wait_until(function() return calls == 1 end, 5000))
      return c, app
    end,
    result = function(_, c, app)
      assert.is_true(c.closed)
      assert.is_true(H.no_backends(app))
      H.assert_kind("InterfaceError", H.error_of(c.execute, c, "SELECT 1"))
    end},

  ---------------------------------------------------------------- COPY
  {"a COPY row with 10,000 columns against a table of 2", "conn:copy_from",
    function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", {row_of(10000)}) end,
    fails = {"DataError", "extra data after last expected column"},
    check = function(ctx) assert.equal(0, one(ctx.conn, "SELECT count(*) FROM hostile_two")) end},
  {"a COPY row with 10,000 columns against a table of 1,600 (PostgreSQL's most)", "conn:copy_from",
    function(ctx) return ctx.conn:copy_from("COPY hostile_wide FROM STDIN", {row_of(10000)}) end,
    fails = {"DataError", "extra data after last expected column"},
    check = function(ctx) assert.equal(0, one(ctx.conn, "SELECT count(*) FROM hostile_wide")) end},
  {"a COPY row with 1,600 columns against a table of 1,600 (legal)", "conn:copy_from",
    function(ctx) return ctx.conn:copy_from("COPY hostile_wide FROM STDIN", {row_of(1600), row_of(1600)}) end,
    result = function(ctx, n)
      assert.equal(2, n)
      local r = ctx.conn:execute("SELECT count(*)::int, sum(c1)::int, sum(c1600)::int FROM hostile_wide"):await():fetchone()
      assert.same({2, 2, 3200}, r)
      ctx.conn:execute("TRUNCATE hostile_wide"):await()
    end},
  {"COPY sql that is not a COPY", "conn:copy_from", function(ctx) return ctx.conn:copy_from("SELECT 1", "") end,
    raises = {"InterfaceError", "copy_from: sql must be a COPY ... FROM STDIN statement"}},
  {"COPY sql of the other direction", "pool:copy_to", function(ctx) return ctx.pool:copy_to("COPY hostile_two FROM STDIN") end,
    fails = {"NotSupportedError", "copy_from"}},
  {"a NUL byte in COPY's SQL (the rest would be dropped)", "conn:copy_from", function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN\0 WITH (FORMAT csv)", "") end,
    raises = {"InterfaceError", "sql contains a NUL byte (libpq would send only the text before it)"}},
  {"a COPY source a number", "conn:copy_from", function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", 5) end,
    raises = {"InterfaceError", "copy_from: source must be a string, an array or a function, got number"}},
  {"a COPY source that raises", "conn:copy_from source",
    function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", function() error("source boom", 0) end) end,
    fails = {"InterfaceError", "copy_from: the source raised an error: source boom"},
    check = function(ctx) assert.equal(0, one(ctx.conn, "SELECT count(*) FROM hostile_two")) end},
  {"a COPY source that raises after some rows", "pool:copy_from source",
    function(ctx)
      local n = 0
      return ctx.pool:copy_from("COPY hostile_two FROM STDIN", function()
        n = n + 1
        if n > 3 then error({"not a string"}) end
        return {n, "x"}
      end)
    end,
    fails = {"InterfaceError", "copy_from: the source raised an error: table: "},
    check = function(ctx) assert.equal(0, one(ctx.conn, "SELECT count(*) FROM hostile_two")) end},
  {"a COPY source that yields", "conn:copy_from source",
    function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", function() coroutine.yield() end) end,
    fails = {"InterfaceError", "copy_from: the source raised an error: attempt to yield from outside a coroutine"}},
  {"a COPY source that awaits", "conn:copy_from source",
    function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", function() momoko.sleep(1):await() end) end,
    in_coroutine = true,
    fails = {"InterfaceError", "copy_from: the source raised an error: InterfaceError: cannot await on the main thread while the loop is running"}},
  {"a COPY source that returns a number", "conn:copy_from source",
    function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", function() return 5 end) end,
    fails = {"InterfaceError", "copy_from: item 1 of the source is a number, not a string or a row table"}},
  {"a COPY row with a function in it", "conn:copy_from", function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", {{1, "a"}, {2, print}}) end,
    fails = {"InterfaceError", "copy_from: item 2 of the source, value 2: a function cannot be encoded in COPY format"},
    check = function(ctx) assert.equal(0, one(ctx.conn, "SELECT count(*) FROM hostile_two")) end},
  {"a COPY row with a hole (nil)", "conn:copy_from", function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", {{1, nil, 3}}) end,
    fails = {"InterfaceError", "copy_from: item 1 of the source, value 2: a nil (momoko.null is NULL) cannot be encoded in COPY format"}},
  {"a COPY value with a NUL byte (the server refuses it)", "conn:copy_from", function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", {{1, "a\0b"}}) end,
    fails = {"DataError", "invalid byte sequence for encoding \"UTF8\": 0x00"}},
  {"a COPY value NaN into an integer column", "conn:copy_from", function(ctx) return ctx.conn:copy_from("COPY hostile_two FROM STDIN", {{NAN, "x"}}) end,
    fails = {"DataError", 'invalid input syntax for type integer: "NaN"'}},
  {"a COPY source that closes the connection", "conn:copy_from source",
    function()
      local c, app = own_conn("hostile_src_close")
      c:execute("CREATE TEMP TABLE t (a int)"):await()
      local f = c:copy_from("COPY t FROM STDIN", function() c:close() end)
      return H.failure(f), c, app
    end,
    result = function(_, err, c, app)
      H.assert_kind("InterfaceError", err)
      assert.equal("connection closed", err.message)
      assert.is_true(c.closed)
      assert.is_true(H.no_backends(app))
    end},
  {"a COPY source that closes the connection and raises", "pool:copy_from source",
    function()
      local p, app = own_pool("hostile_psrc_close", {size = 1})
      local f = p:copy_from("COPY hostile_two FROM STDIN", function()
        -- the pool's connection is not the caller's to close: getconn's is
        return nil
      end)
      local n = f:await()
      local c = p:getconn():await()
      local err = H.failure(c:copy_from("COPY hostile_two FROM STDIN", function() c:close(); error("late", 0) end))
      p:putconn(c)
      return n, err, p, app
    end,
    result = function(ctx, n, err, p, app)
      assert.equal(0, n)
      H.assert_kind("InterfaceError", err)
      assert.equal("connection closed", err.message)
      assert.is_true(H.wait_until(function() return p:stats().free == 1 end, 5000)) -- replaced
      assert.equal(0, one(ctx.conn, "SELECT count(*) FROM hostile_two"))
      gone(p, app)
    end},
  {"a COPY sink a table", "conn:copy_to", function(ctx) return ctx.conn:copy_to("COPY (SELECT 1) TO STDOUT", {}) end,
    raises = {"InterfaceError", "copy_to: sink must be a function or nil, got table"}},
  {"a COPY sink that raises", "conn:copy_to sink",
    function(ctx) return ctx.conn:copy_to("COPY (SELECT generate_series(1, 1000)) TO STDOUT", function() error("sink boom", 0) end) end,
    fails = {"InterfaceError", "copy_to: the sink raised an error: sink boom"}},
  {"a COPY sink that yields", "pool:copy_to sink",
    function(ctx) return ctx.pool:copy_to("COPY (SELECT 1) TO STDOUT", function() coroutine.yield() end) end,
    fails = {"InterfaceError", "copy_to: the sink raised an error: attempt to yield from outside a coroutine"}},
  {"a COPY sink that returns something (ignored)", "conn:copy_to sink",
    function(ctx) return ctx.conn:copy_to("COPY (SELECT generate_series(1, 3)) TO STDOUT", function() return false, "stop" end) end,
    result = function(_, n) assert.equal(3, n) end},
  {"a COPY sink that closes the connection", "conn:copy_to sink",
    function()
      local c, app = own_conn("hostile_sink_close")
      local f = c:copy_to("COPY (SELECT generate_series(1, 100000)) TO STDOUT", function() c:close() end)
      return H.failure(f), c, app
    end,
    result = function(_, err, c, app)
      H.assert_kind("InterfaceError", err)
      assert.equal("connection closed", err.message)
      assert.is_true(H.no_backends(app))
    end},

  ---------------------------------------------------------------- tracing
  {"a trace function that raises", "Connection{trace}",
    function()
      local events = {}
      local c, app = own_conn("hostile_trace_raise", {trace = function(ev) events[#events + 1] = ev.type; error("trace boom " .. ev.type, 0) end})
      local v = one(c, "SELECT 7")
      local w = one(c, "SELECT 8")
      return {v, w}, events, c, app
    end,
    reports = {"^trace boom connect$", "^trace boom query$", "^trace boom query$"},
    result = function(_, vals, events, c, app)
      assert.same({7, 8}, vals)
      assert.same({"connect", "query", "query"}, events)
      gone(c, app)
    end},
  {"a trace function that raises a table and returns values (both ignored by the request)", "Connection{trace}",
    function()
      local raised = {"not a string"}
      local c, app = own_conn("hostile_trace_table", {trace = function() error(raised) end})
      local c2, app2 = own_conn("hostile_trace_ret", {trace = function() return false, "x" end})
      return {one(c, "SELECT 1"), one(c2, "SELECT 2")}, raised, c, app, c2, app2
    end,
    reports = {"^table: ", "^table: "},
    result = function(_, vals, _, c, app, c2, app2)
      assert.same({1, 2}, vals)
      gone(c, app)
      gone(c2, app2)
    end},
  {"a trace function that yields", "Connection{trace}",
    function()
      local c, app = own_conn("hostile_trace_yield", {trace = function() coroutine.yield("x") end})
      return one(c, "SELECT 7"), c, app
    end,
    in_coroutine = true,
    reports = {"attempt to yield from outside a coroutine", "attempt to yield from outside a coroutine"},
    result = function(_, v, c, app) assert.equal(7, v); gone(c, app) end},
  {"a trace function that awaits", "Connection{trace}",
    function()
      local c, app = own_conn("hostile_trace_await", {trace = function() momoko.sleep(1):await() end})
      return one(c, "SELECT 7"), c, app
    end,
    reports = {"cannot await on the main thread while the loop is running", "cannot await on the main thread while the loop is running"},
    result = function(_, v, c, app) assert.equal(7, v); gone(c, app) end},
  {"a trace function that closes the connection", "Connection{trace}",
    function()
      local c
      local dsn, app = H.app_dsn("hostile_trace_close")
      c = momoko.connect(dsn, {trace = function(ev) if ev.type == "query" then c:close() end end}):await()
      return one(c, "SELECT 7"), c, app
    end,
    result = function(_, v, c, app)
      assert.equal(7, v)
      assert.is_true(c.closed)
      assert.is_true(H.no_backends(app))
    end},
  {"a trace function that raises, on a pipelined Pool", "momoko.Pool{trace}",
    function()
      local p, app = own_pool("hostile_ptrace", {size = 1, pipeline = true, trace = function(ev) error("pool trace " .. ev.type, 0) end})
      local fs_ = {}
      for i = 1, 5 do fs_[i] = p:execute("SELECT $1::int", {i}) end
      local got = {}
      for i = 1, 5 do got[i] = fs_[i]:await():fetchone()[1] end
      return got, p, app
    end,
    reports = {"^pool trace connect$", "^pool trace query$", "^pool trace query$", "^pool trace query$", "^pool trace query$", "^pool trace query$"},
    result = function(_, got, p, app)
      assert.same({1, 2, 3, 4, 5}, got)
      local s = p:stats()
      assert.same({1, 1, 0, 0}, {s.size, s.free, s.busy, s.waiting})
      gone(p, app)
    end},
  {"a trace function that yields, on a Pool", "momoko.Pool{trace}",
    function()
      local p, app = own_pool("hostile_ptrace_y", {size = 1, trace = function() coroutine.yield() end})
      return one(p, "SELECT 9"), p, app
    end,
    reports = {"attempt to yield from outside a coroutine", "attempt to yield from outside a coroutine"},
    result = function(_, v, p, app) assert.equal(9, v); gone(p, app) end},

  ---------------------------------------------------------------- other callbacks
  {"an on_notice function that raises", "Connection{on_notice}",
    function()
      local c, app = own_conn("hostile_notice", {on_notice = function(_, msg) error("notice boom: " .. msg, 0) end})
      c:execute("DO $$BEGIN RAISE NOTICE 'hi'; END$$"):await()
      return one(c, "SELECT 3"), c, app
    end,
    reports = {"^notice boom: NOTICE:  hi$"},
    result = function(_, v, c, app) assert.equal(3, v); gone(c, app) end},
  {"an on_notice function that closes its connection", "Connection{on_notice}",
    function()
      local c
      local dsn, app = H.app_dsn("hostile_notice_close")
      c = momoko.connect(dsn, {on_notice = function(conn) conn:close() end}):await()
      local err = H.failure(c:execute("DO $$BEGIN RAISE NOTICE 'hi'; PERFORM pg_sleep(0.2); END$$"))
      return err, c, app
    end,
    result = function(_, err, c, app)
      H.assert_kind("InterfaceError", err)
      assert.equal("connection closed", err.message)
      assert.is_true(c.closed)
      assert.is_true(H.no_backends(app))
    end},
  {"a connection_factory that raises", "Connection{connection_factory}",
    function()
      local dsn, app = H.app_dsn("hostile_cfac")
      return H.failure(momoko.connect(dsn, {connection_factory = function() error("cfac boom", 0) end})), app
    end,
    result = function(_, err, app)
      H.assert_kind("InterfaceError", err)
      assert.equal("connection_factory failed: cfac boom", err.message)
      assert.is_true(H.no_backends(app))
    end},
  {"a connection_factory that raises, on a Pool", "momoko.Pool{connection_factory}",
    function()
      local dsn, app = H.app_dsn("hostile_pcfac")
      local p = momoko.Pool{dsn = dsn, size = 1, connection_factory = function() error("pool cfac boom", 0) end}
      return H.failure(p:connect()), p, app
    end,
    result = function(_, err, p, app)
      H.assert_kind("PartiallyConnectedError", err)
      gone(p, app)
    end},
  {"a done callback that raises", "f:add_done_callback",
    function(ctx)
      local f = ctx.conn:execute("SELECT 4")
      f:add_done_callback(function() error("callback boom", 0) end)
      return f:await():fetchone()[1]
    end,
    reports = {"^callback boom$"},
    result = function(_, v) assert.equal(4, v) end},
  {"a done callback that closes the connection", "f:add_done_callback",
    function()
      local c, app = own_conn("hostile_cb_close")
      local f = c:execute("SELECT 4")
      local queued = c:execute("SELECT 5")
      f:add_done_callback(function() c:close() end)
      return f:await():fetchone()[1], H.failure(queued), c, app
    end,
    result = function(_, v, err, c, app)
      assert.equal(4, v)
      H.assert_kind("InterfaceError", err)
      assert.equal("connection closed", err.message)
      assert.is_true(H.no_backends(app))
    end},
  {"a done callback a number", "f:add_done_callback", function() return momoko.sleep(0):add_done_callback(5) end,
    raises = {"InterfaceError", "add_done_callback: a function expected, got number"}},
  {"a type decoder that raises", "momoko.register_type",
    function(ctx)
      momoko.register_type(1082, function() error("decoder boom", 0) end)
      local cur = ctx.conn:execute("SELECT date '2020-01-02'"):await()
      local ok, err = pcall(cur.fetchone, cur)
      momoko.register_type(1082, nil)
      return ok, err, cur:fetchall()
    end,
    result = function(_, ok, err, rest)
      assert.is_false(ok)
      assert.equal("decoder boom", err)
      assert.same({}, rest)
    end},

  ---------------------------------------------------------------- cursors, futures, module
  {"fetchmany(-1)", "cur:fetchmany", function(ctx) return ctx.conn:execute("SELECT 1"):await():fetchmany(-1) end,
    raises = {"InterfaceError", "fetchmany: n must be a non-negative integer"}},
  {"fetchmany(NaN)", "cur:fetchmany", function(ctx) return ctx.conn:execute("SELECT 1"):await():fetchmany(NAN) end,
    raises = {"InterfaceError", "fetchmany: n must be a non-negative integer"}},
  {"scroll(NaN)", "cur:scroll", function(ctx) return ctx.conn:execute("SELECT 1"):await():scroll(NAN) end,
    raises = {"InterfaceError", "scroll: n must be an integer"}},
  {"scroll past the end", "cur:scroll", function(ctx) return ctx.conn:execute("SELECT 1"):await():scroll(math.maxinteger) end,
    raises = {"ProgrammingError", "scroll: destination out of range (rownumber 0, n 9223372036854775807, 1 rows)"}},
  {"scroll in an unknown mode", "cur:scroll", function(ctx) return ctx.conn:execute("SELECT 1"):await():scroll(0, "sideways") end,
    raises = {"InterfaceError", "scroll: mode must be 'relative' or 'absolute'"}},
  {"arraysize 0", "cur.arraysize", function(ctx) ctx.conn:execute("SELECT 1"):await().arraysize = 0 end,
    raises = {"InterfaceError", "arraysize must be a positive integer"}},
  {"arraysize 1.5", "cur.arraysize", function(ctx) ctx.conn:execute("SELECT 1"):await().arraysize = 1.5 end,
    raises = {"InterfaceError", "arraysize must be a positive integer"}},
  {"sleep(-1)", "momoko.sleep", function() return momoko.sleep(-1) end,
    raises = {"InterfaceError", "momoko.sleep: ms must be a non-negative integer"}},
  {"sleep(NaN)", "momoko.sleep", function() return momoko.sleep(NAN) end,
    raises = {"InterfaceError", "momoko.sleep: ms must be a non-negative integer"}},
  {"sleep(maxinteger), cancelled (legal)", "momoko.sleep", function()
      local f = momoko.sleep(math.maxinteger)
      assert.is_true(f:cancel())
      return H.failure(f)
    end,
    result = function(_, err) H.assert_kind("QueryCanceledError", err) end},
  {"momoko.all of a number", "momoko.all", function() return momoko.all(5) end,
    raises = {"InterfaceError", "momoko.all: an array of futures expected"}},
  {"momoko.all of a non-future", "momoko.all", function() return momoko.all({momoko.sleep(0), 1}) end,
    raises = {"InterfaceError", "momoko.all: item 2 is not a future"}},
  {"spawn of a number", "momoko.spawn", function() return momoko.spawn(5) end,
    raises = {"InterfaceError", "momoko.spawn: a function expected, got number"}},
  {"result() of a pending future", "f:result", function() local f = momoko.sleep(5); local ok, e = pcall(f.result, f); f:await(); error(e, 0) end,
    raises = {"InterfaceError", "future is not done"}},
  {"register_type of OID 0", "momoko.register_type", function() return momoko.register_type(0, tostring) end,
    raises = {"InterfaceError", "register_type: oid must be a type OID (a positive integer), got number"}},
  {"register_type of a string decoder", "momoko.register_type", function() return momoko.register_type(25, "x") end,
    raises = {"InterfaceError", "register_type: fn must be a function or nil, got string"}},
  {"momoko.is with a kind a number", "momoko.is", function() return momoko.is({}, 5) end,
    raises = {"InterfaceError", "momoko.is: kind must be a string, got number"}},
  {"an hstore key with a NUL byte", "momoko.hstore", function() return momoko.hstore({["a\0"] = "b"}) end,
    raises = {"InterfaceError", "momoko.hstore: a key contains a NUL byte"}},

  ---------------------------------------------------------------- pool lending
  {"putconn of a number", "pool:putconn", function(ctx) return ctx.pool:putconn(5) end,
    raises = {"PoolError", "putconn: not a connection of this pool, or already given back"}},
  {"putconn of a plain Connection", "pool:putconn", function(ctx) return ctx.pool:putconn(ctx.conn) end,
    raises = {"PoolError", "putconn: not a connection of this pool, or already given back"}},
  {"putconn twice", "pool:putconn", function(ctx)
      local c = ctx.pool:getconn():await()
      ctx.pool:putconn(c)
      return ctx.pool:putconn(c)
    end,
    raises = {"PoolError", "putconn: not a connection of this pool, or already given back"}},
  {"getconn opts a string", "pool:getconn", function(ctx) return ctx.pool:getconn("ping") end,
    raises = {"InterfaceError", "getconn: opts must be a table"}},
  {"getconn opts.ping a string", "pool:getconn opts.ping", function(ctx) return ctx.pool:getconn({ping = "no"}) end,
    raises = {"InterfaceError", "getconn: opts.ping must be a boolean"}},
  {"a request on a closed connection", "conn:execute", function()
      local c = momoko.connect(H.dsn):await()
      c:close()
      return c:execute("SELECT 1")
    end,
    raises = {"InterfaceError", "execute: connection is closed"}},
  {"a request on a closed pool", "pool:stream", function()
      local p = momoko.Pool{dsn = H.dsn}
      p:close()
      return p:stream("SELECT 1")
    end,
    raises = {"PoolError", "stream: pool is closed"}},
  {"manage of a number", "pool:manage", function(ctx) return ctx.pool:manage(5) end,
    raises = {"PoolError", "manage: not a connection of this pool, or already given back"}},
}

describe("hostile input", function()
  local reported = H.collect_reports()
  local ctx = {}

  lazy_setup(function()
    local dsn, papp
    dsn, ctx.conn_app = H.app_dsn("hostile_conn")
    ctx.conn = momoko.connect(dsn):await()
    dsn, papp = H.app_dsn("hostile_pool")
    ctx.pool_app = papp
    ctx.pool = momoko.Pool{dsn = dsn, size = 2, pipeline = true}
    ctx.pool:connect():await()
    local cols = {}
    for i = 1, 1600 do cols[i] = "c" .. i .. " int" end
    H.psql("DROP TABLE IF EXISTS hostile_two, hostile_wide")
    H.psql("CREATE TABLE hostile_two (a int, b text)")
    H.psql("CREATE TABLE hostile_wide (" .. table.concat(cols, ", ") .. ")")
  end)

  lazy_teardown(function()
    ctx.conn:close()
    ctx.pool:close()
    H.psql("DROP TABLE IF EXISTS hostile_two, hostile_wide")
    assert.is_true(H.no_backends(ctx.conn_app))
    assert.is_true(H.no_backends(ctx.pool_app))
  end)

  -- Runs row.call (in a coroutine when the row says so) and returns pcall's results,
  -- with a returned future awaited.
  local function run(row)
    local function body()
      local v = table.pack(row[3](ctx))
      if momoko.is_future(v[1]) then return v[1]:await() end
      return table.unpack(v, 1, v.n)
    end
    if row.in_coroutine then
      return pcall(H.async, body)
    end
    return pcall(body)
  end

  for i, row in ipairs(rows) do
    it(string.format("%03d %s: %s", i, row[2], row[1]), function()
      local raised_at_call
      if row.raises then
        local ok, err = pcall(row[3], ctx)
        assert.is_false(ok, "expected the call to raise " .. row.raises[1])
        H.assert_kind(row.raises[1], err)
        assert.equal(row.raises[2], err.message)
        raised_at_call = true
      end
      if not raised_at_call then
        local res = table.pack(run(row))
        if row.fails then
          assert.is_false(res[1], "expected the future to fail with " .. row.fails[1])
          H.assert_kind(row.fails[1], res[2])
          assert.is_truthy(res[2].message:find(row.fails[2], 1, true), res[2].message)
        elseif row.raw_error then
          assert.is_false(res[1], "expected the raised value")
          assert.is_truthy(tostring(res[2]):find(row.raw_error, 1, true), tostring(res[2]))
        else
          assert.is_true(res[1], tostring(res[2]))
          row.result(ctx, table.unpack(res, 2, res.n))
        end
      end
      if row.check then row.check(ctx) end
      -- what reached on_error, in order
      local want = row.reports or {}
      H.wait_until(function() return #reported >= #want end, 2000)
      assert.equal(#want, #reported, "reports: " .. table.concat((function()
        local t = {}
        for k, e in ipairs(reported) do t[k] = tostring(e) end
        return t
      end)(), " | "))
      for k, pattern in ipairs(want) do
        assert.matches(pattern, tostring(reported[k]))
      end
      -- the shared connection and pool still work and hold nothing
      assert.equal(1, one(ctx.conn, "SELECT 1"))
      assert.equal("idle", ctx.conn.transaction_status)
      assert.equal(2, one(ctx.pool, "SELECT 2"))
      assert.is_true(H.wait_until(function()
        local s = ctx.pool:stats()
        return s.busy == 0 and s.waiting == 0 and s.free == 2
      end, 5000))
      assert.equal(1, H.backends(ctx.conn_app))
      assert.equal(2, H.backends(ctx.pool_app))
    end)
  end
end)
