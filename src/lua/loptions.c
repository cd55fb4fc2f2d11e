/* loptions: option checks shared by Connection and Pool (see loptions.h). */
#include "loptions.h"

#include <stdio.h>
#include <string.h>

#include "lerror.h"
#include <libpq-fe.h>

void lmk_options_known(lua_State *L, int opts, const char *const *known, const char *who) {
  lua_pushnil(L);
  while (lua_next(L, opts)) {
    int i, ok = 0;
    lua_pop(L, 1);
    for (i = 0; known[i] && lua_type(L, -1) == LUA_TSTRING; i++)
      if (strcmp(lua_tostring(L, -1), known[i]) == 0) ok = 1;
    if (!ok) lmk_raise(L, MK_ERR_INTERFACE, "%s: unknown option '%s'", who, luaL_tolstring(L, -1, NULL));
  }
}

/* What PQconninfoParse returns, held in a userdata while Lua calls that may raise run:
 * its finalizer frees what is still there. */
typedef struct parsed_dsn {
  PQconninfoOption *opts;
  char *err;
} parsed_dsn;

static int parsed_dsn_gc(lua_State *L) {
  parsed_dsn *d = lua_touserdata(L, 1);
  if (d->opts) PQconninfoFree(d->opts);
  if (d->err) PQfreemem(d->err);
  d->opts = NULL;
  d->err = NULL;
  return 0;
}

