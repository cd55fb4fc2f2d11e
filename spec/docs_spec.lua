-- docs/api.md has one heading per public function, method, field and option, and no
-- heading that names nothing bound. What is bound is taken from the real module: the
-- keys of require "momoko", the methods tables in the metatables of a real Connection,
-- Pool, Cursor, Future and Stream, the fields of real error objects. What cannot be
-- enumerated at run time is read from the sources (paths relative to the repository's
-- root, where scripts/test runs), and each list read is checked against behaviour:
--   - Connection and Pool options: the known_options arrays of src/lua/lconn.c and
--     src/lua/lpool.c (each name is accepted by the constructor, another is refused
--     with "unknown option");
--   - fields read through __index: the strcmp(k, "name") tests of the __index functions
--     (each is non-nil on a live object);
--   - the server fields of an error: the PG_DIAG table of src/lua/lerror.c;
--   - request options (nothing refuses an unknown one): lua_getfield on an opts table in
--     the request builders (src/lua/lreq.c, lstream.c, lcopy.c, pool_getconn in
--     lpool.c) and opts.name in lua/momoko/init.lua.
-- A heading is "bound" when its whole text is one code span: `momoko.name...`,
-- `obj:method(...)`, `obj.field`, `opts.name`, or a bare `name` (an option of the
-- "Connection options" or "Pool options" section it is under).
local momoko = require "momoko"
local H = require "helper"

local API = "docs/api.md"

