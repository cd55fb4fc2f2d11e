-- Shared by the specs: the throwaway server's DSN (from scripts/test), server-side
-- checks through psql (independent of momoko), bounded waiting on conditions, and the
-- set-up and checks that several specs share.
local momoko = require "momoko"
local luassert = require "luassert" -- busted's assert (specs get it as their global)
-- busted's spec API (lazy_setup, before_each, ...), for the helpers that add hooks to the
-- describe block they are called in; specs get these functions as globals, modules do not
local busted = require "busted"

local H = {}

H.dsn = assert(os.getenv("MOMOKO_TEST_DSN"), "run the specs through scripts/test")

local app_counter = 0
--- A DSN with a fresh application_name, to count this spec's backends.
function H.app_dsn(prefix)
  app_counter = app_counter + 1
  local app = string.format("%s_%d_%d", prefix or "spec", app_counter, math.random(1, 1e9))
  return H.dsn .. " application_name=" .. app, app
end

--- Runs sql with psql and returns its unaligned output, trimmed.
function H.psql(sql)
  local p = assert(io.popen("env -u LD_PRELOAD psql -X -q -A -t -v ON_ERROR_STOP=1 -c " .. string.format("%q", sql) .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  assert(ok, "psql failed: " .. out)
  return (out:gsub("%s+$", ""))
end

--- Number of server backends with this application_name.
function H.backends(app)
  return tonumber(H.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" .. app .. "'"))
end

--- Runs the loop until pred() is true, checking every 10 ms, at most ms milliseconds.
--- Returns pred's final value. Works on the main thread and in coroutines.
function H.wait_until(pred, ms)
  local steps = math.ceil((ms or 5000) / 10)
  for _ = 1, steps do
    if pred() then return true end
    momoko.sleep(10):await()
  end
  return pred() and true or false
end

--- Waits until no backend of app is left (the server may need a moment after close).
function H.no_backends(app, ms)
  return H.wait_until(function() return H.backends(app) == 0 end, ms or 5000)
end

--- Runs fn in a coroutine and awaits it from the main thread.
function H.async(fn, ...)
  return momoko.spawn(fn, ...):await()
end

--- The error raised by fn(...), or nil.
function H.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return nil end
  return err
end

--- Runs Lua code in a child lua5.4 (with the sanitizer runtime preloaded when the
--- suite runs sanitized). Returns its output (stdout and stderr) and whether it exited 0.
function H.run_lua(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local env = string.format("LD_PRELOAD='%s' MOMOKO_TEST_DSN='%s' ",
    os.getenv("MOMOKO_TEST_LD_PRELOAD") or "", H.dsn)
  local p = assert(io.popen(env .. "timeout 60 lua5.4 " .. path .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  os.remove(path)
  return out, ok == true
end

--- H.run_lua for a memory check: the child's code gets proc_kib(field), the value in
--- KiB of a field of its /proc/self/status ("VmRSS", "VmHWM"), and prints
--- "grown N" (N KiB). Returns N (nil if no such line), the output and whether it exited 0.
function H.run_lua_grown(code)
  local out, ok = H.run_lua([=[
local function proc_kib(field)
  local f = assert(io.open("/proc/self/status"))
  local kib
  for line in f:lines() do kib = kib or tonumber(line:match("^" .. field .. ":%s+(%d+)")) end
  f:close()
  return kib
end
]=] .. code)
  return tonumber(out:match("grown (%-?%d+)")), out, ok
end

--- Opens one connection to dsn before the first test of the describe block this is
--- called in (lazy_setup) and closes it after the block's last test (lazy_teardown).
--- opened(conn) gets the new connection, for the block to keep it in a local (and to
--- prepare it, e.g. run a first query).
function H.block_connection(dsn, opened)
  local conn
  busted.lazy_setup(function()
    conn = momoko.connect(dsn):await()
    opened(conn)
  end)
  busted.lazy_teardown(function()
    if conn then conn:close() end
  end)
end

--- Collects what reaches momoko.on_error during each test of the describe block this is
--- called in. Returns the list: emptied before each test, when the collecting handler is
--- set (before_each); the default handler is back after each test (after_each).
function H.collect_reports()
  local reported = {}
  busted.before_each(function()
    for i = #reported, 1, -1 do reported[i] = nil end
    momoko.on_error(function(e) reported[#reported + 1] = e end)
  end)
  busted.after_each(function()
    momoko.on_error(nil)
  end)
  return reported
end

--- Runs fn(), the body of a spec that uses resource (a Connection or Pool); then, also
--- when fn failed (e.g. an assertion), closes resource and asserts that no backend of app
--- is left; then raises fn's error again, if any.
function H.close_after(resource, app, fn)
  local ok, err = pcall(fn)
  resource:close()
  luassert.is_true(H.no_backends(app))
  if not ok then error(err, 0) end
end

--- Runs full garbage collections until finalizers, and the handle closes they start on
--- the loop, are done: `rounds` times, two collectgarbage() then ms milliseconds of loop.
function H.collect_garbage(rounds, ms)
  for _ = 1, rounds do
    collectgarbage()
    collectgarbage()
    momoko.sleep(ms):await()
  end
end

--- Runs code in a child lua5.4 (see H.run_lua) with its stdout unbuffered, so that what
--- it prints and what goes to stderr come in the order written, and asserts that it exits
--- 0 and that its whole output is exactly these lines, each ended by "\n".
function H.assert_child_output(code, lines)
  -- on the code's first line: line numbers in the child's messages stay the code's own
  local out, ok = H.run_lua('io.stdout:setvbuf("no") ' .. code)
  luassert.is_true(ok, out)
  luassert.equal(table.concat(lines, "\n") .. "\n", out)
end

--- The pids of app's backends, sorted.
function H.pids_of(app)
  local pids = {}
  for pid in H.psql("SELECT pid FROM pg_stat_activity WHERE application_name = '" .. app .. "' ORDER BY pid"):gmatch("%d+") do
    pids[#pids + 1] = tonumber(pid)
  end
  return pids
end

--- The pid of a backend of app whose last statement was a LISTEN (a pool's listener), or nil.
function H.listener_pid(app)
  return tonumber(H.psql("SELECT pid FROM pg_stat_activity WHERE application_name = '" .. app ..
    "' AND query LIKE 'LISTEN%' LIMIT 1"))
end

--- Waits (running the loop) until a backend of app runs a statement containing text;
--- returns its pid.
function H.running_pid(app, text)
  local pid
  assert(H.wait_until(function()
    pid = tonumber(H.psql(string.format(
      "SELECT pid FROM pg_stat_activity WHERE application_name = '%s' AND state = 'active' AND query LIKE '%%%s%%'",
      app, text)))
    return pid ~= nil
  end, 5000), "no backend of " .. app .. " runs " .. text)
  return pid
end

-- Runs a small luv program in a child lua5.4 (code must not contain a single quote) and
-- returns the io.popen handle of its output. A child, not this process: luv handles
-- here would live on the loop momoko shares with luv.
local function luv_child(code)
  assert(not code:find("'", 1, true), "luv_child: no single quotes in the code")
  return assert(io.popen("exec env -u LD_PRELOAD lua5.4 -e '" .. code .. "'"))
end

--- A port on 127.0.0.1 nothing listens on (bound, then released, by the kernel's choice).
function H.closed_port()
  local p = luv_child([[
    local uv = require "luv"
    local tcp = uv.new_tcp()
    assert(tcp:bind("127.0.0.1", 0))
    print(tcp:getsockname().port)
    tcp:close()
    uv.run()
  ]])
  local port = tonumber(p:read("l"))
  p:close()
  return assert(port, "closed_port: the luv child printed no port")
end

--- Compiles the C program source (a string) against momoko.h, Lua 5.4 and libuv, runs it
--- (with the sanitizers' preload when the suite runs sanitized; at most 60 s), asserts
--- that it compiled and exited with status 0, and returns what it printed (stdout and
--- stderr).
function H.run_c_host(source)
  local base = os.tmpname()
  local src, exe = base .. ".c", base .. ".host"
  local f = assert(io.open(src, "w"))
  f:write(source)
  f:close()
  local cc = io.popen(string.format(
    "env -u LD_PRELOAD cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Werror -o %s %s -Iinclude "
      .. "$(pkg-config --cflags --libs lua5.4 libuv) -ldl 2>&1", exe, src))
  local cc_out = cc:read("a")
  local compiled = cc:close() == true
  local out, ok = "", false
  if compiled then
    local p = assert(io.popen(string.format("LD_PRELOAD='%s' timeout 60 %s 2>&1",
      os.getenv("MOMOKO_TEST_LD_PRELOAD") or "", exe)))
    out = p:read("a")
    ok = p:close() == true
  end
  os.remove(base)
  os.remove(src)
  os.remove(exe)
  luassert.is_true(compiled, cc_out)
  luassert.is_true(ok, out)
  return out
end

--- A child server started with io.popen as p, whose first line of output is "PORT PID":
--- returns {port =, pid =, stop = fn} (stop kills it and waits for it; idempotent).
--- label names the server in the error raised when that line does not come.
function H.child_server(p, label)
  local line = p:read("l") or ""
  local port, pid = line:match("^(%d+) (%d+)$")
  if not port then
    p:close()
    error(label .. ": the child did not start: " .. line)
  end
  local server = {port = tonumber(port), pid = tonumber(pid)}
  function server.stop()
    if not p then return end
    os.execute("kill " .. server.pid .. " 2>/dev/null")
    p:close()
    p = nil
  end
  return server
end

--- A server on 127.0.0.1 that accepts TCP connections and never answers: a child
--- lua5.4 (luv) that exits by itself after `seconds` (default 30). Returns
--- {port =, pid =, stop = function}; stop() kills it and waits for it.
function H.silent_server(seconds)
  local p = luv_child(string.format([[
    local uv = require "luv"
    local server = uv.new_tcp()
    assert(server:bind("127.0.0.1", 0))
    local held = {}
    assert(server:listen(8, function(err)
      assert(not err, err)
      local client = uv.new_tcp()
      server:accept(client)
      held[#held + 1] = client -- accepted, then never read from or written to
    end))
    io.stdout:write(server:getsockname().port, " ", uv.os_getpid(), "\n")
    io.stdout:flush()
    uv.new_timer():start(%d, 0, function() uv.stop() end)
    uv.run()
  ]], math.floor((seconds or 30) * 1000)))
  return H.child_server(p, "silent_server")
end

--- A real (not temporary) table with these columns, to be looked at from psql.
--- Returns its name.
function H.scratch_table(prefix, columns)
  local name = string.format("%s_%d", prefix, math.random(1, 1e9))
  H.psql("CREATE TABLE " .. name .. " (" .. columns .. ")")
  return name
end

function H.drop_table(name)
  H.psql("DROP TABLE IF EXISTS " .. name)
end

--- The error a failing future raises (asserts that it does fail).
function H.failure(f)
  local ok, err = pcall(f.await, f)
  luassert.is_false(ok, "expected the future to fail")
  return err
end

--- Asserts err is a momoko error of exactly this kind.
function H.assert_kind(kind, err)
  luassert.equal(momoko.Error, getmetatable(err), "not a momoko error: " .. tostring(err))
  luassert.equal(kind, err.kind, tostring(err))
  luassert.is_true(momoko.is(err, kind))
end

--- The InterfaceError fn(...) raises at the call (asserts that it raises one, and that
--- it is a momoko error of exactly that kind).
function H.interface_error(fn, ...)
  local err = H.error_of(fn, ...)
  luassert.is_not_nil(err, "expected the call to raise")
  H.assert_kind("InterfaceError", err)
  return err
end

--- Asserts that future f is done and failed with an InterfaceError "connection closed"
--- (name says which future, in the messages).
function H.assert_closed_error(f, name)
  luassert.is_true(f:done(), name .. " is done")
  local e = f:error()
  luassert.is_true(momoko.is(e, "InterfaceError"), name .. ": " .. tostring(e))
  luassert.is_false(momoko.is(e, "DatabaseError"), name .. ": " .. tostring(e))
  luassert.equal("connection closed", e.message, name)
end

--- Asserts that the loop and a main-thread await still work.
function H.assert_loop_usable()
  luassert.equal("awaited", H.async(function()
    momoko.sleep(1):await()
    return "awaited"
  end))
  local ok, err = pcall(function() return momoko.sleep(1):await() end)
  luassert.is_true(ok, tostring(err))
  ok, err = pcall(momoko.run)
  luassert.is_true(ok, tostring(err))
end

--- Counts the done callbacks of each future (every request must end exactly once);
--- returns the array of counts, which grows as they end.
function H.count_ends(futures)
  local ends = {}
  for i, f in ipairs(futures) do
    ends[i] = 0
    f:add_done_callback(function() ends[i] = ends[i] + 1 end)
  end
  return ends
end

--- Asserts that each of the first n counts of H.count_ends is exactly 1.
function H.assert_each_once(ends, n)
  for i = 1, n do
    luassert.equal(1, ends[i], "request " .. i .. " ended " .. tostring(ends[i]) .. " times")
  end
end

--- A connected Connection in pipeline mode (unless opts.pipeline says otherwise) on a DSN
--- with a fresh application_name from prefix; returns it and the application_name.
function H.pipelined_connection(opts, prefix)
  local dsn, app = H.app_dsn(prefix or "pipe")
  opts = opts or {}
  if opts.pipeline == nil then opts.pipeline = true end
  return momoko.connect(dsn, opts):await(), app
end

--- Number of statements prepared in conn's session (asked on conn itself, without
--- parameters, so that the question is not cached).
function H.prepared_count(conn)
  return tonumber(conn:execute("SELECT count(*) FROM pg_prepared_statements"):await():fetchone()[1])
end

return H
