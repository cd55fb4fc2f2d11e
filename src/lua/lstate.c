/* lstate: the per-state record, the loop choice, running the loop, entering Lua from
 * the core, and shutdown (see lstate.h). */
#include "lstate.h"

#include <string.h>

#include "lerror.h"
#include "momoko.h"

static const char state_key = 'S'; /* registry: the lmk_state userdata */

/* luv keeps a context struct at registry["luv_context"]; its first member is the loop,
 * and mode (-1 when luv is not running the loop) follows four pointers. */
typedef struct luv_ctx_prefix {
  mk_loop *loop;
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

/* Shutdown, from the state's or the sentinel's finalizer: marks the state closing
 * first (no Lua runs from here on), then closes everything registered. */
static void shut_down(lmk_state *st) {
  if (st->closing) return;
  st->closing = 1;
  while (st->closers) {
    lmk_closer *c = st->closers;
    lmk_closer_remove(c);
    c->close(c);
  }
}

static int shutdown_gc(lua_State *L) {
  shut_down(*(lmk_state **)lua_touserdata(L, 1));
  return 0;
}

static int state_gc(lua_State *L) {
  shut_down(lua_touserdata(L, 1));
  return 0;
}

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

lmk_state *lmk_state_open(lua_State *L) {
  lmk_state *st;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
  st = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (st) return st;
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
  return st;
}

mk_loop *lmk_loop(lua_State *L, lmk_state *st) {
  if (!st->loop) {
    luv_ctx_prefix *ctx = luv_context(L);
    if (ctx && ctx->loop) {
      st->loop = ctx->loop;
      st->luv_loop = 1;
      add_sentinel(L, st);
    } else {
      st->loop = mk_loop_default();
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

int lmk_run_loop(lua_State *L, lmk_state *st, int (*done)(void *ud), void *ud, const char *refusal) {
  mk_loop *loop;
  int rc = 0;
  if (lmk_loop_running(L, st) || st->callbacks > 0) lmk_raise(L, MK_ERR_INTERFACE, "%s", refusal);
  loop = lmk_loop(L, st);
  st->running++;
  if (!done) {
    mk_loop_run(loop, 0);
  } else {
    while (!done(ud)) {
      if (!mk_loop_run(loop, 1) && !done(ud)) {
        rc = -1;
        break;
      }
    }
  }
  st->running--;
  return rc;
}

int lmk_enter(lmk_state *st, lua_CFunction fn, void *a, void *b) {
  lua_State *L = st->L;
  int rc;
  st->callbacks++;
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, a);
  lua_pushlightuserdata(L, b);
  rc = lua_pcall(L, 2, 0, 0);
  st->callbacks--;
  if (rc != LUA_OK) lmk_report(L);
  return rc;
}

void lmk_closer_add(lmk_state *st, lmk_closer *c) {
  c->next = st->closers;
  if (st->closers) st->closers->pprev = &c->next;
  c->pprev = &st->closers;
  st->closers = c;
}

void lmk_closer_remove(lmk_closer *c) {
  if (!c->pprev) return;
  *c->pprev = c->next;
  if (c->next) c->next->pprev = c->pprev;
  c->next = NULL;
  c->pprev = NULL;
}

/* momoko.run(): runs the loop until nothing is left to do. */
static int l_run(lua_State *L) {
  lmk_run_loop(L, lmk_state_of(L), NULL, NULL, "momoko.run: the loop is already running");
  return 0;
}

static int l_loop(lua_State *L) {
  lua_pushlightuserdata(L, lmk_loop(L, lmk_state_of(L)));
  return 1;
}

int momoko_set_loop(lua_State *L, uv_loop_t *loop) {
  lmk_state *st = lmk_state_of(L);
  if (st->loop == loop) return 0;
  if (st->nhandles > 0 || st->running > 0) return -1;
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

void lmk_add_private(lua_State *L, const luaL_Reg *fns) {
  lua_getfield(L, -1, "_private");
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
}

void lmk_open_state(lua_State *L) {
  static const luaL_Reg fns[] = {{"run", l_run}, {"loop", l_loop}, {"set_loop", l_set_loop}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
