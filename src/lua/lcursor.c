/* lcursor: momoko.Cursor, a userdata over one PGresult, which it owns and clears once
 * (close or __gc). Rows are converted when fetched, straight from the result.
 * User value 1: the query text. User value 2, only for dict rows or columns with a Lua
 * decoder (else nil): a table with, for dict rows, the column names at 1..ncols and
 * the decoders at ncols + 1..2 * ncols. Everything a row needs but its values is
 * resolved once, when the cursor is made: the decoding of each column, and the names. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lcursor.h"

#include "lerror.h"
#include "lstate.h"
#include "ltypes.h"

#define UV_QUERY 1
#define UV_AUX 2

typedef struct lcol {
  unsigned char dec; /* LMK_D_* */
  char delim;        /* arrays: the element delimiter */
} lcol;

typedef struct lcursor {
  PGresult *res; /* NULL once closed */
  int nrows, ncols, pos;
  int dict;
  int closed; /* close() was called (res may also be NULL for a result-less cursor) */
  int aux;    /* user value 2 is a table */
  lua_Integer arraysize;
  lcol col[]; /* per column */
} lcursor;

/* The cursor at idx. Every function of the metatable has it as upvalue 1 (see
 * lmk_check_self) and the methods table as upvalue 2. */
static lcursor *check_cursor(lua_State *L, int idx) { return lmk_check_self(L, idx, LMK_CURSOR); }

/* Raises unless the result is still there: Lua code run while a row is built (a
 * decoder, or a finalizer run by a GC step) may have closed the cursor. */
static void still_open(lua_State *L, lcursor *cur) {
  if (!cur->res) lmk_raise(L, MK_ERR_INTERFACE, "cursor was closed while a row was being fetched");
}

/* Pushes the value of row, col; aux is the stack index of the cursor's user value 2 (0
 * when it has none). libpq gives a NULL as "", so only an empty text asks PQgetisnull.
 * Every push copies or reads the text before a GC step can run a finalizer that clears
 * the result. */
static void push_value(lua_State *L, lcursor *cur, int aux, int row, int col) {
  int d = cur->col[col].dec, fnidx;
  const char *s = PQgetvalue(cur->res, row, col);
  if (!s[0] && PQgetisnull(cur->res, row, col)) {
    lmk_push_null(L);
    return;
  }
  switch (d) {
  case LMK_D_TEXT:
    lua_pushlstring(L, s, (size_t)PQgetlength(cur->res, row, col));
    return;
  case LMK_D_INT: case LMK_D_FLOAT: case LMK_D_BOOL:
    lmk_type_push_number(L, d, s);
    return;
  case LMK_D_LUA: case LMK_D_ARRAY + LMK_D_LUA:
    lua_rawgeti(L, aux, cur->ncols + col + 1);
    fnidx = lua_gettop(L);
    lmk_type_push(L, d, cur->col[col].delim, fnidx, s, (size_t)PQgetlength(cur->res, row, col));
    lua_remove(L, fnidx);
    return;
  default:
    lmk_type_push(L, d, cur->col[col].delim, 0, s, (size_t)PQgetlength(cur->res, row, col));
  }
}

/* Pushes row number row, which the caller has claimed (pos is past it already); aux
 * as for push_value, with room on the stack for 4 more values. Any allocation or
 * decoder may run Lua that fetches from, scrolls or closes this very cursor: the
 * cursor's state is read again after each, never kept across. */
static void push_row(lua_State *L, lcursor *cur, int aux, int row) {
  int col, ncols = cur->ncols;
  if (cur->dict) {
    lua_createtable(L, 0, ncols);
    for (col = 0; col < ncols; col++) {
      still_open(L, cur);
      lua_rawgeti(L, aux, col + 1);
      push_value(L, cur, aux, row, col);
      lua_rawset(L, -3);
    }
  } else {
    lua_createtable(L, ncols, 0);
    for (col = 0; col < ncols; col++) {
      still_open(L, cur);
      push_value(L, cur, aux, row, col);
      lua_rawseti(L, -2, col + 1);
    }
  }
  still_open(L, cur);
}

/* Pushes the cursor's user value 2 (or nil) and returns its index, or 0 for nil; with
 * room for push_row. */
static int push_aux(lua_State *L, lcursor *cur) {
  luaL_checkstack(L, 8, "cursor row");
  lua_getiuservalue(L, 1, UV_AUX);
  return cur->aux ? lua_gettop(L) : 0;
}

static lcursor *open_cursor(lua_State *L) {
  lcursor *cur = check_cursor(L, 1);
  if (cur->closed) lmk_raise(L, MK_ERR_INTERFACE, "cursor is closed");
  return cur;
}

static int c_fetchone(lua_State *L) {
  lcursor *cur = open_cursor(L);
  int aux;
  if (cur->pos >= cur->nrows) return 0;
  aux = push_aux(L, cur);
  push_row(L, cur, aux, cur->pos++);
  return 1;
}

/* Up to n rows. pos and nrows are read again before each row: a re-entrant fetch may
 * have taken rows (they are not returned twice) or closed the cursor (raises). */
static void fetch_n(lua_State *L, lcursor *cur, lua_Integer n) {
  lua_Integer i;
  int aux, list;
  if (n > cur->nrows - cur->pos) n = cur->nrows - cur->pos;
  if (n < 0) n = 0;
  aux = push_aux(L, cur);
  lua_createtable(L, (int)n, 0);
  list = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    if (cur->closed) lmk_raise(L, MK_ERR_INTERFACE, "cursor was closed while rows were being fetched");
    if (cur->pos >= cur->nrows) break;
    push_row(L, cur, aux, cur->pos++);
    lua_rawseti(L, list, i);
  }
}

