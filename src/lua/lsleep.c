/* lsleep: momoko.sleep. Each sleep is a malloc'd record with its timer, registered as
 * a closer; the record is freed when the timer fires, the sleep is cancelled, or at
 * shutdown (the timer's memory itself is freed by libuv's close callback). */
#include "lsleep.h"

#include <stdlib.h>

#include "lerror.h"
#include "lfuture.h"

typedef struct lsleep {
  lmk_closer closer; /* first: shutdown frees the record through it */
  lmk_state *st;
  mk_timer *timer;
  int fref; /* the future, anchored until the timer fires or is cancelled */
  lfuture *f;
} lsleep;

static void sleep_free(lsleep *s) {
  lmk_closer_remove(&s->closer);
  mk_timer_close(s->timer);
  s->st->nhandles--;
  free(s);
}

/* Shutdown: the future outlives s and stays pending. */
static void sleep_close(lmk_closer *c) {
  lsleep *s = (lsleep *)c;
  lmk_future_set_cancel(s->f, NULL, NULL);
  sleep_free(s);
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

static int sleep_fire_lua(lua_State *L) {
  sleep_end(lua_touserdata(L, 1), 0);
  return 0;
}

static void sleep_fire(void *ud) {
  lsleep *s = ud;
  if (!s->st->closing) lmk_enter(s->st, sleep_fire_lua, s, NULL);
}

static int sleep_cancel(lua_State *L, void *ud) {
  (void)L;
  sleep_end(ud, 1);
  return 1;
}

/* momoko.sleep(ms): a future resolved after ms milliseconds. Everything that can
 * raise for lack of memory (the future, its anchor) happens before the malloc, so no
 * error leaves the record behind. */
static int l_sleep(lua_State *L) {
  lua_Integer ms;
  lmk_state *st = lmk_state_of(L);
  mk_loop *loop;
  lsleep *s;
  lfuture *f;
  int fref;
  if (!lua_isinteger(L, 1) || (ms = lua_tointeger(L, 1)) < 0)
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.sleep: ms must be a non-negative integer");
  loop = lmk_loop(L, st);
  f = lmk_future_new(L);
  lua_pushvalue(L, -1);
  fref = luaL_ref(L, LUA_REGISTRYINDEX);
  s = malloc(sizeof *s);
  if (s) s->timer = mk_timer_new(loop, sleep_fire, s);
  if (!s || !s->timer || mk_timer_start(s->timer, (uint64_t)ms) < 0) {
    if (s) mk_timer_close(s->timer);
    free(s);
    luaL_unref(L, LUA_REGISTRYINDEX, fref);
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.sleep: cannot start a timer");
  }
  s->st = st;
  s->closer.close = sleep_close;
  s->fref = fref;
  s->f = f;
  st->nhandles++;
  lmk_closer_add(st, &s->closer);
  lmk_future_set_cancel(f, sleep_cancel, s);
  return 1;
}

void lmk_open_sleep(lua_State *L) {
  lua_pushcfunction(L, l_sleep);
  lua_setfield(L, -2, "sleep");
}
