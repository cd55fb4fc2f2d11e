-- API §2: error objects, the kind hierarchy and the SQLSTATE mapping.
local momoko = require "momoko"
local H = require "helper"

-- The error a failing future raises (asserts that it does fail).
-- An error object of kind, as the library makes them (momoko.Error is their metatable).
local function make(kind, message)
  return setmetatable({kind = kind, message = message}, momoko.Error)
end

local failure = H.failure

describe("momoko.is", function()
  -- every kind and its full ancestry (the kind itself first)
  local ancestry = {
    Error = {"Error"},
    InterfaceError = {"InterfaceError", "Error"},
    DatabaseError = {"DatabaseError", "Error"},
    DataError = {"DataError", "DatabaseError", "Error"},
    OperationalError = {"OperationalError", "DatabaseError", "Error"},
    IntegrityError = {"IntegrityError", "DatabaseError", "Error"},
    InternalError = {"InternalError", "DatabaseError", "Error"},
    ProgrammingError = {"ProgrammingError", "DatabaseError", "Error"},
    NotSupportedError = {"NotSupportedError", "DatabaseError", "Error"},
    QueryCanceledError = {"QueryCanceledError", "OperationalError", "DatabaseError", "Error"},
    TransactionRollbackError = {"TransactionRollbackError", "OperationalError", "DatabaseError", "Error"},
    TimeoutError = {"TimeoutError", "OperationalError", "DatabaseError", "Error"},
    PoolError = {"PoolError", "Error"},
    PartiallyConnectedError = {"PartiallyConnectedError", "PoolError", "Error"},
    DatabaseNotAvailable = {"DatabaseNotAvailable", "PoolError", "Error"},
  }
  local all = {}
  for k in pairs(ancestry) do all[#all + 1] = k end
  table.sort(all)

  it("knows exactly the kinds of the contract, with their parents", function()
    local names = {}
    for k, parent in pairs(momoko.kinds) do
      names[#names + 1] = k
      local chain = ancestry[k]
      assert.is_not_nil(chain, "unexpected kind " .. k)
      assert.equal(chain[2] or false, parent)
    end
    table.sort(names)
    assert.same(all, names)
  end)

  for _, kind in ipairs(all) do
    it("answers true for " .. kind .. " and its ancestors only", function()
      local err = make(kind, "m")
      local yes = {}
      for _, a in ipairs(ancestry[kind]) do yes[a] = true end
      for _, other in ipairs(all) do
        assert.equal(yes[other] == true, momoko.is(err, other), kind .. " is " .. other)
      end
    end)
  end

  it("spells out the hierarchy points of the contract", function()
    assert.is_true(momoko.is(make("IntegrityError", "x"), "DatabaseError"))
    assert.is_true(momoko.is(make("IntegrityError", "x"), "Error"))
    assert.is_true(momoko.is(make("TimeoutError", "x"), "OperationalError"))
    assert.is_true(momoko.is(make("QueryCanceledError", "x"), "OperationalError"))
    assert.is_false(momoko.is(make("PoolError", "x"), "DatabaseError"))
    assert.is_false(momoko.is(make("DatabaseNotAvailable", "x"), "DatabaseError"))
    assert.is_false(momoko.is(make("PartiallyConnectedError", "x"), "OperationalError"))
    assert.is_false(momoko.is(make("InterfaceError", "x"), "DatabaseError"))
  end)

  it("is false for anything that is not a momoko error", function()
    assert.is_false(momoko.is(nil, "Error"))
    assert.is_false(momoko.is("InterfaceError: x", "Error"))
    assert.is_false(momoko.is(42, "Error"))
    assert.is_false(momoko.is({}, "Error"))
    assert.is_false(momoko.is({kind = "Error", message = "x"}, "Error"))
    assert.is_false(momoko.is(setmetatable({kind = "Error"}, {}), "Error"))
    assert.is_false(momoko.is(function() end, "Error"))
    assert.is_false(momoko.is(momoko.null, "Error"))
    -- an unknown kind name is simply not an ancestor
    assert.is_false(momoko.is(make("DataError", "x"), "NoSuchError"))
  end)

  it("rejects a kind that is not a string, and momoko.error an unknown kind", function()
    assert.is_not_nil(H.error_of(momoko.is, make("Error", "x"), nil))
    assert.is_not_nil(H.error_of(momoko.error, "NoSuchError", "x"))
  end)
end)

describe("tostring(err)", function()
  it("is 'Kind: message' without a SQLSTATE", function()
    assert.equal("InterfaceError: bad thing", tostring(make("InterfaceError", "bad thing")))
  end)
end)

describe("server errors", function()
  local conn

  setup(function()
    conn = momoko.connect(H.dsn):await()
    conn:execute([[
      CREATE TEMP TABLE t (id int PRIMARY KEY, v int CHECK (v > 0));
      INSERT INTO t VALUES (1, 1);
    ]]):await()
  end)

  teardown(function()
    conn:close()
  end)

  it("map unique violation 23505 to IntegrityError with the server's fields", function()
    local err = failure(conn:execute("INSERT INTO t VALUES (1, 2)"))
    assert.equal(momoko.Error, getmetatable(err))
    assert.equal("IntegrityError", err.kind)
    assert.is_true(momoko.is(err, "IntegrityError"))
    assert.is_true(momoko.is(err, "DatabaseError"))
    assert.is_true(momoko.is(err, "Error"))
    assert.is_false(momoko.is(err, "OperationalError"))
    assert.equal("23505", err.sqlstate)
    assert.equal("ERROR", err.severity)
    assert.equal("t_pkey", err.constraint)
    assert.equal("t", err.table)
    assert.matches("^pg_temp_%d+$", err.schema)
    assert.equal("Key (id)=(1) already exists.", err.detail)
    assert.equal('duplicate key value violates unique constraint "t_pkey"', err.message)
    assert.equal('IntegrityError: duplicate key value violates unique constraint "t_pkey" (SQLSTATE 23505)',
      tostring(err))
    assert.is_nil(err.hint)
    assert.is_nil(err.position)
  end)

  it("map a check violation 23514 to IntegrityError with its constraint", function()
    local err = failure(conn:execute("INSERT INTO t VALUES (2, -1)"))
    assert.equal("IntegrityError", err.kind)
    assert.equal("23514", err.sqlstate)
    assert.equal("t_v_check", err.constraint)
  end)

  it("map a not-null violation 23502 to IntegrityError with its column", function()
    local err = failure(conn:execute("INSERT INTO t VALUES (NULL, 1)"))
    assert.equal("IntegrityError", err.kind)
    assert.equal("23502", err.sqlstate)
    assert.equal("id", err.column)
    assert.equal("t", err.table)
  end)

  it("map division by zero 22012 to DataError", function()
    local err = failure(conn:execute("SELECT 1 / 0"))
    assert.equal("DataError", err.kind)
    assert.equal("22012", err.sqlstate)
    assert.equal("division by zero", err.message)
    assert.equal("DataError: division by zero (SQLSTATE 22012)", tostring(err))
    assert.is_true(momoko.is(err, "DatabaseError"))
  end)

  it("map undefined table 42P01 to ProgrammingError with the position", function()
    local err = failure(conn:execute("SELECT * FROM no_such_table_x"))
    assert.equal("ProgrammingError", err.kind)
    assert.equal("42P01", err.sqlstate)
    assert.equal('relation "no_such_table_x" does not exist', err.message)
    assert.equal(15, err.position)
    assert.equal("number", type(err.position))
  end)

  it("carry the hint", function()
    local err = failure(conn:execute("SELECT no_such_fn_x(1)"))
    assert.equal("ProgrammingError", err.kind)
    assert.equal("42883", err.sqlstate)
    assert.equal("No function matches the given name and argument types. You might need to add explicit type casts.",
      err.hint)
    assert.equal(8, err.position)
  end)

  -- SQLSTATEs raised on purpose from plpgsql, with the kind they must map to
  local raised = {
    {"40001", "TransactionRollbackError", "OperationalError"},
    {"40P01", "TransactionRollbackError", "OperationalError"},
    {"0A000", "NotSupportedError", "DatabaseError"},
    {"P0001", "InternalError", "DatabaseError"},
    {"XX000", "InternalError", "DatabaseError"},
    {"25P02", "InternalError", "DatabaseError"},
    {"57014", "QueryCanceledError", "OperationalError"},
    {"57P01", "OperationalError", "DatabaseError"},
    {"53300", "OperationalError", "DatabaseError"},
    {"08006", "OperationalError", "DatabaseError"},
    {"22P02", "DataError", "DatabaseError"},
    {"23503", "IntegrityError", "DatabaseError"},
    {"42501", "ProgrammingError", "DatabaseError"},
    {"3D000", "ProgrammingError", "DatabaseError"},
    {"2BP01", "InternalError", "DatabaseError"},
    {"HV000", "OperationalError", "DatabaseError"},
    {"F0000", "InternalError", "DatabaseError"},
    {"01000", "DatabaseError", "Error"}, -- a class with no mapping: DatabaseError
    {"ZZ123", "DatabaseError", "Error"},
  }
  for _, case in ipairs(raised) do
    local state, kind, parent = case[1], case[2], case[3]
    it("map SQLSTATE " .. state .. " raised in plpgsql to " .. kind, function()
      local err = failure(conn:execute(string.format([[
        DO $$ BEGIN RAISE EXCEPTION 'raised %s' USING ERRCODE = '%s', HINT = 'h-%s', DETAIL = 'd-%s'; END $$
      ]], state, state, state, state)))
      assert.equal(kind, err.kind)
      assert.is_true(momoko.is(err, parent))
      assert.equal(state, err.sqlstate)
      assert.equal("raised " .. state, err.message)
      assert.equal("h-" .. state, err.hint)
      assert.equal("d-" .. state, err.detail)
      assert.equal("ERROR", err.severity)
      assert.equal(string.format("%s: raised %s (SQLSTATE %s)", kind, state, state), tostring(err))
    end)
  end

  it("leave the connection usable after each of them", function()
    assert.equal(1, conn:execute("SELECT count(*) FROM t"):await():fetchone()[1])
  end)

  it("fail a parametrized statement the same way", function()
    local err = failure(conn:execute("INSERT INTO t VALUES ($1, $2)", {1, 5}))
    assert.equal("IntegrityError", err.kind)
    assert.equal("23505", err.sqlstate)
    assert.equal("t_pkey", err.constraint)
  end)

  it("fail a transaction with the failing statement's error", function()
    local err = failure(conn:transaction({"INSERT INTO t VALUES (3, 3)", "SELECT 1 / 0"}))
    assert.equal("DataError", err.kind)
    assert.equal("22012", err.sqlstate)
    assert.equal(0, conn:execute("SELECT count(*) FROM t WHERE id = 3"):await():fetchone()[1])
  end)

  it("are raised by await inside a coroutine too", function()
    local err = H.async(function()
      local ok, e = pcall(function() return conn:execute("SELECT 1 / 0"):await() end)
      assert.is_false(ok)
      return e
    end)
    assert.equal("DataError", err.kind)
    assert.equal("22012", err.sqlstate)
  end)
end)

describe("errors raised at the call", function()
  it("are InterfaceError objects naming the argument", function()
    local err = H.error_of(momoko.Connection, 42)
    assert.equal(momoko.Error, getmetatable(err))
    assert.equal("InterfaceError", err.kind)
    assert.is_nil(err.sqlstate)
    assert.matches("dsn", err.message)
    assert.equal("InterfaceError: " .. err.message, tostring(err))
  end)
end)
