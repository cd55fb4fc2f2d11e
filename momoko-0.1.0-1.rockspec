rockspec_format = "3.0"
package = "momoko"
version = "0.1.0-1"
-- The version is written here only: CMakeLists.txt reads it from this file.
source = { url = "git+https://example.invalid/momoko-lua.git", tag = "v" .. version:match("^(.*)%-%d+$") }
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
    LUA_INCDIR = "$(LUA_INCDIR)",
    INSTALL_CMOD = "$(LIBDIR)",
    INSTALL_LMOD = "$(LUADIR)",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
  },
}
