-- Regression (issue 13, stress under ASan): a copy_from or copy_to that the pool refused
-- at submit (max_waiting reached) failed its future as it should, but lmk_req_refuse freed
-- the request without its COPY state (the lcopy record and its buffer): every refused
-- COPY leaked it. The refusal now frees it like req_free does. The leak shows only under
-- `scripts/test --sanitize` (LeakSanitizer in the child process, which exits with a
-- report); without the sanitizers this spec checks the refusals themselves (and a COPY
-- failing with DatabaseNotAvailable).
local momoko = require "momoko"
local H = require "helper"

local CHILD = [[
local momoko = require "momoko"
momoko.spawn(function()
  local pool = momoko.Pool{ dsn = os.getenv("MOMOKO_TEST_DSN"), size = 1, max_size = 1, max_waiting = 1 }
  pool:connect():await()
  local conn = pool:getconn():await()          -- the pool's only connection
  local waiting = pool:execute("SELECT 1")      -- the one request allowed to wait
  for i = 1, 50 do
    local f = pool:copy_from("COPY stress_none FROM STDIN", { { i, "x" } })
    local ok, err = pcall(f.await, f)
    assert(not ok and err.kind == "PoolError", tostring(err))
    f = pool:copy_to("COPY (SELECT 1) TO STDOUT")
    ok, err = pcall(f.await, f)
    assert(not ok and err.kind == "PoolError", tostring(err))
  end
  pool:putconn(conn)
  assert(waiting:await():fetchone()[1] == 1)
  pool:close()
  local down = momoko.Pool{ dsn = "host=127.0.0.1 port=1 connect_timeout=2", size = 1 }
  pcall(function() down:connect():await() end)
  local f = down:copy_from("COPY t FROM STDIN", "1\n")
  local ok, err = pcall(f.await, f)
  assert(not ok and err.kind == "DatabaseNotAvailable", tostring(err))
  down:close()
  print("refused")
end):await()
]]

describe("regress 150: a COPY the pool refused at submit", function()
  it("fails its future and frees its COPY state (no leak under LeakSanitizer)", function()
    local out, ok = H.run_lua(CHILD)
    assert.is_true(ok, out)
    assert.equal("refused\n", out)
  end)
end)
