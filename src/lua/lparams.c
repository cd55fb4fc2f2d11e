/* lparams: Lua values to PostgreSQL parameters.
 *
 * prepare converts one statement's parameters into a "prepared" userdata (the text of
 * each value, its format and type OID) whose user values anchor the SQL and the Lua
 * strings it points into; the text of a number lives in the userdata itself. Every bad
 * value raises there, before any request memory exists; lmk_params_fill then only
 * copies. Array literals are written by the core's
 * array writer (mk_text), the one the fuzzer checks against the parser. Also mogrify,
 * conn:escape_literal/escape_identifier, and the tagged values momoko.bytea,
 * momoko.json and momoko.hstore (userdata of metatable momoko.Param). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lparams.h"

#include "lerror.h"
#include "mk_buf.h"
#include "mk_sql.h"
#include "mk_text.h"

#define MAX_PARAMS 65535

enum { P_BYTEA, P_JSON, P_HSTORE };

typedef struct lparam {
  int kind;
} lparam;

typedef struct pvalue {
  const char *p; /* NULL: SQL NULL */
  size_t len;
  int format;
  Oid type;
  char num[MK_TEXT_NUMLEN]; /* the text of a number (p points here) */
} pvalue;

/* A statement ready to copy into a request. User value 1: the SQL to send. Then the
 * object each value points into (a string), if any: up to INLINE_ANCHORS values in user
 * value 1 + i for value i, more in one table (user value 2, at [i]); a userdata has
 * fewer than 65535 user values. */
typedef struct lprep {
  int nparams; /* -1: simple protocol */
  int table;   /* the anchors are in a table */
  const char *sql;
  size_t sql_len;
  pvalue v[];
} lprep;

#define UV_SQL 1
#define INLINE_ANCHORS 64

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT4 23
#define OID_JSON 114
#define OID_FLOAT8 701
#define OID_BOOL_ARRAY 1000
#define OID_INT4_ARRAY 1007
#define OID_INT8_ARRAY 1016
#define OID_FLOAT8_ARRAY 1022

/* An array parameter being written: the core's array writer, into a scratch buffer. */
typedef struct encoder {
  lua_State *L;
  mk_array_writer w;
  int pos; /* 1-based parameter position, for messages */
} encoder;

static int is_null(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) || (lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == NULL);
}

/* The length of the table at idx if it is an array (keys 1..n, no others), else -1. */
static lua_Integer array_length(lua_State *L, int idx) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
      lua_pop(L, 1);
      return -1;
    }
    count++;
  }
  return count == n ? n : -1;
}

static void oom(lua_State *L) { luaL_error(L, "not enough memory"); }

/* The scratch buffer lives in a userdata whose __gc frees it, so raising while
 * encoding leaks nothing. */
static int scratch_gc(lua_State *L) {
  mk_buf_free(lua_touserdata(L, 1));
  return 0;
}

