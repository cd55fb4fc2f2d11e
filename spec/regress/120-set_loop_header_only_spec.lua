-- A C host could not call momoko_set_loop: it was defined only in the Lua module
-- (momoko/core.so), which a host does not link (require loads it), so a host built
-- against momoko.h failed to link ("undefined reference to momoko_set_loop"); the
-- specs fished it out of the loaded core.so with dlsym. And nothing said what a call
-- before require "momoko" does. Fixed: momoko.h is header only, its momoko_set_loop
-- finds the module's C API in the Lua registry, where luaopen_momoko_core puts it, and
-- returns -1 while momoko is not loaded in that state. The host here is compiled
-- against momoko.h, Lua 5.4 and libuv only.
local H = require "helper"

describe("regress 120: momoko_set_loop from the header alone", function()
  it("returns -1 before require \"momoko\" and in another state, 0 after, and the loop is used", function()
    local out = H.run_c_host([=[
#include <stdio.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>
#include "momoko.h"

static lua_State *L;

static void on_tick(uv_timer_t *t) {
  if (luaL_dostring(L, "momoko.spawn(function()\n"
                       "  local conn = momoko.connect(os.getenv('MOMOKO_TEST_DSN')):await()\n"
                       "  print('query', conn:execute('SELECT 7'):await():fetchone()[1])\n"
                       "  conn:close()\n"
                       "end)") != LUA_OK)
    printf("tick failed: %s\n", lua_tostring(L, -1));
  uv_close((uv_handle_t *)t, NULL);
}

int main(void) {
  uv_loop_t loop;
  uv_timer_t tick;
  lua_State *other;
  if (uv_loop_init(&loop) != 0) return 1;
  L = luaL_newstate();
  other = luaL_newstate();
  luaL_openlibs(L);
  luaL_openlibs(other);
  printf("before require %d top %d\n", momoko_set_loop(L, &loop), lua_gettop(L));
  if (luaL_dostring(L, "momoko = require 'momoko'") != LUA_OK) {
    printf("require failed: %s\n", lua_tostring(L, -1));
    return 1;
  }
  printf("other state %d\n", momoko_set_loop(other, &loop));
  printf("after require %d top %d\n", momoko_set_loop(L, &loop), lua_gettop(L));
  lua_pushlightuserdata(L, &loop);
  if (luaL_loadstring(L, "print('loop is the host\\'s', momoko.loop() == ...)") != LUA_OK ||
      (lua_insert(L, -2), lua_pcall(L, 1, 0, 0)) != LUA_OK)
    printf("failed: %s\n", lua_tostring(L, -1));
  if (uv_timer_init(&loop, &tick) != 0 || uv_timer_start(&tick, on_tick, 1, 0) != 0) return 1;
  if (uv_run(&loop, UV_RUN_DEFAULT) != 0) printf("run: loop still alive\n");
  lua_close(other);
  lua_close(L);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("loop_close %d\n", uv_loop_close(&loop));
  return 0;
}
]=])
    assert.equal(table.concat({
      "before require -1 top 0",
      "other state -1",
      "after require 0 top 0",
      "loop is the host's\ttrue",
      "query\t7",
      "loop_close 0",
      ""}, "\n"), out)
  end)
end)
