/* lmomoko: luaopen_momoko_core, the module's root and nothing else: it creates the
 * per-state record and lets each part register its metatable and functions. What only
 * init.lua may use goes to the module's private table, module._private, which init.lua
 * takes out of the module. */
#include "lconn.h"
#include "lcursor.h"
#include "lerror.h"
#include "lfuture.h"
#include "lparams.h"
#include "lpool.h"
#include "lreq.h"
#include "lsleep.h"
#include "lstream.h"
#include "lstate.h"
#include "ltypes.h"

/* private set_after_connect(fn): the Lua layer's runner of connection factories,
 * fn(future, conn, factory). */
static int l_set_after_connect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "momoko.after_connect");
  return 0;
}

/* The module table; the one symbol the module exports (momoko.h's C API is reached
 * through the registry, see lstate.c). */
#define LMK_EXPORT __attribute__((visibility("default")))
LMK_EXPORT int luaopen_momoko_core(lua_State *L);
LMK_EXPORT int luaopen_momoko_core(lua_State *L) {
  static const luaL_Reg private_fns[] = {
    {"set_after_connect", l_set_after_connect}, {"set_decoder", lmk_req_set_decoder}, {NULL, NULL}};
  lmk_state_open(L);
  lua_createtable(L, 0, 16);
  lua_newtable(L);
  lua_setfield(L, -2, "_private");
  lmk_add_private(L, private_fns);
  lua_pushliteral(L, "momoko " MOMOKO_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lmk_open_state(L);
  lmk_open_error(L);
  lmk_open_future(L);
  lmk_open_sleep(L);
  lmk_open_params(L);
  lmk_open_types(L);
  lmk_open_cursor(L);
  lmk_open_conn(L);
  lmk_open_pool(L);
  lmk_open_stream(L);
  return 1;
}
