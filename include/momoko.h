/* momoko.h: the C API for programs that embed Lua and load momoko.
 * momoko_set_loop makes momoko use the host's libuv loop; call it after
 * require "momoko" and before any connection, pool or timer exists. */
#ifndef MOMOKO_H
#define MOMOKO_H

#include <lua.h>
#include <uv.h>

#if defined(__GNUC__) || defined(__clang__)
#define MOMOKO_API __attribute__((visibility("default")))
#else
#define MOMOKO_API
#endif

/* Returns 0, or -1 (with nothing changed) if momoko already uses another loop because
 * handles exist on it. The loop must outlive every momoko object in L. */
MOMOKO_API int momoko_set_loop(lua_State *L, uv_loop_t *loop);

#endif
