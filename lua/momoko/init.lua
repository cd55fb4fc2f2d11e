-- momoko: asynchronous PostgreSQL for Lua 5.4 on libuv.
-- The C module momoko.core gives the primitives (loop, futures, connections, cursors,
-- codecs); this file adds what is simplest in Lua: momoko.all, momoko.connect, JSON,
-- register_json/register_hstore, and connection factories.
local core = require "momoko.core"

-- What only this file may use (future resolution, method tables, decoders, factory
-- runner): taken out of the module, so no user code reaches it.
local private = core._private
if private == nil then
  error("momoko: momoko.core was opened twice or its private table was taken: require \"momoko\"", 2)
end
core._private = nil
local resolve, fail = private.resolve, private.fail

local M = {
  _VERSION = core._VERSION,
  run = core.run,
  spawn = core.spawn,
  sleep = core.sleep,
  loop = core.loop,
  set_loop = core.set_loop,
  on_error = core.on_error,
  is = core.is,
  Error = core.Error,
  kinds = core.kinds,
  null = core.null,
  bytea = core.bytea,
  hstore = core.hstore,
  register_type = core.register_type,
  Connection = core.Connection,
  Pool = core.Pool,
  cursors = { array = "array", dict = "dict" },
}

local Future = core.Future
local methods = private.Connection_methods
local pool_methods = private.Pool_methods
local stream_methods = private.Stream_methods

--- s:rows(): an iterator over the rest of the stream, for a coroutine (each step awaits).
function stream_methods.rows(self)
  return function()
    return self:next():await()
  end
end

local function is_future(v)
  return getmetatable(v) == Future
end
M.is_future = is_future

local function interface_error(msg)
  return core.error("InterfaceError", msg)
end

-- A future already resolved with the given values.
local function done(...)
  local f = core.future()
  resolve(f, ...)
  return f
end

-- cjson, loaded on first use (optional dependency).
local cjson
local function json_codec()
  if cjson == nil then
    local ok, mod = pcall(require, "cjson")
    cjson = ok and mod or false
  end
  return cjson
end

--- momoko.all(futures): a future of all results in order; fails with the first error.
function M.all(futures)
  if type(futures) ~= "table" then
    error(interface_error("momoko.all: an array of futures expected"), 2)
  end
  local n = #futures
  for i = 1, n do
    if not is_future(futures[i]) then
      error(interface_error("momoko.all: item " .. i .. " is not a future"), 2)
    end
  end
  local out, results, left, failed = core.future(), {}, n, false
  if n == 0 then
    resolve(out, results)
    return out
  end
  for i = 1, n do
    futures[i]:add_done_callback(function(f)
      if failed then return end
      local err = f:error()
      if err ~= nil then
        failed = true
        fail(out, err)
        return
      end
      results[i] = f:result()
      left = left - 1
      if left == 0 then resolve(out, results) end
    end)
  end
  return out
end

--- momoko.connect(dsn, opts) / momoko.connect(opts): a future of a connected Connection.
function M.connect(...)
  return core.Connection(...):connect()
end

--- momoko.json(v): v sent as a json parameter (encoded with lua-cjson).
function M.json(v)
  local codec = json_codec()
  if not codec then
    error(interface_error("momoko.json needs lua-cjson (Debian: lua-cjson)"), 2)
  end
  local ok, text = pcall(codec.encode, v)
  if not ok then
    error(interface_error("momoko.json: cannot encode: " .. tostring(text)), 2)
  end
  return core.json_text(text)
end

-- Connection factories run in a coroutine after setsession; the connect future
-- resolves once the factory (and the future it may return) is done.
private.set_after_connect(function(fut, conn, factory)
  core.spawn(function()
    local ok, err = pcall(function()
      local r = factory(conn)
      if is_future(r) then r:await() end
    end)
    if ok then
      resolve(fut, conn)
    else
      conn:close()
      if getmetatable(err) ~= core.Error then
        err = interface_error("connection_factory failed: " .. tostring(err))
      end
      fail(fut, err)
    end
  end)
end)

