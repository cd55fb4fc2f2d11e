-- The Lua layer's private helpers (_set_decoder, _owns, _check_params, _resolve, _fail,
-- _lent, _set_after_connect) were reachable from user code on Connection, Pool, Future
-- and the modules, so a user could resolve a query's future by hand or break a pool.
-- Fixed: momoko.core hands them to init.lua in a private table that init.lua takes out
-- of the module; nothing starting with "_" is left but _VERSION. Also the packaging
-- side of the same issue: core.so exports only luaopen_momoko_core and momoko.h's
-- functions (none since momoko.h is header only: regress 120), and the version comes
-- from the rockspec alone.
local momoko = require "momoko"
local core = require "momoko.core"
local H = require "helper"

local NAMES = {"_set_decoder", "_owns", "_check_params", "_resolve", "_fail", "_lent", "_set_after_connect",
  "_private"}

-- Keys of t that start with "_", sorted, but _VERSION.
local function underscored(t)
  local found = {}
  for k in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) == "_" and k ~= "_VERSION" then found[#found + 1] = k end
  end
  table.sort(found)
  return found
end

describe("regress 057: momoko's private helpers", function()
  it("are reachable on none of momoko, momoko.core, a Connection, a Pool, a lent Connection, a Future", function()
    local dsn, app = H.app_dsn("regress_057")
    local pool = momoko.Pool{dsn = dsn, size = 1}
    pool:connect():await()
    local conn = momoko.connect(dsn):await()
    local lent = pool:getconn():await()
    local f = conn:execute("SELECT 1")
    local objects = {momoko = momoko, core = core, conn = conn, pool = pool, lent = lent, future = f}
    for what, obj in pairs(objects) do
      for _, name in ipairs(NAMES) do
        assert.is_nil(obj[name], what .. "." .. name)
      end
    end
    assert.same({}, underscored(momoko))
    assert.same({}, underscored(core))
    -- nor in the method tables behind the objects
    assert.same({}, underscored(getmetatable(conn).methods))
    assert.same({}, underscored(getmetatable(pool).methods))
    assert.same({}, underscored(getmetatable(f).__index))
    assert.is_nil(core.Connection_methods)
    assert.is_nil(core.Pool_methods)
    -- and what init.lua builds on them still works
    assert.same({1}, f:await():fetchone())
    do
      local g <close> = pool:manage(lent)
    end
    assert.is_true(lent.closed)
    assert.matches("not a connection of this pool", H.error_of(pool.manage, pool, conn).message)
    local both = momoko.all{conn:execute("SELECT 2"), pool:execute("SELECT 3")}:await()
    assert.same({{2}, {3}}, {both[1]:fetchone(), both[2]:fetchone()})
    assert.equal("SELECT 4", pool:mogrify("SELECT $1", {4}):await())
    conn:close()
    pool:close()
    assert.is_true(H.no_backends(app))
  end)

  it("core.so exports luaopen_momoko_core only", function()
    local so = assert(package.searchpath("momoko.core", package.cpath))
    local p = assert(io.popen("env -u LD_PRELOAD nm -D --defined-only " .. so .. " 2>&1"))
    local syms = {}
    for name in p:read("a"):gmatch("%x+ %u ([%w_@.]+)") do syms[#syms + 1] = name end
    assert.is_true(p:close() == true)
    table.sort(syms)
    assert.same({"luaopen_momoko_core"}, syms)
  end)

  it("momoko._VERSION is the rockspec's version", function()
    local ls = assert(io.popen("ls momoko-*.rockspec"))
    local file = ls:read("l")
    ls:close()
    local f = assert(io.open(file))
    local version = f:read("a"):match('\nversion = "([%d.]+)%-%d+"')
    f:close()
    local name = file:match("^momoko%-([%d.]+)%-%d+%.rockspec$")
    assert.equal(name, version)
    assert.equal("momoko " .. version, momoko._VERSION)
  end)
end)
