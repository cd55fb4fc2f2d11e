-- Regression (pipeline adversarial review): in pipeline mode a statement pushed out of
-- the cache is deallocated only once the pipeline is empty (libpq tells the transaction
-- status only then, and a DEALLOCATE must not go into the user's transaction block,
-- regress 097). A pipeline that never drained (requests issued from done callbacks, a
-- few always in flight) therefore never deallocated anything: with
-- statement_cache_size = 1 and three statements taking turns, the server held 1,501
-- prepared statements after 3,000 requests, and the connection's list of pending
-- DEALLOCATEs grew alike. Now, once 16 wait, nothing new is sent until the pipeline
-- drained and they went out.
local momoko = require "momoko"
local H = require "helper"

local SQLS = {"SELECT $1::int + 1", "SELECT $1::int * 2", "SELECT $1::int - 3"}

local function expect(k, v)
  if k == 1 then return v + 1 elseif k == 2 then return v * 2 else return v - 3 end
end

-- Statement k for the i-th request: each statement twice in a row (the second run
-- prepares it), then the next one, which pushes it out of a cache of one.
local function stmt_of(i) return ((i // 2) % 3) + 1 end

describe("regress 099: DEALLOCATE in a pipeline that never drains", function()
  it("keeps the server's prepared statements bounded while 3,000 requests churn a cache of one", function()
    local dsn, app = H.app_dsn("r099")
    local conn = momoko.connect(dsn, {pipeline = true, statement_cache_size = 1}):await()
    H.close_after(conn, app, function()
      local done, wrong, most, samples, total = 0, 0, 0, 0, 3000
      local function one(i)
        local k = stmt_of(i)
        conn:execute(SQLS[k], {i}):add_done_callback(function(f)
          done = done + 1
          if f:error() or f:result():fetchone()[1] ~= expect(k, i) then wrong = wrong + 1 end
          if i % 50 == 0 then -- goes into the same pipeline: the count at this point
            conn:execute("SELECT count(*) FROM pg_prepared_statements"):add_done_callback(function(g)
              samples = samples + 1
              most = math.max(most, g:result():fetchone()[1])
            end)
          end
          if i + 4 <= total then one(i + 4) end -- four always in flight
        end)
      end
      for j = 1, 4 do one(j) end
      assert.is_true(H.wait_until(function() return done == total and samples == total // 50 end, 30000))
      assert.equal(0, wrong)
      assert.is_true(most <= 1 + 16, "prepared statements seen mid-stream: " .. most)
      momoko.sleep(20):await()
      local n = conn:execute("SELECT count(*) FROM pg_prepared_statements"):await():fetchone()[1]
      assert.is_true(n <= 1, "prepared statements once settled: " .. n)
    end)
  end)

  it("inside the user's transaction block, all pipelined: results right, deallocated after COMMIT", function()
    local dsn, app = H.app_dsn("r099b")
    local conn = momoko.connect(dsn, {pipeline = true, statement_cache_size = 1}):await()
    H.close_after(conn, app, function()
      local begin = conn:execute("BEGIN")
      local fs = {}
      for i = 1, 500 do fs[i] = conn:execute(SQLS[stmt_of(i)], {i}) end
      local commit = conn:execute("COMMIT")
      begin:await()
      for i = 1, 500 do assert.equal(expect(stmt_of(i), i), fs[i]:await():fetchone()[1]) end
      commit:await()
      -- the DEALLOCATEs sent after COMMIT: in flight ("active") until they answer; a
      -- busy machine may take longer than a fixed sleep, so wait for them, bounded
      assert.is_true(H.wait_until(function() return conn.transaction_status == "idle" end, 5000),
        "transaction status once the DEALLOCATEs answered: " .. conn.transaction_status)
      local n = conn:execute("SELECT count(*) FROM pg_prepared_statements"):await():fetchone()[1]
      assert.is_true(n <= 1, "prepared statements once settled: " .. n)
      -- and the hold works again after the block: a second churn never drains either
      local done, most = 0, 0
      local function one(i)
        conn:execute(SQLS[stmt_of(i)], {i}):add_done_callback(function()
          done = done + 1
          if i % 40 == 0 then
            conn:execute("SELECT count(*) FROM pg_prepared_statements"):add_done_callback(function(g)
              most = math.max(most, g:result():fetchone()[1])
            end)
          end
          if i + 4 <= 1200 then one(i + 4) end
        end)
      end
      for j = 1, 4 do one(j) end
      assert.is_true(H.wait_until(function() return done == 1200 end, 30000))
      momoko.sleep(20):await()
      assert.is_true(most <= 1 + 16, "prepared statements seen after the block: " .. most)
    end)
  end)
end)
