/* lfuture: momoko.Future, coroutine resumption and spawn (see lfuture.h).
 * A future is a userdata; user value 1 holds the outcome (the single result, a table
 * of several results, or the error), user value 2 the waiters: nil, the one waiter (a
 * suspended coroutine or a done callback: the common case makes no table), or a table
 * of them in order. User values from LMK_FUTURE_SLOT on belong to the resolver. Whoever
 * will resolve a future keeps a registry reference to it, so a future nobody else
 * references still completes.
 * Every error raised in a coroutine is meant for a momoko lua_resume (lmk_resume),
 * which routes it: an await raises only when momoko is below it (lmk_may_raise), and
 * otherwise waits for the next loop turn (defer). */
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

/* The future at idx. The methods have the metatable as upvalue 1 (see lmk_check_self);
 * the functions without it get luaL_checkudata's lookup. */
static lfuture *check_future(lua_State *L, int idx) { return lmk_check_self(L, idx, LMK_FUTURE); }

lfuture *lmk_future_new_slots(lua_State *L, int nslots) {
  lfuture *f = lua_newuserdatauv(L, sizeof *f, LMK_FUTURE_SLOT - 1 + nslots);
  memset(f, 0, sizeof *f);
  luaL_setmetatable(L, LMK_FUTURE);
  return f;
}

lfuture *lmk_future_new(lua_State *L) { return lmk_future_new_slots(L, 0); }

void lmk_future_set_cancel(lfuture *f, lmk_cancel_fn fn, void *ud) {
  f->cancel = fn;
  f->cancel_ud = ud;
}

/* Wakes the waiter on top (popped) of the done future at idx. */
static void wake_one(lua_State *L, int idx) {
  if (lua_type(L, -1) == LUA_TTHREAD) {
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    if (lua_status(co) == LUA_YIELD) lmk_resume(L, co, 0);
  } else {
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lmk_report(L);
  }
}

/* Wakes every waiter of the done future at idx. The waiter, or the table of them, stays
 * on the stack while they run, so nothing they do can collect a waiter not yet woken. */
static void wake(lua_State *L, int idx) {
  lua_Integer i, n;
  int wt, t = lua_getiuservalue(L, idx, WAITERS);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  wt = lua_gettop(L);
  lua_pushnil(L);
  lua_setiuservalue(L, idx, WAITERS);
  if (t != LUA_TTABLE) {
    lua_pushvalue(L, wt);
    wake_one(L, idx);
  } else {
    n = (lua_Integer)lua_rawlen(L, wt);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, wt, i);
      wake_one(L, idx);
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

/* Adds the waiter on top (popped) to the future at idx: the first one alone, a second
 * one makes the table. */
static void add_waiter(lua_State *L, int idx) {
  int t = lua_getiuservalue(L, idx, WAITERS);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    lua_setiuservalue(L, idx, WAITERS);
    return;
  }
  if (t != LUA_TTABLE) { /* waiter, first */
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, WAITERS);
  }
  lua_insert(L, -2); /* list, waiter */
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

static int defer(lua_State *L);

/* The await of the coroutine L goes on after a resume. A pending future: someone else
 * resumed it, wait on (it is still a waiter). A failed one raises only when momoko is
 * below (lmk_may_raise): an error must never unwind into a loop callback of someone
 * else (luv's would end the process), so outside momoko the coroutine waits for the
 * next loop turn, when momoko resumes it. */
