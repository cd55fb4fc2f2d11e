/* lowner: the base of the objects that own core resources and have requests
 * outstanding: a Connection or a Pool userdata starts with an lowner. While anything
 * of it is outstanding, the userdata is anchored, so a callback always finds its
 * object: by lmk_pend (connects, getconns), or, for a request, by the request's future,
 * which its resolver references (lreq.c). User value 1 is the object's options table;
 * user value 2 its LISTEN state (a table made on first use, see lconn.c), or nil.
 * Internal. */
#ifndef LOWNER_H
#define LOWNER_H

#include <stddef.h>

#include "lstate.h"

typedef struct lowner {
  lmk_state *st;
  int anchor;    /* registry ref of the userdata while pending > 0 */
  int pending;   /* outstanding requests, connects, getconns */
  int finalized; /* __gc ran (or not yet set up): callbacks only free */
  int trace;     /* its options table has a trace function: events are built (API §10) */
} lowner;

/* Anchors the owner (its userdata at idx) for one more outstanding operation. */
void lmk_pend(lua_State *L, lowner *o, int idx);
void lmk_unpend(lua_State *L, lowner *o);
/* Pushes the owner's userdata (from its anchor, or from a weak table while it is not
 * collected), or nil. */
void lmk_push_owner(lua_State *L, lowner *o);
/* Pushes a new owner userdata of size bytes (zeroed, starting with an lowner) of
 * metatable mt, user value the table at uv; finalized until its resource is set. */
lowner *lmk_owner_new(lua_State *L, size_t size, const char *mt, int uv);
/* __index tail: pushes the method key (at 2) of the object at 1. */
int lmk_owner_method(lua_State *L);
/* Registers an owner metatable mt with meta, and methods as its "methods" table, also
 * set as field of the private table of the module table on top (the Lua layer adds
 * methods there). */
void lmk_open_owner_class(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods,
                          const char *field);
/* 1 when callbacks of o must not run Lua (finalized, or the state is closing). */
int lmk_silent(const lowner *o);

#endif
