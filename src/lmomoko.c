/* lmomoko: the module momoko.core: per-state setup and shutdown, the choice of loop
 * (luv's when luv is loaded), run, spawn, sleep, and coroutine resumption. */
#include <stdlib.h>
#include <string.h>

#include "lmomoko.h"
#include "mk_loop.h"
#include "momoko.h"

static const char state_key = 'S';   /* registry: the lmk_state userdata */
static const char spawns_key = 'P';  /* registry: weak-keyed thread -> spawn future */
static const char orphans_key = 'O'; /* registry: failed spawn futures to look at */

/* luv keeps a context struct at registry["luv_context"]; its first member is the loop,
 * and mode (-1 when luv is not running the loop) follows four pointers. */
typedef struct luv_ctx_prefix {
  uv_loop_t *loop;
  void *L;
  void *cb_pcall, *thrd_pcall, *thrd_cpcall;
  int mode;
} luv_ctx_prefix;

lmk_state *lmk_state_of(lua_State *L) {
  lmk_state *st;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
  st = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!st) luaL_error(L, "momoko.core is not loaded in this Lua state");
  return st;
}

static luv_ctx_prefix *luv_context(lua_State *L) {
  luv_ctx_prefix *ctx;
  lua_getfield(L, LUA_REGISTRYINDEX, "luv_context");
  ctx = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return ctx;
}

static int shutdown_gc(lua_State *L);

/* A userdata whose finalizer shuts momoko down. Created after luv's context, it is
 * finalized before it (Lua finalizes in reverse order), so luv's loop finalizer never
 * meets an open momoko handle. */
static void add_sentinel(lua_State *L, lmk_state *st) {
  lmk_state **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = st;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, shutdown_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  luaL_ref(L, LUA_REGISTRYINDEX);
}

uv_loop_t *lmk_loop(lua_State *L, lmk_state *st) {
  if (!st->loop) {
    luv_ctx_prefix *ctx = luv_context(L);
    if (ctx && ctx->loop) {
      st->loop = ctx->loop;
      st->luv_loop = 1;
      add_sentinel(L, st);
    } else {
      st->loop = uv_default_loop();
    }
  }
  return st->loop;
}

int lmk_loop_running(lua_State *L, lmk_state *st) {
  if (st->running > 0) return 1;
  if (st->luv_loop) {
    luv_ctx_prefix *ctx = luv_context(L);
    return ctx && ctx->loop == st->loop && ctx->mode != -1;
  }
  return 0;
}

static void orphan_check(void *ud);

/* A spawn future failed with no waiter: look again on the next loop turn, and report
 * the error if by then nobody awaited the future or read its error. */
static void watch_orphan(lua_State *L, lmk_state *st, int fidx) {
  fidx = lua_absindex(L, fidx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &orphans_key);
  lua_pushvalue(L, fidx);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
  if (!st->orphan_timer) {
    st->orphan_timer = mk_timer_new(lmk_loop(L, st), orphan_check, st);
    if (!st->orphan_timer) return;
  }
  mk_timer_start(st->orphan_timer, 0);
}

/* Reports every watched future that is still unretrieved (report = 1), or just prints
 * them at shutdown, when no Lua handler may run (report = 0). */
