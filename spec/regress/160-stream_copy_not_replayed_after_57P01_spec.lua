-- Regression (issue 13, found by the soak): a pool's stream or COPY whose backend was
-- terminated while its query ran, before any row (the server answers with 57P01 and
-- rolls the statement back), was replayed on another connection. The pool decided with
-- may_have_run, which 57P01 clears, though a stream or COPY is never replayed once sent
-- (api.md: pool:stream, pool:copy_from, pool:copy_to): a COPY's source function has
-- handed its data over and cannot be read again. The fix: such a request is replayed
-- only when it was never sent. Each statement below takes a number from a sequence
-- (not rolled back), so a replay shows as a second number.
local momoko = require "momoko"
local H = require "helper"

describe("regress 160: a stream or COPY terminated (57P01) while it ran", function()
  local seq, tbl
  lazy_setup(function()
    seq = string.format("regress160_seq_%d", math.random(1, 1e9))
    H.psql("CREATE SEQUENCE " .. seq)
    tbl = H.scratch_table("regress160", "v int")
  end)
  lazy_teardown(function()
    H.drop_table(tbl)
    H.psql("DROP SEQUENCE IF EXISTS " .. seq)
  end)

  local function runs()
    return tonumber(H.psql("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM " .. seq))
  end

  -- start(pool) sends the request and returns a function that awaits its end and
  -- returns the error it failed with
  local function check(name, start, running_text)
    local dsn, app = H.app_dsn("regress160")
    local pool = momoko.Pool{dsn = dsn, size = 2, retry = "always"}
    pool:connect():await()
    local before = runs()
    local finish = start(pool)
    local pid = H.running_pid(app, running_text or "pg_sleep")
    momoko.sleep(200):await() -- well into it (a COPY FROM: its row sent)
    H.psql("SELECT pg_terminate_backend(" .. pid .. ")")
    local err = finish()
    H.assert_kind("OperationalError", err)
    assert.equal("57P01", err.sqlstate, name)
    assert.equal(0, pool:stats().retries, name .. ": replayed")
    assert.equal(before + 1, runs(), name .. ": ran more than once")
    assert.is_true(H.wait_until(function() return pool:stats().size == 2 end, 5000))
    pool:close()
    assert.is_true(H.no_backends(app))
  end

  it("a stream fails with the 57P01 and is not run again", function()
    check("stream", function(pool)
      local s = pool:stream("SELECT nextval('" .. seq .. "'), pg_sleep(3)")
      local first = s:next()
      return function() return H.failure(first) end
    end)
  end)

  it("a COPY TO fails with the 57P01 and is not run again", function()
    check("copy_to", function(pool)
      local f = pool:copy_to("COPY (SELECT nextval('" .. seq .. "'), pg_sleep(3)) TO STDOUT")
      return function() return H.failure(f) end
    end)
  end)

  it("a COPY FROM with a source function fails with the 57P01 and is not run again", function()
    local items = 0
    check("copy_from", function(pool)
      -- the trigger-free way to make a COPY FROM sleep: a default that sleeps
      H.psql("ALTER TABLE " .. tbl .. " ADD COLUMN IF NOT EXISTS w bigint " ..
             "DEFAULT nextval('" .. seq .. "') + (pg_sleep(3) IS NULL)::int")
      local f = pool:copy_from("COPY " .. tbl .. " (v) FROM STDIN", function()
        items = items + 1
        if items == 1 then return {1} end
        return nil
      end)
      return function() return H.failure(f) end
    end, "FROM STDIN")
    assert.equal(2, items, "the source was read once (its row, then its end)")
    assert.equal("0", H.psql("SELECT count(*) FROM " .. tbl))
  end)
end)
