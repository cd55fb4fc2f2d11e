-- A real primary and a streaming standby for the specs of several servers: two
-- PostgreSQL servers in one temporary directory, each on its own free port of
-- 127.0.0.1, run as the postgres user when the spec runs as root (as scripts/pg-env
-- does). The primary has wal_level=replica and synchronous_standby_names = '*' with
-- synchronous_commit on, so a commit is acknowledged only once the standby has flushed
-- it; the standby is made with pg_basebackup -R and streams from it (its own
-- synchronous_standby_names is empty, so that once promoted it commits alone). With
-- opts.synchronous = false the primary has no synchronous standby either, so that its
-- commits go on while the standby is stopped (scripts/soak stops and starts it).
-- Plain Lua: busted is not needed (scripts/soak.lua uses it from lua5.4).
--
--   local Cluster = require "cluster"
--   local cl = Cluster.start{sleep = function(ms) momoko.sleep(ms):await() end}
--   Cluster.start{..., synchronous = false}  -- an asynchronous standby (see below)
--   cl.primary.port, cl.standby.port, cl:dsn("target_session_attrs=read-write")
--   cl.primary:kill()      -- pg_ctl stop -m immediate
--   cl.standby:promote()   -- pg_ctl promote, waits until it takes writes
--   cl.primary:stop() / :start() / :running() / :psql(sql)
--   cl:destroy()           -- both stopped, the directory removed (idempotent)
--
-- Every command runs in the background with a time limit (timeout(1)) and is waited
-- for by polling, with opts.sleep between polls: given momoko.sleep, the loop (and the
-- pool under test) keeps running while a server is killed or promoted. Every wait has a
-- limit. A watchdog process stops both servers and removes the directory when this
-- Lua process exits without destroy() (a crash, a kill), so no server outlives it.
local Cluster = {}
Cluster.__index = Cluster

local Node = {}
Node.__index = Node

local PG_BIN = (function()
  local p = assert(io.popen("printf '%s\\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1"))
  local bin = p:read("l")
  p:close()
  return assert(bin and bin ~= "" and bin, "cluster: no /usr/lib/postgresql/*/bin")
end)()

local AS_POSTGRES = (function()
  local p = assert(io.popen("id -u"))
  local uid = p:read("l")
  p:close()
  return uid == "0" and "runuser -u postgres -- " or ""
end)()

local COMMAND_LIMIT = 60 -- s, for any one command (initdb, pg_basebackup, pg_ctl ...)

local function blocking_sleep(ms)
  os.execute(string.format("sleep %.3f", ms / 1000))
end

