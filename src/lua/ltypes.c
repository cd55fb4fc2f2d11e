/* ltypes: text-format PostgreSQL values to Lua values (see ltypes.h).
 *
 * Arrays: every array type decodes to a Lua array. The built-in types of PostgreSQL
 * (OIDs below 10000, fixed across versions) are listed below with, for arrays, the
 * element type and its delimiter, so results of built-in types never need the
 * catalog. Any other OID (an extension's type such as hstore[], a table's row type,
 * an enum) is looked up once per Connection or Pool in pg_type (lmk_type_lookup_sql),
 * by lreq.c before the request's future resolves; the answer is kept in the owner's
 * options table (field "types": oid -> elem * 256 + delim, or false for a type that is
 * not an array). */
#include "ltypes.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lerror.h"
#include "mk_text.h"

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701

/* The built-in types that are not arrays (PostgreSQL 15, oid < 10000), sorted. */
static const unsigned short builtin_scalars[] = {
  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 32, 71, 75, 81, 83, 114,
  142, 194, 269, 325, 600, 601, 602, 603, 604, 628, 650, 700, 701, 705, 718, 774, 790,
  829, 869, 1033, 1042, 1043, 1082, 1083, 1114, 1184, 1186, 1248, 1266, 1560, 1562, 1700,
  1790, 2202, 2203, 2204, 2205, 2206, 2249, 2275, 2276, 2277, 2278, 2279, 2280, 2281,
  2283, 2776, 2842, 2843, 2950, 2970, 3115, 3220, 3310, 3361, 3402, 3500, 3614, 3615,
  3642, 3734, 3769, 3802, 3831, 3838, 3904, 3906, 3908, 3910, 3912, 3926, 4066, 4072,
  4089, 4096, 4191, 4451, 4532, 4533, 4534, 4535, 4536, 4537, 4538, 4600, 4601, 5017,
  5038, 5069, 5077, 5078, 5079, 5080, 6101
};

/* The built-in array types: OID, element OID, the element's delimiter; sorted. */
static const struct builtin_array {
  unsigned short oid, elem;
  char delim;
} builtin_arrays[] = {
  {143, 142, ','}, {199, 114, ','}, {210, 71, ','}, {270, 75, ','}, {271, 5069, ','},
  {272, 81, ','}, {273, 83, ','}, {629, 628, ','}, {651, 650, ','}, {719, 718, ','},
  {775, 774, ','}, {791, 790, ','}, {1000, 16, ','}, {1001, 17, ','}, {1002, 18, ','},
  {1003, 19, ','}, {1005, 21, ','}, {1006, 22, ','}, {1007, 23, ','}, {1008, 24, ','},
  {1009, 25, ','}, {1010, 27, ','}, {1011, 28, ','}, {1012, 29, ','}, {1013, 30, ','},
  {1014, 1042, ','}, {1015, 1043, ','}, {1016, 20, ','}, {1017, 600, ','}, {1018, 601, ','},
  {1019, 602, ','}, {1020, 603, ';'}, {1021, 700, ','}, {1022, 701, ','}, {1027, 604, ','},
  {1028, 26, ','}, {1034, 1033, ','}, {1040, 829, ','}, {1041, 869, ','}, {1115, 1114, ','},
  {1182, 1082, ','}, {1183, 1083, ','}, {1185, 1184, ','}, {1187, 1186, ','}, {1231, 1700, ','},
  {1263, 2275, ','}, {1270, 1266, ','}, {1561, 1560, ','}, {1563, 1562, ','}, {2201, 1790, ','},
  {2207, 2202, ','}, {2208, 2203, ','}, {2209, 2204, ','}, {2210, 2205, ','}, {2211, 2206, ','},
  {2287, 2249, ','}, {2949, 2970, ','}, {2951, 2950, ','}, {3221, 3220, ','}, {3643, 3614, ','},
  {3644, 3642, ','}, {3645, 3615, ','}, {3735, 3734, ','}, {3770, 3769, ','}, {3807, 3802, ','},
  {3905, 3904, ','}, {3907, 3906, ','}, {3909, 3908, ','}, {3911, 3910, ','}, {3913, 3912, ','},
  {3927, 3926, ','}, {4073, 4072, ','}, {4090, 4089, ','}, {4097, 4096, ','}, {4192, 4191, ','},
  {5039, 5038, ','}, {6150, 4451, ','}, {6151, 4532, ','}, {6152, 4533, ','}, {6153, 4534, ','},
  {6155, 4535, ','}, {6157, 4536, ','}
};

