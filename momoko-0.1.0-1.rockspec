rockspec_format = "3.0"
package = "momoko"
version = "0.1.0-1"
-- The version is written here only: CMakeLists.txt reads it from this file.
-- source: momoko has no download server; its release is the tarball scripts/rock makes
-- (git archive of the checkout, momoko-X.Y.Z.tar.gz with one folder momoko-X.Y.Z/).
-- scripts/rock packs the source rock from a copy of this file whose url is replaced by
-- file:// and that tarball's absolute path (LuaRocks packs only from an absolute path);
-- the .src.rock carries the tarball, so installing it reads no URL and needs no network.
-- `luarocks make` in a checkout builds the checkout and reads no source either. With the
-- tarball in the current directory, `luarocks build` of this file works as it is (and
-- unpacks the tarball there).
source = { url = "momoko-" .. version:match("^(.*)%-%d+$") .. ".tar.gz" }
description = {
  summary = "Asynchronous PostgreSQL connections for Lua 5.4 on libpq and libuv",
  detailed = [[
    Connections whose operations return awaitable futures: a coroutine (a request
    handler) suspends on f:await() until libuv reports the result. The design of
    Python's Momoko, with a C core on libpq and libuv.
  ]],
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
-- libpq and libuv are found by CMake through pkg-config (Debian: libpq-dev, libuv1-dev).
-- MOMOKO_DEV stays off: no -Werror (another compiler may warn differently), no test
-- programs; only the module and init.lua are built and installed.
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    MOMOKO_DEV = "OFF",
    LUA_INCDIR = "$(LUA_INCDIR)",
    INSTALL_CMOD = "$(LIBDIR)",
    INSTALL_LMOD = "$(LUADIR)",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
  },
  -- into the rock's own directory (luarocks doc momoko; the README's links point there)
  copy_directories = { "docs", "examples" },
}