-- s quoted for the shell (single quotes: nothing in it is expanded).
local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs a shell command, returns whether it exited 0 and its output.
local function sh(cmd)
  local p = assert(io.popen("env -u LD_PRELOAD sh -c " .. quote(cmd) .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok == true, out
end

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, text, mode)
  local f = assert(io.open(path, mode or "w"))
  f:write(text)
  f:close()
end

-- Runs cmd (a shell command) in the background in the cluster's directory, bounded by
-- limit seconds, polling for its end with self.sleep. Returns whether it exited 0,
-- its output, and the wall-clock ms (date +%s%3N) at which it ended.
function Cluster:run(cmd, limit)
  self.jobs = self.jobs + 1
  local base = string.format("%s/job%d", self.dir, self.jobs)
  local script = string.format(
    "cd %s && timeout -k 5 %d sh -c %s >%s.out 2>&1; echo $? $(date +%%s%%3N) >%s.rc.tmp && mv %s.rc.tmp %s.rc",
    self.dir, limit or COMMAND_LIMIT, quote(cmd), base, base, base, base)
  assert(os.execute("env -u LD_PRELOAD sh -c " .. quote(script) .. " </dev/null >/dev/null 2>&1 &"))
  local rc
  local polls = math.ceil(((limit or COMMAND_LIMIT) + 10) * 1000 / 20)
  for _ = 1, polls do
    rc = read_file(base .. ".rc")
    if rc then break end
    self.sleep(20)
  end
  local out = read_file(base .. ".out") or ""
  os.remove(base .. ".rc")
  os.remove(base .. ".out")
  if not rc then return false, out .. "\n(cluster: the command never ended: " .. cmd .. ")", nil end
  local status, ended = rc:match("^(%d+) (%d+)")
  return status == "0", out, tonumber(ended)
end

-- A free port on 127.0.0.1 (ss says nothing listens on it), as scripts/pg-env finds one.
local function free_port()
  for _ = 1, 100 do
    local port = math.random(20000, 59999)
    local ok, out = sh("ss -Htanl 'sport = :" .. port .. "'")
    if ok and out == "" then return port end
  end
  error("cluster: no free port found")
end

local function pg_ctl(node, args)
  return string.format("%s%s/pg_ctl -D %s -l %s -w -t %d %s", AS_POSTGRES, PG_BIN, node.data, node.log,
    COMMAND_LIMIT - 5, args)
end

--- The node's libpq DSN (one host), to database postgres as user postgres.
function Node:dsn(extra)
  return string.format("host=127.0.0.1 port=%d dbname=postgres user=postgres%s", self.port,
    extra and (" " .. extra) or "")
end

--- Runs sql on this server with psql (independent of momoko); returns its unaligned
--- output, trimmed. Raises if psql fails.
function Node:psql(sql)
  local ok, out = sh(string.format("timeout 30 %s/psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d -U postgres -d postgres -c %s",
    PG_BIN, self.port, quote(sql)))
  assert(ok, self.name .. ": psql failed: " .. out)
  return (out:gsub("%s+$", ""))
end

--- pg_ctl on this server (args such as "stop -m fast"); raises on failure with the
--- server's log. Returns the wall-clock ms at which pg_ctl returned.
function Node:ctl(args)
  local ok, out, ended = self.cluster:run(pg_ctl(self, args))
  if not ok then
    error(string.format("%s: pg_ctl %s failed: %s\n--- its log:\n%s", self.name, args, out,
      read_file(self.log) or ""), 2)
  end
  return ended
end

function Node:start() return self:ctl("start") end
function Node:stop() return self:ctl("stop -m fast") end
--- Stops the server with -m immediate (no shutdown checkpoint: as if it crashed).
function Node:kill() return self:ctl("stop -m immediate") end
--- Promotes a standby; pg_ctl waits until it is out of recovery.
function Node:promote() return self:ctl("promote") end

function Node:running()
  return (self.cluster:run(pg_ctl(self, "status"), 30))
end

--- Waits (polling with the cluster's sleep, at most ms) until pred() is true.
function Cluster:wait_until(pred, ms)
  local steps = math.ceil((ms or 30000) / 50)
  for _ = 1, steps do
    if pred() then return true end
    self.sleep(50)
  end
  return pred() and true or false
end

local function node_of(cluster, name)
  return setmetatable({
    cluster = cluster,
    name = name,
    data = cluster.dir .. "/" .. name,
    log = cluster.dir .. "/" .. name .. ".log",
  }, Node)
end

-- Appends settings to the node's postgresql.conf (the last value of a setting wins).
local function configure(node, settings)
  write_file(node.data .. "/postgresql.conf", "\n# cluster.lua\n" .. settings .. "\n", "a")
end

-- Starts node on a free port (settings: what else its postgresql.conf gets); tries
-- another port when the chosen one was taken meanwhile.
local function start_on_free_port(node, settings)
  for tries = 1, 3 do
    node.port = free_port()
    configure(node, string.format("port = %d\n%s", node.port, settings))
    local ok, out = node.cluster:run(pg_ctl(node, "start"))
    if ok then return end
    local log = read_file(node.log) or ""
    if tries == 3 or not log:find("could not bind", 1, true) and not log:find("could not create any TCP", 1, true) then
      error(string.format("cluster: %s did not start: %s\n--- its log:\n%s", node.name, out, log))
    end
  end
end

-- Starts the watchdog: once this Lua process (the parent of the shell io.popen runs)
-- is gone, it stops both servers and removes the directory; it ends by itself when
-- destroy() removed the directory.
local function start_watchdog(cl)
  local p = assert(io.popen("echo $PPID"))
  local pid = tonumber(p:read("l"))
  p:close()
  assert(pid, "cluster: cannot tell this process's pid")
  local stop_all = string.format("%s; %s; rm -rf %s", pg_ctl(cl.primary, "stop -m immediate"),
    pg_ctl(cl.standby, "stop -m immediate"), cl.dir)
  local script = string.format(
    "cd /; while kill -0 %d 2>/dev/null && [ -d %s ]; do sleep 0.5; done; [ -d %s ] && (%s)",
    pid, cl.dir, cl.dir, stop_all)
  assert(os.execute("env -u LD_PRELOAD setsid sh -c " .. quote(script) .. " </dev/null >/dev/null 2>&1 &"))
end

--- Starts a primary and a synchronous streaming standby, and waits until the standby
--- streams in sync. opts.sleep(ms) is how to wait between polls (default: a blocking
--- sleep); opts.synchronous = false: the standby streams asynchronously. Returns the
--- cluster; on any failure, stops what it started and raises.
function Cluster.start(opts)
  opts = opts or {}
  local ok, dir = sh("mktemp -d /tmp/momoko-cluster.XXXXXX")
  assert(ok, "cluster: mktemp failed: " .. dir)
  dir = dir:gsub("%s+$", "")
  local cl = setmetatable({dir = dir, jobs = 0, sleep = opts.sleep or blocking_sleep}, Cluster)
  local sync = opts.synchronous ~= false
  cl.primary = node_of(cl, "primary")
  cl.standby = node_of(cl, "standby")
  start_watchdog(cl)
  local started, err = pcall(function()
    assert(sh("chmod 755 " .. dir .. (AS_POSTGRES ~= "" and (" && chown postgres: " .. dir) or "")))
    local init_ok, out = cl:run(string.format("%s%s/initdb -D %s --auth=trust -U postgres -E UTF8 --locale=C --no-sync",
      AS_POSTGRES, PG_BIN, cl.primary.data))
    assert(init_ok, "cluster: initdb failed: " .. out)
    start_on_free_port(cl.primary, string.format([[
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
max_connections = 200
wal_level = replica
max_wal_senders = 10
synchronous_standby_names = '%s'
synchronous_commit = on
fsync = off
timezone = 'UTC']], dir, sync and "*" or ""))
    local bb_ok, bb_out = cl:run(string.format("%s%s/pg_basebackup -h 127.0.0.1 -p %d -U postgres -D %s -R -X stream -c fast",
      AS_POSTGRES, PG_BIN, cl.primary.port, cl.standby.data))
    assert(bb_ok, "cluster: pg_basebackup failed: " .. bb_out)
    -- the copied postgresql.conf names a synchronous standby: once promoted, this server
    -- has none and must commit alone
    start_on_free_port(cl.standby, "synchronous_standby_names = ''\nhot_standby = on")
    assert(cl:wait_until(function()
      return cl.primary:psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = '" ..
        (sync and "sync" or "async") .. "'") == "1"
    end, 30000), "cluster: the standby does not stream within 30 s")
  end)
  if not started then
    cl:destroy()
    error(err, 0)
  end
  return cl
end

--- A DSN naming both servers, primary first (extra: more keywords).
function Cluster:dsn(extra)
  return string.format("host=127.0.0.1,127.0.0.1 port=%d,%d dbname=postgres user=postgres%s",
    self.primary.port, self.standby.port, extra and (" " .. extra) or "")
end

--- Stops both servers (fast, else immediate) and removes the directory. Idempotent;
--- never raises (it runs in teardowns).
function Cluster:destroy()
  if self.destroyed then return end
  self.destroyed = true
  for _, node in ipairs({self.primary, self.standby}) do
    if read_file(node.data .. "/postmaster.pid") then
      local ok = self:run(pg_ctl(node, "stop -m fast"), 40)
      if not ok then self:run(pg_ctl(node, "stop -m immediate"), 30) end
    end
  end
  sh("rm -rf " .. self.dir)
end

return Cluster
