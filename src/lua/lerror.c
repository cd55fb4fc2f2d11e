/* lerror: momoko.Error objects: tables with kind, message and the server's fields,
 * sharing one metatable whose __tostring gives "Kind: message (SQLSTATE xxxxx)". */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lerror.h"

static void push_trimmed(lua_State *L, const char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) n--;
  lua_pushlstring(L, s, n);
}

void lmk_push_error(lua_State *L, mk_kind kind, const char *message) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, mk_kind_name(kind));
  lua_setfield(L, -2, "kind");
  push_trimmed(L, message);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, LMK_ERROR);
}

void lmk_push_mk_error(lua_State *L, const mk_error *e) {
  static const struct {
    int code;
    const char *name;
  } fields[] = {
    {PG_DIAG_SQLSTATE, "sqlstate"},        {PG_DIAG_SEVERITY_NONLOCALIZED, "severity"},
    {PG_DIAG_MESSAGE_DETAIL, "detail"},    {PG_DIAG_MESSAGE_HINT, "hint"},
    {PG_DIAG_STATEMENT_POSITION, "position"}, {PG_DIAG_SCHEMA_NAME, "schema"},
    {PG_DIAG_TABLE_NAME, "table"},         {PG_DIAG_COLUMN_NAME, "column"},
    {PG_DIAG_CONSTRAINT_NAME, "constraint"},
  };
  size_t i;
  lmk_push_error(L, e->kind, mk_error_message(e));
  if (!e->res) return;
  for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    const char *v = PQresultErrorField(e->res, fields[i].code);
    if (!v) continue;
    if (fields[i].code == PG_DIAG_STATEMENT_POSITION)
      lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
    else
      lua_pushstring(L, v);
    lua_setfield(L, -2, fields[i].name);
  }
}

int lmk_raise(lua_State *L, mk_kind kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lmk_push_error(L, kind, lua_tostring(L, -1));
  return lua_error(L);
}

/* The default handler: writes the error at 1 and the traceback at 2 (or nil) to
 * stderr; the error's __tostring may raise, hence run protected. */
static int print_unhandled(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  const char *tb = lua_tostring(L, 2);
  fprintf(stderr, "momoko: unhandled error: %s\n%s%s", msg, tb ? tb : "", tb ? "\n" : "");
  fflush(stderr);
  return 0;
}

void lmk_report_traceback(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "momoko.on_error");
  if (lua_isfunction(L, -1)) {
    lua_insert(L, -3);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) return;
    /* the handler itself failed: fall back to stderr with its error */
    lua_pushnil(L);
  } else {
    lua_pop(L, 1);
  }
  lua_pushcfunction(L, print_unhandled);
  lua_insert(L, -3);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "momoko: unhandled error whose __tostring failed: %s\n",
            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
}

void lmk_report(lua_State *L) {
  lua_pushnil(L);
  lmk_report_traceback(L);
}

static int error_tostring(lua_State *L) {
  const char *kind, *msg, *state;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "kind");
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "sqlstate");
  kind = lua_tostring(L, 2);
  msg = lua_tostring(L, 3);
  state = lua_tostring(L, 4);
  if (state)
    lua_pushfstring(L, "%s: %s (SQLSTATE %s)", kind ? kind : "Error", msg ? msg : "", state);
  else
    lua_pushfstring(L, "%s: %s", kind ? kind : "Error", msg ? msg : "");
  return 1;
}

/* momoko.is(err, kind): true if err's kind is kind or descends from it. */
static int error_is(lua_State *L) {
  const char *want, *kind;
  int k;
  if (lua_type(L, 2) != LUA_TSTRING)
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.is: kind must be a string, got %s", luaL_typename(L, 2));
  want = lua_tostring(L, 2);
  if (!lua_istable(L, 1) || !lua_getmetatable(L, 1)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  luaL_getmetatable(L, LMK_ERROR);
  if (!lua_rawequal(L, -1, -2)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_getfield(L, 1, "kind");
  kind = lua_tostring(L, -1);
  for (k = MK_ERR_ERROR; kind && k < MK_ERR_COUNT; k++) {
    if (strcmp(mk_kind_name((mk_kind)k), kind) == 0) break;
  }
  while (kind && k > MK_ERR_NONE && k < MK_ERR_COUNT) {
    if (strcmp(mk_kind_name((mk_kind)k), want) == 0) {
      lua_pushboolean(L, 1);
      return 1;
    }
    k = mk_kind_parent((mk_kind)k);
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* momoko.error(kind, message): a new error object (for Lua code of the library). */
static int error_new(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *msg = luaL_checkstring(L, 2);
  int k;
  for (k = MK_ERR_ERROR; k < MK_ERR_COUNT; k++)
    if (strcmp(mk_kind_name((mk_kind)k), kind) == 0) break;
  if (k == MK_ERR_COUNT) return luaL_argerror(L, 1, "unknown error kind");
  lmk_push_error(L, (mk_kind)k, msg);
  return 1;
}

/* momoko.on_error(fn): the handler of errors nobody can receive, called as
 * fn(err, traceback) (nil: the default, stderr). */
static int on_error(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "momoko.on_error");
  return 0;
}

void lmk_open_error(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"is", error_is}, {"error", error_new}, {"on_error", on_error}, {NULL, NULL}};
  int k;
  luaL_newmetatable(L, LMK_ERROR);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, LMK_ERROR);
  lua_setfield(L, -2, "__name");
  lua_setfield(L, -2, "Error"); /* module.Error = the metatable */
  luaL_setfuncs(L, fns, 0);
  /* module.kinds: name -> parent name, for documentation and introspection */
  lua_createtable(L, 0, MK_ERR_COUNT);
  for (k = MK_ERR_ERROR; k < MK_ERR_COUNT; k++) {
    mk_kind parent = mk_kind_parent((mk_kind)k);
    if (parent == MK_ERR_NONE)
      lua_pushboolean(L, 0);
    else
      lua_pushstring(L, mk_kind_name(parent));
    lua_setfield(L, -2, mk_kind_name((mk_kind)k));
  }
  lua_setfield(L, -2, "kinds");
}
