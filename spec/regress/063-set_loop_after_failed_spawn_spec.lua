-- A failed spawn chose the loop and made momoko's next-turn timer on it (to report the
-- error if nobody looks), and that timer counted as a handle: a later set_loop to
-- another loop then failed with "connections or timers already exist" although the
-- user had made none. Fixed: that timer counts in no handle count; set_loop moves it to
-- the new loop, which then reports the error. A C host (compiled here against
-- momoko.h, as in regress 055) gives its own loop with momoko_set_loop after a failed
-- spawn, and momoko.set_loop from Lua is tried on the same state as well.
local H = require "helper"

local HOST = [=[
#include <stdio.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>
#include "momoko.h"

static lua_State *L;

static void run(const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) printf("failed: %s\n", lua_tostring(L, -1));
}

int main(void) {
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) return 1;
  L = luaL_newstate();
  luaL_openlibs(L);
  run("momoko = require 'momoko'\n"
      "momoko.on_error(function(e) print('on_error', e) end)\n"
      "first = momoko.loop()\n"
      "f = momoko.spawn(function() error('spawn failed', 0) end)\n"
      "print('spawn', f:done(), f:error())\n"
      "f = nil\n" /* nobody looks: reported on the next turn */
      "momoko.spawn(function() error('unseen', 0) end)\n");
  printf("set_loop %d\n", momoko_set_loop(L, &loop));
  run("print('moved', momoko.loop() ~= first)\n"
      "print('back', pcall(momoko.set_loop, first))\n"
      "print('again', pcall(momoko.set_loop, momoko.loop()))\n");
  /* the host gave its loop (momoko_set_loop marks it the host's): give it again */
  printf("set_loop %d\n", momoko_set_loop(L, &loop));
  uv_run(&loop, UV_RUN_DEFAULT); /* the next turn: the report */
  lua_close(L);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT); /* the close of the timer made there first */
  printf("loop_close %d\n", uv_loop_close(&loop));
  return 0;
}
]=]

describe("regress 063: set_loop after a failed spawn", function()
  it("works, and the new loop reports the unseen error", function()
    local out = H.run_c_host(HOST)
    assert.equal(table.concat({
      "spawn\ttrue\tspawn failed",
      "set_loop 0",
      "moved\ttrue",
      "back\ttrue",
      "again\ttrue",
      "set_loop 0",
      "on_error\tunseen",
      "loop_close 0",
      ""}, "\n"), out)
  end)
end)
