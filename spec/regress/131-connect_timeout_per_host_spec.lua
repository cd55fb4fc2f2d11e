-- Regression (issue 12, failover): connect_timeout bounded the whole connect of a
-- multi-host DSN, not each host as libpq does. A first host that accepts TCP but never
-- answers (a hung or partitioned old primary) used up the whole timeout, and the
-- connect failed with "connection timeout expired" without trying the next host: a
-- pool on "host=old,new target_session_attrs=read-write" never reached the promoted
-- standby. Now a host that does not answer within connect_timeout is given up and
-- libpq starts again with the hosts after it (mk_hosts.c); the connect fails only when
-- the last host times out.
local momoko = require "momoko"
local H = require "helper"

local PORT = tonumber(H.dsn:match("port=(%d+)"))

local function dsn_of(ports, extra)
  local hosts = {}
  for i = 1, #ports do hosts[i] = "127.0.0.1" end
  return string.format("host=%s port=%s dbname=momoko_test user=postgres connect_timeout=2%s",
    table.concat(hosts, ","), table.concat(ports, ","), extra or "")
end

describe("regress 131: connect_timeout applies to each host of a list", function()
  local silent, silent2

  before_each(function()
    silent = H.silent_server(30)
    silent2 = H.silent_server(30)
  end)

  after_each(function()
    silent.stop()
    silent2.stop()
  end)

  it("a host that never answers is given up for the next one", function()
    local conn = momoko.connect(dsn_of({silent.port, PORT}, " target_session_attrs=read-write")):await()
    assert.equal(PORT, conn:execute("SELECT inet_server_port()"):await():fetchone()[1])
    conn:close()
  end)

  it("so is each of several, also with names resolved first (hostaddr)", function()
    local dsn = string.format("host=localhost,127.0.0.1,localhost port=%d,%d,%d dbname=momoko_test user=postgres connect_timeout=2",
      silent.port, silent2.port, PORT)
    local pool = momoko.Pool{dsn = dsn, size = 2}
    pool:connect():await()
    assert.equal(PORT, pool:execute("SELECT inet_server_port()"):await():fetchone()[1])
    assert.equal(2, pool:stats().size)
    pool:close()
  end)

  it("when the last host never answers either, the connect fails with the timeout", function()
    local err = H.failure(momoko.connect(dsn_of({silent.port, silent2.port})))
    H.assert_kind("OperationalError", err)
    assert.equal("connection timeout expired", err.message)
  end)
end)
