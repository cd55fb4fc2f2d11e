-- Regression (issue 13, found by the soak under LeakSanitizer): a COPY that was refused
-- before it reached a connection (a pool that can open none: DatabaseNotAvailable; a
-- closed Connection: InterfaceError) leaked its COPY state: lmk_req_refuse freed the
-- request but not the buffer record copy_setup had given it (56 bytes each). The fix:
-- a refused request is freed like any other, its COPY state with it.
--
-- The check runs in a child lua5.4, on a fresh heap (in this process the holes other
-- specs left in the heap would take the leaked blocks without RSS growing): 80,000
-- refused COPYs after a warm-up must not grow its RSS by 1 MB (the leak grew it by some
-- 5 MB). Under the sanitizers (whose quarantine keeps freed memory, so RSS says
-- nothing there) LeakSanitizer reports the leak at the child's exit, which fails it.
local H = require "helper"

local sanitized = os.getenv("MOMOKO_TEST_SANITIZE") == "1"

describe("regress 163: a refused COPY", function()
  it("frees its COPY state (a pool with no connection, a closed Connection)", function()
    local grown, out, ok = H.run_lua_grown(string.format([[
      local momoko = require "momoko"
      local pool = momoko.Pool{ dsn = "host=127.0.0.1 port=%d dbname=x connect_timeout=2",
                                size = 1, raise_connect_errors = false, reconnect_interval = 60000 }
      pool:connect():await()
      local conn = momoko.connect(os.getenv("MOMOKO_TEST_DSN")):await()
      conn:close()
      local function refuse(n)
        for i = 1, n do
          local f = (i %% 2 == 0) and pool:copy_to("COPY (SELECT 1) TO STDOUT")
                                  or pool:copy_from("COPY t FROM STDIN", "1\n")
          assert(f:error().kind == "DatabaseNotAvailable", tostring(f:error()))
          local ok, err = pcall(conn.copy_to, conn, "COPY (SELECT 1) TO STDOUT", function() end)
          assert(not ok and err.kind == "InterfaceError" and err.message == "copy_to: connection is closed",
            tostring(err))
          if i %% 500 == 0 then collectgarbage() end
        end
        collectgarbage()
        collectgarbage()
      end
      refuse(%d) -- the allocator's own warm-up
      local before = proc_kib("VmRSS")
      refuse(%d)
      print("grown " .. (proc_kib("VmRSS") - before))
      pool:close()
    ]], H.closed_port(), sanitized and 500 or 5000, sanitized and 500 or 40000))
    assert.is_true(ok, out)
    assert.is_not_nil(grown, out)
    if not sanitized then
      assert.is_true(grown < 1024, "RSS grew by " .. grown .. " KiB")
    end
  end)
end)
