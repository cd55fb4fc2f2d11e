/* lfuture: momoko.Future, the one result shape of every asynchronous operation, and
 * the coroutines that wait on futures: resuming them, momoko.spawn, reporting a failed
 * spawn nobody looked at, and making sure an await raises only under momoko. Internal. */
#ifndef LFUTURE_H
#define LFUTURE_H

#include "lstate.h"

#define LMK_FUTURE "momoko.Future"

typedef struct lfuture lfuture;

/* Cancel hooks let f:cancel() reach whatever will resolve the future. The hook runs
 * Lua-free code of the resolver and returns 1 if anything was cancelled. */
typedef int (*lmk_cancel_fn)(lua_State *L, void *ud);

/* Pushes a new pending future and returns it (owned by Lua). */
lfuture *lmk_future_new(lua_State *L);
/* The first user value of a future that belongs to its resolver. */
#define LMK_FUTURE_SLOT 3
/* As lmk_future_new, with nslots user values from LMK_FUTURE_SLOT on for its resolver
 * to keep what it needs until it resolves the future (it clears them then: the future
 * may live long after). Nothing else reads or writes them. */
lfuture *lmk_future_new_slots(lua_State *L, int nslots);
/* Sets or (fn NULL) clears the cancel hook. */
void lmk_future_set_cancel(lfuture *f, lmk_cancel_fn fn, void *ud);
/* Resolves the future at index idx with the n values on top (popped), then wakes its
 * waiters; coroutines are resumed, callbacks called, errors routed to on_error. */
void lmk_future_resolve(lua_State *L, int idx, int n);
/* Fails the future at idx with the error on top (popped), then wakes its waiters. */
void lmk_future_fail(lua_State *L, int idx);
/* 1 if the future at idx failed and nobody awaited it or read its error (yet). */
int lmk_future_unretrieved(lua_State *L, int idx);
/* Resumes co with nargs arguments from L's top (counted in st->resuming), and routes
 * its end: results to its spawn future; an error to it or, with the coroutine's
 * traceback, to on_error; an error raised while closing its to-be-closed variables
 * to on_error. Runs Lua (waiters, handlers); raises only for lack of memory. */
void lmk_resume(lua_State *L, lua_State *co, int nargs);
/* Registers the Future metatable and adds Future, future and spawn to the module
 * table on top, and resolve and fail to its private table. */
void lmk_open_future(lua_State *L);

#endif
