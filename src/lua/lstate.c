/* lstate: the per-state record, the loop choice, running the loop, entering Lua from
 * the core, and shutdown (see lstate.h).
 *
 * luv is known through its public interface only: package.loaded.luv for the module,
 * uv.loop_mode() for whether luv's uv.run() is running, and luv.h's exported luv_loop()
 * for the loop itself, looked up with dlsym in the shared object holding luv's
 * functions. Whether a C host runs the loop cannot be seen from libuv (uv_loop_t shows
 * no "running" state): a host that gives its loop with momoko_set_loop declares it. */
#define _GNU_SOURCE /* dladdr */
#include "lstate.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "lerror.h"
#include "momoko.h"

static const char state_key = 'S';    /* registry: the lmk_state userdata */
static const char luv_mode_key = 'M'; /* registry: luv's loop_mode, once luv was found */

lmk_state *lmk_state_of(lua_State *L) {
  lmk_state *st;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
  st = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!st) luaL_error(L, "momoko.core is not loaded in this Lua state");
  return st;
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

/* luv.h: uv_loop_t *luv_loop(lua_State *L), exported by luv.so. */
typedef mk_loop *(*luv_loop_fn)(lua_State *L);

/* Finds luv_loop: in the shared object that holds fn, one of luv's module functions
 * (require loads luv.so with RTLD_LOCAL, out of the global scope), else in the global
 * scope (a host linked with luv). NULL if neither has it. */
static luv_loop_fn find_luv_loop(lua_CFunction fn) {
  luv_loop_fn get = NULL;
  void *addr, *sym = NULL;
  Dl_info info;
  memcpy(&addr, &fn, sizeof addr); /* POSIX: function and object pointers convert */
  if (dladdr(addr, &info) && info.dli_fname) {
    void *h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD); /* already loaded: no new load */
    if (h) {
      sym = dlsym(h, "luv_loop");
      dlclose(h); /* require's own handle keeps luv loaded */
    }
  }
  if (!sym) sym = dlsym(RTLD_DEFAULT, "luv_loop");
  if (sym) memcpy(&get, &sym, sizeof get);
  return get;
}

/* Notes that the loop in use is luv's (once). */
static void use_luv(lua_State *L, lmk_state *st) {
  if (st->luv_loop) return;
  st->luv_loop = 1;
  add_sentinel(L, st);
}

/* Whether luv is loaded in L: 0 no, 1 yes (st->luv is its loop), -1 loaded but its
 * loop cannot be found (no luv_loop, or no loop_mode: a luv older than 1.31). Once
 * found, luv's loop is not looked up again: it does not change after luaopen_luv. */
static int find_luv(lua_State *L, lmk_state *st) {
  lua_CFunction mode;
  luv_loop_fn get;
  if (st->luv) return 1;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "luv") != LUA_TTABLE) {
    lua_pop(L, 2);
    return 0;
  }
  lua_getfield(L, -1, "loop_mode");
  mode = lua_tocfunction(L, -1);
  get = mode ? find_luv_loop(mode) : NULL;
  st->luv = get ? get(L) : NULL;
  if (!st->luv) {
    lua_pop(L, 3);
    return -1;
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &luv_mode_key);
  lua_pop(L, 2);
  if (st->loop == st->luv) use_luv(L, st);
  return 1;
}

mk_loop *lmk_loop_in_use(lua_State *L, lmk_state *st) {
  if (!st->loop) {
    if (find_luv(L, st) == 1) {
      st->loop = st->luv;
      use_luv(L, st);
    } else {
      st->loop = mk_loop_default();
    }
  }
  return st->loop;
}

void lmk_check_loop(lua_State *L, lmk_state *st) {
  lmk_loop_in_use(L, st);
  if (st->given || st->luv_loop) return;
  switch (find_luv(L, st)) {
  case 0:
    return;
  case 1:
    if (st->luv_loop) return;
    lmk_raise(L, MK_ERR_INTERFACE,
              "momoko runs on another loop than luv's (luv was loaded after momoko chose its loop), so "
              "uv.run() would not run it: require \"luv\" before momoko's first connection, pool or "
              "sleep, or keep momoko on its own loop with momoko.set_loop(momoko.loop()) and momoko.run()");
    return;
  default:
    lmk_raise(L, MK_ERR_INTERFACE,
              "luv is loaded, but momoko cannot find its loop (luv_loop): give momoko the loop to use "
              "with momoko.set_loop, or keep its own with momoko.set_loop(momoko.loop())");
  }
}

mk_loop *lmk_loop(lua_State *L, lmk_state *st) {
  lmk_check_loop(L, st);
  return st->loop;
}