static mk_buf *push_scratch(lua_State *L) {
  mk_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
  mk_buf_init(b);
  if (luaL_newmetatable(L, "momoko.scratch")) {
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

static void bad_param(lua_State *L, int pos, const char *what) {
  lmk_raise(L, MK_ERR_INTERFACE, "parameter $%d: %s", pos, what);
}

/* Raises for a writer's error code (0 passes). */
static void written(encoder *e, int rc) {
  switch (rc) {
  case 0: return;
  case MK_TEXT_ENOMEM: oom(e->L); return;
  case MK_TEXT_EDEPTH: bad_param(e->L, e->pos, "array nested deeper than PostgreSQL allows (6 dimensions)"); return;
  case MK_TEXT_EMIXED:
    bad_param(e->L, e->pos, "an array mixing values and sub-arrays at one level (PostgreSQL arrays are rectangular)");
    return;
  case MK_TEXT_ENUL: bad_param(e->L, e->pos, "an array element string contains a NUL byte"); return;
  default: bad_param(e->L, e->pos, "array writer out of order (a bug in momoko)"); return;
  }
}

/* Writes the array element at idx. */
static void encode_element(encoder *e, int idx);

static void encode_array(encoder *e, int idx) {
  lua_State *L = e->L;
  lua_Integer i, n = array_length(L, idx);
  if (n < 0) bad_param(L, e->pos, "a table that is not an array (use momoko.json or momoko.hstore)");
  written(e, mk_array_writer_open(&e->w));
  luaL_checkstack(L, 4, "array too deep");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    encode_element(e, lua_gettop(L));
    lua_pop(L, 1);
  }
  written(e, mk_array_writer_close(&e->w));
}

static void encode_element(encoder *e, int idx) {
  lua_State *L = e->L;
  if (is_null(L, idx)) {
    written(e, mk_array_writer_null(&e->w));
    return;
  }
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    written(e, mk_array_writer_bool(&e->w, lua_toboolean(L, idx)));
    return;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      written(e, mk_array_writer_int(&e->w, (long long)lua_tointeger(L, idx)));
    else
      written(e, mk_array_writer_float(&e->w, (double)lua_tonumber(L, idx)));
    return;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    written(e, mk_array_writer_string(&e->w, s, n));
    return;
  }
  case LUA_TTABLE:
    encode_array(e, idx);
    return;
  case LUA_TUSERDATA: {
    lparam *p = luaL_testudata(L, idx, LMK_PARAM);
    size_t n;
    const char *s;
    if (!p) break;
    lua_getiuservalue(L, idx, 1);
    s = lua_tolstring(L, -1, &n);
    if (p->kind == P_BYTEA)
      written(e, mk_array_writer_bytea(&e->w, s, n)); /* its hex text form */
    else
      written(e, mk_array_writer_string(&e->w, s, n));
    lua_pop(L, 1);
    return;
  }
  default:
    break;
  }
  lua_pushfstring(L, "cannot convert an array element of type %s", luaL_typename(L, idx));
  bad_param(L, e->pos, lua_tostring(L, -1));
}

/* Pushes a new prepared statement for n values. */
static lprep *new_prep(lua_State *L, lua_Integer n) {
  int table = n > INLINE_ANCHORS;
  lprep *p = lua_newuserdatauv(L, sizeof *p + (size_t)n * sizeof(pvalue), 1 + (table ? 1 : (int)n));
  p->table = table;
  if (table) {
    lua_createtable(L, (int)n, 0);
    lua_setiuservalue(L, -2, 2);
  }
  return p;
}

/* Anchors the value on top (popped) for value pos of the prepared statement at prep. */
static void anchor(lua_State *L, int prep, const lprep *p, int pos) {
  if (!p->table) {
    lua_setiuservalue(L, prep, 1 + pos);
    return;
  }
  lua_getiuservalue(L, prep, 2);
  lua_insert(L, -2);
  lua_rawseti(L, -2, pos);
  lua_pop(L, 1);
}

/* Converts the value at idx into value pos of the prepared statement at prep, anchoring
 * the string it points into (the value itself, or one made from it). */
