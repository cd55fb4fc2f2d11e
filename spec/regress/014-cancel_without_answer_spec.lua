-- Regression (issue "Foundation", item 5): a cancel request that is never answered
-- (libpq 15's PQcancel has no timeout) wedged its connection: nothing new is sent until
-- the cancel ended (a late cancel must not hit the next request), and the connection
-- looked for that end with a 1 ms timer, for as long as the cancel hung: the loop spun
-- and the next request waited forever. Now the cancel's thread wakes the loop when it
-- ends (uv_async), nothing polls, and a cancel still unanswered after the DSN's
-- connect_timeout (10 s without one) closes the connection: its requests fail with
-- OperationalError.
--
-- The run is a child lua5.4 with luv loaded first, so that momoko shares luv's loop. A
-- small proxy on that loop forwards the first connection to the server and accepts
-- every later one (the cancel request) without ever answering. The query ends on its
-- own while its cancel hangs; the next request then waits for the cancel. A check handle
-- counts the loop's turns over one second of that wait, and the CPU time of the process
-- over the same second is compared with the wall time.
local H = require "helper"

local CHILD = [[
local uv = require "luv"
local momoko = require "momoko"
local pg_port = tonumber(os.getenv("MOMOKO_TEST_PORT"))

local held = {} -- accepted, never read, never answered
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
local port = server:getsockname().port
local first = true
assert(server:listen(16, function()
  local client = uv.new_tcp()
  server:accept(client)
  if not first then
    held[#held + 1] = client
    return
  end
  first = false
  local up = uv.new_tcp()
  up:connect("127.0.0.1", pg_port, function(err)
    assert(not err, err)
    local function pipe(from, to)
      from:read_start(function(_, data)
        if data then to:write(data) elseif not to:is_closing() then to:close() from:close() end
      end)
    end
    pipe(client, up)
    pipe(up, client)
  end)
end))

local function cpu_ms() -- utime + stime of this process (clock ticks of 10 ms)
  local f = assert(io.open("/proc/self/stat"))
  local stat = f:read("a")
  f:close()
  local fields = {}
  for v in stat:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = v end
  return (tonumber(fields[12]) + tonumber(fields[13])) * 10
end

local function outcome(f)
  if not f:done() then return "pending" end
  local e = f:error()
  return e and (e.kind .. ": " .. e.message) or "ok"
end

local ok, err = pcall(function()
  local dsn = os.getenv("MOMOKO_TEST_DSN"):gsub("port=%d+", "port=" .. port) ..
    " application_name=regress014 connect_timeout=2 sslmode=disable"
  local conn = momoko.connect(dsn):await()
  local running = conn:execute("SELECT pg_sleep(0.3)")
  momoko.sleep(50):await()
  print("cancel=" .. tostring(running:cancel()))
  local queued = conn:execute("SELECT 1")
  for _ = 1, 20 do
    if running:done() then break end
    momoko.sleep(50):await()
  end
  print("running=" .. outcome(running)) -- ended by itself: the cancel never arrived
  print("held=" .. #held)
  local turns = 0
  local check = uv.new_check()
  check:start(function() turns = turns + 1 end)
  local t0, c0 = uv.hrtime(), cpu_ms()
  momoko.sleep(1000):await()
  local wall, cpu = (uv.hrtime() - t0) // 1000000, cpu_ms() - c0
  check:stop()
  check:close()
  print(string.format("turns=%d wall=%d cpu=%d", turns, wall, cpu))
  print("queued_then=" .. outcome(queued))
  for _ = 1, 40 do -- the deadline is 2 s after the cancel started
    if queued:done() then break end
    momoko.sleep(100):await()
  end
  print("queued=" .. outcome(queued))
  print("closed=" .. tostring(conn.closed))
end)
if not ok then print("ERROR " .. tostring(err)) end
print("END")
io.stdout:flush()
os.exit(0) -- the cancel's thread is still stuck on the held socket: no lua_close
]]

describe("regress 014: a cancel request that is never answered", function()
  it("does not spin the loop, and closes the connection at its deadline", function()
    local out, ok = H.run_lua(CHILD)
    assert.is_true(ok, out)
    assert.matches("END", out, 1, true)
    assert.not_matches("ERROR", out, 1, true)
    assert.matches("cancel=true", out, 1, true)
    assert.matches("running=ok", out, 1, true)
    assert.matches("held=1", out, 1, true)
    local turns, wall, cpu = out:match("turns=(%d+) wall=(%d+) cpu=(%d+)")
    turns, wall, cpu = tonumber(turns), tonumber(wall), tonumber(cpu)
    assert.is_not_nil(turns, out)
    -- a second of waiting is a handful of loop turns (the sleep's timer), not one per ms
    assert.is_true(turns < 50, "the loop turned " .. tostring(turns) .. " times in " .. tostring(wall) .. " ms")
    assert.is_true(cpu <= wall * 0.2, "busy: " .. tostring(cpu) .. " ms of CPU in " .. tostring(wall) .. " ms")
    assert.matches("queued_then=pending", out, 1, true) -- it still waits for the cancel
    assert.matches("queued=OperationalError: connection lost before the request was sent: " ..
      "a cancel request got no answer from the server within 2000 ms; connection closed", out, 1, true)
    assert.matches("closed=true", out, 1, true)
    assert.is_true(H.no_backends("regress014", 10000))
  end)
end)
