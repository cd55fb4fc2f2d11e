-- Regression: PostgreSQL ignores a cancel request that reaches a backend between two
-- commands, which in a pipeline happens when the cancel goes out just as the previous
-- request ends. The cancel request counted as delivered, so nothing more was done: a
-- cancelled request ran on to its end (a timed-out one closed the connection at its
-- second deadline). A request still running after its cancel was delivered now gets
-- another, after 50 ms, then after twice as long each time. The fake server here
-- ignores the first cancel request of a "fake:hang" query every time.
local momoko = require "momoko"
local H = require "helper"
local fake_pg = require "fake_pg"

describe("regress 090: a cancel request the server ignored is sent again", function()
  local fake
  lazy_setup(function() fake = fake_pg.start(60) end)
  lazy_teardown(function() if fake then fake.stop() end end)

  for _, pipeline in ipairs({false, true}) do
    it("f:cancel() ends the request with QueryCanceledError (pipeline " .. tostring(pipeline) .. ")", function()
      local conn = momoko.connect("host=127.0.0.1 port=" .. fake.port .. " user=u dbname=d sslmode=disable",
        {pipeline = pipeline, statement_cache_size = 0}):await()
      local f = conn:execute("SELECT 'fake:hang'")
      momoko.sleep(30):await()
      assert.is_true(f:cancel())
      assert.is_true(H.wait_until(function() return f:done() end, 3000), "the request still runs")
      H.assert_kind("QueryCanceledError", H.failure(f))
      assert.is_false(conn.closed)
      assert.equal("2", conn:execute("SELECT 1"):await():fetchone()[1]) -- the fake counts queries
      conn:close()
    end)
  end

  it("a timeout ends the request with TimeoutError and keeps the connection", function()
    local conn = momoko.connect("host=127.0.0.1 port=" .. fake.port .. " user=u dbname=d sslmode=disable"):await()
    local f = conn:execute("SELECT 'fake:hang'", nil, {timeout = 100})
    assert.is_true(H.wait_until(function() return f:done() end, 3000), "the request still runs")
    H.assert_kind("TimeoutError", H.failure(f))
    assert.is_false(conn.closed)
    conn:close()
  end)
end)
