/* momoko.h: the C API for programs that embed Lua 5.4 and load momoko. Header only: a
 * host includes it and links nothing of momoko's (the module momoko/core.so is loaded
 * by require as usual); see docs/embedding.md.
 *
 * Building a host (Debian 12):
 *   cc -std=c11 -I<dir of momoko.h> host.c $(pkg-config --cflags --libs lua5.4 libuv)
 * lua5.4 because the host makes the Lua state; libuv because it runs the loop. libpq is
 * the module's own dependency, not the host's. The header needs only <lua.h>; the host
 * includes <uv.h> itself.
 *
 * A host that runs a libuv loop itself (uv_run in its own main loop, calling Lua from
 * its callbacks) gives it to momoko with momoko_set_loop, after require "momoko" and
 * before any connection, pool or timer exists. By doing so the host declares that it
 * runs the loop: momoko then never runs it (libuv cannot tell whether a loop is
 * running, and uv_run is not re-entrant): momoko.run() and an await on the main thread
 * raise InterfaceError, and Lua code awaits in coroutines (momoko.spawn, or the host's
 * own, resumed with lua_resume), which momoko resumes from the loop's callbacks.
 *
 * Shutdown, in this order:
 *   1. stop the host's own handles and leave uv_run (uv_stop, or let it run out);
 *   2. lua_close(L): momoko closes every connection, pool and timer it has (their
 *      close callbacks are not run yet);
 *   3. uv_run(loop, UV_RUN_DEFAULT) once more: the close callbacks run, and cancel
 *      requests still on libuv's thread pool finish;
 *   4. uv_loop_close(loop), which returns 0 once nothing is left on it. */
#ifndef MOMOKO_H
#define MOMOKO_H

#include <lua.h>

/* libuv's loop, declared only: a host includes <uv.h> itself and passes its uv_loop_t *
 * (a typedef of struct uv_loop_s) as it is. */
struct uv_loop_s;

/* What momoko.core, once loaded in a Lua state, leaves in that state's registry under
 * MOMOKO_C_API_KEY: a light userdata pointing at this table of its C functions (static
 * in the module, which is never unloaded). Hosts call the functions below, which find
 * it; the layout is momoko's and changes with MOMOKO_C_API_VERSION. */
#define MOMOKO_C_API_KEY "momoko.c_api"
#define MOMOKO_C_API_VERSION 1
struct momoko_c_api {
  int version; /* MOMOKO_C_API_VERSION of the module */
  int (*set_loop)(lua_State *L, struct uv_loop_s *loop);
};

/* Makes momoko in L use loop, which the host runs. Returns 0, or -1 (with nothing
 * changed) if momoko is not loaded in L (no require "momoko" yet), the loaded module
 * has another MOMOKO_C_API_VERSION than this header, or momoko already uses another
 * loop on which handles exist. The loop must outlive every momoko object in L
 * (lua_close closes them; see the shutdown order above). Runs no Lua; like any Lua API
 * call it raises only for lack of memory. */
static inline int momoko_set_loop(lua_State *L, struct uv_loop_s *loop) {
  const struct momoko_c_api *api;
  lua_getfield(L, LUA_REGISTRYINDEX, MOMOKO_C_API_KEY);
  api = (const struct momoko_c_api *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (api == NULL || api->version != MOMOKO_C_API_VERSION) return -1;
  return api->set_loop(L, loop);
}

#endif