int lmk_loop_running(lua_State *L, lmk_state *st) {
  int running;
  if (st->running > 0 || st->host_runs) return 1;
  if (!st->luv_loop) return 0;
  /* uv.loop_mode(): the mode of luv's own uv.run() in progress, or nil */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &luv_mode_key) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return 0;
  }
  lua_call(L, 0, 1);
  running = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return running;
}

int lmk_may_raise(const lmk_state *st, lua_State *L) {
  return st->entered && (st->entered == L || st->entered == st->L);
}

int lmk_run_loop(lua_State *L, lmk_state *st, int (*done)(void *ud), void *ud, const char *who,
                 const char *refusal) {
  mk_loop *loop;
  lua_State *entered;
  int rc = 0;
  if (st->host_runs)
    lmk_raise(L, MK_ERR_INTERFACE,
              "%s: the host program runs the loop (it gave it with momoko_set_loop), momoko never does: "
              "await from a coroutine instead",
              who);
  if (st->callbacks > 0 || lmk_loop_running(L, st)) lmk_raise(L, MK_ERR_INTERFACE, "%s", refusal);
  lmk_check_loop(L, st);
  loop = st->loop;
  st->running++;
  /* below the loop, callbacks of someone else (luv's) may run: momoko is not entered
   * until one of its own callbacks enters again */
  entered = st->entered;
  st->entered = NULL;
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
  st->entered = entered;
  st->running--;
  return rc;
}

int lmk_enter(lmk_state *st, lua_CFunction fn, void *a, void *b) {
  lua_State *L = st->L;
  lua_State *entered = st->entered;
  int rc;
  if (!lua_checkstack(L, 4)) { /* a C host called uv_run with the main thread's stack full */
    fputs("momoko: a callback was dropped: no room on the Lua stack of the main thread\n", stderr);
    fflush(stderr);
    return LUA_ERRMEM;
  }
  st->callbacks++;
  st->entered = L;
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, a);
  lua_pushlightuserdata(L, b);
  rc = lua_pcall(L, 2, 0, 0);
  st->callbacks--;
  st->entered = entered;
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
  lmk_run_loop(L, lmk_state_of(L), NULL, NULL, "momoko.run",
               "momoko.run: the loop is already running (inside a callback or uv.run()): await from a "
               "coroutine instead");
  return 0;
}

static int l_loop(lua_State *L) {
  lua_pushlightuserdata(L, lmk_loop_in_use(L, lmk_state_of(L)));
  return 1;
}

/* Makes loop the one in use; host_runs: a C host runs it, so momoko never will.
 * Returns -1 with nothing changed while handles exist on another loop, or it runs. */
static int set_loop(lua_State *L, lmk_state *st, mk_loop *loop, int host_runs) {
  if (st->loop != loop) {
    if (st->nhandles > 0 || st->running > 0) return -1;
    st->loop = loop;
    st->luv_loop = 0;
    if (find_luv(L, st) == 1 && loop == st->luv) use_luv(L, st);
    if (st->loop_changed) st->loop_changed(L, st);
  }
  st->given = 1;
  if (host_runs) st->host_runs = 1;
  return 0;
}

/* momoko.h's momoko_set_loop, reached through host_api, which only a state that
 * loaded momoko.core (so has its lmk_state) has in its registry. */
static int host_set_loop(lua_State *L, struct uv_loop_s *loop) {
  return set_loop(L, lmk_state_of(L), loop, 1);
}

/* The C API of momoko.h: registry[MOMOKO_C_API_KEY] points here. */
static const struct momoko_c_api host_api = {MOMOKO_C_API_VERSION, host_set_loop};

/* momoko.set_loop(ptr): use another uv_loop_t (light userdata), which momoko.run() and
 * main-thread awaits may run. */
static int l_set_loop(lua_State *L) {
  if (!lua_islightuserdata(L, 1))
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.set_loop: a uv_loop_t* light userdata expected");
  if (set_loop(L, lmk_state_of(L), lua_touserdata(L, 1), 0) < 0)
    return lmk_raise(L, MK_ERR_INTERFACE,
                     "momoko.set_loop: connections or timers already exist on the current loop");
  return 0;
}

void lmk_push_weak_table(lua_State *L, const char *mode) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
}

void lmk_add_private(lua_State *L, const luaL_Reg *fns) {
  lua_getfield(L, -1, "_private");
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
}

void lmk_open_state(lua_State *L) {
  static const luaL_Reg fns[] = {{"run", l_run}, {"loop", l_loop}, {"set_loop", l_set_loop}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  lua_pushlightuserdata(L, (void *)&host_api);
  lua_setfield(L, LUA_REGISTRYINDEX, MOMOKO_C_API_KEY);
}

void *lmk_check_self(lua_State *L, int idx, const char *tname) {
  void *u = lua_touserdata(L, idx);
  if (u && lua_getmetatable(L, idx)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same) return u;
  }
  return luaL_checkudata(L, idx, tname);
}
