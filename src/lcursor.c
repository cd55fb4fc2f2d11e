/* lcursor: momoko.Cursor, a userdata over one PGresult, which it owns and clears once
 * (close or __gc). Rows are converted when fetched, straight from the result.
 * User value 1: a table with the query text, per-column Lua decoders (by column
 * number) and, for dict rows, column names (by -column number). */
#include <stdlib.h>
#include <string.h>

#include "lmomoko.h"
#include "mk_text.h"

/* How a column's text becomes a Lua value. */
enum {
  D_TEXT,  /* string as is (numeric, dates, uuid, json unless registered, ...) */
  D_INT,   /* int2, int4, int8, oid */
  D_FLOAT, /* float4, float8 */
  D_BOOL,
  D_BYTEA,
  D_LUA,       /* a registered decoder fn(text) */
  D_ARRAY = 16 /* D_ARRAY + element decoding */
};

typedef struct lcursor {
  PGresult *res; /* NULL once closed */
  int nrows, ncols, pos;
  int dict;
  int closed; /* close() was called (res may also be NULL for a result-less cursor) */
  lua_Integer arraysize;
  unsigned char dec[]; /* per column */
} lcursor;

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701

static int builtin_decoder(Oid oid) {
  switch (oid) {
  case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID: return D_INT;
  case OID_FLOAT4: case OID_FLOAT8: return D_FLOAT;
  case OID_BOOL: return D_BOOL;
  case OID_BYTEA: return D_BYTEA;
  /* arrays of the above */
  case 1005: case 1007: case 1016: case 1028: return D_ARRAY + D_INT;
  case 1021: case 1022: return D_ARRAY + D_FLOAT;
  case 1000: return D_ARRAY + D_BOOL;
  case 1001: return D_ARRAY + D_BYTEA;
  /* arrays of text-like and other types: elements as text */
  case 1009: case 1015: case 1014: case 1003: case 1231: case 199: case 3807:
  case 1182: case 1115: case 1185: case 1183: case 1270: case 1187: case 2951:
  case 1041: case 651: case 1040: case 1002: case 1561: case 1563: case 2287:
    return D_ARRAY + D_TEXT;
  default: return D_TEXT;
  }
}

static lcursor *check_cursor(lua_State *L, int idx) { return luaL_checkudata(L, idx, LMK_CURSOR); }

static void push_null(lua_State *L) { lua_pushlightuserdata(L, NULL); }

/* Pushes one scalar decoded by kind d (not D_LUA, not an array). */
static void push_scalar(lua_State *L, int d, const char *s, size_t len) {
  switch (d) {
  case D_INT:
    lua_pushinteger(L, (lua_Integer)strtoll(s, NULL, 10));
    return;
  case D_FLOAT:
    lua_pushnumber(L, (lua_Number)strtod(s, NULL));
    return;
  case D_BOOL:
    lua_pushboolean(L, len > 0 && s[0] == 't');
    return;
  case D_BYTEA: {
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len ? len : 1);
    ssize_t n = mk_bytea_decode(s, len, out);
    if (n < 0) luaL_error(L, "malformed bytea value from the server");
    luaL_pushresultsize(&b, (size_t)n);
    return;
  }
  default:
    lua_pushlstring(L, s, len);
  }
}

/* Array parsing into nested Lua tables. Elements need NUL-terminated text for
 * strtoll/strtod: numbers are copied to a small buffer first. */
typedef struct array_ctx {
  lua_State *L;
  int elem;    /* D_* of the elements */
  int fnidx;   /* stack index of an element decoder function, or 0 */
  int depth;
  lua_Integer count[MK_TEXT_MAXDEPTH + 1];
} array_ctx;

static int arr_open(void *ud) {
  array_ctx *a = ud;
  luaL_checkstack(a->L, 3, "array too deep");
  lua_newtable(a->L);
  a->count[++a->depth] = 0;
  return 0;
}

static int arr_close(void *ud) {
  array_ctx *a = ud;
  if (--a->depth > 0) lua_rawseti(a->L, -2, ++a->count[a->depth]);
  return 0;
}

static int arr_elem(void *ud, const char *s, size_t len, int is_null) {
  array_ctx *a = ud;
  lua_State *L = a->L;
  if (is_null) {
    push_null(L);
  } else if (a->fnidx) {
    lua_pushvalue(L, a->fnidx);
    lua_pushlstring(L, s, len);
    lua_call(L, 1, 1);
  } else if (a->elem == D_INT || a->elem == D_FLOAT) {
    char num[64];
    if (len >= sizeof num) len = sizeof num - 1;
    memcpy(num, s, len);
    num[len] = '\0';
    push_scalar(L, a->elem, num, len);
  } else {
    push_scalar(L, a->elem, s, len);
  }
  lua_rawseti(L, -2, ++a->count[a->depth]);
  return 0;
}

static void push_array(lua_State *L, int elem, int fnidx, const char *s, size_t len) {
  static const mk_array_sink proto = {arr_open, arr_close, arr_elem, NULL};
  mk_array_sink sink = proto;
  array_ctx a;
  char *scratch = lua_newuserdatauv(L, len + 1, 0); /* freed by the GC, even on error */
  int top = lua_gettop(L);
  a.L = L;
  a.elem = elem;
  a.fnidx = fnidx;
  a.depth = 0;
  sink.ud = &a;
  if (mk_array_parse(s, len, ',', scratch, &sink) != 0 || lua_gettop(L) != top + 1) {
    lua_settop(L, top);
    lua_pushlstring(L, s, len); /* not an array literal after all: its text */
  }
  lua_remove(L, top);
}

