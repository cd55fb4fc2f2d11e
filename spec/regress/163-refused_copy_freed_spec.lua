-- Regression (issue 13, found by the soak under LeakSanitizer): a COPY that was refused
-- before it reached a connection (a pool that can open none: DatabaseNotAvailable; a
-- closed Connection: InterfaceError) leaked its COPY state: lmk_req_refuse freed the
-- request but not the buffer record copy_setup had given it (56 bytes each). The fix:
-- a refused request is freed like any other, its COPY state with it.
--
-- The check: 80,000 refused COPYs must not grow RSS by 1 MB (the leak grew it by some
-- 2.5 MB); under the sanitizers (whose quarantine keeps freed memory, so RSS says
-- nothing) LeakSanitizer reports the leak at exit, which fails scripts/test --sanitize.
local momoko = require "momoko"
local H = require "helper"

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local kib
  for line in f:lines() do kib = kib or tonumber(line:match("^VmRSS:%s+(%d+)")) end
  f:close()
  return kib
end

local sanitized = os.getenv("MOMOKO_TEST_SANITIZE") == "1"

describe("regress 163: a refused COPY", function()
  it("frees its COPY state (a pool with no connection, a closed Connection)", function()
    local pool = momoko.Pool{ dsn = "host=127.0.0.1 port=" .. H.closed_port() .. " dbname=x connect_timeout=2",
                              size = 1, raise_connect_errors = false, reconnect_interval = 60000 }
    pool:connect():await()
    local conn = momoko.connect(H.dsn):await()
    conn:close()
    local function refuse(n)
      for i = 1, n do
        local f = (i % 2 == 0) and pool:copy_to("COPY (SELECT 1) TO STDOUT")
                                or pool:copy_from("COPY t FROM STDIN", "1\n")
        H.assert_kind("DatabaseNotAvailable", f:error())
        local err = H.error_of(conn.copy_to, conn, "COPY (SELECT 1) TO STDOUT", function() end)
        H.assert_kind("InterfaceError", err)
        assert.equal("copy_to: connection is closed", err.message)
        -- Lua's garbage collected as it is made, so that only C memory can grow (the
        -- collector's pause after an earlier spec's large results would let it pile up)
        if i % 500 == 0 then collectgarbage() end
      end
      collectgarbage()
      collectgarbage()
    end
    refuse(sanitized and 500 or 5000) -- the allocator's own warm-up
    local before = rss_kib()
    refuse(sanitized and 500 or 40000)
    local grown = rss_kib() - before
    pool:close()
    if not sanitized then
      assert.is_true(grown < 1024, "RSS grew by " .. grown .. " KiB")
    end
  end)
end)
