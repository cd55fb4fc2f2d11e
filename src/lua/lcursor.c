/* lcursor: momoko.Cursor, a userdata over one PGresult, which it owns and clears once
 * (close or __gc). Rows are converted when fetched, straight from the result.
 * User value 1: a table with the query text, per-column Lua decoders (by column
 * number) and, for dict rows, column names (by -column number). */
#include <stdlib.h>
#include <string.h>

#include "lcursor.h"

#include "lerror.h"
#include "ltypes.h"

typedef struct lcol {
  unsigned char dec; /* LMK_D_* */
  char delim;        /* arrays: the element delimiter */
} lcol;

typedef struct lcursor {
  PGresult *res; /* NULL once closed */
  int nrows, ncols, pos;
  int dict;
  int closed; /* close() was called (res may also be NULL for a result-less cursor) */
  lua_Integer arraysize;
  lcol col[]; /* per column */
} lcursor;

static lcursor *check_cursor(lua_State *L, int idx) { return luaL_checkudata(L, idx, LMK_CURSOR); }

/* Raises unless the result is still there: Lua code run while a row is built (a
 * decoder, or a finalizer run by a GC step) may have closed the cursor. */
static void still_open(lua_State *L, lcursor *cur) {
  if (!cur->res) lmk_raise(L, MK_ERR_INTERFACE, "cursor was closed while a row was being fetched");
}

/* Pushes the value of row, col. Needs the cursor's user value table at uvidx.
 * lmk_type_push copies the text before any Lua code runs. */
static void push_value(lua_State *L, lcursor *cur, int uvidx, int row, int col) {
  int d = cur->col[col].dec, fnidx = 0;
  if (PQgetisnull(cur->res, row, col)) {
    lmk_push_null(L);
    return;
  }
  if (d == LMK_D_LUA || d == LMK_D_ARRAY + LMK_D_LUA) {
    lua_rawgeti(L, uvidx, col + 1);
    fnidx = lua_gettop(L);
  }
  lmk_type_push(L, d, cur->col[col].delim, fnidx, PQgetvalue(cur->res, row, col),
                (size_t)PQgetlength(cur->res, row, col));
  if (fnidx) lua_remove(L, fnidx);
}

/* Pushes row number row, which the caller has claimed (pos is past it already). Any
 * allocation or decoder may run Lua that fetches from, scrolls or closes this very
 * cursor: the cursor's state is read again after each, never kept across. */
static void push_row(lua_State *L, lcursor *cur, int row) {
  int col, uv;
  luaL_checkstack(L, 6, "cursor row");
  lua_getiuservalue(L, 1, 1);
  uv = lua_gettop(L);
  lua_createtable(L, cur->dict ? 0 : cur->ncols, cur->dict ? cur->ncols : 0);
  for (col = 0; col < cur->ncols; col++) {
    still_open(L, cur);
    if (cur->dict) lua_rawgeti(L, uv, -(col + 1));
    push_value(L, cur, uv, row, col);
    if (cur->dict)
      lua_rawset(L, -3);
    else
      lua_rawseti(L, -2, col + 1);
  }
  still_open(L, cur);
  lua_remove(L, uv);
}

static lcursor *open_cursor(lua_State *L) {
  lcursor *cur = check_cursor(L, 1);
  if (cur->closed) lmk_raise(L, MK_ERR_INTERFACE, "cursor is closed");
  return cur;
}

static int c_fetchone(lua_State *L) {
  lcursor *cur = open_cursor(L);
  if (cur->pos >= cur->nrows) return 0;
  push_row(L, cur, cur->pos++);
  return 1;
}

/* Up to n rows. pos and nrows are read again before each row: a re-entrant fetch may
 * have taken rows (they are not returned twice) or closed the cursor (raises). */
static void fetch_n(lua_State *L, lcursor *cur, lua_Integer n) {
  lua_Integer i;
  if (n > cur->nrows - cur->pos) n = cur->nrows - cur->pos;
  if (n < 0) n = 0;
  lua_createtable(L, (int)n, 0);
  for (i = 1; i <= n; i++) {
    if (cur->closed) lmk_raise(L, MK_ERR_INTERFACE, "cursor was closed while rows were being fetched");
    if (cur->pos >= cur->nrows) break;
    push_row(L, cur, cur->pos++);
    lua_rawseti(L, -2, i);
  }
}

