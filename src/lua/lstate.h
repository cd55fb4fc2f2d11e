/* lstate: the bottom of the binding. One lmk_state per Lua state that loaded
 * momoko.core: the main thread, the loop in use (chosen on first use: luv's when luv
 * is loaded, else libuv's default; or given with set_loop), whether someone runs it,
 * the one guard around running the loop, the one way the core's callbacks enter Lua,
 * and shutdown over one list of closers (every connection, pool, timer the binding
 * owns registers one). Internal. */
#ifndef LSTATE_H
#define LSTATE_H

#include <lauxlib.h>
#include <lua.h>

#include "mk_loop.h"

/* Lua 5.4.4 has lua_resetthread; 5.4.6 renamed it lua_closethread. Both return the
 * status of the coroutine's last error (or LUA_OK) after closing its to-be-closed
 * variables. */
#if LUA_VERSION_RELEASE_NUM >= 50406
#define lmk_closethread(L, from) lua_closethread(L, from)
#else
#define lmk_closethread(L, from) ((void)(from), lua_resetthread(L))
#endif

/* Something the binding must close at shutdown (lua_close or luv's loop finalizer).
 * close runs no Lua: it only closes handles and frees; it is called once, after the
 * closer was taken off the list. */
typedef struct lmk_closer lmk_closer;
struct lmk_closer {
  void (*close)(lmk_closer *c);
  lmk_closer *next, **pprev; /* on st->closers while pprev is not NULL */
};

typedef struct lmk_state {
  lua_State *L;          /* the main thread: callbacks from the core run Lua here */
  mk_loop *loop;         /* chosen at first use (lmk_loop_in_use), or given */
  mk_loop *luv;          /* luv's loop once luv was found loaded in L, else NULL */
  int luv_loop;          /* loop is luv's: uv.loop_mode() tells whether luv runs it */
  int given;             /* loop was given (set_loop): never compared with luv's */
  int host_runs;         /* loop was given by a C host (momoko_set_loop), which runs it */
  int running;           /* depth of loop runs made by momoko */
  int callbacks;         /* depth of core callbacks running Lua (lmk_enter) */
  lua_State *entered;    /* the innermost Lua entered by momoko: the coroutine lmk_resume
                          * resumes, or the main thread in a core callback (lmk_enter);
                          * NULL outside momoko and while a loop run by momoko runs */
  int closing;           /* shutting down: no Lua from callbacks any more */
  int nhandles;          /* live libuv users: set_loop needs 0 */
  /* set by lfuture: moves its next-turn timer (not counted in nhandles) to the loop now
   * in use; runs no Lua */
  void (*loop_changed)(lua_State *L, struct lmk_state *st);
  lmk_closer *closers;   /* closed at shutdown, newest first */
} lmk_state;

/* Creates the state of L at the first luaopen (later calls find it). */
lmk_state *lmk_state_open(lua_State *L);
/* The state of L (raises if momoko.core is not loaded, which cannot happen). */
lmk_state *lmk_state_of(lua_State *L);
/* The userdata at idx when its metatable is upvalue 1 of the running C function (the
 * methods of a type carry their metatable so: no registry lookup); otherwise what
 * luaL_checkudata(L, idx, tname) gives, which raises its usual message for anything
 * else. */
void *lmk_check_self(lua_State *L, int idx, const char *tname);
/* The loop in use, chosen on first call: luv's if luv is loaded in L, else libuv's
 * default. Raises only for lack of memory. */
mk_loop *lmk_loop_in_use(lua_State *L, lmk_state *st);
/* The loop for a new connection, pool or timer: lmk_loop_in_use, after
 * lmk_check_loop. */
mk_loop *lmk_loop(lua_State *L, lmk_state *st);
/* Raises InterfaceError (saying what to do) when the loop was chosen by momoko, not
 * given, and luv, loaded later, runs another one: uv.run() would never drive momoko. */
void lmk_check_loop(lua_State *L, lmk_state *st);
/* 1 if the loop is running: a run by momoko, a run by luv (uv.loop_mode()), or a loop
 * that a C host gave with momoko_set_loop (the host declared it runs it, and libuv
 * cannot tell). May call luv's loop_mode, which runs no user Lua. */
int lmk_loop_running(lua_State *L, lmk_state *st);
/* 1 if an error raised now in the coroutine L reaches momoko (or the user's own pcall)
 * before any loop callback of someone else: L is the coroutine momoko resumes
 * innermost (st->entered), or momoko is in a core callback (st->entered is the main
 * thread), whose Lua, and every coroutine it resumes, runs below lmk_enter's pcall. A
 * coroutine resumed by Lua code of a coroutine momoko resumed is not: that code may be
 * a luv callback under uv.run() or momoko.run() inside the coroutine. Runs no Lua. */
int lmk_may_raise(const lmk_state *st, lua_State *L);
/* The one uv_run guard. Raises InterfaceError when the loop cannot be run here: a C
 * host runs it (a message naming who), it runs already or a core callback is running
 * Lua (refusal), or as lmk_check_loop. Then runs the loop: to the end when done is
 * NULL, else one iteration at a time until done(ud) is true. Returns 0, or -1 when the
 * loop ran out of work before done(ud). */
int lmk_run_loop(lua_State *L, lmk_state *st, int (*done)(void *ud), void *ud, const char *who,
                 const char *refusal);

/* Enters Lua from a core callback: runs fn(a, b) as light userdata under lua_pcall on
 * the main thread, counted in st->callbacks, with st->entered the main thread. An error
 * goes to on_error (lmk_report). Returns the pcall status, or LUA_ERRMEM without running
 * fn (a line on stderr) when the main thread's stack has no room left. */
int lmk_enter(lmk_state *st, lua_CFunction fn, void *a, void *b);

/* Registers c (its close set) to be closed at shutdown; lmk_closer_remove takes it off
 * again (idempotent). Neither allocates. */
void lmk_closer_add(lmk_state *st, lmk_closer *c);
void lmk_closer_remove(lmk_closer *c);

/* Adds fns to the private table of the module table on top (module._private, made by
 * luaopen; init.lua takes it out of the module, so user code cannot reach it). */
void lmk_add_private(lua_State *L, const luaL_Reg *fns);
/* Pushes a new empty table whose keys (mode "k") or values (mode "v") are weak. */
void lmk_push_weak_table(lua_State *L, const char *mode);
/* Adds run, loop and set_loop to the module table on top, and puts momoko.h's C API
 * (momoko_set_loop) in the registry. */
void lmk_open_state(lua_State *L);

#endif
