/* lconn: momoko.Connection, a userdata around one mk_conn, its own or lent by a pool
 * (getconn, or a new pool connection being set up by connection_factory). Internal. */
#ifndef LCONN_H
#define LCONN_H

#include "lowner.h"
#include "mk_pool.h"

#define LMK_CONN "momoko.Connection"

/* Pushes a Connection for pc, lent by the pool at poolidx (whose lowner is pool); it
 * shares the pool's options table. */
void lmk_conn_push_lent(lua_State *L, int poolidx, lowner *pool, mk_pconn *pc);
/* The pool entry of the lent Connection at idx (and its pool in *pool), or NULL. */
mk_pconn *lmk_conn_lent(lua_State *L, int idx, lowner **pool);
/* Marks the Connection at idx as given back: further use raises. */
void lmk_conn_unlend(lua_State *L, int idx);
/* Runs the Lua layer's connection factory runner after_connect(future, conn, factory)
 * with the values at those indices. */
void lmk_conn_run_factory(lua_State *L, int futidx, int connidx, int factoryidx);
/* Registers the Connection metatable and adds Connection to the module table on top,
 * Connection_methods to its private table. */
void lmk_open_conn(lua_State *L);

#endif