static int c_fetchmany(lua_State *L) {
  lcursor *cur = open_cursor(L);
  lua_Integer n = cur->arraysize;
  if (!lua_isnoneornil(L, 2)) {
    int ok;
    n = lua_tointegerx(L, 2, &ok);
    if (lua_type(L, 2) != LUA_TNUMBER || !ok || n < 0)
      return lmk_raise(L, MK_ERR_INTERFACE, "fetchmany: n must be a non-negative integer");
  }
  lua_settop(L, 1);
  fetch_n(L, cur, n);
  return 1;
}

static int c_fetchall(lua_State *L) {
  lcursor *cur = open_cursor(L);
  lua_settop(L, 1);
  fetch_n(L, cur, cur->nrows - cur->pos);
  return 1;
}

static int rows_iter(lua_State *L) {
  lua_settop(L, 1);
  return c_fetchone(L);
}

static int c_rows(lua_State *L) {
  open_cursor(L);
  lua_pushcfunction(L, rows_iter);
  lua_pushvalue(L, 1);
  return 2;
}

static int c_scroll(lua_State *L) {
  lcursor *cur = open_cursor(L);
  const char *mode = "relative";
  lua_Integer n, to;
  int ok;
  n = lua_tointegerx(L, 2, &ok);
  if (lua_type(L, 2) != LUA_TNUMBER || !ok) return lmk_raise(L, MK_ERR_INTERFACE, "scroll: n must be an integer");
  if (!lua_isnoneornil(L, 3)) {
    if (lua_type(L, 3) != LUA_TSTRING) return lmk_raise(L, MK_ERR_INTERFACE, "scroll: mode must be 'relative' or 'absolute'");
    mode = lua_tostring(L, 3);
  }
  if (strcmp(mode, "relative") == 0) {
    /* both within [-nrows - 1, nrows + 1] before adding: no overflow */
    if (n < -(lua_Integer)cur->nrows - 1 || n > (lua_Integer)cur->nrows + 1)
      return lmk_raise(L, MK_ERR_PROGRAMMING, "scroll: destination out of range (rownumber %d, n %I, %d rows)",
                       cur->pos, (LUAI_UACINT)n, cur->nrows);
    to = cur->pos + n;
  } else if (strcmp(mode, "absolute") == 0) {
    to = n;
  } else {
    return lmk_raise(L, MK_ERR_INTERFACE, "scroll: mode must be 'relative' or 'absolute'");
  }
  if (to < 0 || to > cur->nrows)
    return lmk_raise(L, MK_ERR_PROGRAMMING, "scroll: position %I out of range (%d rows)", (LUAI_UACINT)to, cur->nrows);
  cur->pos = (int)to;
  return 0;
}

static int c_close(lua_State *L) {
  lcursor *cur = check_cursor(L, 1);
  PQclear(cur->res);
  cur->res = NULL;
  cur->nrows = 0;
  cur->pos = 0;
  cur->closed = 1;
  return 0;
}

static int c_len(lua_State *L) {
  lua_pushinteger(L, check_cursor(L, 1)->nrows);
  return 1;
}

static int c_rowcount(lua_State *L, lcursor *cur) {
  const char *t;
  if (!cur->res) {
    lua_pushinteger(L, -1);
  } else if (PQresultStatus(cur->res) == PGRES_TUPLES_OK) {
    lua_pushinteger(L, cur->nrows);
  } else {
    t = PQcmdTuples(cur->res);
    lua_pushinteger(L, (t && *t) ? (lua_Integer)strtoll(t, NULL, 10) : -1);
  }
  return 1;
}

static int c_description(lua_State *L, lcursor *cur) {
  int col;
  if (!cur->res || cur->ncols == 0) return 0;
  lua_createtable(L, cur->ncols, 0);
  for (col = 0; col < cur->ncols; col++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, PQfname(cur->res, col));
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)PQftype(cur->res, col));
    lua_setfield(L, -2, "type_code");
    lua_rawseti(L, -2, col + 1);
  }
  return 1;
}

