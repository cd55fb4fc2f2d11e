-- Starts Debian's PgBouncer (package pgbouncer: `scripts/deps pgbouncer`) in front of the
-- test server, in transaction mode, and asks its admin console.
--
--   local B = require "pgbouncer"
--   local bouncer = B.start{pool_size = 3}  -- default_pool_size (default 3)
--   momoko.connect(bouncer.dsn)             -- the test DSN with host/port replaced
--   bouncer:show("POOLS")                   -- SHOW POOLS of the admin console: an array of
--                                           -- rows keyed by column name (values are strings)
--   bouncer:stats()                         -- this database's row of SHOW STATS, as numbers
--   bouncer:stop()                          -- stops it and removes its directory; idempotent
--
-- Fields: port, dsn, dir, pool_size. It listens on 127.0.0.1 on a free port (no Unix
-- socket), with pool_mode = transaction, auth_type = trust (the user postgres, as the test
-- server's pg_hba trusts it on 127.0.0.1), one database, momoko_test, on the test server.
-- As root it runs as the postgres user (PgBouncer refuses root). It runs in the
-- foreground under a bash started by io.popen(..., "w"): bash waits on its stdin (the
-- pipe) and stops PgBouncer (SIGTERM, an immediate shutdown) as soon as the pipe closes,
-- on stop(), on the pipe's GC, or when this process dies. Every wait is bounded.
-- Admin commands run through psql, blocking, independent of momoko's loop. This module
-- does not load momoko.
local B = {}

local Bouncer = {}
Bouncer.__index = Bouncer

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local function is_root()
  local _, out = run("id -u")
  return out:match("^0%s") ~= nil
end

--- The pgbouncer binary; raises, saying how to install it, when there is none.
function B.binary()
  for _, path in ipairs{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} do
    local f = io.open(path, "rb")
    if f then
      f:close()
      return path
    end
  end
  error("pgbouncer is not installed: run `bash scripts/deps pgbouncer` (Debian package pgbouncer)")
end

local function free_port()
  for _ = 1, 100 do
    local port = math.random(20000, 59999)
    local _, out = run("ss -Htanl 'sport = :" .. port .. "'")
    if out:match("^%s*$") then return port end
  end
  error("pgbouncer helper: no free port found")
end

local function rewrite_dsn(dsn, port)
  local out, nhost, nport = dsn, 0, 0
  out, nhost = out:gsub("%f[%w_]host%s*=%s*%S+", "host=127.0.0.1")
  out, nport = out:gsub("%f[%w_]port%s*=%s*%S+", "port=" .. port)
  if nhost == 0 then out = out .. " host=127.0.0.1" end
  if nport == 0 then out = out .. " port=" .. port end
  return out
end

-- PgBouncer's configuration for this run.
local function config(dir, port, upstream_port, pool_size)
  return table.concat({
    "[databases]",
    string.format("momoko_test = host=127.0.0.1 port=%d dbname=momoko_test user=postgres", upstream_port),
    "[pgbouncer]",
    "listen_addr = 127.0.0.1",
    "listen_port = " .. port,
    "unix_socket_dir =",
    "auth_type = trust",
    "auth_file = " .. dir .. "/userlist.txt",
    "admin_users = postgres",
    "pool_mode = transaction",
    "default_pool_size = " .. pool_size,
    "min_pool_size = 0",
    "reserve_pool_size = 0",
    "max_client_conn = 500",
    "server_lifetime = 3600",
    "logfile = " .. dir .. "/pgbouncer.log",
    "pidfile = " .. dir .. "/pgbouncer.pid",
    "",
  }, "\n")
end

-- Whether something accepts TCP connections on 127.0.0.1:port (bash's /dev/tcp, 2 s).
local function accepts(port)
  return (run("timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "'"))
end

--- Starts PgBouncer; see the top of this file. Options: pool_size (default 3),
--- upstream_port (default MOMOKO_TEST_PORT), dsn (the DSN to rewrite; default
--- MOMOKO_TEST_DSN).
function B.start(opts)
  opts = opts or {}
  local binary = B.binary()
  local upstream_port = opts.upstream_port or tonumber(os.getenv("MOMOKO_TEST_PORT"))
  assert(upstream_port, "pgbouncer helper: no upstream_port and no MOMOKO_TEST_PORT (run through scripts/test)")
  local base_dsn = opts.dsn or os.getenv("MOMOKO_TEST_DSN")
  assert(base_dsn, "pgbouncer helper: no dsn and no MOMOKO_TEST_DSN (run through scripts/test)")
  local pool_size = opts.pool_size or 3
  local root = is_root()
  local _, dir = run("mktemp -d /tmp/momoko-pgbouncer.XXXXXX")
  dir = dir:gsub("%s+$", "")
  assert(dir:match("^/tmp/momoko%-pgbouncer%."), "pgbouncer helper: mktemp failed: " .. dir)
  write_file(dir .. "/userlist.txt", '"postgres" ""\n')
  local as_user = ""
  if root then
    assert(run("chown -R postgres: " .. shell_quote(dir)))
    as_user = "runuser -u postgres -- "
  end

  local last_log = ""
  for _ = 1, 3 do -- another process may take the free port first
    local port = free_port()
    write_file(dir .. "/pgbouncer.ini", config(dir, port, upstream_port, pool_size))
    if root then assert(run("chown postgres: " .. shell_quote(dir .. "/pgbouncer.ini"))) end
    -- bash runs PgBouncer in the background, then blocks reading its stdin (the pipe);
    -- EOF stops PgBouncer and waits for it (at most 10 s, then SIGKILL)
    local script = string.format(
      "env -u LD_PRELOAD %s%s %s </dev/null >/dev/null 2>&1 & p=$!; cat >/dev/null; " ..
      "kill -TERM $p 2>/dev/null; for _ in $(seq 100); do kill -0 $p 2>/dev/null || exit 0; sleep 0.1; done; " ..
      "kill -KILL $p 2>/dev/null; wait $p",
      as_user, binary, shell_quote(dir .. "/pgbouncer.ini"))
    local pipe = assert(io.popen("bash -c " .. shell_quote(script), "w"))
    local up = false
    for _ = 1, 100 do -- 10 s at most
      if read_file(dir .. "/pgbouncer.log"):find("process up", 1, true) and accepts(port) then
        up = true
        break
      end
      os.execute("sleep 0.1")
    end
    if up then
      return setmetatable({
        port = port,
        dir = dir,
        pool_size = pool_size,
        pipe = pipe,
        dsn = rewrite_dsn(base_dsn, port),
      }, Bouncer)
    end
    pipe:close()
    last_log = read_file(dir .. "/pgbouncer.log")
    os.remove(dir .. "/pgbouncer.log")
  end
  run("rm -rf " .. shell_quote(dir))
  error("pgbouncer did not start; its log:\n" .. last_log)
end

--- Runs an admin console command (SHOW ...); returns its rows, each keyed by column name.
function Bouncer:show(what)
  local ok, out = run(string.format(
    "env -u LD_PRELOAD timeout 10 psql -X -q -A -F '|' -P footer=off -h 127.0.0.1 -p %d -U postgres -d pgbouncer -c %s",
    self.port, shell_quote("SHOW " .. what)))
  assert(ok, "pgbouncer admin: SHOW " .. what .. " failed: " .. out)
  local rows, names = {}, nil
  for line in out:gmatch("[^\n]+") do
    local fields = {}
    for v in (line .. "|"):gmatch("(.-)|") do fields[#fields + 1] = v end
    if not names then
      names = fields
    else
      local row = {}
      for i, name in ipairs(names) do row[name] = fields[i] end
      rows[#rows + 1] = row
    end
  end
  return rows
end

--- This database's row of SHOW STATS (total_xact_count, total_query_count, ...), as
--- numbers.
function Bouncer:stats()
  for _, row in ipairs(self:show("STATS")) do
    if row.database == "momoko_test" then
      local t = {}
      for k, v in pairs(row) do t[k] = tonumber(v) or v end
      return t
    end
  end
  error("pgbouncer admin: no STATS row for momoko_test")
end

--- The log so far (for failure messages).
function Bouncer:log()
  return read_file(self.dir .. "/pgbouncer.log")
end

--- Stops PgBouncer and removes its directory.
function Bouncer:stop()
  if not self.pipe then return true end
  local pipe = self.pipe
  self.pipe = nil
  local ok = pipe:close()
  run("rm -rf " .. shell_quote(self.dir))
  return ok
end

return B
