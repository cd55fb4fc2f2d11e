-- W6: COPY of ROWS rows into and out of w6(id int, name text, score float8) on one
-- Connection. Ops = rows. Modes:
--   from-rows     conn:copy_from with a function source returning row tables
--                 {i, "name" .. i, i * 0.5} (made and encoded inside the timed part)
--   from-strings  conn:copy_from with an array of COPY text lines built before the timer
--   to-sink       conn:copy_to with a sink function counting the rows
--   to-string     conn:copy_to without a sink (all the data as one string)
-- The from- modes TRUNCATE w6 first (not timed) and check count(*) after; the to- modes
-- expect w6 to hold ROWS rows (bench/run fills it) and check the count they get.
-- Usage: lua5.4 bench/w6_copy.lua SECONDS MODE   (SECONDS unused: one pass of ROWS rows;
-- BENCH_COPY_ROWS: ROWS, default 1,000,000)
local B = require "lib"
local momoko = require "momoko"

local mode = arg[2]
local modes = {["from-rows"] = true, ["from-strings"] = true, ["to-sink"] = true, ["to-string"] = true}
if not modes[mode] then
  error("usage: lua5.4 bench/w6_copy.lua SECONDS from-rows|from-strings|to-sink|to-string")
end
local nrows = math.tointeger(tonumber(os.getenv("BENCH_COPY_ROWS") or "1000000"))
assert(nrows and nrows > 0, "BENCH_COPY_ROWS: a positive integer")

local m = B.meter("W6", "momoko-" .. mode)
momoko.spawn(function()
  local conn = momoko.connect(B.options({dsn = B.dsn})):await()
  local function count()
    return conn:execute("SELECT count(*) FROM w6"):await():fetchone()[1]
  end
  local n
  if mode == "from-rows" or mode == "from-strings" then
    local source
    if mode == "from-rows" then
      local i = 0
      source = function()
        if i == nrows then return nil end
        i = i + 1
        return {i, "name" .. i, i * 0.5}
      end
    else
      source = {}
      for i = 1, nrows do source[i] = i .. "\tname" .. i .. "\t" .. (i * 0.5) .. "\n" end
    end
    conn:execute("TRUNCATE w6"):await()
    m.start()
    n = conn:copy_from("COPY w6 (id, name, score) FROM STDIN", source):await()
    m.stop(n)
    local c = count()
    if n ~= nrows or c ~= nrows then error("W6 " .. mode .. ": copied " .. tostring(n) .. ", count " .. tostring(c)) end
  else
    local c = count()
    if c ~= nrows then error("W6 " .. mode .. ": w6 holds " .. tostring(c) .. " rows, want " .. nrows) end
    local sql = "COPY w6 (id, name, score) TO STDOUT"
    if mode == "to-sink" then
      local k, bytes = 0, 0
      m.start()
      n = conn:copy_to(sql, function(data)
        k = k + 1
        bytes = bytes + #data
      end):await()
      m.stop(n)
      if n ~= nrows or k ~= nrows or bytes == 0 then
        error("W6 to-sink: count " .. tostring(n) .. ", sink called " .. k .. " times")
      end
    else
      m.start()
      local data = conn:copy_to(sql):await()
      local wall, cpu = B.now() - m.t0, B.cpu() - m.c0
      -- ops: the rows in the data, counted after the timed part
      local _, lines = data:gsub("\n", "")
      io.write(string.format("BENCH W6 momoko-to-string %d %.6f %.3f\n", lines, wall, cpu))
      if lines ~= nrows then error("W6 to-string: " .. lines .. " lines") end
    end
  end
  conn:close()
end):await()
