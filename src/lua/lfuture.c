/* lfuture: momoko.Future, coroutine resumption and spawn (see lfuture.h).
 * A future is a userdata; user value 1 holds the outcome (the single result, a table
 * of several results, or the error), user value 2 the waiters (a table of suspended
 * coroutines and done callbacks). Whoever will resolve a future keeps a registry
 * reference to it, so a future nobody else references still completes. */
#include "lfuture.h"

#include <stdio.h>
#include <string.h>

#include "lerror.h"

enum { PENDING, RESOLVED, FAILED };

struct lfuture {
  int state;
  int nres;      /* number of results; 1 is stored bare, others in a table */
  int retrieved; /* someone awaited it or read its error */
  lmk_cancel_fn cancel;
  void *cancel_ud;
};

#define OUTCOME 1
#define WAITERS 2

static lfuture *check_future(lua_State *L, int idx) { return luaL_checkudata(L, idx, LMK_FUTURE); }

lfuture *lmk_future_new(lua_State *L) {
  lfuture *f = lua_newuserdatauv(L, sizeof *f, 2);
  memset(f, 0, sizeof *f);
  luaL_setmetatable(L, LMK_FUTURE);
  return f;
}

void lmk_future_set_cancel(lfuture *f, lmk_cancel_fn fn, void *ud) {
  f->cancel = fn;
  f->cancel_ud = ud;
}

/* Wakes every waiter of the done future at idx. The waiters table stays on the stack
 * while they run, so nothing they do can collect a waiter not yet woken. */
static void wake(lua_State *L, int idx) {
  lua_Integer i, n;
  int wt;
  if (lua_getiuservalue(L, idx, WAITERS) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  wt = lua_gettop(L);
  lua_pushnil(L);
  lua_setiuservalue(L, idx, WAITERS);
  n = (lua_Integer)lua_rawlen(L, wt);
  for (i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, wt, i);
    if (t == LUA_TTHREAD) {
      lua_State *co = lua_tothread(L, -1);
      lua_pop(L, 1);
      if (lua_status(co) == LUA_YIELD) lmk_resume(L, co, 0);
    } else {
      lua_pushvalue(L, idx);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) lmk_report(L);
    }
  }
  lua_pop(L, 1);
}

static void settle(lua_State *L, int idx, int state, int n) {
  lfuture *f = lua_touserdata(L, idx);
  if (f->state != PENDING) { /* resolving twice is a bug of the resolver: keep the first */
    lua_pop(L, n);
    return;
  }
  if (n == 1) {
    lua_setiuservalue(L, idx, OUTCOME);
  } else {
    int i;
    lua_createtable(L, n, 0);
    for (i = n; i >= 1; i--) {
      lua_insert(L, -2);
      lua_rawseti(L, -2, i);
    }
    lua_setiuservalue(L, idx, OUTCOME);
  }
  f->state = state;
  f->nres = n;
  f->cancel = NULL;
  wake(L, idx);
}

void lmk_future_resolve(lua_State *L, int idx, int n) {
  idx = lua_absindex(L, idx);
  settle(L, idx, RESOLVED, n);
}

void lmk_future_fail(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  settle(L, idx, FAILED, 1);
}