static void convert(lua_State *L, int idx, int pos, int prep, lprep *p) {
  pvalue *v = &p->v[pos - 1];
  v->format = 0;
  v->type = 0;
  v->p = NULL;
  v->len = 0;
  if (is_null(L, idx)) return;
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    v->p = lua_toboolean(L, idx) ? "t" : "f";
    v->len = 1;
    v->type = OID_BOOL;
    return;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      /* int4 when it fits: the server casts int4 up (to int8, numeric, float) where a
       * function or operator needs it, never int8 down (f(int), date + n, jsonb -> n) */
      lua_Integer x = lua_tointeger(L, idx);
      v->len = (size_t)mk_text_int(v->num, (long long)x);
      v->type = x >= INT32_MIN && x <= INT32_MAX ? OID_INT4 : OID_INT8;
    } else {
      v->len = (size_t)mk_text_float(v->num, (double)lua_tonumber(L, idx));
      v->type = OID_FLOAT8;
    }
    v->p = v->num;
    return;
  case LUA_TSTRING:
    v->p = lua_tolstring(L, idx, &v->len);
    if (memchr(v->p, '\0', v->len))
      bad_param(L, pos, "a string with a NUL byte (use momoko.bytea(s) for binary data)");
    lua_pushvalue(L, idx);
    anchor(L, prep, p, pos);
    return;
  case LUA_TTABLE: {
    encoder e;
    mk_buf *b = push_scratch(L);
    e.L = L;
    e.pos = pos;
    mk_array_writer_init(&e.w, b, ',');
    encode_array(&e, idx);
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    lua_remove(L, -2);
    v->type = (Oid)mk_array_writer_type(&e.w);
    break;
  }
  case LUA_TUSERDATA: {
    lparam *tag = luaL_testudata(L, idx, LMK_PARAM);
    if (!tag) bad_param(L, pos, "cannot convert a userdata");
    lua_getiuservalue(L, idx, 1);
    if (tag->kind == P_BYTEA) {
      v->format = 1;
      v->type = OID_BYTEA;
    } else if (tag->kind == P_JSON) {
      v->type = OID_JSON;
    }
    break;
  }
  default:
    lua_pushfstring(L, "cannot convert a %s", luaL_typename(L, idx));
    bad_param(L, pos, lua_tostring(L, -1));
  }
  v->p = lua_tolstring(L, -1, &v->len);
  anchor(L, prep, p, pos);
}

static int check_sql(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING)
    lmk_raise(L, MK_ERR_INTERFACE, "sql must be a string, got %s", luaL_typename(L, idx));
  if (strlen(lua_tolstring(L, idx, len)) != *len) /* libpq would send up to it only */
    lmk_raise(L, MK_ERR_INTERFACE, "sql contains a NUL byte (libpq would send only the text before it)");
  return idx;
}

/* The rewriter's output lives in a userdata whose __gc frees it, so a memory error
 * while copying it into Lua leaks nothing. */
static int named_gc(lua_State *L) {
  mk_sql_named_free(lua_touserdata(L, 1));
  return 0;
}

/* The number of distinct :name placeholders in the SQL at sqlidx. */
static size_t named_count(lua_State *L, int sqlidx) {
  size_t len, count;
  const char *sql = lua_tolstring(L, sqlidx, &len);
  mk_sql_named nm;
  if (mk_sql_named_rewrite(sql, len, &nm) < 0) oom(L);
  count = nm.count;
  mk_sql_named_free(&nm);
  return count;
}

/* The highest $n of the SQL at sqlidx; an invalid one ($0, $65536) raises. */
static int highest_placeholder(lua_State *L, int sqlidx) {
  size_t len, off = 0, n = 0;
  const char *sql = lua_tolstring(L, sqlidx, &len);
  int max = mk_sql_max_positional(sql, len, &off, &n);
  if (max < 0)
    lmk_raise(L, MK_ERR_INTERFACE, "invalid placeholder %s in the SQL (placeholders are $1 to $65535)",
              lua_pushlstring(L, sql + off, n));
  return max;
}

/* Positional parameters: every $n of the SQL needs a value, and SQL written with
 * :name placeholders needs a table of names. Checked here so that the mistake is an
 * InterfaceError at the call, not the server's protocol error. */
static void check_positional(lua_State *L, int sqlidx, lua_Integer n) {
  int max = highest_placeholder(L, sqlidx);
  if (max > n)
    lmk_raise(L, MK_ERR_INTERFACE, "the SQL uses $%d but %d parameter%s given", max, (int)n,
              n == 1 ? " was" : "s were");
  if (max == 0 && named_count(L, sqlidx) > 0)
    lmk_raise(L, MK_ERR_INTERFACE, "the SQL has :name placeholders but params is an array: pass a table of names");
}

/* Named parameters: the SQL must not have $n placeholders of its own (they would
 * collide with the $n the names become). */