/* Pushes the value of row, col. Needs the cursor's user value table at uvidx. */
static void push_value(lua_State *L, lcursor *cur, int uvidx, int row, int col) {
  const char *s;
  size_t len;
  int d = cur->dec[col];
  if (PQgetisnull(cur->res, row, col)) {
    push_null(L);
    return;
  }
  s = PQgetvalue(cur->res, row, col);
  len = (size_t)PQgetlength(cur->res, row, col);
  if (d == D_LUA) {
    lua_rawgeti(L, uvidx, col + 1);
    lua_pushlstring(L, s, len);
    lua_call(L, 1, 1);
  } else if (d == D_ARRAY + D_LUA) {
    lua_rawgeti(L, uvidx, col + 1);
    push_array(L, D_TEXT, lua_gettop(L), s, len);
    lua_remove(L, -2);
  } else if (d >= D_ARRAY) {
    push_array(L, d - D_ARRAY, 0, s, len);
  } else {
    push_scalar(L, d, s, len);
  }
}

static void push_row(lua_State *L, lcursor *cur, int row) {
  int col, uv;
  luaL_checkstack(L, 6, "cursor row");
  lua_getiuservalue(L, 1, 1);
  uv = lua_gettop(L);
  lua_createtable(L, cur->dict ? 0 : cur->ncols, cur->dict ? cur->ncols : 0);
  for (col = 0; col < cur->ncols; col++) {
    if (cur->dict) lua_rawgeti(L, uv, -(col + 1));
    push_value(L, cur, uv, row, col);
    if (cur->dict)
      lua_rawset(L, -3);
    else
      lua_rawseti(L, -2, col + 1);
  }
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

static void fetch_n(lua_State *L, lcursor *cur, lua_Integer n) {
  lua_Integer i;
  if (n > cur->nrows - cur->pos) n = cur->nrows - cur->pos;
  if (n < 0) n = 0;
  lua_createtable(L, (int)n, 0);
  for (i = 1; i <= n; i++) {
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

/* The decoder for oid from the connection's table (at decoders, may be 0) or the
 * global one (registry "momoko.decoders"); pushes it (a function, or a table
 * {array = fn} for arrays of a registered type) or nothing. */
static int find_decoder(lua_State *L, int decoders, Oid oid) {
  if (decoders) {
    if (lua_rawgeti(L, decoders, (lua_Integer)oid) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "momoko.decoders");
  if (lua_rawgeti(L, -1, (lua_Integer)oid) != LUA_TNIL) {
    lua_remove(L, -2);
    return 1;
  }
  lua_pop(L, 2);
  return 0;
}

void lmk_cursor_push(lua_State *L, PGresult *res, const char *query, int dict, int decoders) {
  int ncols = res ? PQnfields(res) : 0, col, uv;
  lcursor *cur;
  if (decoders) decoders = lua_absindex(L, decoders);
  cur = lua_newuserdatauv(L, sizeof *cur + (size_t)ncols, 1);
  cur->res = NULL;
  luaL_setmetatable(L, LMK_CURSOR);
  cur->res = res; /* owned from here: __gc clears it even if the rest raises */
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
    if (find_decoder(L, decoders, oid)) {
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "array");
        lua_remove(L, -2);
        cur->dec[col] = D_ARRAY + D_LUA;
      } else {
        cur->dec[col] = D_LUA;
      }
      lua_rawseti(L, uv, col + 1);
    } else {
      cur->dec[col] = (unsigned char)builtin_decoder(oid);
    }
    if (dict) {
      lua_pushstring(L, PQfname(res, col));
      lua_rawseti(L, uv, -(col + 1));
    }
  }
  lua_setiuservalue(L, -2, 1);
}

/* core.hstore_decode(text): the table of an hstore's text form. */
static int hstore_pair(void *ud, const char *k, size_t kl, const char *v, size_t vl, int vnull) {
  lua_State *L = ud;
  lua_pushlstring(L, k, kl);
  if (vnull)
    push_null(L);
  else
    lua_pushlstring(L, v, vl);
  lua_rawset(L, -3);
  return 0;
}

static int l_hstore_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char *scratch = lua_newuserdatauv(L, len + 1, 0);
  lua_newtable(L);
  if (mk_hstore_parse(s, len, scratch, hstore_pair, L) != 0)
    return lmk_raise(L, MK_ERR_DATA, "malformed hstore value");
  return 1;
}

/* momoko.register_type(oid, fn): decoder for every connection (nil removes it). */
static int l_register_type(lua_State *L) {
  int ok;
  lua_Integer oid = lua_tointegerx(L, 1, &ok);
  if (lua_type(L, 1) != LUA_TNUMBER || !ok || oid <= 0 || oid > 0xffffffffLL)
    return lmk_raise(L, MK_ERR_INTERFACE, "register_type: oid must be a type OID (a positive integer), got %s",
                     luaL_typename(L, 1));
  if (!lua_isnoneornil(L, 2) && !lua_isfunction(L, 2) && !lua_istable(L, 2))
    return lmk_raise(L, MK_ERR_INTERFACE, "register_type: fn must be a function or nil, got %s", luaL_typename(L, 2));
  lua_settop(L, 2);
  lua_getfield(L, LUA_REGISTRYINDEX, "momoko.decoders");
  lua_insert(L, 2);
  lua_rawseti(L, 2, oid);
  return 0;
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
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "momoko.decoders");
  lua_pushcfunction(L, l_hstore_decode);
  lua_setfield(L, -2, "hstore_decode");
  lua_pushcfunction(L, l_register_type);
  lua_setfield(L, -2, "register_type");
}
