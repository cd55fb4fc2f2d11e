-- Regression: the statement cache ran a request again on any 26000 or 0A000 from a
-- cached statement. Only its own errors mean that: 26000 naming the cache's statement
-- (mk_<n>), and the plan cache's 0A000 ("cached plan must not change result type").
-- A statement that itself raises either code ran twice, and did twice what it does
-- outside the transaction (here: nextval).
local momoko = require "momoko"
local H = require "helper"

describe("regress 096: the statement cache runs a request again only for its own errors", function()
  local fn, seq
  lazy_setup(function()
    local n = math.random(1, 1e9)
    fn, seq = "r096_raise_" .. n, "r096_seq_" .. n
    -- through momoko: the body's dollar quotes would not survive psql's shell
    local setup = momoko.connect(H.dsn):await()
    setup:execute("CREATE SEQUENCE " .. seq):await()
    setup:execute("SELECT nextval('" .. seq .. "')"):await() -- last_value counts from here
    setup:execute("CREATE FUNCTION " .. fn .. [[(code text) RETURNS int LANGUAGE plpgsql AS $f$
      BEGIN
        PERFORM nextval(']] .. seq .. [[');
        RAISE EXCEPTION 'prepared statement "other" does not exist' USING ERRCODE = code;
      END $f$]]):await()
    setup:close()
  end)
  lazy_teardown(function()
    H.psql("DROP FUNCTION IF EXISTS " .. fn .. "(text)")
    H.psql("DROP SEQUENCE IF EXISTS " .. seq)
  end)

  for _, pipeline in ipairs({false, true}) do
    for _, code in ipairs({"26000", "0A000"}) do
      it(code .. " raised by the statement itself is its error, run once (pipeline " .. tostring(pipeline) .. ")", function()
        local dsn, app = H.app_dsn("r096")
        local conn = momoko.connect(dsn, {pipeline = pipeline}):await()
        H.close_after(conn, app, function()
          local before = tonumber(H.psql("SELECT last_value FROM " .. seq))
          for run = 1, 3 do -- the second run prepares it, the third runs it prepared
            local err = H.failure(conn:execute("SELECT " .. fn .. "($1)", {code}))
            assert.equal(code, err.sqlstate, "run " .. run)
          end
          local after = tonumber(H.psql("SELECT last_value FROM " .. seq))
          assert.equal(3, after - before, "each run ran once")
        end)
      end)
    end
  end
end)
