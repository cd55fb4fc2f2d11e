-- The example server: an HTTP/1.1 JSON service on luv whose requests each run in a
-- coroutine of their own and query one momoko Pool (the Momoko tutorial's pages).
--
--   MOMOKO_DSN="host=127.0.0.1 dbname=app" lua5.4 examples/server/main.lua [--port N]
--       [--host ADDR] [--size N] [--max-size N]
--
-- Listens on 127.0.0.1:8080 unless told otherwise (--port 0: a free port). Its first
-- line on stdout is "PORT PID"; the rest (errors included) goes to stderr. SIGINT or
-- SIGTERM closes the listener and the pool, and the loop then ends.
local uv = require "luv"          -- first: momoko then runs on luv's loop (uv.run drives both)
local momoko = require "momoko"

local here = arg[0]:match("^(.*)/server/[^/]*$") or "examples"
package.path = here .. "/?.lua;" .. package.path
local http = require "server.http"
local pages = require "server.pages"

local opts = {host = "127.0.0.1", port = 8080, size = 4, ["max-size"] = 32}
do
  local i = 1
  while arg[i] do
    local name = arg[i]:match("^%-%-(.+)$")
    if not name or opts[name] == nil or arg[i + 1] == nil then
      io.stderr:write("usage: main.lua [--host ADDR] [--port N] [--size N] [--max-size N]\n")
      os.exit(2)
    end
    opts[name] = name == "host" and arg[i + 1] or math.tointeger(tonumber(arg[i + 1]))
    i = i + 2
  end
end

local dsn = os.getenv("MOMOKO_DSN")
if not dsn then
  io.stderr:write("main.lua: set MOMOKO_DSN (e.g. \"host=127.0.0.1 dbname=postgres\")\n")
  os.exit(2)
end

-- Before uv.run(), a main-thread await runs the loop until the future is done.
local pool = momoko.Pool{dsn = dsn, size = opts.size, max_size = opts["max-size"]}
pool:connect():await()
pool:register_json():await()
local app = {pool = pool}
local ok, err = pcall(function() return pool:register_hstore():await() end)
if not ok then
  app.hstore_error = tostring(err)
  io.stderr:write("server: /hstore is off: ", app.hstore_error, "\n")
end

-- Errors nobody can receive: those of request coroutines after an await come from
-- momoko (with the coroutine's traceback), those before the first await from http.lua.
local errors = 0
local function report(e, traceback)
  errors = errors + 1
  io.stderr:write("server: request failed: ", tostring(e), "\n", traceback or "", traceback and "\n" or "")
end
momoko.on_error(report)

local server = http.serve{host = opts.host, port = opts.port, on_error = report,
                          handler = pages.handler(app)}
function app.stats()
  local open = 0
  for _ in pairs(server.clients) do open = open + 1 end
  return {pool = pool:stats(), requests = server.requests, errors = errors, connections = open}
end

local signals = {}
local function stop()
  server.close()
  pool:close()
  for _, s in ipairs(signals) do s:close() end
end
for _, name in ipairs{"sigint", "sigterm"} do
  local s = uv.new_signal()
  s:start(name, stop)
  signals[#signals + 1] = s
end

io.stdout:write(server.port, " ", uv.os_getpid(), "\n")
io.stdout:flush()
io.stderr:write(string.format("server: http://%s:%d/ (pool size %d, max_size %d)\n",
  opts.host, server.port, opts.size, opts["max-size"]))
uv.run()