local JSON, JSONB, JSON_ARRAY, JSONB_ARRAY = 114, 3802, 199, 3807

local function set_decoder(conn, globally, oid, fn)
  private.set_decoder(conn, oid, fn)
  if globally then core.register_type(oid, fn) end
end

--- register_json{loads=, globally=} (Connection and Pool): json and jsonb results
--- decode to Lua values.
local function register_json(self, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error(interface_error("register_json: opts must be a table"), 2) end
  local loads = opts.loads
  if loads == nil then
    local codec = json_codec()
    if not codec then
      error(interface_error("register_json: no opts.loads and lua-cjson is not installed"), 2)
    end
    loads = codec.decode
  elseif type(loads) ~= "function" then
    error(interface_error("register_json: opts.loads must be a function"), 2)
  end
  set_decoder(self, opts.globally, JSON, loads)
  set_decoder(self, opts.globally, JSONB, loads)
  set_decoder(self, opts.globally, JSON_ARRAY, { array = loads })
  set_decoder(self, opts.globally, JSONB_ARRAY, { array = loads })
  return done(self)
end

--- register_hstore{globally=} (Connection and Pool): hstore results decode to tables
--- (looks up the OID on the server first).
local function register_hstore(self, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error(interface_error("register_hstore: opts must be a table"), 2) end
  local lookup = self:execute("SELECT to_regtype('hstore')::oid, to_regtype('hstore[]')::oid")
  return core.spawn(function()
    local row = lookup:await():fetchone()
    if row[1] == M.null then
      error(core.error("ProgrammingError", "hstore type not found: run CREATE EXTENSION hstore"))
    end
    set_decoder(self, opts.globally, row[1], core.hstore_decode)
    set_decoder(self, opts.globally, row[2], { array = core.hstore_decode })
    return self
  end)
end

methods.register_json, pool_methods.register_json = register_json, register_json
methods.register_hstore, pool_methods.register_hstore = register_hstore, register_hstore

--- pool:manage(conn): a to-be-closed guard that gives conn back at scope exit.
function pool_methods.manage(self, conn)
  if not private.pool_owns(self, conn) then
    error(core.error("PoolError", "manage: not a connection of this pool, or already given back"), 2)
  end
  return setmetatable({}, { __close = function()
    if private.pool_owns(self, conn) then self:putconn(conn) end
  end })
end

--- pool:mogrify(sql, params): a future of the SQL with its parameters inlined, once a
--- connection is free (escaping follows that connection's settings).
function pool_methods.mogrify(self, sql, params)
  private.pool_check_params(self, sql, params) -- bad arguments raise at the call, as on a Connection
  local get = self:getconn{ ping = false }
  return core.spawn(function()
    local conn <close> = get:await()
    return conn:mogrify(sql, params)
  end)
end

-- LISTEN/NOTIFY. A Connection's handlers live in its LISTEN state (private.listen_state,
-- a user value of the userdata); the core hands each notification to the handler of
-- its channel in a coroutine of its own. A pool listens on one Connection of its own,
-- kept in the pool's LISTEN state and reopened after a loss.
local listen_state = private.listen_state

-- A channel is an identifier: PostgreSQL would cut a longer LISTEN name to
-- NAMEDATALEN - 1 bytes (so a NOTIFY of the full name never reaches it) and refuses an
-- empty one.
local CHANNEL_MAX = 63

local function check_channel(who, channel)
  if type(channel) ~= "string" then
    error(interface_error(who .. ": channel must be a string, got " .. type(channel)), 3)
  end
  if channel:find("\0", 1, true) then
    error(interface_error(who .. ": channel contains a NUL byte"), 3)
  end
  if channel == "" then
    error(interface_error(who .. ": channel must not be empty"), 3)
  end
  if #channel > CHANNEL_MAX then
    error(interface_error(string.format("%s: channel is %d bytes long; PostgreSQL allows at most %d",
      who, #channel, CHANNEL_MAX)), 3)
  end
end

-- LISTEN needs a session of its own, which PgBouncer in transaction mode never gives: a
-- future failed with NotSupportedError, or nil when self is not behind it.
local function refused_by_pgbouncer(self)
  if not private.owner_options(self).pgbouncer then return nil end
  local f = core.future()
  fail(f, core.error("NotSupportedError",
    "listen: not supported with pgbouncer = true: LISTEN needs a session of its own, which " ..
    "PgBouncer in transaction mode hands to other clients between requests (listen on a " ..
    "Connection straight to PostgreSQL)"))
  return f
end

-- The channel as an identifier for LISTEN/UNLISTEN, escaped on the connected Connection
-- self (an InterfaceError naming who otherwise).
local function quoted_channel(self, who, channel)
  if self.pid == nil then
    error(interface_error(who .. ": connection is not connected"), 3)
  end
  return self:escape_identifier(channel)
end

local function own_state(self, who)
  local st = listen_state(self)
  if st == nil then
    error(interface_error(who .. ": not on a pool's connection (use pool:" .. who .. ")"), 3)
  end
  return st
end

--- conn:listen(channel, fn): a future resolved once LISTEN ran; fn(channel, payload,
--- pid) runs in a coroutine of its own for every notification on channel.
function methods.listen(self, channel, fn)
  check_channel("listen", channel)
  if type(fn) ~= "function" then
    error(interface_error("listen: fn must be a function, got " .. type(fn)), 2)
  end
  local refused = refused_by_pgbouncer(self)
  if refused then return refused end
  local st = own_state(self, "listen")
  local sql = "LISTEN " .. quoted_channel(self, "listen", channel)
  st.handlers[channel] = fn
  return self:execute(sql)
end

--- conn:unlisten(channel): a future resolved once UNLISTEN ran; no more deliveries.
function methods.unlisten(self, channel)
  check_channel("unlisten", channel)
  local st = own_state(self, "unlisten")
  local sql = "UNLISTEN " .. quoted_channel(self, "unlisten", channel)
  st.handlers[channel] = nil
  return self:execute(sql)
end

--- conn:notify(channel, payload?) / pool:notify: pg_notify with bound parameters.
local function notify(self, channel, payload)
  check_channel("notify", channel)
  if payload ~= nil and type(payload) ~= "string" then
    error(interface_error("notify: payload must be a string or nil, got " .. type(payload)), 2)
  end
  return self:execute("SELECT pg_notify($1, $2)", { channel, payload or "" })
end
methods.notify, pool_methods.notify = notify, notify

-- The pool's listener: st.conn (nil while down), st.channels (channel -> {fn, opts}),
-- st.interval (reconnect_interval), st.closed. Opening connects, LISTENs every channel
-- (calling on_reconnect for each after a loss) and, if that fails, tries again after
-- interval; a listener that dies is reopened the same way.
local open_listener

-- False once the pool was closed (also through __close) or collected: the listener stays
-- down then.
local function wanted(st)
  local pool = st.owner[1]
  if st.closed or pool == nil or pool.closed then
    st.closed = true
    return false
  end
  return true
end

local function listener_options(pool)
  local o = private.owner_options(pool)
  return { dsn = o.dsn, setsession = o.setsession, loop = o.loop, on_notice = o.on_notice }
end

-- Listens on conn to every channel, over a snapshot of them: pool:listen and unlisten
-- change st.channels while a LISTEN is awaited (a channel added meanwhile is listened to
-- by its own pool:listen, which waits for this; pool:unlisten sends its UNLISTEN on conn,
-- st.setting_up, at once, so one unlistened meanwhile is skipped, or gets no handler
-- once its LISTEN ran). After a loss
-- (reconnect), on_reconnect(channel) is called once the channel listens again and before
-- its fn gets any notification of the new session: those that come with or right after
-- the LISTEN's answer are held until on_reconnect was called.
local function relisten(st, conn, reconnect)
  local channels = {}
  for channel in pairs(st.channels) do channels[#channels + 1] = channel end
  for _, channel in ipairs(channels) do
    local h = st.channels[channel]
    if h then -- not unlistened meanwhile
      local held = reconnect and h.opts.on_reconnect and {}
      if held then
        conn:listen(channel, function(...) held[#held + 1] = table.pack(...) end):await()
      else
        conn:listen(channel, h.fn):await()
      end
      h = st.channels[channel]
      if h then -- its handler as it is now: a pool:listen meanwhile may have replaced it
        if held and h.opts.on_reconnect then core.spawn(h.opts.on_reconnect, channel) end
        listen_state(conn).handlers[channel] = h.fn
        for _, n in ipairs(held or {}) do core.spawn(h.fn, table.unpack(n, 1, n.n)) end
      end
    end
  end
end

open_listener = function(st, opts, reconnect)
  st.opening = core.spawn(function()
    while wanted(st) do
      local conn = core.Connection(opts)
      local ok, err = pcall(function()
        conn:connect():await()
        if st.closed then return end
        st.setting_up = conn
        -- only the installed listener is reopened from here: one that dies while it
        -- is set up fails this attempt, and this loop tries again
        listen_state(conn).on_lost = function()
          if st.conn ~= conn then return end
          st.conn = nil
          if wanted(st) then open_listener(st, opts, true) end
        end
        relisten(st, conn, reconnect)
      end)
      st.setting_up = nil
      if ok and not st.closed and not conn.closed then
        st.conn = conn
        st.opening = nil
        return conn
      end
      conn:close()
      if st.closed then break end
      if not reconnect then st.opening = nil; error(err, 0) end
      core.sleep(st.interval):await()
    end
    st.opening = nil
    error(interface_error("listen: pool is closed"), 0)
  end)
  return st.opening
end

--- pool:listen(channel, fn, opts?): as conn:listen on the pool's listening connection.
function pool_methods.listen(self, channel, fn, opts)
  check_channel("listen", channel)
  if type(fn) ~= "function" then
    error(interface_error("listen: fn must be a function, got " .. type(fn)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(interface_error("listen: opts must be a table"), 2)
  end
  opts = opts or {}
  if opts.on_reconnect ~= nil and type(opts.on_reconnect) ~= "function" then
    error(interface_error("listen: opts.on_reconnect must be a function"), 2)
  end
  if self.closed then error(interface_error("listen: pool is closed"), 2) end
  local refused = refused_by_pgbouncer(self)
  if refused then return refused end
  local st = listen_state(self)
  st.channels = st.channels or {}
  st.interval = st.interval or 500
  st.owner = st.owner or setmetatable({ self }, { __mode = "v" })
  st.channels[channel] = { fn = fn, opts = opts }
  if st.conn and not st.conn.closed then return st.conn:listen(channel, fn) end
  local opening = st.opening or open_listener(st, listener_options(self), false)
  return core.spawn(function()
    local conn = opening:await()
    -- the listener listened to every channel known when it opened, maybe not this one
    if st.channels[channel] and st.channels[channel].fn == fn then conn:listen(channel, fn):await() end
  end)
end

--- pool:unlisten(channel): a future resolved once UNLISTEN ran on the listener.
function pool_methods.unlisten(self, channel)
  check_channel("unlisten", channel)
  local st = listen_state(self)
  if st.channels then st.channels[channel] = nil end
  local conn = st.conn or st.setting_up -- the listener, or the one being set up
  if conn and not conn.closed then return conn:unlisten(channel) end
  return done()
end

local pool_close = pool_methods.close
--- pool:close() also closes the listening connection.
function pool_methods.close(self)
  local st = listen_state(self)
  st.closed = true
  if st.conn then st.conn:close() end
  st.conn = nil
  return pool_close(self)
end

--- momoko.Pool(opts): the reconnect_interval is kept for the listener.
function M.Pool(opts)
  local pool = core.Pool(opts)
  -- 'local p <close> = momoko.Pool{...}' closes the listener too
  getmetatable(pool).__close = pool_methods.close
  listen_state(pool).interval = opts.reconnect_interval or 500
  return pool
end

return M
