/* lpool: momoko.Pool, a thin userdata around one mk_pool. Internal. */
#ifndef LPOOL_H
#define LPOOL_H

#include <lua.h>

#define LMK_POOL "momoko.Pool"

/* Registers the Pool metatable and adds Pool to the module table on top, Pool_methods,
 * pool_owns and pool_check_params to its private table. */
void lmk_open_pool(lua_State *L);

#endif
