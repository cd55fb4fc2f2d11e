-- A coroutine.wrap handler of a luv server whose first await is on a future that has
-- already failed killed the process: the await raised at once, in a coroutine resumed
-- by luv's callback, so the error unwound into luv, which printed "Uncaught Error:
-- (null)" and exited. API §1: an error raised in a coroutine goes to its spawn future
-- or on_error and never stops the loop. Fixed: an await raises only under momoko (a
-- core callback or a resumption by momoko below it); elsewhere the coroutine waits
-- for the next loop turn, when momoko resumes it and the await raises there. Each case
-- is a child lua5.4 with luv loaded first.
local H = require "helper"

-- A luv TCP server on 127.0.0.1 whose connections each run handler(request) in a
-- coroutine.wrap and send back what it returns; a client in the same process sends
-- requests one after the other, then everything is closed. The child prints the replies
-- and what reached on_error.
local SERVER = [[
local uv = require "luv"
local momoko = require "momoko"
local dsn = os.getenv("MOMOKO_TEST_DSN")
local reported = {}
momoko.on_error(function(e, tb)
  reported[#reported + 1] = string.format("%s|%s|%s", momoko.is(e, "Error") and e.kind or tostring(e),
    tostring(e.message or ""), tb and tb:match("stack traceback") or "no traceback")
end)
local closed = 0 -- handlers whose <close> guard ran

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
local port = server:getsockname().port
assert(server:listen(8, function()
  local client = uv.new_tcp()
  server:accept(client)
  client:read_start(function(_, data)
    if not data then return end
    client:read_stop()
    coroutine.wrap(function()
      local guard <close> = setmetatable({}, {__close = function()
        closed = closed + 1
        client:close()
      end})
      client:write(handler(data))
    end)()
  end)
end))

local function request(text, done)
  local c = uv.new_tcp()
  c:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    c:write(text)
    local got = {}
    c:read_start(function(_, data)
      if data then got[#got + 1] = data return end
      c:close()
      done(table.concat(got))
    end)
  end)
end

local replies = {}
local function run(requests, finish)
  local i = 0
  local function next_one()
    i = i + 1
    if i > #requests then
      server:close()
      finish()
      return
    end
    request(requests[i], function(reply)
      replies[#replies + 1] = reply == "" and "(none)" or reply
      next_one()
    end)
  end
  next_one()
end
]]

local function child(code)
  return H.run_lua(SERVER .. code .. [[

uv.run()
print("replies: " .. table.concat(replies, ","))
print("reported: " .. table.concat(reported, ","))
print("closed: " .. closed)
]])
end

describe("regress 052: a luv server's coroutine.wrap handler whose first await is on a failed future", function()
  it("keeps the server running: the error goes to on_error, the next request is served", function()
    local out, ok = child([[
-- size 1, max_waiting 0, the one connection reserved: a request fails at the call
local pool = momoko.Pool{dsn = dsn, size = 1, max_waiting = 0}
pool:connect():await()
local held = pool:getconn():await()
function handler(data)
  if data == "refused" then
    local f = pool:execute("SELECT 1")
    assert(f:done() and f:error())
    return f:await() -- raises PoolError
  end
  return tostring(held:execute("SELECT $1::int * 2", {tonumber(data)}):await():fetchone()[1])
end
run({"refused", "21", "refused", "4"}, function() pool:putconn(held); pool:close() end)
]])
    assert.is_true(ok, out)
    assert.matches("replies: %(none%),42,%(none%),8\n", out)
    assert.matches("reported: PoolError|[^|]*|stack traceback,PoolError|[^|]*|stack traceback\n", out)
    assert.matches("closed: 4\n", out)
  end)

  it("also for a failed spawn's future, and pcall in the handler still catches the error", function()
    local out, ok = child([[
local conn = momoko.connect(dsn):await()
function handler(data)
  local f = momoko.spawn(function() error("spawned failed", 0) end)
  if data == "caught" then
    local ok, err = pcall(f.await, f)
    return tostring(ok) .. ":" .. err
  end
  f:await()
end
run({"raise", "caught"}, function() conn:close() end)
]])
    assert.is_true(ok, out)
    assert.matches("replies: %(none%),false:spawned failed\n", out)
    assert.matches("reported: spawned failed||stack traceback\n", out)
    assert.matches("closed: 2\n", out)
  end)
end)
