-- Regression (issue "Foundation", item 1): a putconn that ran while another putconn of
-- the same connection was discarding it freed the pool entry twice. The first putconn
-- of a connection whose query still runs discards it; closing it completes the query,
-- and the query's done callback (or a to-be-closed variable unwinding in the coroutine
-- that awaited it) puts the connection again. The binding gave the Connection back only
-- after the core returned, so the second putconn reached the core, which had not marked
-- the entry as going: "attempting double-free" under ASan, an abort or heap corruption
-- without. Each scenario runs in a child lua5.4, so that a crash fails the test instead
-- of the suite.
local H = require "helper"

local function child(body)
  local out, ok = H.run_lua([[
local momoko = require "momoko"
local dsn = os.getenv("MOMOKO_TEST_DSN") .. " application_name=]] .. "regress010" .. [["
local pool = momoko.Pool{dsn = dsn, size = 1}
pool:connect():await()
]] .. body .. [[
pool:close()
print("END")
]])
  return out, ok
end

describe("regress 010: putconn during another putconn's discard", function()
  it("from the query's done callback: refused with PoolError, freed once", function()
    local out, ok = child([[
local conn = pool:getconn():await()
local f = conn:execute("SELECT pg_sleep(5)")
local second
f:add_done_callback(function()
  local okp, err = pcall(pool.putconn, pool, conn)
  second = okp and "accepted" or (err.kind .. ": " .. err.message)
end)
momoko.sleep(50):await() -- the query is running
pool:putconn(conn)       -- discards it (a query runs), which completes f
print("second=" .. tostring(second))
print("f=" .. tostring(f:done()) .. " " .. tostring(f:error() and f:error().kind))
local stats = pool:stats()
print("free=" .. stats.free .. " size=" .. stats.size)
print("next=" .. pool:execute("SELECT 41 + 1"):await():fetchone()[1])
]])
    assert.is_true(ok, out)
    assert.matches("second=PoolError: putconn: not a connection of this pool, or already given back", out, 1, true)
    assert.matches("f=true InterfaceError", out, 1, true)
    assert.matches("next=42", out, 1, true)
    assert.matches("END", out, 1, true)
    assert.not_matches("AddressSanitizer", out, 1, true)
    assert.is_true(H.no_backends("regress010"))
  end)

  it("from a <close> variable unwinding after another coroutine returned it mid-query", function()
    local out, ok = child([[
local conn = pool:getconn():await()
local unwound, err_kind
local holder = momoko.spawn(function()
  local c <close> = conn
  local okq, err = pcall(function() return c:execute("SELECT pg_sleep(5)"):await() end)
  err_kind = not okq and err.kind or "none"
  unwound = true
end)
momoko.sleep(50):await()
pool:putconn(conn) -- mid-query, from the main thread
holder:await()
print("unwound=" .. tostring(unwound) .. " err=" .. tostring(err_kind))
print("next=" .. pool:execute("SELECT 6 * 7"):await():fetchone()[1])
local stats = pool:stats()
print("size=" .. stats.size)
]])
    assert.is_true(ok, out)
    assert.matches("unwound=true err=InterfaceError", out, 1, true)
    assert.matches("next=42", out, 1, true)
    assert.matches("size=1", out, 1, true)
    assert.matches("END", out, 1, true)
    assert.not_matches("AddressSanitizer", out, 1, true)
    assert.is_true(H.no_backends("regress010"))
  end)
end)
