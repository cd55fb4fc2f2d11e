-- examples/embed/handler.lua: the Lua side of examples/embed/host.c. The host runs this
-- file once, after require "momoko" and momoko_set_loop, and calls the function it
-- returns for every request, each in a coroutine of its own:
--   handle(method, target, respond)   respond(status, content_type, body) answers once.
-- The pool's server comes from MOMOKO_DSN (a libpq connection string); it keeps
-- EMBED_POOL_SIZE connections open (default 4) and grows up to 64 while requests wait.
--   GET /              one query, plain text
--   GET /sleep?n=N&s=S the server waits S seconds (default 0.2, at most 5); JSON with
--                      N, the backend's pid and the server's clock before and after
--   GET /stats         the pool's stats(), JSON
local momoko = require "momoko"

local dsn = os.getenv("MOMOKO_DSN")
if not dsn then error("set MOMOKO_DSN to the server's connection string", 0) end

local size = math.tointeger(tonumber(os.getenv("EMBED_POOL_SIZE") or 4))
if not size or size < 1 or size > 64 then error("EMBED_POOL_SIZE: 1 to 64 connections", 0) end
local pool = momoko.Pool{dsn = dsn, size = size, max_size = 64}
local connected = pool:connect()

-- "a=1&b=2" -> {a = "1", b = "2"} (no %-decoding: the routes take numbers only)
local function query_args(query)
  local args = {}
  for k, v in query:gmatch("([^&=]+)=([^&]*)") do args[k] = v end
  return args
end

local routes = {}

routes["/"] = function()
  local row = pool:execute("SELECT current_database(), current_setting('server_version')"):await():fetchone()
  return 200, "text/plain", string.format("database %s on PostgreSQL %s\n", row[1], row[2])
end

routes["/sleep"] = function(args)
  local n = math.tointeger(tonumber(args.n)) or 0
  local s = tonumber(args.s) or 0.2
  if s < 0 or s > 5 then return 400, "text/plain", "s: 0 to 5 seconds\n" end
  local row = pool:execute([[
    SELECT pg_backend_pid(), extract(epoch FROM clock_timestamp())::float8, pg_sleep($1),
           extract(epoch FROM clock_timestamp())::float8]], {s}):await():fetchone()
  return 200, "application/json",
    string.format('{"n":%d,"pid":%d,"started":%.6f,"ended":%.6f}\n', n, row[1], row[2], row[4])
end

routes["/stats"] = function()
  local stats, fields = pool:stats(), {}
  for k, v in pairs(stats) do fields[#fields + 1] = string.format('"%s":%d', k, v) end
  table.sort(fields)
  return 200, "application/json", "{" .. table.concat(fields, ",") .. "}\n"
end

return function(method, target, respond)
  local path, query = target:match("^([^?]*)%??(.*)$")
  local route = routes[path]
  if method ~= "GET" or not route then return respond(404, "text/plain", "not found\n") end
  local ok, status, content_type, body = pcall(function()
    connected:await() -- raises the connect error, if the pool could not connect
    return route(query_args(query))
  end)
  if ok then
    respond(status, content_type, body)
  else
    io.stderr:write("handler.lua: ", target, ": ", tostring(status), "\n")
    respond(500, "text/plain", tostring(status) .. "\n")
  end
end