static void check_named(lua_State *L, int sqlidx) {
  int max = highest_placeholder(L, sqlidx);
  if (max == 0) return;
  if (named_count(L, sqlidx) == 0)
    lmk_raise(L, MK_ERR_INTERFACE, "params is a table of names but the SQL uses $%d: pass an array", max);
  lmk_raise(L, MK_ERR_INTERFACE, "the SQL mixes $n ($%d) and :name placeholders: use one kind", max);
}

/* Named parameters: rewrite :name to $n and take values by name. Pushes the prepared
 * statement, its SQL not set yet, and above it the rewritten SQL. */
static lprep *prepare_named(lua_State *L, int sqlidx, int pidx) {
  size_t len, i;
  const char *sql = lua_tolstring(L, sqlidx, &len);
  mk_sql_named *nm;
  lprep *p;
  int prep;
  nm = lua_newuserdatauv(L, sizeof *nm, 0);
  memset(nm, 0, sizeof *nm);
  if (luaL_newmetatable(L, "momoko.named")) {
    lua_pushcfunction(L, named_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if (mk_sql_named_rewrite(sql, len, nm) < 0) oom(L);
  lua_pushlstring(L, nm->sql, nm->sql_len);
  lua_createtable(L, (int)nm->count, 0);
  for (i = 0; i < nm->count; i++) {
    lua_pushlstring(L, sql + nm->names[i].off, nm->names[i].len);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  mk_sql_named_free(nm);
  lua_remove(L, -3); /* the rewriter's userdata */
  i = lua_rawlen(L, -1);
  if (i > MAX_PARAMS)
    lmk_raise(L, MK_ERR_INTERFACE, "too many parameters (%d; PostgreSQL allows %d)", (int)i, MAX_PARAMS);
  p = new_prep(L, (lua_Integer)i);
  p->nparams = (int)i;
  lua_rotate(L, -3, 1); /* prep, SQL, names */
  prep = lua_gettop(L) - 2;
  for (i = 1; i <= (size_t)p->nparams; i++) {
    lua_rawgeti(L, -1, (lua_Integer)i);
    if (lua_rawget(L, pidx) == LUA_TNIL) {
      lua_rawgeti(L, -2, (lua_Integer)i);
      lmk_raise(L, MK_ERR_INTERFACE, "missing parameter :%s", lua_tostring(L, -1));
    }
    convert(L, lua_gettop(L), (int)i, prep, p);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return p;
}

/* Pushes the prepared form of statement sql (at sqlidx) with params (at pidx: none,
 * nil, an array with optional n, or a table of names). */
static void prepare(lua_State *L, int sqlidx, int pidx) {
  size_t len;
  lua_Integer n = 0;
  int named = 0;
  lprep *p;
  check_sql(L, sqlidx, &len);
  if (!lua_isnoneornil(L, pidx)) {
    int names = 0, others = 0, has_n;
    if (!lua_istable(L, pidx))
      lmk_raise(L, MK_ERR_INTERFACE, "params must be a table, got %s", luaL_typename(L, pidx));
    /* What keys are there: string keys other than "n" make a table of names. */
    lua_pushnil(L);
    while (lua_next(L, pidx)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING)
        others = 1;
      else if (strcmp(lua_tostring(L, -1), "n") != 0)
        names = 1;
    }
    has_n = lua_getfield(L, pidx, "n") != LUA_TNIL;
    lua_pop(L, 1);
    if (names && others)
      lmk_raise(L, MK_ERR_INTERFACE, "params must be an array (with an optional n) or a table of names, not both");
    if (names) {
      named = 1;
    } else if (has_n && !others && named_count(L, sqlidx) > 0) {
      /* {n = v} alone: table.pack(nil), or the one named parameter :n. The SQL
       * decides: with :name placeholders it is the latter. */
      named = 1;
    } else if (has_n) {
      lua_getfield(L, pidx, "n");
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        lmk_raise(L, MK_ERR_INTERFACE, "params.n must be a non-negative integer");
      n = lua_tointeger(L, -1);
      lua_pop(L, 1);
    } else {
      n = (lua_Integer)lua_rawlen(L, pidx);
      if (n == 0 && others)
        lmk_raise(L, MK_ERR_INTERFACE, "params must be an array (with an optional n) or a table of names");
    }
  }
  if (n > MAX_PARAMS)
    lmk_raise(L, MK_ERR_INTERFACE, "too many parameters (%d; PostgreSQL allows %d)", (int)n, MAX_PARAMS);
  if (named)
    check_named(L, sqlidx);
  else if (n > 0)
    check_positional(L, sqlidx, n);
  if (named) {
    p = prepare_named(L, sqlidx, pidx);
  } else {
    lua_Integer i;
    int prep;
    p = new_prep(L, n);
    p->nparams = n > 0 ? (int)n : -1;
    prep = lua_gettop(L);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, pidx, i);
      convert(L, prep + 1, (int)i, prep, p);
      lua_pop(L, 1);
    }
    lua_pushvalue(L, sqlidx);
  }
  p->sql = lua_tolstring(L, -1, &p->sql_len);
  lua_setiuservalue(L, -2, UV_SQL);
}

void lmk_params_check(lua_State *L, int sqlidx, int pidx) {
  sqlidx = lua_absindex(L, sqlidx);
  pidx = lua_absindex(L, pidx);
  prepare(L, sqlidx, pidx);
}

void lmk_params_push_sql(lua_State *L, int prepidx) {
  lua_getiuservalue(L, prepidx, UV_SQL);
}

int lmk_params_fill(lua_State *L, mk_req *r, int i, int prepidx) {
  lprep *p = lua_touserdata(L, prepidx);
  int j;
  if (mk_req_stmt(r, i, p->sql, p->sql_len, p->nparams) < 0) return -1;
  for (j = 0; j < p->nparams; j++) {
    const pvalue *v = &p->v[j];
    int rc = mk_req_param(r, i, j, v->p, v->len, v->format, v->type);
    if (rc < 0) return rc;
  }
  return 0;
}

typedef struct pqmem {
  void *p; /* libpq memory to PQfreemem, or NULL */
} pqmem;

static int pqmem_gc(lua_State *L) {
  pqmem *m = lua_touserdata(L, 1);
  if (m->p) PQfreemem(m->p);
  m->p = NULL;
  return 0;
}

static pqmem *push_pqmem(lua_State *L) {
  pqmem *m = lua_newuserdatauv(L, sizeof *m, 0);
  m->p = NULL;
  if (luaL_newmetatable(L, "momoko.pqmem")) {
    lua_pushcfunction(L, pqmem_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return m;
}

/* Appends a literal for the prepared value v (for mogrify). Returns -1 when libpq
 * could not escape it (its message is in PQerrorMessage); the stack then has one
 * extra value, which the caller's raise discards. */
static int literal(lua_State *L, PGconn *pg, const pvalue *v, luaL_Buffer *b) {
  char *esc;
  size_t n;
  pqmem *held;
  if (!v->p) {
    luaL_addstring(b, "NULL");
    return 0;
  }
  if (v->type == OID_BOOL) {
    luaL_addstring(b, v->p[0] == 't' ? "true" : "false");
    return 0;
  }
  if (v->type == OID_INT4 || v->type == OID_INT8) {
    /* A negative number goes in parentheses: after a '-' in the SQL, "1--5" would
     * start a comment. The smallest int8 has no positive counterpart to negate. */
    if (v->p[0] != '-')
      luaL_addlstring(b, v->p, v->len);
    else if (strcmp(v->p, "-9223372036854775808") == 0)
      luaL_addstring(b, "(-9223372036854775807-1)");
    else {
      luaL_addchar(b, '(');
      luaL_addlstring(b, v->p, v->len);
      luaL_addchar(b, ')');
    }
    return 0;
  }
  if (v->type == OID_FLOAT8) {
    /* quoted and cast, as it was bound: a bare 1.5 would be numeric, 2 an integer */
    luaL_addchar(b, '\'');
    luaL_addlstring(b, v->p, v->len);
    luaL_addstring(b, "'::float8");
    return 0;
  }
  /* libpq's escaped copy is held by a userdata until it is in a Lua string, so a
   * memory error in between leaks nothing. The holder is removed before
   * luaL_addvalue, which keeps the buffer's stack discipline. */
  held = push_pqmem(L);
  if (v->format == 1) {
    held->p = PQescapeByteaConn(pg, (const unsigned char *)v->p, v->len, &n);
    if (!held->p) return -1;
    lua_pushfstring(L, "'%s'::bytea", (const char *)held->p);
  } else {
    held->p = esc = PQescapeLiteral(pg, v->p, v->len);
    if (!esc) return -1;
    lua_pushstring(L, esc);
  }
  PQfreemem(held->p);
  held->p = NULL;
  lua_remove(L, -2);
  luaL_addvalue(b);
  if (v->format == 1) return 0;
  if (v->type == OID_JSON) luaL_addstring(b, "::json");
  else if (v->type == OID_INT4_ARRAY) luaL_addstring(b, "::int4[]");
  else if (v->type == OID_INT8_ARRAY) luaL_addstring(b, "::int8[]");
  else if (v->type == OID_FLOAT8_ARRAY) luaL_addstring(b, "::float8[]");
  else if (v->type == OID_BOOL_ARRAY) luaL_addstring(b, "::bool[]");
  return 0;
}

typedef struct mogrify_ctx {
  lua_State *L;
  PGconn *pg;
  lprep *p;
  luaL_Buffer *b;
  const char *sql;
  size_t at; /* copied up to here */
  int bad;   /* a placeholder number with no value */
} mogrify_ctx;

static int mogrify_one(void *ud, unsigned number, size_t off, size_t len) {
  mogrify_ctx *m = ud;
  if (number == 0 || (int)number > m->p->nparams) {
    m->bad = number == 0 ? -1 : (int)number;
    return 1;
  }
  luaL_addlstring(m->b, m->sql + m->at, off - m->at);
  if (literal(m->L, m->pg, &m->p->v[number - 1], m->b) < 0) {
    m->bad = -2;
    return 1;
  }
  m->at = off + len;
  return 0;
}

int lmk_mogrify(lua_State *L, PGconn *pg, int sqlidx, int pidx) {
  lprep *p;
  luaL_Buffer b;
  mogrify_ctx m;
  lmk_params_check(L, sqlidx, pidx);
  p = lua_touserdata(L, -1);
  if (p->nparams < 0) {
    lua_pushlstring(L, p->sql, p->sql_len);
    return 1;
  }
  m.L = L;
  m.pg = pg;
  m.p = p;
  m.sql = p->sql;
  m.at = 0;
  m.bad = 0;
  luaL_buffinit(L, &b);
  m.b = &b;
  mk_sql_scan_positional(p->sql, p->sql_len, mogrify_one, &m);
  if (m.bad == -2) return lmk_raise(L, MK_ERR_INTERFACE, "mogrify: %s", PQerrorMessage(pg));
  if (m.bad != 0) return lmk_raise(L, MK_ERR_INTERFACE, "mogrify: no value for placeholder $%d", m.bad);
  luaL_addlstring(&b, p->sql + m.at, p->sql_len - m.at);
  luaL_pushresult(&b);
  return 1;
}

int lmk_escape(lua_State *L, PGconn *pg, int idx, int identifier, const char *who) {
  size_t n;
  const char *s;
  pqmem *held;
  if (lua_type(L, idx) != LUA_TSTRING)
    return lmk_raise(L, MK_ERR_INTERFACE, "%s: a string expected, got %s", who, luaL_typename(L, idx));
  s = lua_tolstring(L, idx, &n);
  if (memchr(s, '\0', n)) return lmk_raise(L, MK_ERR_INTERFACE, "%s: the string contains a NUL byte", who);
  /* libpq's copy is held by a userdata until it is in a Lua string (its __gc frees it
   * if pushing the string raises) and freed before anything else can raise */
  held = push_pqmem(L);
  held->p = identifier ? PQescapeIdentifier(pg, s, n) : PQescapeLiteral(pg, s, n);
  if (!held->p) {
    const char *msg = PQerrorMessage(pg);
    size_t m = strlen(msg);
    while (m > 0 && msg[m - 1] == '\n') m--;
    lua_pushlstring(L, msg, m);
    return lmk_raise(L, MK_ERR_INTERFACE, "%s: %s", who, lua_tostring(L, -1));
  }
  lua_pushstring(L, held->p);
  PQfreemem(held->p);
  held->p = NULL;
  lua_remove(L, -2);
  return 1;
}

/* Tagged values */

static int new_param(lua_State *L, int kind, int validx) {
  lparam *p = lua_newuserdatauv(L, sizeof *p, 1);
  p->kind = kind;
  lua_pushvalue(L, validx);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, LMK_PARAM);
  return 1;
}

/* momoko.bytea(s): s sent as bytea, in binary (NUL bytes allowed). */
static int l_bytea(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.bytea: a string expected, got %s", luaL_typename(L, 1));
  return new_param(L, P_BYTEA, 1);
}

/* core.json_text(s): s (JSON text made by the Lua layer's encoder) sent as json. */
static int l_json_text(lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  return new_param(L, P_JSON, 1);
}

/* momoko.hstore(t): a table of string keys and string (or null) values as hstore. */
static int l_hstore(lua_State *L) {
  mk_buf *b;
  int first = 1;
  if (!lua_istable(L, 1))
    return lmk_raise(L, MK_ERR_INTERFACE, "momoko.hstore: a table expected, got %s", luaL_typename(L, 1));
  lua_settop(L, 1);
  b = push_scratch(L);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    size_t kl, vl;
    const char *k, *v;
    if (lua_type(L, -2) != LUA_TSTRING)
      return lmk_raise(L, MK_ERR_INTERFACE, "momoko.hstore: keys must be strings");
    k = lua_tolstring(L, -2, &kl);
    if (!first && mk_buf_add(b, ", ", 2) < 0) oom(L);
    first = 0;
    if (mk_text_quote(b, k, kl) < 0 || mk_buf_add(b, "=>", 2) < 0) oom(L);
    if (is_null(L, -1)) {
      if (mk_buf_add(b, "NULL", 4) < 0) oom(L);
    } else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
      lua_pushvalue(L, -1);
      v = lua_tolstring(L, -1, &vl);
      if (memchr(v, '\0', vl))
        return lmk_raise(L, MK_ERR_INTERFACE, "momoko.hstore: the value of '%s' contains a NUL byte", k);
      if (mk_text_quote(b, v, vl) < 0) oom(L);
      lua_pop(L, 1);
    } else {
      return lmk_raise(L, MK_ERR_INTERFACE, "momoko.hstore: value of '%s' must be a string or null", k);
    }
    if (memchr(k, '\0', kl)) return lmk_raise(L, MK_ERR_INTERFACE, "momoko.hstore: a key contains a NUL byte");
    lua_pop(L, 1);
  }
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  return new_param(L, P_HSTORE, lua_gettop(L));
}

static int param_tostring(lua_State *L) {
  static const char *names[] = {"bytea", "json", "hstore"};
  lparam *p = luaL_checkudata(L, 1, LMK_PARAM);
  lua_pushfstring(L, "<momoko.%s>", names[p->kind]);
  return 1;
}

void lmk_open_params(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"bytea", l_bytea}, {"json_text", l_json_text}, {"hstore", l_hstore}, {NULL, NULL}};
  luaL_newmetatable(L, LMK_PARAM);
  lua_pushcfunction(L, param_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_setfuncs(L, fns, 0);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
}
