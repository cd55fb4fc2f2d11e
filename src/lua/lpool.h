/* lpool: momoko.Pool, a thin userdata around one mk_pool. Internal. */
#ifndef LPOOL_H
#define LPOOL_H

#include <lua.h>

#define LMK_POOL "momoko.Pool"

/* Registers the Pool metatable and adds Pool and Pool_methods to the module table. */
void lmk_open_pool(lua_State *L);

#endif
