-- Regression: every connection named its cached statements mk_1, mk_2, ... from 1. Behind
-- a pooler in transaction mode (PgBouncer, statement cache on), a connection's Bind of
-- mk_1 could land on a server session where another client had prepared its own mk_1
-- with the same parameter types: it ran that statement and returned its rows, silently
-- wrong (82 of 600 here); a PREPARE could fail with 42P05 "prepared statement mk_1
-- already exists". Names now start from a random base per connection, so a statement
-- on the wrong server session does not exist (26000), and a 26000 about a statement
-- nothing dropped fails with an error saying the session changed, naming pgbouncer = true
-- (instead of the re-run meant for the owner's DEALLOCATE or DISCARD). Needs PgBouncer:
-- runs in the CI phase pgbouncer, with spec/pgbouncer_spec.lua.
local momoko = require "momoko"
local H = require "helper"
local B = require "pgbouncer"

describe("regress 135: cached statement names behind PgBouncer (statement cache on)", function()
  local bouncer
  lazy_setup(function() bouncer = B.start{pool_size = 3} end)
  lazy_teardown(function() if bouncer then bouncer:stop() end end)

  it("never runs another client's statement, and fails only with the session-changed error", function()
    H.async(function()
      local pools = {}
      for i = 1, 4 do
        pools[i] = momoko.Pool{dsn = bouncer.dsn, size = 3}
        pools[i]:connect():await()
      end
      local wrong, changed, other, n = 0, 0, {}, 0
      for round = 1, 30 do
        local futures, want = {}, {}
        for p = 1, 4 do
          -- the same parameter type in each: one client's mk_<n> would run another's
          for k = 1, 5 do
            futures[#futures + 1] = pools[p]:execute("SELECT $1::int * " .. k, {round})
            want[#futures] = round * k
          end
        end
        for i, f in ipairs(futures) do
          local ok, cur = pcall(f.await, f)
          n = n + 1
          if ok then
            if cur:fetchone()[1] ~= want[i] then wrong = wrong + 1 end
          elseif cur.sqlstate == "26000" and cur.message:find("pgbouncer = true", 1, true) then
            changed = changed + 1
          else
            other[#other + 1] = tostring(cur)
          end
        end
      end
      for _, p in ipairs(pools) do p:close() end
      assert.equal(600, n)
      assert.equal(0, wrong, "rows of another statement")
      assert.same({}, other)
    end)
  end)

  it("a cached statement the owner dropped (DISCARD ALL) is still run again, once", function()
    H.async(function()
      local conn = momoko.connect(H.dsn):await()
      for _ = 1, 3 do assert.equal(6, conn:execute("SELECT $1::int * 2", {3}):await():fetchone()[1]) end
      assert.equal(1, H.prepared_count(conn))
      conn:execute("DISCARD ALL"):await()
      assert.equal(0, H.prepared_count(conn))
      assert.equal(8, conn:execute("SELECT $1::int * 2", {4}):await():fetchone()[1])
      conn:close()
    end)
  end)
end)