static void flush_orphans(lmk_state *st, int report) {
  lua_State *L = st->L;
  lua_Integer i, n;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &orphans_key);
  n = (lua_Integer)lua_rawlen(L, -1);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &orphans_key);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lmk_future_unretrieved(L, -1)) {
      lua_getiuservalue(L, -1, 1);
      if (report) {
        lmk_report(L);
      } else {
        fprintf(stderr, "momoko: unhandled error: %s\n", luaL_tolstring(L, -1, NULL));
        lua_pop(L, 2);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int orphan_check_lua(lua_State *L) {
  flush_orphans(lua_touserdata(L, 1), 1);
  return 0;
}

static void orphan_check(void *ud) {
  lmk_state *st = ud;
  lua_State *L = st->L;
  if (st->closing) return;
  st->callbacks++;
  lua_pushcfunction(L, orphan_check_lua);
  lua_pushlightuserdata(L, st);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lmk_report(L);
  st->callbacks--;
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
    if (lmk_future_unretrieved(L, -1)) watch_orphan(L, lmk_state_of(L), -1);
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

/* momoko.run(): runs the loop until nothing is left to do. */
static int l_run(lua_State *L) {
  lmk_state *st = lmk_state_of(L);
  uv_loop_t *loop;
  if (lmk_loop_running(L, st))
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.run: the loop is already running");
  loop = lmk_loop(L, st);
  st->running++;
  uv_run(loop, UV_RUN_DEFAULT);
  st->running--;
  return 0;
}

struct lsleep {
  lmk_state *st;
  mk_timer *timer;
  int fref; /* the future, anchored until the timer fires or is cancelled */
  struct lfuture *f;
  struct lsleep *next, **pprev; /* st->sleeps, closed at shutdown */
};

static void sleep_free(lsleep *s) {
  mk_timer_close(s->timer);
  s->st->nhandles--;
  *s->pprev = s->next;
  if (s->next) s->next->pprev = s->pprev;
  free(s);
}

static void sleep_end(lsleep *s, int cancelled) {
  lua_State *L = s->st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->fref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->fref);
  sleep_free(s);
  if (cancelled) {
    lmk_push_error(L, MK_ERR_QUERY_CANCELED, "sleep canceled");
    lmk_future_fail(L, -2);
  } else {
    lmk_future_resolve(L, -1, 0);
  }
  lua_pop(L, 1);
}

static int sleep_fire_pcall(lua_State *L) {
  sleep_end(lua_touserdata(L, 1), 0);
  return 0;
}

static void sleep_fire(void *ud) {
  lsleep *s = ud;
  lmk_state *st = s->st;
  lua_State *L = st->L;
  int rc;
  if (st->closing) return;
  st->callbacks++;
  lua_pushcfunction(L, sleep_fire_pcall);
  lua_pushlightuserdata(L, s);
  rc = lua_pcall(L, 1, 0, 0);
  st->callbacks--;
  if (rc != LUA_OK) lmk_report(L);
}

static int sleep_cancel(lua_State *L, void *ud) {
  (void)L;
  sleep_end(ud, 1);
  return 1;
}

/* momoko.sleep(ms): a future resolved after ms milliseconds. */
static int l_sleep(lua_State *L) {
  lua_Integer ms;
  lmk_state *st = lmk_state_of(L);
  lsleep *s;
  struct lfuture *f;
  if (!lua_isinteger(L, 1) || (ms = lua_tointeger(L, 1)) < 0)
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.sleep: ms must be a non-negative integer");
  s = malloc(sizeof *s);
  if (!s) return luaL_error(L, "not enough memory");
  s->st = st;
  s->timer = mk_timer_new(lmk_loop(L, st), sleep_fire, s);
  if (!s->timer || mk_timer_start(s->timer, (uint64_t)ms) < 0) {
    mk_timer_close(s->timer);
    free(s);
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.sleep: cannot start a timer");
  }
  st->nhandles++;
  s->next = st->sleeps;
  if (st->sleeps) st->sleeps->pprev = &s->next;
  s->pprev = &st->sleeps;
  st->sleeps = s;
  f = lmk_future_new(L);
  lua_pushvalue(L, -1);
  s->fref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->f = f;
  lmk_future_set_cancel(f, sleep_cancel, s);
  return 1;
}

/* core._set_after_connect(fn): the Lua layer's runner of connection factories,
 * fn(future, conn, factory). */
static int l_set_after_connect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "momoko.after_connect");
  return 0;
}

static int l_loop(lua_State *L) {
  lua_pushlightuserdata(L, lmk_loop(L, lmk_state_of(L)));
  return 1;
}

int momoko_set_loop(lua_State *L, uv_loop_t *loop) {
  lmk_state *st = lmk_state_of(L);
  if (st->loop == loop) return 0;
  if (st->nhandles > 0 || st->running > 0 || st->orphan_timer) return -1;
  st->loop = loop;
  st->luv_loop = 0;
  {
    luv_ctx_prefix *ctx = luv_context(L);
    if (ctx && ctx->loop == loop) {
      st->luv_loop = 1;
      add_sentinel(L, st);
    }
  }
  return 0;
}

/* momoko.set_loop(ptr): use another uv_loop_t (light userdata). */
static int l_set_loop(lua_State *L) {
  if (!lua_islightuserdata(L, 1))
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.set_loop: a uv_loop_t* light userdata expected");
  if (momoko_set_loop(L, lua_touserdata(L, 1)) < 0)
    return lmk_raise(L, MK_ERR_INTERFACE,
                     "momoko.set_loop: connections or timers already exist on the current loop");
  return 0;
}

/* Shutdown, from the state's or the sentinel's finalizer: close every connection
 * (their handles start closing; no Lua runs from their callbacks any more). */
static void shut_down(lmk_state *st) {
  if (st->closing) return;
  flush_orphans(st, 0);
  st->closing = 1;
  lmk_pool_close_all(st);
  lmk_conn_close_all(st);
  while (st->sleeps) {
    lmk_future_set_cancel(st->sleeps->f, NULL, NULL); /* the future outlives s */
    sleep_free(st->sleeps);
  }
  mk_timer_close(st->orphan_timer);
  st->orphan_timer = NULL;
}

static int shutdown_gc(lua_State *L) {
  shut_down(*(lmk_state **)lua_touserdata(L, 1));
  return 0;
}

static int state_gc(lua_State *L) {
  shut_down(lua_touserdata(L, 1));
  return 0;
}

LUAMOD_API int luaopen_momoko_core(lua_State *L);
LUAMOD_API int luaopen_momoko_core(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"spawn", l_spawn}, {"run", l_run},           {"sleep", l_sleep},
    {"loop", l_loop},   {"set_loop", l_set_loop}, {"_set_after_connect", l_set_after_connect},
    {NULL, NULL}};
  lmk_state *st;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
  if (lua_isnil(L, -1)) {
    st = lua_newuserdatauv(L, sizeof *st, 0);
    memset(st, 0, sizeof *st);
    /* require may run in a coroutine: callbacks use the main thread */
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    st->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &spawns_key);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &orphans_key);
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  lua_pushliteral(L, "momoko " MOMOKO_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lmk_open_error(L);
  lmk_open_future(L);
  lmk_open_params(L);
  lmk_open_cursor(L);
  lmk_open_conn(L);
  lmk_open_pool(L);
  return 1;
}