static void add_waiter(lua_State *L, int idx) {
  if (lua_getiuservalue(L, idx, WAITERS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, WAITERS);
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* Pushes the results of the done future at 1, or raises its error. */
static int outcome(lua_State *L, lfuture *f) {
  f->retrieved = 1;
  lua_getiuservalue(L, 1, OUTCOME);
  if (f->state == FAILED) return lua_error(L);
  if (f->nres == 1) return 1;
  luaL_checkstack(L, f->nres, "too many results");
  {
    int i, t = lua_gettop(L);
    for (i = 1; i <= f->nres; i++) lua_rawgeti(L, t, i);
  }
  return f->nres;
}

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  lfuture *f = lua_touserdata(L, 1);
  (void)status;
  (void)ctx;
  lua_settop(L, 1);
  if (f->state == PENDING) /* resumed by someone else: still a waiter, wait on */
    return lua_yieldk(L, 0, 0, await_k);
  return outcome(L, f);
}

static int future_done(void *ud) { return ((lfuture *)ud)->state != PENDING; }

/* Main thread: run the loop until f is done. */
static void run_until_done(lua_State *L, lmk_state *st, lfuture *f) {
  if (lmk_run_loop(L, st, future_done, f, "await on the main thread",
                   "cannot await on the main thread while the loop is running (inside a callback or "
                   "uv.run()): await from a coroutine instead, e.g. in momoko.spawn") < 0)
    lmk_raise(L, MK_ERR_INTERFACE, "future can never complete: the loop has nothing left to run");
}

static int f_await(lua_State *L) {
  lfuture *f = check_future(L, 1);
  lua_settop(L, 1);
  f->retrieved = 1;
  if (f->state == PENDING) {
    lmk_state *st = lmk_state_of(L);
    lmk_check_loop(L, st);
    if (lua_isyieldable(L)) {
      lua_pushthread(L);
      add_waiter(L, 1);
      return lua_yieldk(L, 0, 0, await_k);
    }
    run_until_done(L, st, f);
  }
  return outcome(L, f);
}

static int f_done(lua_State *L) {
  lua_pushboolean(L, check_future(L, 1)->state != PENDING);
  return 1;
}

static int f_result(lua_State *L) {
  lfuture *f = check_future(L, 1);
  lua_settop(L, 1);
  if (f->state == PENDING) return lmk_raise(L, MK_ERR_INTERFACE, "future is not done");
  return outcome(L, f);
}

static int f_error(lua_State *L) {
  lfuture *f = check_future(L, 1);
  if (f->state != FAILED) return 0;
  f->retrieved = 1;
  lua_getiuservalue(L, 1, OUTCOME);
  return 1;
}

static int f_add_done_callback(lua_State *L) {
  lfuture *f = check_future(L, 1);
  if (!lua_isfunction(L, 2))
    return lmk_raise(L, MK_ERR_INTERFACE, "add_done_callback: a function expected, got %s", luaL_typename(L, 2));
  lua_settop(L, 2);
  f->retrieved = 1;
  if (f->state != PENDING) {
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
    return 0;
  }
  add_waiter(L, 1);
  return 0;
}

static int f_cancel(lua_State *L) {
  lfuture *f = check_future(L, 1);
  lua_settop(L, 1);
  if (f->state != PENDING || !f->cancel) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, f->cancel(L, f->cancel_ud));
  return 1;
}

/* private resolve(f, ...) and fail(f, err): for momoko's Lua layer (momoko.all,
 * factories), which keeps them out of reach of user code. */
static int f_resolve(lua_State *L) {
  check_future(L, 1);
  lmk_future_resolve(L, 1, lua_gettop(L) - 1);
  return 0;
}

static int f_fail(lua_State *L) {
  check_future(L, 1);
  lua_settop(L, 2);
  lmk_future_fail(L, 1);
  return 0;
}

static int f_tostring(lua_State *L) {
  lfuture *f = check_future(L, 1);
  static const char *names[] = {"pending", "resolved", "failed"};
  lua_pushfstring(L, "<momoko.Future %s>", names[f->state]);
  return 1;
}

static int new_future(lua_State *L) {
  lmk_future_new(L);
  return 1;
}

int lmk_future_unretrieved(lua_State *L, int idx) {
  lfuture *f = luaL_testudata(L, idx, LMK_FUTURE);
  return f && f->state == FAILED && !f->retrieved;
}

/* Failed spawns nobody awaited. One record per state, a userdata in the registry:
 * the futures to look at again on the next loop turn, and the timer that does. */
static const char spawns_key = 'P';  /* registry: weak-keyed thread -> spawn future */
static const char orphans_key = 'O'; /* registry: the orphans record; user value 1 the
                                      * array of failed spawn futures to look at */

typedef struct orphans {
  lmk_closer closer; /* first: the closer is the record */
  lmk_state *st;
  mk_timer *timer;
} orphans;

/* Writes an unreported error to stderr without running Lua (shutdown): the kind and
 * message fields of a momoko.Error, a string as is, else the type's name. */
static void print_raw(lua_State *L, int idx) {
  const char *kind = NULL, *msg = NULL;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    msg = lua_tostring(L, idx);
  } else if (lua_istable(L, idx)) {
    lua_pushliteral(L, "kind");
    if (lua_rawget(L, idx) == LUA_TSTRING) kind = lua_tostring(L, -1);
    lua_pushliteral(L, "message");
    if (lua_rawget(L, idx) == LUA_TSTRING) msg = lua_tostring(L, -1);
    lua_pop(L, 2); /* still anchored by the table */
  }
  fprintf(stderr, "momoko: unhandled error: %s%s%s\n", kind ? kind : "", kind ? ": " : "",
          msg ? msg : luaL_typename(L, idx));
  fflush(stderr);
}

/* Goes through the watched futures: each still unretrieved one is reported (report 1)
 * or, at shutdown when no Lua may run, printed raw (report 0). */