static parsed_dsn *push_parsed_dsn(lua_State *L) {
  parsed_dsn *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->opts = NULL;
  d->err = NULL;
  if (luaL_newmetatable(L, "momoko.parsed_dsn")) {
    lua_pushcfunction(L, parsed_dsn_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return d;
}

/* Parses the DSN string at dsn (what = its name in the message: "dsn", "replicas[2]")
 * and sets its host, hostaddr, port and dbname (for tostring and tracing; never the
 * password) in the table at dest. A malformed one raises InterfaceError. */
static void parse_dsn(lua_State *L, int dsn, int dest, const char *who, const char *what) {
  parsed_dsn *d;
  PQconninfoOption *o;
  dsn = lua_absindex(L, dsn);
  dest = lua_absindex(L, dest);
  if (strlen(lua_tostring(L, dsn)) != lua_rawlen(L, dsn)) /* libpq would read up to it only */
    lmk_raise(L, MK_ERR_INTERFACE, "%s: %s contains a NUL byte", who, what);
  d = push_parsed_dsn(L); /* before libpq allocates anything */
  d->opts = PQconninfoParse(lua_tostring(L, dsn), &d->err);
  if (!d->opts)
    lmk_raise(L, MK_ERR_INTERFACE, "%s: invalid %s: %s", who, what, d->err ? d->err : "out of memory");
  for (o = d->opts; o->keyword; o++) {
    if (o->val && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
                   strcmp(o->keyword, "dbname") == 0 || strcmp(o->keyword, "port") == 0)) {
      lua_pushstring(L, o->val);
      lua_setfield(L, dest, o->keyword);
    }
  }
  PQconninfoFree(d->opts);
  d->opts = NULL;
  lua_pop(L, 1); /* the parsed_dsn box */
}

mk_loop *lmk_options_shared(lua_State *L, int opts, int uv, const char *who) {
  lmk_state *st = lmk_state_of(L);
  mk_loop *loop;
  opts = lua_absindex(L, opts);
  uv = lua_absindex(L, uv);
  if (lua_getfield(L, opts, "dsn") != LUA_TSTRING)
    lmk_raise(L, MK_ERR_INTERFACE, "%s: dsn must be a string", who);
  parse_dsn(L, lua_gettop(L), uv, who, "dsn");
  lua_setfield(L, uv, "dsn");
  lua_getfield(L, opts, "setsession");
  if (!lua_isnil(L, -1)) {
    lua_Integer i, n;
    if (!lua_istable(L, -1)) lmk_raise(L, MK_ERR_INTERFACE, "%s: setsession must be an array of SQL strings", who);
    n = (lua_Integer)lua_rawlen(L, -1);
    lua_createtable(L, (int)n, 0);
    for (i = 1; i <= n; i++) {
      if (lua_rawgeti(L, -2, i) != LUA_TSTRING)
        lmk_raise(L, MK_ERR_INTERFACE, "%s: setsession[%d] must be a string", who, (int)i);
      if (strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1)) /* libpq would send up to it only */
        lmk_raise(L, MK_ERR_INTERFACE, "%s: setsession[%d] contains a NUL byte", who, (int)i);
      lua_rawseti(L, -2, i);
    }
    lua_setfield(L, uv, "setsession");
  }
  lua_pop(L, 1);
  lua_getfield(L, opts, "cursor_factory");
  (void)lmk_check_factory(L, -1, who);
  lua_setfield(L, uv, "cursor_factory");
  lua_getfield(L, opts, "connection_factory");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    lmk_raise(L, MK_ERR_INTERFACE, "%s: connection_factory must be a function", who);
  lua_setfield(L, uv, "connection_factory");
  lua_getfield(L, opts, "on_notice");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    lmk_raise(L, MK_ERR_INTERFACE, "%s: on_notice must be a function", who);
  lua_setfield(L, uv, "on_notice");
  lua_pushboolean(L, lmk_opt_bool(L, opts, "pipeline", 0, who));
  lua_setfield(L, uv, "pipeline");
  {
    /* PgBouncer in transaction mode: no named statements, so no statement cache */
    int pgbouncer = lmk_opt_bool(L, opts, "pgbouncer", 0, who);
    int cache = lmk_opt_int(L, opts, "statement_cache_size", pgbouncer ? 0 : 100, 0, 100000, who);
    if (pgbouncer && cache > 0)
      lmk_raise(L, MK_ERR_INTERFACE,
                "%s: statement_cache_size must be 0 with pgbouncer = true (PgBouncer in transaction mode "
                "keeps no prepared statement between requests)", who);
    lua_pushboolean(L, pgbouncer);
    lua_setfield(L, uv, "pgbouncer");
    lua_pushinteger(L, cache);
    lua_setfield(L, uv, "statement_cache_size");
  }
  lua_getfield(L, opts, "trace");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    lmk_raise(L, MK_ERR_INTERFACE, "%s: trace must be a function", who);
  lua_setfield(L, uv, "trace");
  lua_newtable(L);
  lua_setfield(L, uv, "decoders");
  lua_newtable(L); /* array types learnt from the server (ltypes.c) */
  lua_setfield(L, uv, "types");
  lua_pushinteger(L, lmk_opt_int(L, opts, "command_timeout", 0, 0, 0x7fffffff, who));
  lua_setfield(L, uv, "command_timeout");
  if (lua_getfield(L, opts, "loop") != LUA_TNIL) {
    if (!lua_islightuserdata(L, -1)) lmk_raise(L, MK_ERR_INTERFACE, "%s: loop must be a uv_loop_t* light userdata", who);
    loop = lua_touserdata(L, -1);
  } else {
    loop = lmk_loop(L, st);
  }
  lua_pop(L, 1);
  return loop;
}

int lmk_opt_int(lua_State *L, int opts, const char *name, int def, lua_Integer min, lua_Integer max,
                const char *who) {
  lua_Integer v = 0;
  if (lua_getfield(L, opts, name) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (!lua_isinteger(L, -1) || (v = lua_tointeger(L, -1)) < min || v > max)
    lmk_raise(L, MK_ERR_INTERFACE, "%s: %s must be an integer from %d to %d", who, name, (int)min, (int)max);
  lua_pop(L, 1);
  return (int)v;
}

int lmk_opt_bool(lua_State *L, int opts, const char *name, int def, const char *who) {
  int t = lua_getfield(L, opts, name), v = def;
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL) lmk_raise(L, MK_ERR_INTERFACE, "%s: %s must be a boolean", who, name);
  lua_pop(L, 1);
  return v;
}

int lmk_check_factory(lua_State *L, int idx, const char *who) {
  if (lua_isnil(L, idx) || lua_isfunction(L, idx)) return 0;
  if (lua_type(L, idx) == LUA_TSTRING &&
      (strcmp(lua_tostring(L, idx), "array") == 0 || strcmp(lua_tostring(L, idx), "dict") == 0))
    return strcmp(lua_tostring(L, idx), "dict") == 0;
  return lmk_raise(L, MK_ERR_INTERFACE, "%s: cursor_factory must be momoko.cursors.array, momoko.cursors.dict or a function", who);
}