local function read(path)
  local f = assert(io.open(path, "r"), "cannot open " .. path .. " (run from the repository root)")
  local s = f:read("a")
  f:close()
  return s
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- The names in the C array `name[] = { "a", "b", ..., NULL}` of a source text.
local function c_string_array(src, name, path)
  local body = src:match(name .. "%[%]%s*=%s*(%b{})")
  assert(body, path .. ": no array " .. name)
  local out = {}
  for s in body:gmatch('"([%w_]+)"') do out[#out + 1] = s end
  assert(#out > 0, path .. ": array " .. name .. " is empty")
  return out
end

-- The body of the C function `static int fname(` in src.
local function c_function(src, fname, path)
  local i = src:find("static int " .. fname .. "%(")
  assert(i, path .. ": no function " .. fname)
  local j = src:find("\n}\n", i, true)
  return src:sub(i, j)
end

-- The strcmp(k, "name") keys tested in the __index function fname of the file at path.
local function index_fields(path, fname)
  local body = c_function(read(path), fname, path)
  local out = {}
  for name in body:gmatch('strcmp%(k, "([%w_]+)"%)') do out[#out + 1] = name end
  assert(#out > 0, path .. ": " .. fname .. " tests no key")
  return out
end

--- What api.md's headings name: a list of {kind =, owner =, name =, text =, line =}.
--- kind is "module", "method", "field", "request_option" or "option" (owner
--- "Connection" or "Pool"); headings in code the rules above do not recognize come back
--- as kind "unknown".
local function api_headings(text)
  local out, prose, lineno = {}, {}, 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    lineno = lineno + 1
    local hashes, title = line:match("^(#+)%s+(.-)%s*$")
    if hashes then
      local level = #hashes
      local code = title:match("^`([^`]+)`$")
      if not code then
        prose[level] = title
        for l = level + 1, 6 do prose[l] = nil end
      else
        local h = {text = code, line = lineno}
        local name
        name = code:match("^momoko%.([%a_][%w_]*)")
        if name then
          h.kind, h.name = "module", name
        else
          local obj, m = code:match("^(%a+):([%a_][%w_]*)%(")
          if obj then
            h.kind, h.owner, h.name = "method", obj, m
          else
            name = code:match("^opts%.([%a_][%w_]*)$")
            if name then
              h.kind, h.name = "request_option", name
            else
              local o, f = code:match("^(%a+)%.([%a_][%w_]*)$")
              if o then
                h.kind, h.owner, h.name = "field", o, f
              elseif code:match("^[%a_][%w_]*$") then
                local section
                for l = level - 1, 1, -1 do
                  if prose[l] then section = prose[l]; break end
                end
                h.kind, h.name = "option", code
                h.owner = section and section:match("^(%a+) options$")
                if not h.owner then h.kind = "unknown" end
              else
                h.kind = "unknown"
              end
            end
          end
        end
        out[#out + 1] = h
      end
    end
  end
  return out
end

--- The problems of the headings against bound = {module =, methods = {obj = set},
--- fields = {obj = set}, options = {Connection = set, Pool = set}, request_options =
--- set}: a list of strings, empty when every bound name has a heading and every heading
--- names something bound.
local function problems(headings, bound)
  local out, seen = {}, {}
  local documented = {module = {}, methods = {}, fields = {}, options = {Connection = {}, Pool = {}},
                      request_options = {}}
  for _, h in ipairs(headings) do
    local where = string.format("%s:%d `%s`", API, h.line, h.text)
    local key = h.kind .. " " .. tostring(h.owner) .. " " .. tostring(h.name)
    if h.kind ~= "unknown" and seen[key] then
      out[#out + 1] = where .. ": a second heading for the same name (first at line " .. seen[key] .. ")"
    end
    seen[key] = seen[key] or h.line
    if h.kind == "unknown" then
      out[#out + 1] = where .. ": a code heading of no known form"
    elseif h.kind == "module" then
      documented.module[h.name] = true
      if not bound.module[h.name] then out[#out + 1] = where .. ": momoko." .. h.name .. " is not bound" end
    elseif h.kind == "method" or h.kind == "field" then
      local group = h.kind == "method" and "methods" or "fields"
      local names = bound[group][h.owner]
      documented[group][h.owner] = documented[group][h.owner] or {}
      documented[group][h.owner][h.name] = true
      if not names then
        out[#out + 1] = where .. ": no object is called " .. h.owner
      elseif not names[h.name] then
        out[#out + 1] = where .. ": " .. h.owner .. " has no " .. (group == "methods" and "method " or "field ") .. h.name
      end
    elseif h.kind == "option" then
      documented.options[h.owner] = documented.options[h.owner] or {}
      documented.options[h.owner][h.name] = true
      local names = bound.options[h.owner]
      if not names then
        out[#out + 1] = where .. ": no constructor is called " .. h.owner
      elseif not names[h.name] then
        out[#out + 1] = where .. ": " .. h.owner .. " has no option " .. h.name
      end
    elseif h.kind == "request_option" then
      documented.request_options[h.name] = true
      if not bound.request_options[h.name] then out[#out + 1] = where .. ": no request reads opts." .. h.name end
    end
  end
  for _, name in ipairs(sorted_keys(bound.module)) do
    if not documented.module[name] then out[#out + 1] = "no heading for momoko." .. name end
  end
  for _, group in ipairs{"methods", "fields"} do
    for _, obj in ipairs(sorted_keys(bound[group])) do
      for _, name in ipairs(sorted_keys(bound[group][obj])) do
        if not (documented[group][obj] or {})[name] then
          out[#out + 1] = "no heading for " .. obj .. (group == "methods" and ":" or ".") .. name
        end
      end
    end
  end
  -- the Pool takes every Connection option too: documented once, under Connection options
  for _, owner in ipairs{"Connection", "Pool"} do
    for _, name in ipairs(sorted_keys(bound.options[owner])) do
      if not documented.options[owner][name] and not (owner == "Pool" and documented.options.Connection[name]
                                                       and bound.options.Connection[name]) then
        out[#out + 1] = "no heading for the " .. owner .. " option " .. name
      end
    end
  end
  for _, name in ipairs(sorted_keys(bound.request_options)) do
    if not documented.request_options[name] then out[#out + 1] = "no heading for opts." .. name end
  end
  return out
end

describe("docs/api.md", function()
  local conn, bound, text

  lazy_setup(function()
    text = read(API)
    conn = momoko.connect(H.dsn):await()
    local pool = momoko.Pool{dsn = H.dsn}
    local cur = conn:execute("SELECT 1 AS one"):await()
    local s = conn:stream("SELECT 1 AS one")
    local row = s:next():await()
    assert(row and row[1] == 1, "the stream gave its row")
    local fut = momoko.sleep(0)

    local module = {}
    for k in pairs(momoko) do module[k] = true end
    local function methods_of(mt)
      local t = mt.methods or mt.__index
      assert(type(t) == "table", "a methods table")
      local names = {}
      for k, v in pairs(t) do
        assert(type(v) == "function", k .. " is a function")
        names[k] = true
      end
      return names
    end

    -- fields read through __index, each checked live
    local fields = {
      conn = set_of(index_fields("src/lua/lconn.c", "conn_index")),
      pool = set_of(index_fields("src/lua/lpool.c", "pool_index")),
      cur = set_of(index_fields("src/lua/lcursor.c", "c_index")),
      s = set_of(index_fields("src/lua/lstream.c", "s_index")),
    }
    local live = {conn = conn, pool = pool, cur = cur, s = s}
    for obj, names in pairs(fields) do
      for name in pairs(names) do
        assert(live[obj][name] ~= nil, obj .. "." .. name .. " (read from the source) is nil on a live object")
      end
    end

    -- error fields: kind and message of every error, the server's fields of lerror.c
    local errfields = {}
    local ierr = H.error_of(momoko.Connection, 42)
    assert(getmetatable(ierr) == momoko.Error, "an error object")
    for k in pairs(ierr) do errfields[k] = true end
    local lerror = read("src/lua/lerror.c")
    for name in lerror:gmatch('{PG_DIAG_[%u_]+, "([%a_]+)"}') do errfields[name] = true end
    assert(errfields.sqlstate and errfields.constraint, "the PG_DIAG table of lerror.c was read")
    conn:execute("CREATE TEMP TABLE docs_spec_t (id int PRIMARY KEY CHECK (id > 0))"):await()
    local serr = H.error_of(function() conn:execute("INSERT INTO docs_spec_t VALUES ($1)", {-1}):await() end)
    assert(serr and serr.sqlstate == "23514", "a check violation: " .. tostring(serr))
    for k in pairs(serr) do assert(errfields[k], "error field " .. k .. " is in neither list") end
    fields.err = errfields

    -- Connection and Pool options, each accepted by name, an unknown one refused
    local conn_opts = c_string_array(read("src/lua/lconn.c"), "known_options", "src/lua/lconn.c")
    local pool_opts = c_string_array(read("src/lua/lpool.c"), "known_options", "src/lua/lpool.c")
    local function refused_as_unknown(ctor, name)
      local opts = {dsn = H.dsn}
      if name ~= "dsn" then opts[name] = {} end
      local ok, err = pcall(ctor, opts)
      if ok then err:close() end
      return not ok and tostring(err):find("unknown option", 1, true) ~= nil
    end
    for _, name in ipairs(conn_opts) do
      assert(not refused_as_unknown(momoko.Connection, name), "Connection refuses " .. name)
    end
    for _, name in ipairs(pool_opts) do
      assert(not refused_as_unknown(momoko.Pool, name), "Pool refuses " .. name)
    end
    assert(refused_as_unknown(momoko.Connection, "no_such_option"), "Connection refuses unknown options")
    assert(refused_as_unknown(momoko.Pool, "no_such_option"), "Pool refuses unknown options")
    local constructor = set_of(pool_opts)
    for _, name in ipairs(conn_opts) do constructor[name] = true end

    -- request options
    local request = {}
    for _, path in ipairs{"src/lua/lreq.c", "src/lua/lstream.c", "src/lua/lcopy.c"} do
      for idx, name in read(path):gmatch('lua_getfield%(L, (%w+), "([%w_]+)"%)') do
        if idx == "opts" or idx == "optidx" then request[name] = true end
      end
    end
    for name in c_function(read("src/lua/lpool.c"), "pool_getconn", "src/lua/lpool.c")
                  :gmatch('lua_getfield%(L, 2, "([%w_]+)"%)') do
      request[name] = true
    end
    for name in read("lua/momoko/init.lua"):gmatch("opts%.([%a_][%w_]*)") do
      if not constructor[name] then request[name] = true end
    end
    assert(request.timeout and request.chunk and request.ping and request.loads, "request options were read")

    bound = {
      module = module,
      methods = {
        conn = methods_of(getmetatable(conn)),
        pool = methods_of(getmetatable(pool)),
        cur = methods_of(getmetatable(cur)),
        f = methods_of(getmetatable(fut)),
        s = methods_of(getmetatable(s)),
      },
      fields = fields,
      options = {Connection = set_of(conn_opts), Pool = set_of(pool_opts)},
      request_options = request,
    }
    s:close():await()
    fut:await()
    pool:close()
  end)

  lazy_teardown(function()
    if conn then conn:close() end
  end)

  it("has a heading for each bound function, method, field and option, and none for anything else", function()
    local found = problems(api_headings(text), bound)
    assert.are.same({}, found)
  end)

  it("covers every part of the surface (sanity of what was read)", function()
    local headings = api_headings(text)
    local kinds = {}
    for _, h in ipairs(headings) do kinds[h.kind] = (kinds[h.kind] or 0) + 1 end
    assert.is_nil(kinds.unknown)
    assert.is_true(kinds.module >= 20 and kinds.method >= 50 and kinds.field >= 20
                   and kinds.option >= 20 and kinds.request_option >= 6)
    assert.is_true(bound.methods.conn.execute and bound.methods.conn.listen and bound.methods.pool.manage
                   and bound.methods.s.rows and bound.methods.f.await and bound.methods.cur.fetchone)
    assert.is_true(bound.module.all and bound.module.connect and bound.module.sleep and bound.module.null)
  end)

  it("fails when a heading is removed, or names nothing bound", function()
    local without = text:gsub("\n### `conn:execute%(sql, params%?, opts%?%)`\n", "\n", 1)
    assert.are_not.equal(text, without)
    assert.are.same({"no heading for conn:execute"}, problems(api_headings(without), bound))
    local dropped_option = text:gsub("\n#### `max_waiting`\n", "\n", 1)
    assert.are.same({"no heading for the Pool option max_waiting"}, problems(api_headings(dropped_option), bound))
    local extra = text .. "\n### `conn:frobnicate()`\n\n#### `no_such`\n"
    local found = problems(api_headings(extra), bound)
    assert.are.equal(2, #found)
    assert.truthy(found[1]:find("conn has no method frobnicate", 1, true))
    assert.truthy(found[2]:find("has no option no_such", 1, true) or found[2]:find("no known form", 1, true))
  end)
end)
