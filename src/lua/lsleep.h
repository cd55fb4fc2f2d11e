/* lsleep: momoko.sleep(ms), a future resolved by a one-shot timer. Internal. */
#ifndef LSLEEP_H
#define LSLEEP_H

#include <lua.h>

/* Adds sleep to the module table on top. */
void lmk_open_sleep(lua_State *L);

#endif
