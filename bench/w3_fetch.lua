-- W3: fetch all rows of t100k (int, text, float8, timestamptz) on one Connection, again
-- and again, as array rows (default) or dict rows. Ops = rows decoded into Lua tables.
-- Usage: lua5.4 bench/w3_fetch.lua SECONDS [array|dict]
local B = require "lib"
local momoko = require "momoko"

local shape = arg[2] or "array"
local m = B.meter("W3", "momoko-" .. shape)
local sql = "SELECT id, name, score, created FROM t100k"
momoko.spawn(function()
  local conn = momoko.connect(B.options({dsn = B.dsn, cursor_factory = momoko.cursors[shape]})):await()
  local rows = conn:execute(sql):await():fetchall() -- warm-up
  if #rows ~= 100000 then error("W3: " .. #rows .. " rows") end
  local probe = rows[100000]
  if shape == "dict" then assert(probe.id == 100000) else assert(probe[1] == 100000) end
  rows = nil
  local n = 0
  m.start()
  local deadline = B.now() + B.seconds
  repeat
    n = n + #conn:execute(sql):await():fetchall()
  until B.now() >= deadline
  m.stop(n)
  conn:close()
end):await()