/* The scalar decoding of a type: int, float, bool, bytea, else its text. */
static int scalar_decoding(Oid oid) {
  switch (oid) {
  case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID: return LMK_D_INT;
  case OID_FLOAT4: case OID_FLOAT8: return LMK_D_FLOAT;
  case OID_BOOL: return LMK_D_BOOL;
  case OID_BYTEA: return LMK_D_BYTEA;
  default: return LMK_D_TEXT;
  }
}

static const struct builtin_array *find_builtin_array(Oid oid) {
  size_t lo = 0, hi = sizeof builtin_arrays / sizeof *builtin_arrays;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (builtin_arrays[mid].oid == oid) return &builtin_arrays[mid];
    if (builtin_arrays[mid].oid < oid) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

static int is_builtin_scalar(Oid oid) {
  size_t lo = 0, hi = sizeof builtin_scalars / sizeof *builtin_scalars;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (builtin_scalars[mid] == oid) return 1;
    if (builtin_scalars[mid] < oid) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

void lmk_push_null(lua_State *L) { lua_pushlightuserdata(L, NULL); }

/* Numbers straight from the text, no Lua string in between. The value is always the one
 * strtoll or strtod gives for the text: the fast paths below take only the shapes where
 * they provably agree, and hand everything else (the server's "Infinity" and "NaN",
 * overflow, more digits than are exact, anything unusual) to strtoll or strtod. */

/* The integer of s: [-]digits, as strtoll reads it (which clamps on overflow). */
static lua_Integer text_int(const char *s) {
  const char *p = s + (*s == '-');
  unsigned long long u = 0;
  int n = 0;
  while (*p >= '0' && *p <= '9' && n < 19) { /* 19 digits cannot overflow 64 bits */
    u = u * 10 + (unsigned)(*p++ - '0');
    n++;
  }
  if (n == 0 || *p != '\0') return (lua_Integer)strtoll(s, NULL, 10);
  if (*s != '-') return u <= LLONG_MAX ? (lua_Integer)u : (lua_Integer)strtoll(s, NULL, 10);
  if (u <= LLONG_MAX) return -(lua_Integer)u;
  return u == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : (lua_Integer)strtoll(s, NULL, 10);
}

/* The exact powers of ten of a double. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The double of s as strtod reads it. Fast path: [-]digits[.digits][e[+-]digits] whose
 * significant digits make an integer m <= 2^53 with a decimal exponent e, |e| <= 22:
 * m and 10^|e| are then exact doubles, and one IEEE multiplication or division rounds
 * their exact product or quotient correctly, as strtod does (Clinger's fast path). */
static double text_float(const char *s) {
  const char *p = s + (*s == '-');
  unsigned long long m = 0;
  int digits = 0, sig = 0, e = 0;
  for (; *p >= '0' && *p <= '9'; p++, digits++)
    if (m || *p != '0') m = m * 10 + (unsigned)(*p - '0'), sig++;
  if (*p == '.') {
    for (p++; *p >= '0' && *p <= '9'; p++, digits++, e--)
      if (m || *p != '0') m = m * 10 + (unsigned)(*p - '0'), sig++;
  }
  if (digits > 0 && sig <= 19 && (*p == 'e' || *p == 'E')) {
    int neg = 0, x = 0, n = 0;
    p++;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    for (; *p >= '0' && *p <= '9' && n < 4; p++, n++) x = x * 10 + (*p - '0');
    if (n == 0) return strtod(s, NULL);
    e += neg ? -x : x;
  }
  if (digits == 0 || sig > 19 || *p != '\0' || m > (1ULL << 53) || e < -22 || e > 22) return strtod(s, NULL);
  {
    double d = (double)m;
    d = e < 0 ? d / pow10_exact[-e] : d * pow10_exact[e];
    return *s == '-' ? -d : d;
  }
}

void lmk_type_push_number(lua_State *L, int dec, const char *s) {
  if (dec == LMK_D_INT)
    lua_pushinteger(L, text_int(s));
  else if (dec == LMK_D_FLOAT)
    lua_pushnumber(L, (lua_Number)text_float(s));
  else
    lua_pushboolean(L, s[0] == 't');
}

/* Pushes one scalar decoded by kind d (not LMK_D_LUA, not an array). s is read before
 * anything that could run Lua (a GC step may run finalizers). */
static void push_scalar(lua_State *L, int d, const char *s, size_t len) {
  switch (d) {
  case LMK_D_INT: case LMK_D_FLOAT: case LMK_D_BOOL:
    lmk_type_push_number(L, d, s);
    return;
  case LMK_D_BYTEA: {
    /* the buffer's allocation may run Lua: decode from a copy held on the stack */
    luaL_Buffer b;
    const char *copy = lua_pushlstring(L, s, len);
    char *out = luaL_buffinitsize(L, &b, len ? len : 1);
    ssize_t n = mk_bytea_decode(copy, len, out);
    if (n < 0) luaL_error(L, "malformed bytea value from the server");
    luaL_pushresultsize(&b, (size_t)n);
    lua_remove(L, -2);
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

/* The parse reads a copy of the text held on the stack and writes into a scratch
 * userdata: element decoders may run any Lua, a fetch on the same cursor included. */
static void push_array(lua_State *L, int elem, char delim, int fnidx, const char *s, size_t len) {
  static const mk_array_sink proto = {arr_open, arr_close, arr_elem, NULL};
  mk_array_sink sink = proto;
  array_ctx a;
  const char *text = lua_pushlstring(L, s, len);
  char *scratch = lua_newuserdatauv(L, len + 1, 0); /* freed by the GC, even on error */
  int top = lua_gettop(L);
  a.L = L;
  a.elem = elem;
  a.fnidx = fnidx;
  a.depth = 0;
  sink.ud = &a;
  if (mk_array_parse(text, len, delim, scratch, &sink) != 0 || lua_gettop(L) != top + 1) {
    lua_settop(L, top);
    lua_pushvalue(L, top - 1); /* not an array literal after all: its text */
  }
  lua_replace(L, top - 1);
  lua_settop(L, top - 1);
}

/* The decoder registered for oid for the owner (the decoders table of its options
 * table at uv, uv may be 0) or globally (registry "momoko.decoders"); pushes it (a
 * function, or a table {array = fn} for arrays of a registered type) or nothing. */
static int find_decoder(lua_State *L, int uv, Oid oid) {
  if (uv) {
    if (lua_getfield(L, uv, "decoders") == LUA_TTABLE) {
      if (lua_rawgeti(L, -1, (lua_Integer)oid) != LUA_TNIL) {
        lua_remove(L, -2);
        return 1;
      }
      lua_pop(L, 1);
    }
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

void lmk_type_push_decoders(lua_State *L, int uv) {
  if (!uv || lua_getfield(L, uv, "decoders") != LUA_TTABLE) {
    if (uv) lua_pop(L, 1);
    lua_pushnil(L);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "momoko.decoders");
}

/* As find_decoder, with the owner's and the global decoders at dec and dec + 1. */
static int pushed_decoder(lua_State *L, int dec, Oid oid) {
  if (lua_type(L, dec) == LUA_TTABLE) {
    if (lua_rawgeti(L, dec, (lua_Integer)oid) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  if (lua_rawgeti(L, dec + 1, (lua_Integer)oid) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  return 0;
}

/* The element type and delimiter of oid if it is an array type (built in, or learnt
 * by the owner at uv); 0 if it is not one or not known. */
static Oid array_elem(lua_State *L, int uv, Oid oid, char *delim) {
  const struct builtin_array *b = find_builtin_array(oid);
  lua_Integer v;
  if (b) {
    *delim = b->delim;
    return b->elem;
  }
  if (!uv || is_builtin_scalar(oid)) return 0;
  if (lua_getfield(L, uv, "types") != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_rawgeti(L, -1, (lua_Integer)oid);
  v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
  lua_pop(L, 2);
  if (v <= 0) return 0;
  *delim = (char)(v & 255);
  return (Oid)(v >> 8);
}

int lmk_type_decoding(lua_State *L, int dec, int uv, Oid oid, char *delim) {
  Oid elem;
  *delim = ',';
  if (pushed_decoder(L, dec, oid)) {
    if (!lua_istable(L, -1)) return LMK_D_LUA;
    lua_getfield(L, -1, "array");
    lua_remove(L, -2);
    (void)array_elem(L, uv, oid, delim);
    return LMK_D_ARRAY + LMK_D_LUA;
  }
  elem = array_elem(L, uv, oid, delim);
  if (!elem) return scalar_decoding(oid);
  /* elements decode as their own type: its registered decoder, else built in */
  if (pushed_decoder(L, dec, elem)) {
    if (lua_isfunction(L, -1)) return LMK_D_ARRAY + LMK_D_LUA;
    lua_pop(L, 1);
  }
  return LMK_D_ARRAY + scalar_decoding(elem);
}

int lmk_type_unknown(lua_State *L, int uv, Oid oid) {
  int known;
  if (find_builtin_array(oid) || is_builtin_scalar(oid)) return 0;
  uv = lua_absindex(L, uv);
  if (find_decoder(L, uv, oid)) {
    lua_pop(L, 1);
    return 0;
  }
  if (lua_getfield(L, uv, "types") != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0; /* an owner that does not learn types */
  }
  known = lua_rawgeti(L, -1, (lua_Integer)oid) != LUA_TNIL;
  lua_pop(L, 2);
  return !known;
}

/* Domains over an element type are followed one level to their base type, whose
 * decoding the elements get. */
const char lmk_type_lookup_sql[] =
  "SELECT a.oid::int8, COALESCE(NULLIF(e.typbasetype, 0), e.oid)::int8, e.typdelim::text "
  "FROM pg_catalog.pg_type a JOIN pg_catalog.pg_type e ON e.oid = a.typelem "
  "WHERE a.oid = ANY($1::int8[]::oid[]) AND a.typinput = 'pg_catalog.array_in'::pg_catalog.regproc";

void lmk_type_learn(lua_State *L, int uv, int oidsidx, int rowsidx) {
  lua_Integer i, n;
  uv = lua_absindex(L, uv);
  oidsidx = lua_absindex(L, oidsidx);
  rowsidx = lua_absindex(L, rowsidx);
  if (lua_getfield(L, uv, "types") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  n = (lua_Integer)lua_rawlen(L, oidsidx);
  for (i = 1; i <= n; i++) { /* not an array unless a row says so */
    lua_rawgeti(L, oidsidx, i);
    lua_pushboolean(L, 0);
    lua_rawset(L, -3);
  }
  n = rowsidx ? (lua_Integer)lua_rawlen(L, rowsidx) : 0;
  for (i = 1; i <= n; i++) {
    lua_Integer oid, elem;
    const char *delim;
    if (lua_rawgeti(L, rowsidx, i) != LUA_TTABLE) {
      lua_pop(L, 1);
      continue;
    }
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_rawgeti(L, -3, 3);
    oid = lua_tointeger(L, -3);
    elem = lua_tointeger(L, -2);
    delim = lua_tostring(L, -1);
    if (oid > 0 && elem > 0 && elem <= 0xffffffffLL && delim && delim[0] && delim[1] == '\0') {
      lua_pushinteger(L, elem * 256 + (unsigned char)delim[0]);
      lua_rawseti(L, -6, oid);
    }
    lua_pop(L, 4);
  }
  lua_pop(L, 1);
}

void lmk_type_push(lua_State *L, int dec, char delim, int fnidx, const char *s, size_t len) {
  if (dec == LMK_D_LUA) {
    lua_pushvalue(L, fnidx);
    lua_pushlstring(L, s, len);
    lua_call(L, 1, 1);
  } else if (dec == LMK_D_ARRAY + LMK_D_LUA) {
    push_array(L, LMK_D_TEXT, delim, fnidx, s, len);
  } else if (dec >= LMK_D_ARRAY) {
    push_array(L, dec - LMK_D_ARRAY, delim, 0, s, len);
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
