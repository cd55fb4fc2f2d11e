/* lmomoko: luaopen_momoko_core, the module's root and nothing else: it creates the
 * per-state record and lets each part register its metatable and functions. */
#include "lconn.h"
#include "lcursor.h"
#include "lerror.h"
#include "lfuture.h"
#include "lparams.h"
#include "lpool.h"
#include "lsleep.h"
#include "lstate.h"
#include "ltypes.h"

/* core._set_after_connect(fn): the Lua layer's runner of connection factories,
 * fn(future, conn, factory). */
static int l_set_after_connect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "momoko.after_connect");
  return 0;
}

LUAMOD_API int luaopen_momoko_core(lua_State *L);
LUAMOD_API int luaopen_momoko_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"_set_after_connect", l_set_after_connect}, {NULL, NULL}};
  lmk_state_open(L);
  luaL_newlib(L, fns);
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
  return 1;
}
