-- Starts the project's TCP proxy (tcproxy/, built as <build>/tcproxy/tcproxy) between the
-- specs and the test server, and drives it through its control port.
--
--   local P = require "tcproxy_helper"
--   local proxy = P.start{upstream_port = tonumber(os.getenv("MOMOKO_TEST_PORT"))}
--   momoko.connect(proxy.dsn)      -- the test DSN with host/port replaced by the proxy's
--   proxy:cmd("drop")              -- "ok dropped=1"; an "error ..." reply raises
--   proxy:cmd("refuse on")         -- also: "stall on|off", "delay MS", "stats", "quit"
--   proxy:stats()                  -- {pairs=, accepted=, refused=, bytes_up=, bytes_down=}
--   proxy:alive()                  -- whether the process still runs (a zombie is dead)
--   proxy:stop()                   -- "quit", then waits for the process; idempotent
--
-- Fields: port, control_port, pid, dsn. Options of P.start: upstream_port (default
-- MOMOKO_TEST_PORT), upstream_host ("127.0.0.1"), dsn (the DSN to rewrite; default
-- helper.dsn or MOMOKO_TEST_DSN), exit_on_stdin_eof (default true).
--
-- The binary: $MOMOKO_TCPPROXY, else <repo>/build/tcproxy/tcproxy, else
-- <repo>/build-asan/tcproxy/tcproxy (build-asan first when MOMOKO_TEST_SANITIZE=1).
-- It is started by io.popen(..., "w") with `exec`, so it is this process's child and its
-- stdin is the pipe's read end: it exits when this process dies (it polls getppid) and,
-- with exit_on_stdin_eof, as soon as the pipe closes (stop, GC of the pipe, process
-- death). With exit_on_stdin_eof = false only the parent's death ends it: then call
-- stop() or leave with os.exit (no lua_close), since closing the pipe waits for the proxy.
-- Its start line goes to a temporary file, its stderr (ASan reports) to ours.
--
-- Control commands run in a short-lived bash (/dev/tcp) through io.popen: blocking and
-- independent of momoko's or luv's loop, so they can be sent while queries are in flight.
-- This module does not load momoko.
local P = {}

local Proxy = {}
Proxy.__index = Proxy

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- <repo>: two folders above this file (it is <repo>/spec/support/tcproxy_helper.lua).
local function repo_root()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/[^/]*$") or "."
  return dir:match("^(.*)/spec/support$") or (dir == "spec/support" and ".") or (dir .. "/../..")
end

--- The tcproxy binary to run; raises if there is none.
function P.binary()
  local env = os.getenv("MOMOKO_TCPPROXY")
  if env and env ~= "" then
    assert(exists(env), "MOMOKO_TCPPROXY=" .. env .. " does not exist")
    return env
  end
  local root = repo_root()
  local dirs = {"build", "build-asan"}
  if os.getenv("MOMOKO_TEST_SANITIZE") == "1" then dirs = {"build-asan", "build"} end
  for _, d in ipairs(dirs) do
    local path = root .. "/" .. d .. "/tcproxy/tcproxy"
    if exists(path) then return path end
  end
  error("tcproxy not built: set MOMOKO_TCPPROXY or build " .. root .. "/build (scripts/build)")
end

--- dsn (key=value form) with its host and port replaced.
function P.rewrite_dsn(dsn, host, port)
  local out, nhost, nport = dsn, 0, 0
  out, nhost = out:gsub("%f[%w_]host%s*=%s*%S+", "host=" .. host)
  out, nport = out:gsub("%f[%w_]port%s*=%s*%S+", "port=" .. port)
  if nhost == 0 then out = out .. " host=" .. host end
  if nport == 0 then out = out .. " port=" .. port end
  return out
end

local function sleep(seconds)
  os.execute("sleep " .. seconds)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- Starts a proxy; see the top of this file.
function P.start(opts)
  opts = opts or {}
  local upstream_port = opts.upstream_port or tonumber(os.getenv("MOMOKO_TEST_PORT"))
  assert(upstream_port, "tcproxy_helper.start: no upstream_port and no MOMOKO_TEST_PORT")
  local upstream_host = opts.upstream_host or "127.0.0.1"
  local base_dsn = opts.dsn or (package.loaded.helper and package.loaded.helper.dsn)
    or os.getenv("MOMOKO_TEST_DSN") or ""
  local exit_on_eof = opts.exit_on_stdin_eof ~= false

  local out = os.tmpname()
  -- line 1: the shell's pid, which exec hands on (env, then tcproxy); line 2: the
  -- proxy's start line. LD_PRELOAD (set for sanitized lua5.4) is not the proxy's business.
  local cmd = string.format("echo $$ > %s; exec env -u LD_PRELOAD %s --upstream %s:%d%s >> %s",
    shell_quote(out), shell_quote(P.binary()), upstream_host, upstream_port,
    exit_on_eof and " --exit-on-stdin-eof" or "", shell_quote(out))
  local pipe = assert(io.popen(cmd, "w"))

  local pid, port, cport
  for _ = 1, 500 do -- 10 s at most
    local text = read_file(out)
    pid = tonumber(text:match("^(%d+)\n"))
    port, cport = text:match("\nlisten [%d.]+:(%d+) control [%d.]+:(%d+)\n")
    if port then break end
    if pid and not P.pid_alive(pid) then break end
    sleep(0.02)
  end
  if not port then
    pipe:close()
    os.remove(out)
    error("tcproxy did not start (see its stderr above); output: " .. read_file(out))
  end
  os.remove(out)
  local self = setmetatable({
    pid = pid,
    port = tonumber(port),
    control_port = tonumber(cport),
    host = "127.0.0.1",
    pipe = pipe,
  }, Proxy)
  self.dsn = P.rewrite_dsn(base_dsn, self.host, self.port)
  return self
end

--- Whether process pid runs (a zombie or a missing process does not).
function P.pid_alive(pid)
  local f = io.open("/proc/" .. math.tointeger(pid) .. "/stat", "rb")
  if not f then return false end
  local stat = f:read("a") or ""
  f:close()
  local state = stat:match("%) (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

--- Sends one control command; returns the reply line, raises on an "error ..." reply
--- or when the proxy does not answer.
function Proxy:cmd(line)
  local script = string.format(
    [[exec 3<>/dev/tcp/127.0.0.1/%d && printf '%%s\n' "$1" >&3 && head -n 1 <&3]], self.control_port)
  local p = assert(io.popen("timeout 10 bash -c " .. shell_quote(script) .. " tcproxy-cmd " ..
    shell_quote(line) .. " 2>&1"))
  local reply = p:read("a"):gsub("%s+$", "")
  p:close()
  if not reply:match("^ok") then
    error(string.format("tcproxy: %q -> %q", line, reply), 2)
  end
  return reply
end

--- The counters of "stats" as numbers.
function Proxy:stats()
  local t = {}
  for k, v in self:cmd("stats"):gmatch("([%w_]+)=(%d+)") do t[k] = tonumber(v) end
  return t
end

function Proxy:alive()
  return P.pid_alive(self.pid)
end

--- Quits the proxy and waits for it to exit. Returns pclose's results (true on exit 0).
function Proxy:stop()
  if not self.pipe then return true end
  if self:alive() then pcall(self.cmd, self, "quit") end
  local pipe = self.pipe
  self.pipe = nil
  return pipe:close()
end

return P
