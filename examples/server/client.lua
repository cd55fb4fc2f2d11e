-- A small HTTP client on luv for the example server (scripts/demo, the spec, the bench).
--
--   lua5.4 examples/server/client.lua [--host ADDR] PORT [--times N] [--keep-alive] PATH...
--
-- Requests each PATH in turn, each on a connection of its own, and prints one line per
-- answer: "PATH STATUS MILLISECONDS BODY" (milliseconds on luv's monotonic clock).
-- --times N sends N requests of each PATH at once (N connections) and, after their
-- lines, prints "all N PATH MILLISECONDS" (the time until the last answer).
-- --keep-alive sends all PATHs on one connection, pipelined, answers read in order.
-- Exits 1 if a request fails or nothing answers within 30 s.
local uv = require "luv"

local host, port, times, keep_alive, paths = "127.0.0.1", nil, 1, false, {}
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--host" then host, i = arg[i + 1], i + 1
    elseif a == "--times" then times, i = math.tointeger(tonumber(arg[i + 1])), i + 1
    elseif a == "--keep-alive" then keep_alive = true
    elseif not port then port = math.tointeger(tonumber(a))
    else paths[#paths + 1] = a end
    i = i + 1
  end
  if not port or not times or #paths == 0 then
    io.stderr:write("usage: client.lua [--host ADDR] PORT [--times N] [--keep-alive] PATH...\n")
    os.exit(2)
  end
end

local failed = false
local function fail(msg)
  io.stderr:write("client: ", msg, "\n")
  failed = true
end

-- Takes one whole answer off the start of buf: status, body, the rest; nil if incomplete.
local function parse_response(buf)
  local head_end = buf:find("\r\n\r\n", 1, true)
  if not head_end then return nil end
  local head = buf:sub(1, head_end - 1)
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local length = tonumber(head:lower():match("\r\ncontent%-length:%s*(%d+)"))
  if not status or not length then return nil, "bad answer head: " .. head end
  if #buf < head_end + 3 + length then return nil end
  return status, buf:sub(head_end + 4, head_end + 3 + length), buf:sub(head_end + 4 + length)
end

-- Sends the requests for list (paths) on one connection; calls answered(path, status,
-- body, ms) for each answer in order, then done().
local function exchange(list, answered, done)
  local tcp, buf, next_answer = uv.new_tcp(), "", 1
  local started = uv.hrtime()
  tcp:connect(host, port, function(err)
    if err then fail("connect: " .. err); tcp:close(); return done() end
    local out = {}
    for i, path in ipairs(list) do
      out[i] = string.format("GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", path, host, port,
                             i == #list and "Connection: close\r\n" or "")
    end
    tcp:write(table.concat(out))
    tcp:read_start(function(read_err, data)
      if read_err or not data then
        if next_answer <= #list then fail("connection ended before the answer to " .. list[next_answer]) end
        tcp:close()
        return done()
      end
      buf = buf .. data
      while next_answer <= #list do
        local status, body, rest = parse_response(buf)
        if not status then
          if body then fail(body); tcp:close(); return done() end
          break
        end
        buf = rest
        answered(list[next_answer], status, body, (uv.hrtime() - started) / 1e6)
        next_answer = next_answer + 1
      end
    end)
  end)
end

local function print_answer(path, status, body, ms)
  io.stdout:write(string.format("%s %d %.1f %s\n", path, status, ms, body))
end

local function run_paths(i)
  if i > #paths then return end
  local path = paths[i]
  if times == 1 then
    return exchange({path}, print_answer, function() run_paths(i + 1) end)
  end
  local started, left = uv.hrtime(), times
  for _ = 1, times do
    exchange({path}, print_answer, function()
      left = left - 1
      if left == 0 then
        io.stdout:write(string.format("all %d %s %.1f\n", times, path, (uv.hrtime() - started) / 1e6))
        run_paths(i + 1)
      end
    end)
  end
end

if keep_alive then
  exchange(paths, print_answer, function() end)
else
  run_paths(1)
end
local timer = uv.new_timer()
timer:start(30000, 0, function() fail("no answer within 30 s"); uv.stop() end)
timer:unref()
uv.run()
os.exit(failed and 1 or 0)
