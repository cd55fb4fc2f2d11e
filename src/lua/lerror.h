/* lerror: momoko.Error objects (tables with kind, message and the server's fields),
 * raising them, and reporting errors nobody can receive (momoko.on_error). The bottom
 * of the binding with lstate: it needs nothing of the binding. Internal. */
#ifndef LERROR_H
#define LERROR_H

#include <lauxlib.h>
#include <lua.h>

#include "mk_error.h"

#define LMK_ERROR "momoko.Error"

/* Pushes a new momoko.Error of kind with message. */
void lmk_push_error(lua_State *L, mk_kind kind, const char *message);
/* Pushes the Lua form of a core error (all server fields included). */
void lmk_push_mk_error(lua_State *L, const mk_error *e);
/* Raises a momoko.Error of kind with a formatted message (does not return). */
int lmk_raise(lua_State *L, mk_kind kind, const char *fmt, ...);
/* Hands the error below the top and the traceback on top (a string or nil; both
 * popped) to momoko.on_error as fn(err, traceback), or without a handler (or when it
 * fails) writes them to stderr. Runs Lua (the handler, __tostring); never raises. */
void lmk_report_traceback(lua_State *L);
/* lmk_report_traceback with no traceback: the error on top (popped). */
void lmk_report(lua_State *L);
/* Registers the Error metatable and adds is, error, on_error, kinds to the module
 * table on top. */
void lmk_open_error(lua_State *L);

#endif
