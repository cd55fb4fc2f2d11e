-- Regression (issue 13, stress under ASan: a child process ending its Lua state in a done
-- callback): a Pool holds the error of its connect() (lp->connect_err) while it fails
-- the connect() future with it, and frees it once that future's callbacks returned. A
-- done callback that ends the state there (os.exit(0, true): lua_close, which never
-- returns) left the message allocated, since the Pool's finalizer freed the Pool without
-- it. The finalizer now clears it. The leak shows only under `scripts/test --sanitize`
-- (LeakSanitizer in the child, which then exits 1; whether a stale copy of the pointer on
-- the stack hides it depends on what ran before: this child, reduced from the stress
-- child that found it, shows it every time); without the sanitizers this spec checks
-- that the callbacks ran with the expected errors and the child exited 0.
local H = require "helper"

local CHILD = [[
local momoko = require "momoko"
local ended = 0
local function watch(f, last)
  f:add_done_callback(function(d)
    ended = ended + 1
    local err = d:error()
    if last then
      print(string.format("%d ended; connect: %s: %s", ended, err.kind, err.message))
      io.stdout:flush()
      os.exit(0, true) -- inside pool:close(), inside the callbacks of its connect()
    end
  end)
end
momoko.spawn(function()
  local pools = {}
  for i = 1, 3 do
    pools[i] = momoko.Pool{ dsn = os.getenv("MOMOKO_TEST_DSN"), size = 1, max_size = 3 }
    watch(pools[i]:connect(), i == 3)
    for _ = 1, 3 do watch(pools[i]:execute("SELECT 1")) end
  end
  momoko.sleep(1):await()
  for i = 1, 3 do pools[i]:close() end -- the last one's connect() has not ended yet
end)
momoko.run()
print("not reached")
]]

describe("regress 152: lua_close in a done callback of a Pool's connect()", function()
  it("frees the connect() error the Pool held", function()
    local out, ok = H.run_lua(CHILD)
    assert.is_true(ok, out)
    assert.matches("^%d+ ended; connect: PoolError: pool is closed\n$", out)
  end)
end)