/* From this many rows on, a fetch pauses the collector (fetch_many). */
#define GC_PAUSE_ROWS 1000

/* fetch_n run by lua_pcall: the cursor at 1, n at 2. */
static int fetch_n_call(lua_State *L) {
  fetch_n(L, lua_touserdata(L, 1), lua_tointeger(L, 2));
  return 1;
}

/* fetch_n for the cursor at 1. Every row table made by a large fetch stays reachable
 * from the list until the fetch returns, so a collection cycle during it finds no
 * garbage and only walks those rows again: for such a fetch the collector is paused
 * (unless the program stopped it itself) and restarted after, also when a decoder
 * raises. An allocation that fails still triggers Lua's emergency collection. */
static void fetch_many(lua_State *L, lcursor *cur, lua_Integer n) {
  int status;
  if (n < GC_PAUSE_ROWS || cur->nrows - cur->pos < GC_PAUSE_ROWS || !lua_gc(L, LUA_GCISRUNNING)) {
    fetch_n(L, cur, n);
    return;
  }
  lua_pushcfunction(L, fetch_n_call);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, n);
  lua_gc(L, LUA_GCSTOP);
  status = lua_pcall(L, 2, 1, 0);
  lua_gc(L, LUA_GCRESTART);
  if (status != LUA_OK) lua_error(L);
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
  fetch_many(L, cur, n);
  return 1;
}

static int c_fetchall(lua_State *L) {
  lcursor *cur = open_cursor(L);
  lua_settop(L, 1);
  fetch_many(L, cur, cur->nrows - cur->pos);
  return 1;
}

static int rows_iter(lua_State *L) {
  lua_settop(L, 1);
  return c_fetchone(L);
}

static int c_rows(lua_State *L) {
  open_cursor(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushcclosure(L, rows_iter, 2); /* with the upvalues of check_cursor */
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
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
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
    lua_getiuservalue(L, 1, UV_QUERY);
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

/* A result's memory is libpq's, which the collector does not see: a cursor nobody
 * closes would hold it until a collection that Lua's own allocations alone may bring
 * only much later (a cursor is some 100 bytes of Lua over kilobytes of result). So
 * the collector is told, as if Lua had allocated it (unless the program stopped it). */
static void account(lua_State *L, const PGresult *res) {
  size_t kib = res ? PQresultMemorySize(res) / 1024 : 0;
  if (kib > 0 && lua_gc(L, LUA_GCISRUNNING)) lua_gc(L, LUA_GCSTEP, kib > INT_MAX ? INT_MAX : (int)kib);
}

void lmk_cursor_push(lua_State *L, PGresult **resp, int queryidx, int dict, int owneruv) {
  PGresult *res = *resp;
  int ncols = res ? PQnfields(res) : 0, col, cu, dec, aux = 0;
  lcursor *cur;
  if (owneruv) owneruv = lua_absindex(L, owneruv);
  queryidx = lua_absindex(L, queryidx);
  cur = lua_newuserdatauv(L, sizeof *cur + (size_t)ncols * sizeof(lcol), 2);
  cur->res = NULL;
  luaL_setmetatable(L, LMK_CURSOR);
  cur->res = res; /* owned from here: __gc clears it even if the rest raises */
  *resp = NULL;
  account(L, res);
  cur->ncols = ncols;
  cur->nrows = res ? PQntuples(res) : 0;
  cur->pos = 0;
  cur->dict = dict;
  cur->closed = 0;
  cur->aux = 0;
  cur->arraysize = 1;
  cu = lua_gettop(L);
  lua_pushvalue(L, queryidx);
  lua_setiuservalue(L, cu, UV_QUERY);
  if (ncols == 0) return;
  lmk_type_push_decoders(L, owneruv);
  dec = lua_gettop(L) - 1;
  if (dict) {
    lua_createtable(L, 2 * ncols, 0);
    aux = lua_gettop(L);
    for (col = 0; col < ncols; col++) {
      lua_pushstring(L, PQfname(res, col));
      lua_rawseti(L, aux, col + 1);
    }
  }
  for (col = 0; col < ncols; col++) {
    char delim;
    int d = lmk_type_decoding(L, dec, owneruv, PQftype(res, col), &delim);
    cur->col[col].dec = (unsigned char)d;
    cur->col[col].delim = delim;
    if (d == LMK_D_LUA || d == LMK_D_ARRAY + LMK_D_LUA) {
      if (!aux) {
        lua_createtable(L, 2 * ncols, 0);
        lua_insert(L, -2);
        aux = lua_gettop(L) - 1;
      }
      lua_rawseti(L, aux, ncols + col + 1);
    }
  }
  if (aux) {
    lua_pushvalue(L, aux);
    lua_setiuservalue(L, cu, UV_AUX);
    cur->aux = 1;
  }
  lua_settop(L, cu);
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
  luaL_newlibtable(L, methods);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  lua_pushvalue(L, -2); /* metatable, methods, metatable, methods */
  lua_insert(L, -2);
  luaL_setfuncs(L, meta, 2);
  lua_pop(L, 1);
}

void lmk_cursor_replace(lua_State *L, int idx, PGresult **resp) {
  lcursor *cur = luaL_checkudata(L, idx, LMK_CURSOR);
  PQclear(cur->res);
  cur->res = *resp;
  *resp = NULL;
  /* not account(): the cursor still holds one result, the one before is freed (a
   * stream's cursor, replaced at every row, would charge the collector for each) */
  cur->nrows = cur->res ? PQntuples(cur->res) : 0;
  cur->pos = 0;
  cur->closed = 0;
}
