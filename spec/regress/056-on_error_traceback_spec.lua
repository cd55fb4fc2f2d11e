-- The default on_error printed a traceback for string errors only: a momoko.Error (a
-- failed query awaited in a handler, say) came without one, so nothing said where it
-- was raised. Fixed: every error raised in a coroutine is reported with the traceback
-- of that coroutine, taken where the error was raised, also for a failed spawn reported
-- on the next loop turn; a handler set with on_error gets it as its second argument.
local momoko = require "momoko"
local H = require "helper"

-- The line number of the line of code containing marker.
local function line_of(code, marker)
  local n = 1
  for line in code:gmatch("([^\n]*)\n") do
    if line:find(marker, 1, true) then return n end
    n = n + 1
  end
  error("no line with " .. marker)
end

describe("regress 056: the default on_error and tracebacks", function()
  it("prints a momoko.Error with the traceback of the coroutine where it was raised", function()
    local code = [[
local momoko = require "momoko"
local conn = momoko.connect(os.getenv("MOMOKO_TEST_DSN")):await()
coroutine.wrap(function()
  conn:execute("SELECT 1/0"):await() -- in a handler
end)()
momoko.spawn(function()
  conn:execute("SELECT 1/0"):await() -- in a spawn nobody awaits
end)
momoko.run()
conn:close()
]]
    local out, ok = H.run_lua(code)
    assert.is_true(ok, out)
    local report = "momoko: unhandled error: DataError: division by zero %(SQLSTATE 22012%)\n"
      .. "stack traceback:\n\t%[C%]: in method 'await'\n\t[^\n]*:(%d+): in function <[^\n]*>\n"
    local first, second = out:match("^" .. report .. report .. "$")
    assert.is_not_nil(first, out)
    assert.equal(line_of(code, "in a handler"), tonumber(first))
    assert.equal(line_of(code, "in a spawn nobody awaits"), tonumber(second))
  end)

  it("hands the error itself and the traceback to a handler", function()
    local seen = {}
    momoko.on_error(function(e, tb) seen[#seen + 1] = {e, tb} end)
    local conn = momoko.connect(H.dsn):await()
    coroutine.wrap(function()
      conn:execute("SELECT 1/0"):await()
    end)()
    momoko.run()
    coroutine.wrap(function()
      momoko.sleep(1):await()
      error({custom = true})
    end)()
    momoko.run()
    momoko.on_error(nil)
    conn:close()
    assert.equal(2, #seen)
    H.assert_kind("DataError", seen[1][1])
    assert.matches("^stack traceback:\n\t%[C%]: in method 'await'\n", seen[1][2])
    assert.same({custom = true}, seen[2][1])
    assert.matches("^stack traceback:\n\t%[C%]: in function 'error'\n", seen[2][2])
  end)
end)
