-- At lua_close, momoko's shutdown reported an unretrieved spawn error through the
-- error's own __tostring before it marked itself closing: a __tostring that raises
-- ended the finalizer there, so nothing was closed and nothing printed. Fixed: the
-- finalizers run no Lua; the error is printed raw (its kind and message fields), and
-- every connection, pool and timer is closed. Each case runs in a child lua5.4, which
-- checks from a finalizer that runs after momoko's (it was created first) that the
-- server has no backend of it left while the process still lives: momoko closed them,
-- not the exit.
local H = require "helper"

-- Runs code in a child lua5.4: its stdout, its stderr, whether it exited 0.
local function run_child(code)
  local base = os.tmpname()
  local script, errfile = base .. ".lua", base .. ".err"
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local p = assert(io.popen(string.format("LD_PRELOAD='%s' timeout 60 lua5.4 %s 2>%s",
    os.getenv("MOMOKO_TEST_LD_PRELOAD") or "", script, errfile)))
  local out = p:read("a")
  local ok = p:close()
  f = assert(io.open(errfile))
  local err = f:read("a")
  f:close()
  os.remove(base)
  os.remove(script)
  os.remove(errfile)
  return out, err, ok == true
end

-- The child's code, after a first line setting app and with_luv.
local CHILD = [[
local function backends()
  local p = io.popen("env -u LD_PRELOAD psql -X -q -A -t -c \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '"
    .. app .. "'\"")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end
-- created before momoko (and luv): finalized after them, at the end of lua_close
local late = setmetatable({}, {__gc = function()
  local n
  for _ = 1, 100 do
    n = backends()
    if n == 0 then break end
    os.execute("sleep 0.05")
  end
  io.stdout:write("backends after lua_close: ", tostring(n), "\n")
end})
if with_luv then require "luv" end
local momoko = require "momoko"
local dsn = os.getenv("MOMOKO_TEST_DSN") .. " application_name=" .. app
local idle = momoko.connect(dsn):await()
local busy = momoko.connect(dsn):await()
local pool = momoko.Pool{dsn = dsn, size = 2}
pool:connect():await()
local q1 = busy:execute("SELECT pg_sleep(30)")
local q2 = pool:execute("SELECT pg_sleep(30)")
local s = momoko.sleep(100000)
local bad = setmetatable({kind = "MyKind", message = "boom"},
  {__tostring = function() error("__tostring raised") end})
momoko.spawn(function() error(bad) end) -- unretrieved: reported at shutdown
print("backends before lua_close: " .. backends())
]]

describe("regress 051: shutdown with an unretrieved spawn error whose __tostring raises", function()
  for _, with_luv in ipairs({false, true}) do
    it("closes every connection and prints the error raw" .. (with_luv and " (luv loaded first)" or ""), function()
      local _, app = H.app_dsn("regress_051")
      local out, err, ok = run_child(string.format("local app, with_luv = %q, %s\n", app, tostring(with_luv)) .. CHILD)
      assert.is_true(ok, out .. err)
      assert.equal("backends before lua_close: 4\nbackends after lua_close: 0\n", out)
      assert.equal("momoko: unhandled error: MyKind: boom\n", err)
      assert.equal(0, H.backends(app))
    end)
  end
end)
