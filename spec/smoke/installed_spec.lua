-- The installed rock, not build/: run by scripts/rock-check once per rock (source and
-- binary), each installed into a fresh empty LuaRocks tree, against a throwaway server.
-- scripts/test leaves this file out (it has no tree). The environment it needs:
--   MOMOKO_SMOKE_TREE       the tree the rock was installed into (luarocks --tree)
--   MOMOKO_SMOKE_VERSION    the rock's version, X.Y.Z-R
--   MOMOKO_SMOKE_KIND       "src" or "binary": which rock was installed
--   MOMOKO_SMOKE_LOG        luarocks install's output, with CMake's VERBOSE=1 command lines
--   MOMOKO_TEST_DSN, PGHOST... the server (scripts/pg-env pg_start)
local function env(name)
  return assert(os.getenv(name), name .. " is not set: run this spec through scripts/rock-check")
end
local tree, version, kind = env("MOMOKO_SMOKE_TREE"), env("MOMOKO_SMOKE_VERSION"), env("MOMOKO_SMOKE_KIND")
local log_file, dsn = env("MOMOKO_SMOKE_LOG"), env("MOMOKO_TEST_DSN")
local rock_dir = tree .. "/lib/luarocks/rocks-5.4/momoko/" .. version

local function read(file)
  local f = assert(io.open(file, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Runs a shell command and returns its output; fails on a non-zero exit.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  assert(ok, cmd .. " exited with " .. tostring(code) .. ":\n" .. out)
  return out
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function psql(sql)
  return (run("psql -X -q -A -t -v ON_ERROR_STOP=1 -c " .. q(sql)):gsub("%s+$", ""))
end

describe("the installed " .. kind .. " rock", function()
  it("is the tree's only rock, at the version of the rockspec", function()
    local list = run("luarocks --lua-version=5.4 --tree " .. q(tree) .. " list --porcelain")
    assert.equal("momoko\t" .. version .. "\tinstalled\t" .. tree .. "/lib/luarocks/rocks-5.4\n", list)
  end)

  it("is loaded from the tree by a lua5.4 whose paths name only the tree, and queries the server", function()
    local lua_dir, lib_dir = tree .. "/share/lua/5.4", tree .. "/lib/lua/5.4"
    local app = "smoke_" .. kind .. "_" .. math.random(1, 1e9)
    local out = run("env LUA_PATH=" .. q(lua_dir .. "/?.lua;" .. lua_dir .. "/?/init.lua")
                    .. " LUA_CPATH=" .. q(lib_dir .. "/?.so")
                    .. " lua5.4 spec/smoke/installed_probe.lua " .. q(dsn) .. " " .. q(app))
    local got = {}
    for k, v in out:gmatch("([%w_]+)=([^\n]*)") do got[k] = v end
    assert.equal(lua_dir .. "/?.lua;" .. lua_dir .. "/?/init.lua", got.path)
    assert.equal(lua_dir .. "/momoko/init.lua", got.momoko)
    assert.equal(lib_dir .. "/momoko/core.so", got.core)
    assert.equal("momoko " .. version:match("^(.*)%-%d+$"), got.version)
    assert.equal("42", got.sum)
    assert.equal("1", got.backends) -- the probe's own connection, seen by the server
    -- conn:close() ended the backend before the probe exited (the server may need a moment)
    local left
    for _ = 1, 50 do
      left = psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app .. "'")
      if left == "0" then break end
      run("sleep 0.1")
    end
    assert.equal("0", left)
  end)

  it("carries docs/ and examples/ in the rock's directory, as in the checkout", function()
    assert.equal(read("docs/api.md"), read(rock_dir .. "/docs/api.md"))
    assert.equal(read("docs/install.md"), read(rock_dir .. "/docs/install.md"))
    assert.equal(read("examples/server/main.lua"), read(rock_dir .. "/examples/server/main.lua"))
    -- luarocks doc finds them: every file of the checkout's docs/, in the rock's directory
    local function sorted_lines(s)
      local t = {}
      for line in s:gmatch("[^\n]+") do t[#t + 1] = line end
      table.sort(t)
      return t
    end
    local listed = run("luarocks --lua-version=5.4 --tree " .. q(tree) .. " doc --list --porcelain momoko")
    local expected = run("ls docs"):gsub("[^\n]+", function(name) return rock_dir .. "/docs/" .. name end)
    assert.same(sorted_lines(expected), sorted_lines(listed))
  end)

  it("has no test program in the tree", function()
    local found = run("find " .. q(tree) .. " -name 'mk_*_tests' -o -name tcproxy -o -name CTestTestfile.cmake")
    assert.equal("", found)
  end)

  if kind == "src" then
    it("was built by CMake from the rock as a user's build: the module only, no -Werror", function()
      local log = read(log_file)
      assert.truthy(log:find("Linking C shared module momoko/core.so", 1, true), log)
      assert.falsy(log:find("Linking C executable", 1, true), "the user build linked a program")
      assert.truthy(log:find(" -Wall ", 1, true), "VERBOSE=1 shows no compiler command")
      assert.falsy(log:find("-Werror", 1, true), "the user build compiled with -Werror")
    end)
  else
    it("was installed without compiling anything", function()
      local log = read(log_file)
      assert.truthy(log:find("is now installed in " .. tree, 1, true), log)
      assert.falsy(log:find("Building C object", 1, true), "installing the binary rock compiled C")
      assert.falsy(log:find("cmake", 1, true), "installing the binary rock ran CMake")
    end)
  end
end)
