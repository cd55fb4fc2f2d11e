-- momoko.run() (or an await on the main thread) from a callback of a loop someone else
-- runs would call uv_run on a loop inside its own uv_run, which libuv does not allow.
-- libuv cannot tell whether a loop is running, so momoko knows it from who runs it:
-- luv's uv.run() (uv.loop_mode() is not nil), or a C host that gave its loop with
-- momoko_set_loop (momoko.h: the host declares it runs it). Both refuse with
-- InterfaceError; the work awaited in coroutines still completes. The C host is
-- compiled here against momoko.h alone (header only: it links nothing of momoko's);
-- it loads momoko with require and calls momoko_set_loop.
local H = require "helper"

describe("regress 055: momoko.run() inside a loop someone else runs", function()
  it("under luv's uv.run(): a luv callback's momoko.run() raises InterfaceError, the loop goes on", function()
    local out, ok = H.run_lua([[
      local uv = require "luv"
      local momoko = require "momoko"
      local conn = momoko.Connection(os.getenv("MOMOKO_TEST_DSN"))
      local t = uv.new_timer()
      t:start(1, 0, function()
        t:close()
        local ok, err = pcall(momoko.run)
        print("run", ok, momoko.is(err, "InterfaceError"), err.message)
        coroutine.wrap(function()
          conn:connect():await()
          print("query", conn:execute("SELECT 3"):await():fetchone()[1])
          conn:close()
        end)()
      end)
      uv.run()
    ]])
    assert.is_true(ok, out)
    assert.equal("run\tfalse\ttrue\tmomoko.run: the loop is already running (inside a callback or uv.run()): "
      .. "await from a coroutine instead\nquery\t3\n", out)
  end)

  it("in a C host that runs its loop and gave it with momoko_set_loop: momoko.run() and main-thread awaits raise", function()
    local out = H.run_c_host([=[
#include <stdio.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>
#include "momoko.h"

static lua_State *L;

/* The host's own loop callback calls into Lua, as a server's request handler would. */
static void on_tick(uv_timer_t *t) {
  lua_getglobal(L, "on_tick");
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) printf("on_tick failed: %s\n", lua_tostring(L, -1));
  uv_close((uv_handle_t *)t, NULL);
}

int main(void) {
  uv_loop_t loop;
  uv_timer_t tick;
  if (uv_loop_init(&loop) != 0) return 1;
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "momoko = require 'momoko'") != LUA_OK) {
    printf("require failed: %s\n", lua_tostring(L, -1));
    return 1;
  }
  printf("set_loop %d\n", momoko_set_loop(L, &loop));
  if (luaL_dostring(L,
        "local function show(what, ok, err)\n"
        "  print(what, ok, momoko.is(err, 'InterfaceError'), err and err.message)\n"
        "end\n"
        "show('init run', pcall(momoko.run))\n"
        "function on_tick()\n"
        "  show('run', pcall(momoko.run))\n"
        "  show('await', pcall(function() return momoko.sleep(1):await() end))\n"
        "  momoko.spawn(function()\n"
        "    local conn = momoko.connect(os.getenv('MOMOKO_TEST_DSN')):await()\n"
        "    print('query', conn:execute('SELECT 5'):await():fetchone()[1])\n"
        "    conn:close()\n"
        "  end)\n"
        "end\n") != LUA_OK) {
    printf("script failed: %s\n", lua_tostring(L, -1));
    return 1;
  }
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 1, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  lua_close(L);
  uv_run(&loop, UV_RUN_DEFAULT); /* close callbacks of what lua_close closed */
  printf("loop_close %d\n", uv_loop_close(&loop));
  return 0;
}
]=])
    local host = ": the host program runs the loop (it gave it with momoko_set_loop), momoko never does: "
      .. "await from a coroutine instead"
    assert.equal(table.concat({
      "set_loop 0",
      "init run\tfalse\ttrue\tmomoko.run" .. host,
      "run\tfalse\ttrue\tmomoko.run" .. host,
      "await\tfalse\ttrue\tawait on the main thread" .. host,
      "query\t5",
      "loop_close 0",
      ""}, "\n"), out)
  end)
end)
