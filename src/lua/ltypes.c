/* ltypes: text-format PostgreSQL values to Lua values (see ltypes.h). */
#include "ltypes.h"

#include <stdlib.h>
#include <string.h>

#include "lerror.h"
#include "mk_text.h"

#define OILMK_D_BOOL 16
#define OILMK_D_BYTEA 17
#define OILMK_D_INT8 20
#define OILMK_D_INT2 21
#define OILMK_D_INT4 23
#define OID_OID 26
#define OILMK_D_FLOAT4 700
#define OILMK_D_FLOAT8 701

static int builtin_decoder(Oid oid) {
  switch (oid) {
  case OILMK_D_INT2: case OILMK_D_INT4: case OILMK_D_INT8: case OID_OID: return LMK_D_INT;
  case OILMK_D_FLOAT4: case OILMK_D_FLOAT8: return LMK_D_FLOAT;
  case OILMK_D_BOOL: return LMK_D_BOOL;
  case OILMK_D_BYTEA: return LMK_D_BYTEA;
  /* arrays of the above */
  case 1005: case 1007: case 1016: case 1028: return LMK_D_ARRAY + LMK_D_INT;
  case 1021: case 1022: return LMK_D_ARRAY + LMK_D_FLOAT;
  case 1000: return LMK_D_ARRAY + LMK_D_BOOL;
  case 1001: return LMK_D_ARRAY + LMK_D_BYTEA;
  /* arrays of text-like and other types: elements as text */
  case 1009: case 1015: case 1014: case 1003: case 1231: case 199: case 3807:
  case 1182: case 1115: case 1185: case 1183: case 1270: case 1187: case 2951:
  case 1041: case 651: case 1040: case 1002: case 1561: case 1563: case 2287:
    return LMK_D_ARRAY + LMK_D_TEXT;
  default: return LMK_D_TEXT;
  }
}

void lmk_push_null(lua_State *L) { lua_pushlightuserdata(L, NULL); }

/* Pushes one scalar decoded by kind d (not LMK_D_LUA, not an array). */
static void push_scalar(lua_State *L, int d, const char *s, size_t len) {
  switch (d) {
  case LMK_D_INT:
    lua_pushinteger(L, (lua_Integer)strtoll(s, NULL, 10));
    return;
  case LMK_D_FLOAT:
    lua_pushnumber(L, (lua_Number)strtod(s, NULL));
    return;
  case LMK_D_BOOL:
    lua_pushboolean(L, len > 0 && s[0] == 't');
    return;
  case LMK_D_BYTEA: {
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
    lmk_push_null(L);
  } else if (a->fnidx) {
    lua_pushvalue(L, a->fnidx);
    lua_pushlstring(L, s, len);
    lua_call(L, 1, 1);
  } else if (a->elem == LMK_D_INT || a->elem == LMK_D_FLOAT) {
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

/* The decoder for oid from the connection's table (at decoders, may be 0) or the
 * global one (registry "momoko.decoders"); pushes it (a function, or a table
 * {array = fn} for arrays of a registered type) or nothing. */
static int find_decoder(lua_State *L, int decoders, Oid oid) {
  if (decoders) decoders = lua_absindex(L, decoders);
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

int lmk_type_decoding(lua_State *L, int decoders, Oid oid) {
  if (find_decoder(L, decoders, oid)) {
    if (!lua_istable(L, -1)) return LMK_D_LUA;
    lua_getfield(L, -1, "array");
    lua_remove(L, -2);
    return LMK_D_ARRAY + LMK_D_LUA;
  }
  return builtin_decoder(oid);
}

void lmk_type_push(lua_State *L, int dec, int fnidx, const char *s, size_t len) {
  if (dec == LMK_D_LUA) {
    lua_pushvalue(L, fnidx);
    lua_pushlstring(L, s, len);
    lua_call(L, 1, 1);
  } else if (dec == LMK_D_ARRAY + LMK_D_LUA) {
    push_array(L, LMK_D_TEXT, fnidx, s, len);
  } else if (dec >= LMK_D_ARRAY) {
    push_array(L, dec - LMK_D_ARRAY, 0, s, len);
  } else {
    push_scalar(L, dec, s, len);
  }
}

/* core.hstore_decode(text): the table of an hstore's text form. */
static int hstore_pair(void *ud, const char *k, size_t kl, const char *v, size_t vl, int vnull) {
  lua_State *L = ud;
  lua_pushlstring(L, k, kl);
  if (vnull)
    lmk_push_null(L);
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

void lmk_open_types(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "momoko.decoders");
  lua_pushcfunction(L, l_hstore_decode);
  lua_setfield(L, -2, "hstore_decode");
  lua_pushcfunction(L, l_register_type);
  lua_setfield(L, -2, "register_type");
}
