/* lmomoko.h: what the binding files (src/l*.c) share: the per-Lua-state module state,
 * futures, errors, and the conversions between Lua values and PostgreSQL. Internal. */
#ifndef LMOMOKO_H
#define LMOMOKO_H

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "mk_conn.h"
#include "mk_error.h"
#include "mk_pool.h"

#define LMK_FUTURE "momoko.Future"
#define LMK_CONN "momoko.Connection"
#define LMK_POOL "momoko.Pool"
#define LMK_CURSOR "momoko.Cursor"
#define LMK_ERROR "momoko.Error"
#define LMK_PARAM "momoko.Param"

/* Lua 5.4.4 has lua_resetthread; 5.4.6 renamed it lua_closethread. */
#if LUA_VERSION_RELEASE_NUM >= 50406
#define lmk_closethread(L, from) lua_closethread(L, from)
#else
#define lmk_closethread(L, from) ((void)(from), lua_resetthread(L))
#endif

struct lconn;
struct lpool;
typedef struct lsleep lsleep;

/* One per Lua state that loaded momoko.core; a userdata kept in the registry. */
typedef struct lmk_state {
  lua_State *L;        /* the main thread: callbacks from libuv run Lua here */
  uv_loop_t *loop;     /* chosen at first use (lmk_loop) */
  int luv_loop;        /* the loop is luv's */
  int running;         /* depth of uv_run calls made by momoko */
  int callbacks;       /* depth of momoko callbacks (from the core) running Lua */
  int closing;         /* lua_close is finalizing: no Lua from callbacks any more */
  struct lconn *conns; /* live connections, closed at shutdown */
  struct lpool *pools; /* live pools, closed at shutdown */
  lsleep *sleeps;      /* pending momoko.sleep timers, closed at shutdown */
  int nhandles;        /* live libuv users (connections, sleeps): set_loop needs 0 */
  struct mk_timer *orphan_timer; /* reports spawn errors nobody retrieved */
} lmk_state;

/* The state of L (raises if momoko.core is not loaded, which cannot happen). */
lmk_state *lmk_state_of(lua_State *L);
/* The loop, chosen on first call: luv's if luv is loaded, else uv_default_loop(). */
uv_loop_t *lmk_loop(lua_State *L, lmk_state *st);
/* 1 if a uv_run is active on the loop (momoko's own or luv's). */
int lmk_loop_running(lua_State *L, lmk_state *st);

/* Errors: pushes a new momoko.Error of kind with message. */
void lmk_push_error(lua_State *L, mk_kind kind, const char *message);
/* Pushes the Lua form of a core error (all server fields included). */
void lmk_push_mk_error(lua_State *L, const mk_error *e);
/* Raises an InterfaceError with a formatted message (does not return). */
int lmk_raise(lua_State *L, mk_kind kind, const char *fmt, ...);
/* Hands the value on top (popped) to momoko.on_error, or stderr. Never raises. */
void lmk_report(lua_State *L);

/* Futures. Cancel hooks let f:cancel() reach whatever will resolve the future. */
typedef int (*lmk_cancel_fn)(lua_State *L, void *ud);
/* Pushes a new pending future and returns it. */
struct lfuture *lmk_future_new(lua_State *L);
void lmk_future_set_cancel(struct lfuture *f, lmk_cancel_fn fn, void *ud);
/* Resolves the future at index idx with the n values on top (popped), then wakes its
 * waiters; coroutines are resumed, callbacks called, errors routed to on_error. */
void lmk_future_resolve(lua_State *L, int idx, int n);
/* Fails the future at idx with the error on top (popped), then wakes its waiters. */
void lmk_future_fail(lua_State *L, int idx);
/* 1 if the future at idx failed and nobody awaited it or read its error (yet). */
int lmk_future_unretrieved(lua_State *L, int idx);
/* Resumes co with nargs arguments from L's top; routes its end or error (spawn future
 * or on_error). */
void lmk_resume(lua_State *L, lua_State *co, int nargs);

/* Parameters: pushes the prepared form of the statement at sqlidx with the parameters
 * at pidx (none, nil, an array, or a table of :names). Raises InterfaceError for bad
 * values; nothing is allocated outside Lua. */
void lmk_params_check(lua_State *L, int sqlidx, int pidx);
/* Copies the prepared statement at prepidx into statement i of r. Never raises;
 * returns 0, or -1 when memory ran out. */
int lmk_params_fill(lua_State *L, mk_req *r, int i, int prepidx);
/* Pushes sql with its parameters inlined as literals escaped for pg. */
int lmk_mogrify(lua_State *L, PGconn *pg, int sqlidx, int pidx);

