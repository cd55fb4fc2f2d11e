-- An await on a failed future in a luv callback's coroutine.wrap handler still ended
-- the process when the loop itself ran inside a coroutine momoko resumed
-- (momoko.spawn(function() uv.run() end), or momoko.run() inside spawn): momoko counted
-- itself "below" for the whole run of that coroutine, so every luv callback looked like
-- momoko's, the await raised at once into luv, which printed "Uncaught Error" and
-- exited. Fixed: momoko records which Lua it entered (the coroutine it resumes, the main
-- thread in its own callbacks, nothing while it runs the loop); an await raises only in
-- the coroutine momoko resumes or in a momoko callback, else it waits for the next loop
-- turn (API §1). Each case is a child lua5.4 with luv loaded first.
local H = require "helper"

local PRELUDE = [[
local uv = require "luv"
local momoko = require "momoko"
local reported = {}
momoko.on_error(function(e) reported[#reported + 1] = tostring(e) end)
local failed = momoko.sleep(100000)
failed:cancel()
local log = {}
local t = uv.new_timer()
t:start(10, 0, function()
  t:close()
  coroutine.wrap(function()
    local ok, err = pcall(failed.await, failed)
    log[#log + 1] = "pcall:" .. tostring(ok) .. ":" .. tostring(err)
    failed:await() -- not caught: goes to on_error
  end)()
  log[#log + 1] = "callback returned"
end)
local t2 = uv.new_timer()
t2:start(50, 0, function() t2:close(); log[#log + 1] = "loop alive" end)
]]

local function child(run)
  return H.run_lua(PRELUDE .. run .. [[

print("log: " .. table.concat(log, ","))
print("reported: " .. table.concat(reported, ","))
]])
end

local EXPECTED_LOG = "log: callback returned,pcall:false:QueryCanceledError: sleep canceled,loop alive\n"
local EXPECTED_REPORTED = "reported: QueryCanceledError: sleep canceled\n"

describe("regress 060: an await on a failed future in a luv callback while the loop runs inside a coroutine", function()
  it("uv.run() inside momoko.spawn: the handler is suspended, the error reaches its pcall and on_error", function()
    local out, ok = child([[
local f = momoko.spawn(function() uv.run() end)
assert(f:done() and not f:error(), tostring(f))
]])
    assert.is_true(ok, out)
    assert.not_matches("Uncaught Error", out)
    assert.matches(EXPECTED_LOG, out, 1, true)
    assert.matches(EXPECTED_REPORTED, out, 1, true)
  end)

  it("momoko.run() inside momoko.spawn: the same", function()
    local out, ok = child([[
local f = momoko.spawn(function() momoko.run() end)
uv.run() -- what momoko.run() left to luv (its timers)
assert(f:done() and not f:error(), tostring(f))
]])
    assert.is_true(ok, out)
    assert.not_matches("Uncaught Error", out)
    assert.matches(EXPECTED_LOG, out, 1, true)
    assert.matches(EXPECTED_REPORTED, out, 1, true)
  end)
end)