static void flush_orphans(lua_State *L, int report) {
  lua_Integer i, n;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &orphans_key);
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
  n = (lua_Integer)lua_rawlen(L, -1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &orphans_key);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  lua_pop(L, 1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lmk_future_unretrieved(L, -1)) {
      lua_getiuservalue(L, -1, 1);
      if (report) {
        lmk_report(L);
      } else {
        print_raw(L, -1);
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int orphan_check_lua(lua_State *L) {
  flush_orphans(L, 1);
  return 0;
}

static void orphan_check(void *ud) {
  orphans *o = ud;
  if (!o->st->closing) lmk_enter(o->st, orphan_check_lua, NULL, NULL);
}

static void orphans_close(lmk_closer *c) {
  orphans *o = (orphans *)c;
  if (!o->timer) return;
  flush_orphans(o->st->L, 0);
  mk_timer_close(o->timer);
  o->timer = NULL;
  o->st->nhandles--;
}

/* A spawn future failed with no waiter: look again on the next loop turn, and report
 * the error if by then nobody awaited the future or read its error. */
static void watch_orphan(lua_State *L, int fidx) {
  orphans *o;
  fidx = lua_absindex(L, fidx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &orphans_key);
  o = lua_touserdata(L, -1);
  lua_getiuservalue(L, -1, 1);
  lua_pushvalue(L, fidx);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 2);
  if (o->st->closing) return;
  if (!o->timer) {
    o->timer = mk_timer_new(lmk_loop_in_use(L, o->st), orphan_check, o);
    if (!o->timer) return;
    o->st->nhandles++;
    lmk_closer_add(o->st, &o->closer);
  }
  mk_timer_start(o->timer, 0);
}

/* Ends a coroutine run: results go to its spawn future; errors to it or on_error. */
void lmk_resume(lua_State *L, lua_State *co, int nargs) {
  int nres, status = lua_resume(co, L, nargs, &nres);
  if (status == LUA_YIELD) {
    lua_pop(co, nres);
    return;
  }
  luaL_checkstack(L, nres + 4, "too many results");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &spawns_key);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_rawget(L, -2); /* the spawn future or nil */
  lua_remove(L, -2);
  if (status == LUA_OK) {
    int fidx = lua_gettop(L);
    lua_xmove(co, L, nres);
    if (lua_isnil(L, fidx)) {
      lua_settop(L, fidx - 1);
    } else {
      lmk_future_resolve(L, fidx, nres);
      lua_pop(L, 1);
    }
    return;
  }
  /* an error: keep a traceback for text errors, then close the coroutine's pending
   * to-be-closed variables (a <close> connection goes back to its pool) */
  lua_xmove(co, L, 1);
  if (lua_isnil(L, -2)) {
    /* nobody can receive it: report it with the coroutine's traceback */
    if (lua_type(L, -1) == LUA_TSTRING) {
      luaL_traceback(L, co, lua_tostring(L, -1), 0);
      lua_remove(L, -2);
    }
    lmk_closethread(co, L);
    lua_remove(L, -2);
    lmk_report(L);
  } else {
    lmk_closethread(co, L);
    lmk_future_fail(L, -2);
    if (lmk_future_unretrieved(L, -1)) watch_orphan(L, -1);
    lua_pop(L, 1);
  }
}

/* momoko.spawn(fn, ...): runs fn(...) in a new coroutine now; a future of its results. */
static int l_spawn(lua_State *L) {
  int n = lua_gettop(L);
  lua_State *co;
  if (!lua_isfunction(L, 1))
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.spawn: a function expected, got %s", luaL_typename(L, 1));
  co = lua_newthread(L);
  lmk_future_new(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &spawns_key);
  lua_pushvalue(L, n + 1);
  lua_pushvalue(L, n + 2);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_rotate(L, 1, 2); /* thread, future, fn, args... */
  lua_xmove(L, co, n);
  lmk_resume(L, co, n - 1);
  lua_settop(L, 2);
  return 1;
}

void lmk_open_future(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"await", f_await}, {"done", f_done},     {"result", f_result}, {"error", f_error},
    {"add_done_callback", f_add_done_callback}, {"cancel", f_cancel}, {NULL, NULL}};
  static const luaL_Reg private_fns[] = {{"resolve", f_resolve}, {"fail", f_fail}, {NULL, NULL}};
  luaL_newmetatable(L, LMK_FUTURE);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, f_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setfield(L, -2, "Future"); /* module.Future: the metatable, to recognize futures */
  lua_pushcfunction(L, new_future);
  lua_setfield(L, -2, "future");
  lua_pushcfunction(L, l_spawn);
  lua_setfield(L, -2, "spawn");
  lmk_add_private(L, private_fns);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &spawns_key) == LUA_TNIL) {
    orphans *o;
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &spawns_key);
    o = lua_newuserdatauv(L, sizeof *o, 1);
    memset(o, 0, sizeof *o);
    o->closer.close = orphans_close;
    o->st = lmk_state_of(L);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &orphans_key);
  }
  lua_pop(L, 1);
}