const char **lmk_setsession(lua_State *L, int uv, int *n) {
  const char **sess = NULL;
  int i;
  *n = 0;
  uv = lua_absindex(L, uv);
  if (lua_getfield(L, uv, "setsession") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return NULL;
  }
  *n = (int)lua_rawlen(L, -1);
  sess = lua_newuserdatauv(L, sizeof *sess * (size_t)(*n ? *n : 1), 0);
  for (i = 0; i < *n; i++) {
    lua_rawgeti(L, -2, i + 1);
    sess[i] = lua_tostring(L, -1); /* anchored by the options table */
    lua_pop(L, 1);
  }
  lua_remove(L, -2);
  return sess;
}

void lmk_call_notice(lua_State *L, int uvidx, int objidx, const char *msg) {
  size_t n = strlen(msg);
  if (lua_getfield(L, uvidx, "on_notice") != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, objidx);
  while (n > 0 && msg[n - 1] == '\n') n--;
  lua_pushlstring(L, msg, n);
  lua_call(L, 2, 0);
}


int lmk_options_replicas(lua_State *L, int opts, int uv, const char *who) {
  lua_Integer i, n;
  opts = lua_absindex(L, opts);
  uv = lua_absindex(L, uv);
  if (lua_getfield(L, opts, "replicas") == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1))
    lmk_raise(L, MK_ERR_INTERFACE, "%s: replicas must be an array of dsn strings, got %s", who, luaL_typename(L, -1));
  n = (lua_Integer)lua_rawlen(L, -1);
  lua_pushnil(L);
  while (lua_next(L, -2)) { /* nothing but the array part: a key beyond it is a mistake */
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n)
      lmk_raise(L, MK_ERR_INTERFACE, "%s: replicas must be an array of dsn strings (key %s)", who,
                luaL_tolstring(L, -1, NULL));
  }
  if (n > 1000) lmk_raise(L, MK_ERR_INTERFACE, "%s: at most 1000 replicas", who);
  lua_createtable(L, (int)n, 0);
  for (i = 1; i <= n; i++) {
    char what[32];
    if (lua_rawgeti(L, -2, i) != LUA_TSTRING)
      lmk_raise(L, MK_ERR_INTERFACE, "%s: replicas[%d] must be a dsn string, got %s", who, (int)i,
                luaL_typename(L, -1));
    snprintf(what, sizeof what, "replicas[%d]", (int)i);
    lua_createtable(L, 0, 5);
    parse_dsn(L, -2, -1, who, what);
    lua_insert(L, -2);
    lua_setfield(L, -2, "dsn");
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, uv, "replicas");
  lua_pop(L, 1);
  return (int)n;
}

void lmk_options_replica_host(lua_State *L, int uv, int replica) {
  lua_getfield(L, uv, "replicas");
  lua_rawgeti(L, -1, replica);
  if (lua_getfield(L, -1, "host") != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_getfield(L, -1, "hostaddr");
  }
  lua_replace(L, -3);
  lua_pop(L, 1);
}

double lmk_trace_clock(void) { return (double)mk_clock_us() / 1e3; }

void lmk_trace_push_event(lua_State *L, int uv, const char *type, double ms) {
  uv = lua_absindex(L, uv);
  lua_createtable(L, 0, 6);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  if (lua_getfield(L, uv, "host") != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_getfield(L, uv, "hostaddr");
  }
  lua_setfield(L, -2, "host");
  if (ms >= 0) {
    lua_pushnumber(L, ms);
    lua_setfield(L, -2, "ms");
  }
}

void lmk_trace_set_server(lua_State *L, int uv, int server) {
  if (server <= 0) return;
  uv = lua_absindex(L, uv);
  lmk_options_replica_host(L, uv, server);
  lua_setfield(L, -2, "host");
}

void lmk_trace_call(lua_State *L, int uv) {
  uv = lua_absindex(L, uv);
  if (lua_getfield(L, uv, "trace") != LUA_TFUNCTION) {
    lua_pop(L, 2);
    return;
  }
  lua_insert(L, -2);
  lua_call(L, 1, 0);
}
