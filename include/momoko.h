/* momoko.h: the C API for programs that embed Lua and load momoko.
 *
 * A host that runs a libuv loop itself (uv_run in its own main loop, calling Lua from
 * its callbacks) gives it to momoko with momoko_set_loop, after require "momoko" and
 * before any connection, pool or timer exists. By doing so the host declares that it
 * runs the loop: momoko then never runs it (libuv cannot tell whether a loop is
 * running, and uv_run is not re-entrant): momoko.run() and an await on the main thread
 * raise InterfaceError, and Lua code awaits in coroutines (momoko.spawn, or the host's
 * own), which momoko resumes from the loop's callbacks. */
#ifndef MOMOKO_H
#define MOMOKO_H

#include <lua.h>

/* libuv's loop, declared only: a host includes <uv.h> itself and passes its uv_loop_t *
 * (a typedef of struct uv_loop_s) as it is. */
struct uv_loop_s;

#if defined(__GNUC__) || defined(__clang__)
#define MOMOKO_API __attribute__((visibility("default")))
#else
#define MOMOKO_API
#endif

/* Makes momoko in L use loop, which the host runs. Returns 0, or -1 (with nothing
 * changed) if momoko is not loaded in L, or already uses another loop on which
 * handles exist. The loop must outlive every momoko object in L (lua_close closes
 * them). Runs no Lua; like any Lua API call it raises only for lack of memory. */
MOMOKO_API int momoko_set_loop(lua_State *L, struct uv_loop_s *loop);

#endif
