-- Run by spec/smoke/installed_spec.lua as a user's program would run: lua5.4 with
-- LUA_PATH and LUA_CPATH naming only the LuaRocks tree the rock was installed into.
-- Prints key=value lines for the spec to check: where momoko and momoko.core were found,
-- the version, and a query's answer with the server's count of this connection.
--   lua5.4 spec/smoke/installed_probe.lua DSN APPLICATION_NAME
local dsn, app = assert(arg[1], "DSN"), assert(arg[2], "application_name")
local momoko = require "momoko"
print("path=" .. package.path)
print("cpath=" .. package.cpath)
print("momoko=" .. assert(package.searchpath("momoko", package.path)))
print("core=" .. assert(package.searchpath("momoko.core", package.cpath)))
print("version=" .. momoko._VERSION)
local conn = momoko.connect(dsn .. " application_name=" .. app):await()
local cur = conn:execute("SELECT $1::int + 1, count(*) FROM pg_stat_activity WHERE application_name = $2",
                         { 41, app }):await()
local row = cur:fetchone()
print("sum=" .. row[1])
print("backends=" .. row[2])
conn:close()
