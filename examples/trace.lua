-- Tracing (docs/api.md, Tracing): a slow-query log and pool events on stderr.
-- Run with MOMOKO_DSN set (e.g. "host=127.0.0.1 dbname=postgres").
local momoko = require "momoko"

local dsn = os.getenv("MOMOKO_DSN") or "host=127.0.0.1 dbname=postgres"
local SLOW_MS = 50

local function trace(ev)
  if ev.type == "query" then
    if ev.error then
      io.stderr:write(string.format("query failed after %.1f ms: %s -- %s\n", ev.ms, ev.sql, ev.error.message))
    elseif ev.ms >= SLOW_MS then
      io.stderr:write(string.format("slow query (%.1f ms, %s rows): %s\n", ev.ms, tostring(ev.rows), ev.sql))
    end
  else -- connect, lost, reconnect, grow, shrink, acquire_timeout, retry
    io.stderr:write(string.format("pool %s on %s%s\n", ev.type, tostring(ev.host),
                                  ev.ms and string.format(" (%.1f ms)", ev.ms) or ""))
  end
end

local pool = momoko.Pool{dsn = dsn, size = 1, max_size = 2, trace = trace}
pool:connect():await()
local slow = pool:execute("SELECT pg_sleep(0.1)")     -- logged as slow
local fast = pool:execute("SELECT $1::int", {42})     -- grows the pool; the 42 is never traced
print(fast:await():fetchone()[1])
slow:await()
pcall(function() pool:execute("SELECT * FROM missing_table"):await() end) -- logged as failed
pool:close()