static int c_index(lua_State *L) {
  lcursor *cur = check_cursor(L, 1);
  const char *k = lua_tostring(L, 2);
  if (lua_getmetatable(L, 1) && lua_getfield(L, -1, "methods") && (lua_pushvalue(L, 2), lua_rawget(L, -2)) != LUA_TNIL)
    return 1;
  if (!k) return 0;
  if (strcmp(k, "rowcount") == 0) return c_rowcount(L, cur);
  if (strcmp(k, "rownumber") == 0) {
    lua_pushinteger(L, cur->pos);
    return 1;
  }
  if (strcmp(k, "description") == 0) return c_description(L, cur);
  if (strcmp(k, "statusmessage") == 0) {
    if (!cur->res) return 0;
    lua_pushstring(L, PQcmdStatus(cur->res));
    return 1;
  }
  if (strcmp(k, "query") == 0) {
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, "query");
    return 1;
  }
  if (strcmp(k, "arraysize") == 0) {
    lua_pushinteger(L, cur->arraysize);
    return 1;
  }
  return 0;
}

static int c_newindex(lua_State *L) {
  lcursor *cur = check_cursor(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "arraysize") == 0) {
    if (!lua_isinteger(L, 3) || lua_tointeger(L, 3) < 1)
      return lmk_raise(L, MK_ERR_INTERFACE, "arraysize must be a positive integer");
    cur->arraysize = lua_tointeger(L, 3);
    return 0;
  }
  return lmk_raise(L, MK_ERR_INTERFACE, "cursor field '%s' is read-only", k ? k : "?");
}

static int c_tostring(lua_State *L) {
  lcursor *cur = check_cursor(L, 1);
  lua_pushfstring(L, "<momoko.Cursor rows=%d rownumber=%d%s>", cur->nrows, cur->pos, cur->res ? "" : " closed");
  return 1;
}

void lmk_cursor_push(lua_State *L, PGresult **resp, const char *query, int dict, int owneruv) {
  PGresult *res = *resp;
  int ncols = res ? PQnfields(res) : 0, col, uv;
  lcursor *cur;
  if (owneruv) owneruv = lua_absindex(L, owneruv);
  cur = lua_newuserdatauv(L, sizeof *cur + (size_t)ncols * sizeof(lcol), 1);
  cur->res = NULL;
  luaL_setmetatable(L, LMK_CURSOR);
  cur->res = res; /* owned from here: __gc clears it even if the rest raises */
  *resp = NULL;
  cur->ncols = ncols;
  cur->nrows = res ? PQntuples(res) : 0;
  cur->pos = 0;
  cur->dict = dict;
  cur->closed = 0;
  cur->arraysize = 1;
  lua_createtable(L, ncols, dict ? ncols + 1 : 1);
  uv = lua_gettop(L);
  lua_pushstring(L, query ? query : "");
  lua_setfield(L, uv, "query");
  for (col = 0; col < ncols; col++) {
    Oid oid = PQftype(res, col);
    char delim;
    int d = lmk_type_decoding(L, owneruv, oid, &delim);
    cur->col[col].dec = (unsigned char)d;
    cur->col[col].delim = delim;
    if (d == LMK_D_LUA || d == LMK_D_ARRAY + LMK_D_LUA) lua_rawseti(L, uv, col + 1);
    if (dict) {
      lua_pushstring(L, PQfname(res, col));
      lua_rawseti(L, uv, -(col + 1));
    }
  }
  lua_setiuservalue(L, -2, 1);
}

void lmk_open_cursor(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"fetchone", c_fetchone}, {"fetchmany", c_fetchmany}, {"fetchall", c_fetchall},
    {"rows", c_rows},         {"scroll", c_scroll},       {"close", c_close},
    {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__index", c_index}, {"__newindex", c_newindex}, {"__len", c_len},
    {"__gc", c_close},    {"__close", c_close},       {"__tostring", c_tostring},
    {NULL, NULL}};
  luaL_newmetatable(L, LMK_CURSOR);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "methods");
  lua_pop(L, 1);
}