static int await_k(lua_State *L, int status, lua_KContext ctx) {
  lfuture *f = lua_touserdata(L, 1);
  (void)status;
  (void)ctx;
  lua_settop(L, 1);
  if (f->state == PENDING) return lua_yieldk(L, 0, 0, await_k);
  if (f->state == FAILED && !lmk_may_raise(lmk_state_of(L), L)) return defer(L);
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
  lmk_state *st;
  lua_settop(L, 1);
  f->retrieved = 1;
  if (f->state == RESOLVED) return outcome(L, f);
  st = lmk_state_of(L);
  if (f->state == PENDING) {
    lmk_check_loop(L, st);
    if (lua_isyieldable(L)) {
      lua_pushthread(L);
      add_waiter(L, 1);
      return lua_yieldk(L, 0, 0, await_k);
    }
    run_until_done(L, st, f);
  } else if (lua_isyieldable(L) && !lmk_may_raise(st, L)) {
    return defer(L);
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
  if (f->state != PENDING) { /* at once; an error goes to on_error, as from wake */
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lmk_report(L);
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

/* Work for the next loop turn, one record per state, a userdata in the registry, with
 * the timer that does it:
 * - user value ORPHANS: {future, traceback} of failed spawns nobody awaited yet; each
 *   one still unretrieved by then is reported to on_error;
 * - user value DEFERRED: {coroutine, future} of awaits of a failed future made outside
 *   momoko (see await_k); each coroutine is resumed, so its await raises under momoko. */
static const char spawns_key = 'P'; /* registry: weak-keyed thread -> spawn future */
static const char later_key = 'O';  /* registry: the record */

#define ORPHANS 1
#define DEFERRED 2

typedef struct later {
  lmk_closer closer; /* first: the closer is the record */
  lmk_state *st;
  mk_timer *timer;
} later;

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

/* Pushes the list uv of the record and puts a new empty one in its place. */
static void take_list(lua_State *L, int uv) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &later_key);
  lua_getiuservalue(L, -1, uv);
  lua_newtable(L);
  lua_setiuservalue(L, -3, uv);
  lua_remove(L, -2);
}

/* Does the work of the lists taken: report 1 on the loop (resumes, on_error), 0 at
 * shutdown, when no Lua may run (the errors are printed raw). */
static void do_later(lua_State *L, int report) {
  lua_Integer i, n;
  int t;
  take_list(L, DEFERRED);
  t = lua_gettop(L);
  n = (lua_Integer)lua_rawlen(L, t);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, t, i);
    lua_rawgeti(L, -1, 1);
    if (report) {
      lua_State *co = lua_tothread(L, -1);
      if (lua_status(co) == LUA_YIELD) lmk_resume(L, co, 0);
    } else {
      lua_rawgeti(L, -2, 2);
      lua_getiuservalue(L, -1, OUTCOME);
      print_raw(L, -1);
      lua_pop(L, 2);
    }
    lua_settop(L, t);
  }
  lua_pop(L, 1);
  take_list(L, ORPHANS);
  t = lua_gettop(L);
  n = (lua_Integer)lua_rawlen(L, t);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, t, i);
    lua_rawgeti(L, -1, 1);
    if (lmk_future_unretrieved(L, -1)) {
      lua_getiuservalue(L, -1, OUTCOME);
      if (report) {
        lua_rawgeti(L, -3, 2);
        lmk_report_traceback(L);
      } else {
        print_raw(L, -1);
      }
    }
    lua_settop(L, t);
  }
  lua_pop(L, 1);
}

static int later_lua(lua_State *L) {
  do_later(L, 1);
  return 0;
}

static void later_fire(void *ud) {
  later *o = ud;
  if (!o->st->closing) lmk_enter(o->st, later_lua, NULL, NULL);
}

static void later_close(lmk_closer *c) {
  later *o = (later *)c;
  if (!o->timer) return;
  do_later(o->st->L, 0);
  mk_timer_close(o->timer);
  o->timer = NULL;
}

/* st->loop_changed: set_loop gave another loop. The timer, made on the loop in use
 * before, is closed (it counts in no nhandles, so a failed spawn does not keep
 * set_loop from working), and made again on the new loop when work is waiting. Runs
 * no Lua; if no timer can be made (no memory), the waiting errors are printed raw. */
static void later_move(lua_State *L, lmk_state *st) {
  later *o;
  int pending;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &later_key);
  o = lua_touserdata(L, -1);
  if (!o || !o->timer) {
    lua_pop(L, 1);
    return;
  }
  lua_getiuservalue(L, -1, ORPHANS);
  lua_getiuservalue(L, -2, DEFERRED);
  pending = lua_rawlen(L, -1) > 0 || lua_rawlen(L, -2) > 0;
  lua_pop(L, 3);
  lmk_closer_remove(&o->closer);
  mk_timer_close(o->timer);
  o->timer = NULL;
  if (!pending) return;
  o->timer = mk_timer_new(st->loop, later_fire, o);
  if (o->timer) lmk_closer_add(st, &o->closer);
  if (!o->timer || mk_timer_start(o->timer, 0) < 0) do_later(L, 0);
}

/* Appends the n values on top (popped) as one entry to the list uv, and makes sure
 * the timer runs on the next loop turn. Returns 0, or -1 if no timer could be made
 * (out of memory): nothing will do the work then. */
static int add_later(lua_State *L, int uv, int n) {
  later *o;
  lua_createtable(L, n, 0);
  lua_insert(L, -n - 1);
  for (; n > 0; n--) lua_rawseti(L, -n - 1, n);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &later_key);
  o = lua_touserdata(L, -1);
  lua_getiuservalue(L, -1, uv);
  lua_rotate(L, -3, -1); /* record, list, entry */
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 2);
  if (o->st->closing) return 0; /* shutdown prints what is left */
  if (!o->timer) {
    o->timer = mk_timer_new(lmk_loop_in_use(L, o->st), later_fire, o);
    if (!o->timer) return -1;
    lmk_closer_add(o->st, &o->closer);
  }
  return mk_timer_start(o->timer, 0) < 0 ? -1 : 0;
}

