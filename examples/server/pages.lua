-- The pages of the example server: the Momoko tutorial's examples, each a plain
-- function of the request that awaits momoko futures and returns status, JSON value.
-- They run in the request's own coroutine (examples/server/http.lua), so an await
-- suspends only that request.
local momoko = require "momoko"

local pages = {}

--- The handler for http.serve: routes req.path to a page of app = {pool =,
--- hstore_error = (why hstore is unavailable, or nil), stats = fn}.
function pages.handler(app)
  local pool = app.pool
  local routes = {}

  -- One query.
  routes["/one"] = function()
    local cur = pool:execute("SELECT 1"):await()
    return 200, {result = cur:fetchone()[1]}
  end

  -- Three queries in parallel: issued at once (on up to three connections), awaited
  -- together.
  routes["/parallel"] = function()
    local f1 = pool:execute("SELECT 1")
    local f2 = pool:execute("SELECT 2")
    local f3 = pool:execute("SELECT 3")
    local c1, c2, c3 = table.unpack(momoko.all{f1, f2, f3}:await())
    return 200, {q1 = c1:fetchall(), q2 = c2:fetchall(), q3 = c3:fetchall()}
  end

  -- A transaction: BEGIN, the statements, COMMIT on one connection; both statements
  -- see the same transaction id.
  routes["/transaction"] = function()
    local cursors = pool:transaction{
      "SELECT txid_current()",
      {"SELECT txid_current(), $1::int * 2", {21}},
    }:await()
    local first, second = cursors[1]:fetchone(), cursors[2]:fetchone()
    return 200, {xid = first[1], same_transaction = first[1] == second[1], answer = second[2]}
  end

  -- The server-side cursor walk: a connection reserved with getconn (given back at
  -- scope exit by <close>, error or not; an open transaction is then rolled back),
  -- DECLARE in a transaction, FETCH chunk by chunk (FETCH takes no parameters).
  routes["/cursor"] = function()
    local count, chunk = 1000, 10
    local conn <close> = pool:getconn():await()
    conn:execute("BEGIN"):await()
    conn:execute("DECLARE all_ints CURSOR FOR SELECT generate_series(1, $1)", {count}):await()
    local rows, chunks, sum, last = 0, 0, 0, nil
    while rows < count do
      local cur = conn:execute(string.format("FETCH %d FROM all_ints", chunk)):await()
      local got = cur:fetchall()
      if #got == 0 then break end
      for _, row in ipairs(got) do sum = sum + row[1] end
      rows, chunks, last = rows + #got, chunks + 1, got[#got][1]
    end
    conn:execute("CLOSE all_ints"):await()
    conn:execute("COMMIT"):await()
    return 200, {rows = rows, chunks = chunks, sum = sum, last = last}
  end

  -- A function called by name.
  routes["/callproc"] = function()
    local cur = pool:callproc("generate_series", {1, 5}):await()
    local values = {}
    for row in cur:rows() do values[#values + 1] = row[1] end
    return 200, {values = values}
  end

  -- The SQL with its parameters inlined as literals, escaped for the connection.
  routes["/mogrify"] = function()
    local sql = pool:mogrify("SELECT :name, :n", {name = "O'Reilly", n = 42}):await()
    return 200, {sql = sql}
  end

  -- hstore (register_hstore at start-up: tables both ways, NULL values as momoko.null).
  routes["/hstore"] = function()
    if app.hstore_error then return 501, {error = app.hstore_error} end
    local cur = pool:execute("SELECT $1::hstore || 'b=>NULL'::hstore",
                             {momoko.hstore{a = "1"}}):await()
    return 200, {hstore = cur:fetchone()[1]}
  end

  -- json and jsonb (register_json at start-up: decoded with lua-cjson; momoko.json(v)
  -- sends a value as json).
  routes["/json"] = function()
    local cur = pool:execute([[SELECT '{"a": [1, 2, {"b": true}]}'::jsonb, $1::json]],
                             {momoko.json{hello = "world", n = 3}}):await()
    local row = cur:fetchone()
    return 200, {jsonb = row[1], json = row[2]}
  end

  -- A slow query: ?ms= milliseconds of pg_sleep (at most 10 s), for load and
  -- concurrency tests.
  routes["/sleep"] = function(req)
    local ms = tonumber(req.query.ms or "200")
    if not ms or ms ~= ms // 1 or ms < 0 or ms > 10000 then
      return 400, {error = "ms must be an integer from 0 to 10000"}
    end
    pool:execute("SELECT pg_sleep($1)", {ms / 1000}):await()
    return 200, {slept_ms = math.tointeger(ms)}
  end

  -- A failing handler (it answers 500, the error reaches momoko.on_error):
  -- ?when=now raises before any await, later after one, query awaits a failing query.
  routes["/fail"] = function(req)
    local when = req.query.when or "now"
    if when == "now" then error("failed on purpose, before any await") end
    if when == "later" then
      pool:execute("SELECT 1"):await()
      error("failed on purpose, after an await")
    end
    if when == "query" then pool:execute("SELECT 1 / 0"):await() end
    return 400, {error = "when must be now, later or query"}
  end

  -- The pool's stats() and the server's counters.
  routes["/stats"] = function()
    return 200, app.stats()
  end

  routes["/"] = function()
    local names = {}
    for path in pairs(routes) do names[#names + 1] = path end
    table.sort(names)
    return 200, {pages = names}
  end

  return function(req)
    local page = routes[req.path]
    if not page then return 404, {error = "no page " .. req.path} end
    if req.method ~= "GET" then return 405, {error = "only GET"} end
    return page(req)
  end
end

return pages
