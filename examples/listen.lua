-- LISTEN/NOTIFY (docs/api.md, LISTEN/NOTIFY; docs/guide.md): a pool's listener receives a
-- few notifications sent through the same pool, then the example exits.
-- Run with MOMOKO_DSN set (e.g. "host=127.0.0.1 dbname=postgres").
local momoko = require "momoko"

local dsn = os.getenv("MOMOKO_DSN") or "host=127.0.0.1 dbname=postgres"
local pool = momoko.Pool{dsn = dsn, size = 2}
pool:connect():await()

local CHANNEL, N = "jobs done", 5   -- any string: it is quoted as an identifier
local received, handled = {}, 0

-- The handler runs in a coroutine of its own for every notification, so it may await.
local function on_job(channel, payload, pid)
  received[#received + 1] = payload
  local cur = pool:execute("SELECT upper($1)", {payload}):await()
  print(string.format("got %q on %q from backend %d -> %s", payload, channel, pid, cur:fetchone()[1]))
  handled = handled + 1
end

-- Resolves once LISTEN ran on the pool's own listening connection (opened on first use,
-- reopened if it dies; notifications sent while it is down are lost).
pool:listen(CHANNEL, on_job, {
  on_reconnect = function(ch) print("listener reconnected; missed notifications on " .. ch .. " are lost") end,
}):await()

for i = 1, N do
  pool:notify(CHANNEL, "job " .. i):await()   -- pg_notify with bound parameters
end

-- Wait (at most 5 s) until every handler finished: never wait forever for a notification.
for _ = 1, 100 do
  if handled >= N then break end
  momoko.sleep(50):await()
end
print(string.format("received %d of %d notifications, in order: %s", #received, N, table.concat(received, ", ")))

pool:unlisten(CHANNEL):await()
pool:notify(CHANNEL, "after unlisten"):await()
momoko.sleep(200):await()
print("after unlisten, still", #received, "received")

pool:close()   -- also closes the listening connection
if handled ~= N then os.exit(1) end
