-- Regression: an answer from the server that libpq cannot understand failed the request
-- with DatabaseError, as if the statement were at fault, where the API says
-- OperationalError ("a response libpq cannot understand fails the request with
-- OperationalError").
--
-- libpq 15 never makes a PGRES_BAD_RESPONSE result (take_result's branch for it is kept
-- for other libpq versions): it reports every malformed message as PGRES_FATAL_ERROR
-- with its own message and no SQLSTATE, and goes on reading up to the ReadyForQuery, so
-- the connection stays usable. Only a length word below 4 (lost message boundaries)
-- closes it. A real server never sends such answers; spec/support/fake_pg.lua does.
local H = require "helper"
local momoko = require "momoko"
local fake_pg = require "fake_pg"

-- what libpq 15 says about each broken answer of fake_pg (see MODES there)
local MALFORMED = {
  short_T = 'message contents do not agree with length in message type "T"',
  short_t = 'message contents do not agree with length in message type "t"',
  D_without_T = 'server sent data ("D" message) without prior row description ("T" message)',
  field_count = 'unexpected field count in "D" message',
  unknown_type = 'unexpected response from server; first received character was "~"',
  length_mismatch = 'message contents do not agree with length in message type "C"',
}
local modes = {}
for mode in pairs(MALFORMED) do modes[#modes + 1] = mode end
table.sort(modes)
local SYNC_LOSS = 'lost synchronization with server: got message type "C", length 2'

describe("regress 020: a malformed answer from the server", function()
  local fake, dsn

  setup(function()
    fake = fake_pg.start(120)
    dsn = string.format("host=127.0.0.1 port=%d sslmode=disable gssencmode=disable " ..
      "user=momoko dbname=fake connect_timeout=5", fake.port)
  end)

  teardown(function()
    if fake then fake.stop() end
  end)

  -- Runs the loop until f is done, 3 s at most.
  local function settle(f, name)
    assert.is_true(H.wait_until(function() return f:done() end, 3000), name .. " is done within 3 s")
  end

  local function connect()
    local f = momoko.connect(dsn)
    settle(f, "connect")
    return f:result()
  end

  -- Asserts that f failed with OperationalError and this message from libpq.
  local function assert_not_understood(f, message, name)
    settle(f, name)
    local err = H.failure(f) -- never a Cursor
    H.assert_kind("OperationalError", err)
    assert.equal(message, err.message, name)
    assert.is_nil(err.sqlstate, name)
  end

  -- The fake answers a well-formed query with how many queries it has received on this
  -- connection: the connection is in step with the server.
  local function assert_answer(f, n, name)
    settle(f, name)
    local cur = f:result()
    assert.equal(tostring(n), cur:fetchone()[1], name)
  end

  for _, protocol in ipairs({"simple", "extended"}) do
    for _, mode in ipairs(modes) do
      local message = MALFORMED[mode]
      it(mode .. " (" .. protocol .. " protocol) fails the request; the connection goes on", function()
        local conn = connect()
        local bad
        if protocol == "simple" then
          bad = conn:execute("SELECT 'fake:" .. mode .. "'")
        else
          bad = conn:execute("SELECT 'fake:" .. mode .. "', $1::int", {1})
        end
        local queued = conn:execute("SELECT 'queued behind it'")
        assert_not_understood(bad, message, "the malformed answer")
        assert_answer(queued, 2, "the request queued behind it")
        assert.is_false(conn.closed)
        assert_answer(conn:execute("SELECT 'later'", {}), 3, "a later request")
        conn:close()
      end)
    end
  end

  it("inside a transaction, fails it, rolls back, and the connection goes on", function()
    local conn = connect()
    -- BEGIN, then the statement, then ROLLBACK: three queries, each answered
    local t = conn:transaction({"SELECT 'fake:field_count'", "SELECT 'never sent'"})
    assert_not_understood(t, MALFORMED.field_count, "the transaction")
    assert.is_false(conn.closed)
    assert_answer(conn:execute("SELECT 'after'"), 4, "the request after the transaction")
    conn:close()
  end)

  it("that loses the message boundaries closes the connection; queued requests fail", function()
    local conn = connect()
    local bad = conn:execute("SELECT 'fake:sync_loss'")
    local q1 = conn:execute("SELECT 'queued 1'")
    local q2 = conn:execute("SELECT 'queued 2', $1::int", {2})
    assert_not_understood(bad, SYNC_LOSS, "the malformed answer")
    for name, f in pairs({["queued 1"] = q1, ["queued 2 (extended)"] = q2}) do
      settle(f, name)
      local err = H.failure(f)
      H.assert_kind("OperationalError", err)
      -- libpq's whole message: its complaint, then what it said when asked again
      local prefix = "connection lost before the request was sent: " .. SYNC_LOSS
      assert.equal(prefix, err.message:sub(1, #prefix), name)
    end
    assert.is_true(conn.closed)
    local err = H.error_of(conn.execute, conn, "SELECT 1")
    H.assert_kind("InterfaceError", err)
    conn:close()
  end)
end)