/* Cursors: pushes a cursor that owns res from then on (NULL: no result). dict selects
 * rows keyed by column name. decoders is the index of the connection's decoder table
 * (oid -> function, or {array = fn}), or 0. */
void lmk_cursor_push(lua_State *L, PGresult *res, const char *query, int dict, int decoders);

/* Module parts: each registers its metatable and adds its functions to the module
 * table on top. */
void lmk_open_error(lua_State *L);
void lmk_open_future(lua_State *L);
void lmk_open_conn(lua_State *L);
void lmk_open_cursor(lua_State *L);
void lmk_open_params(lua_State *L);

void lmk_open_pool(lua_State *L);

/* Closes every live connection / pool (at shutdown). */
void lmk_conn_close_all(lmk_state *st);
void lmk_pool_close_all(lmk_state *st);

/* Request owners (lreq.c): a Connection or a Pool userdata starts with an lowner. Its
 * user value 1 is a table with the options, "decoders" and "cursor_factory". */
typedef struct lowner lowner;
typedef struct lowner_ops {
  /* Raises unless requests can be taken now (who names the method). */
  void (*check)(lua_State *L, lowner *o, const char *who);
  /* Hands r over: 0, or a refusal kind with *why, and *raise set when the refusal
   * raises at the call (otherwise the request's future fails with it). A refused r
   * stays the caller's. */
  int (*submit)(lowner *o, mk_req *r, const char **why, int *raise);
  int (*cancel)(lowner *o, mk_req *r);
} lowner_ops;
struct lowner {
  const lowner_ops *ops;
  lmk_state *st;
  int anchor;    /* registry ref of the userdata while pending > 0 */
  int pending;   /* outstanding requests, connects, getconns */
  int finalized; /* __gc ran (or not yet set up): callbacks only free */
};
/* Anchors the owner (its userdata at idx) for one more outstanding operation. */
void lmk_pend(lua_State *L, lowner *o, int idx);
void lmk_unpend(lua_State *L, lowner *o);
/* Pushes the owner's userdata (from its anchor, or from a weak table while it is not
 * collected), or nil. */
void lmk_push_owner(lua_State *L, lowner *o);
/* Pushes a new owner userdata of size bytes (zeroed, starting with an lowner) of
 * metatable mt, user value the table at uv; finalized until its resource is set. */
lowner *lmk_owner_new(lua_State *L, size_t size, const char *mt, const lowner_ops *ops, int uv);
/* __index tail: pushes the method key (at 2) of the object at 1. */
int lmk_owner_method(lua_State *L);
/* Registers an owner metatable mt with meta, and methods (plus the request methods)
 * as its "methods" table, also set as field of the module table on top. */
void lmk_open_owner_class(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods,
                          const char *field);
/* Pushes an array of the setsession strings of the options table at uv (or nil); the
 * strings stay anchored by that table. */
const char **lmk_setsession(lua_State *L, int uv, int *n);
/* 1 when callbacks of o must not run Lua (finalized, or the state is closing). */
int lmk_silent(const lowner *o);
/* Runs fn(a, b) under lua_pcall on the main thread; errors go to on_error. */
void lmk_protect(lmk_state *st, lua_CFunction fn, void *a, void *b);
/* Checks a cursor_factory value (nil, "array", "dict", function); 1 for "dict". */
int lmk_check_factory(lua_State *L, int idx, const char *who);
/* The owner at idx after ops->check; raises InterfaceError for anything else. */
lowner *lmk_check_owner(lua_State *L, int idx, const char *who);
/* Adds execute, callproc, transaction, ping, _set_decoder to the table on top. */
void lmk_add_request_methods(lua_State *L);
/* Runs the Lua layer's connection factory runner: after_connect(future, conn,
 * factory) with the values at those indices. */
void lmk_run_factory(lua_State *L, int futidx, int connidx, int factoryidx);
/* Calls the on_notice function of the options table at uvidx, if any, with the object
 * at objidx and msg without its trailing newline. */
void lmk_call_notice(lua_State *L, int uvidx, int objidx, const char *msg);

/* Checks and copies the options shared by Connection and Pool (table at opts) into
 * the options table at uv; raises InterfaceError naming who. Returns the loop. */
uv_loop_t *lmk_conn_options(lua_State *L, int opts, int uv, const char *who);

/* Connections lent by a pool (lconn.c). */
/* Pushes a Connection for pc, sharing the options table of the pool at poolidx. */
void lmk_conn_push_lent(lua_State *L, int poolidx, lowner *pool, mk_pconn *pc);
/* The pool entry of the lent Connection at idx (and its pool), or NULL. */
mk_pconn *lmk_conn_lent(lua_State *L, int idx, lowner **pool);
/* Marks the Connection at idx as given back: further use raises. */
void lmk_conn_unlend(lua_State *L, int idx);

#endif