/* The await of the coroutine L on the failed future at 1 waits for the next loop turn
 * (one entry per coroutine, however often someone else resumes it meanwhile). */
static int defer(lua_State *L) {
  lua_Integer i, n;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &later_key);
  lua_getiuservalue(L, -1, DEFERRED);
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_rawgeti(L, -1, 1);
    if (lua_tothread(L, -1) == L) break;
    lua_pop(L, 2);
  }
  lua_settop(L, 1);
  if (i > n) {
    lua_pushthread(L);
    lua_pushvalue(L, 1);
    if (add_later(L, DEFERRED, 2) < 0) return outcome(L, lua_touserdata(L, 1)); /* no next turn */
  }
  return lua_yieldk(L, 0, 0, await_k);
}

/* Ends a coroutine run: results go to its spawn future; errors to it or on_error. */
void lmk_resume(lua_State *L, lua_State *co, int nargs) {
  lmk_state *st = lmk_state_of(L);
  lua_State *entered = st->entered;
  int nres, status, fidx, err, close_err = 0;
  st->entered = co;
  status = lua_resume(co, L, nargs, &nres);
  st->entered = entered;
  if (status == LUA_YIELD) {
    lua_pop(co, nres);
    return;
  }
  luaL_checkstack(L, nres + 8, "too many results");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &spawns_key);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_rawget(L, -2); /* the spawn future or nil */
  lua_remove(L, -2);
  fidx = lua_gettop(L);
  if (status == LUA_OK) {
    lua_xmove(co, L, nres);
    if (lua_isnil(L, fidx)) {
      lua_settop(L, fidx - 1);
    } else {
      lmk_future_resolve(L, fidx, nres);
      lua_pop(L, 1);
    }
    return;
  }
  /* an error: a copy of it (the original stays on co for its closing methods), and,
   * unless someone awaits the spawn future already, the traceback of the coroutine
   * while its stack is still there */
  lua_pushvalue(co, -1);
  lua_xmove(co, L, 1);
  err = fidx + 1;
  if (lua_isnil(L, fidx) || !((lfuture *)lua_touserdata(L, fidx))->retrieved)
    luaL_traceback(L, co, NULL, 0);
  else
    lua_pushnil(L);
  /* close its pending to-be-closed variables (a <close> connection goes back to its
   * pool); the coroutine's error is then on co's stack, or one a closing method raised
   * instead, which goes to on_error as well */
  if (lmk_closethread(co, L) != LUA_OK && lua_gettop(co) > 0) {
    lua_xmove(co, L, 1);
    if (lua_rawequal(L, -1, err))
      lua_pop(L, 1);
    else
      close_err = lua_gettop(L);
  }
  lua_settop(co, 0);
  lua_pushvalue(L, err);
  if (lua_isnil(L, fidx)) {
    lua_pushvalue(L, err + 1);
    lmk_report_traceback(L); /* nobody can receive it */
  } else {
    lmk_future_fail(L, fidx);
    if (lmk_future_unretrieved(L, fidx)) { /* report it next turn if nobody looked */
      lua_pushvalue(L, fidx);
      lua_pushvalue(L, err + 1);
      add_later(L, ORPHANS, 2);
    }
  }
  if (close_err) {
    lua_pushvalue(L, close_err);
    lmk_report(L);
  }
  lua_settop(L, fidx - 1);
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
  luaL_newlibtable(L, methods);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, f_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_setfield(L, -2, "Future"); /* module.Future: the metatable, to recognize futures */
  lua_pushcfunction(L, new_future);
  lua_setfield(L, -2, "future");
  lua_pushcfunction(L, l_spawn);
  lua_setfield(L, -2, "spawn");
  lmk_add_private(L, private_fns);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &spawns_key) == LUA_TNIL) {
    later *o;
    lmk_push_weak_table(L, "k");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &spawns_key);
    o = lua_newuserdatauv(L, sizeof *o, 2);
    memset(o, 0, sizeof *o);
    o->closer.close = later_close;
    o->st = lmk_state_of(L);
    o->st->loop_changed = later_move;
    lua_newtable(L);
    lua_setiuservalue(L, -2, ORPHANS);
    lua_newtable(L);
    lua_setiuservalue(L, -2, DEFERRED);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &later_key);
  }
  lua_pop(L, 1);
}
