-- Regression (issue "Foundation", item 3): Pool max_lifetime (API §6) was missing (the
-- option was refused as unknown). A connection that lived past max_lifetime is closed
-- and replaced when it is next free, with a little random jitter; nothing running on
-- it is interrupted, and the pool keeps its size. 0 disables it.
local momoko = require "momoko"
local H = require "helper"

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

describe("regress 012: Pool max_lifetime", function()
  it("replaces expired connections when free; a query in flight finishes on its old connection", function()
    local dsn, app = H.app_dsn("r012")
    local pool = momoko.Pool{dsn = dsn, size = 2, max_lifetime = 300}
    H.close_after(pool, app, function()
      pool:connect():await()
      local before = H.pids_of(app)
      assert.equal(2, #before)
      -- runs across the lifetime's end: finishes, then its connection is replaced
      local long = pool:execute("SELECT pg_backend_pid(), pg_sleep(0.6)")
      local cur = long:await()
      local long_pid = cur:fetchone()[1]
      assert.is_true(set_of(before)[long_pid] ~= nil)
      assert.is_true(H.wait_until(function()
        local s = pool:stats()
        local pids = H.pids_of(app)
        if s.size ~= 2 or s.free ~= 2 or #pids ~= 2 then return false end
        local old = set_of(before)
        return not old[pids[1]] and not old[pids[2]]
      end, 5000), "the pool did not replace both connections")
      -- the replacements work, and the pool never went below or above its size
      local rows = momoko.all{pool:execute("SELECT pg_backend_pid()"), pool:execute("SELECT 2")}:await()
      assert.is_false(set_of(before)[rows[1]:fetchone()[1]] ~= nil)
      assert.equal(2, rows[2]:fetchone()[1])
      assert.is_true(pool:stats().size <= 2)
    end)
  end)

  it("0 disables it; the default (an hour) keeps connections; bad values are refused", function()
    local dsn, app = H.app_dsn("r012b")
    for _, opts in ipairs{{max_lifetime = 0}, {}} do
      opts.dsn, opts.size = dsn, 1
      local pool = momoko.Pool(opts)
      pool:connect():await()
      local pid = pool:execute("SELECT pg_backend_pid()"):await():fetchone()[1]
      momoko.sleep(200):await()
      assert.equal(pid, pool:execute("SELECT pg_backend_pid()"):await():fetchone()[1])
      pool:close()
    end
    assert.is_true(H.no_backends(app))
    for _, bad in ipairs{-1, 1.5, "10"} do
      local err = H.error_of(momoko.Pool, {dsn = dsn, max_lifetime = bad})
      H.assert_kind("InterfaceError", err)
      assert.matches("max_lifetime", err.message, 1, true)
    end
  end)
end)
