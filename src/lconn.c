/* lconn: momoko.Connection, a userdata around one mk_conn.
 *
 * While a connect or a request is outstanding, the userdata is anchored by a registry
 * reference (lconn.anchor), so completions always find it; the anchor is dropped when
 * nothing is outstanding, and an idle connection nobody references is closed by __gc.
 * User value 1 is a table of options (dsn, setsession, factories, on_notice) and the
 * connection's decoders. Core callbacks run their Lua work under lua_pcall on the main
 * thread; once the object is finalized (or the state is closing) they only free. */
#include <stdlib.h>
#include <string.h>

#include "lmomoko.h"
#include "mk_sql.h"

typedef struct lconn {
  mk_conn *c; /* NULL once finalized */
  lmk_state *st;
  int anchor;      /* registry ref while pending > 0 */
  int pending;     /* outstanding connect + requests */
  int connect_ref; /* the future of the running connect */
  int dict;        /* default row shape */
  int finalized;
  struct lconn *next, **pprev; /* st->conns */
} lconn;

/* What a request resolves to. */
enum { R_CURSOR, R_TXN, R_CONN };

typedef struct lreq {
  lconn *lc;
  mk_req *r;
  int fref;     /* the future */
  int factory;  /* registry ref of a per-request cursor_factory, or LUA_NOREF */
  int kind;
} lreq;

static const char conns_key = 'C'; /* registry: weak lightuserdata(lconn) -> userdata */

static lconn *check_conn(lua_State *L, int idx) { return luaL_checkudata(L, idx, LMK_CONN); }

static void pend(lua_State *L, lconn *lc, int idx) {
  if (lc->pending++ == 0) {
    lua_pushvalue(L, idx);
    lc->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

static void unpend(lua_State *L, lconn *lc) {
  if (--lc->pending == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, lc->anchor);
    lc->anchor = LUA_NOREF;
  }
}

/* Pushes the userdata of lc, or nil if it is being collected. */
static void push_conn(lua_State *L, lconn *lc) {
  if (lc->pending > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lc->anchor);
    return;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &conns_key);
  lua_rawgetp(L, -1, lc);
  lua_remove(L, -2);
}

/* Runs fn(a, b) protected on the main thread; errors go to on_error. */
static void protect(lmk_state *st, lua_CFunction fn, void *a, void *b) {
  lua_State *L = st->L;
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, a);
  lua_pushlightuserdata(L, b);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lmk_report(L);
}

static int silent(const lconn *lc) { return lc->finalized || lc->st->closing; }

/* Completion of requests */

/* Pushes what one statement result becomes: a cursor, or the cursor factory's value. */
static void push_result(lua_State *L, lreq *q, int i, int uv) {
  PGresult *res = mk_req_take_result(q->r, i);
  int factory;
  lua_getfield(L, uv, "decoders");
  if (q->factory != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, q->factory);
  else
    lua_getfield(L, uv, "cursor_factory");
  factory = lua_gettop(L);
  lmk_cursor_push(L, res, mk_req_sql(q->r, i),
                  lua_type(L, factory) == LUA_TSTRING && strcmp(lua_tostring(L, factory), "dict") == 0,
                  factory - 1);
  if (lua_isfunction(L, factory)) {
    lua_pushvalue(L, factory);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
  }
  lua_replace(L, factory - 1);
  lua_settop(L, factory - 1);
}

static int req_done_lua(lua_State *L) {
  lreq *q = lua_touserdata(L, 1);
  mk_error *err = mk_req_error(q->r);
  int fidx, uv;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, q->fref);
  fidx = 1;
  if (err) {
    lmk_push_mk_error(L, err);
    lmk_future_fail(L, fidx);
    return 0;
  }
  push_conn(L, q->lc);
  if (q->kind == R_CONN) {
    lmk_future_resolve(L, fidx, 1);
    return 0;
  }
  lua_getiuservalue(L, 2, 1);
  uv = lua_gettop(L);
  if (q->kind == R_CURSOR) {
    push_result(L, q, 0, uv);
  } else {
    int i, n = mk_req_count(q->r);
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
      push_result(L, q, i, uv);
      lua_rawseti(L, -2, i + 1);
    }
  }
  lmk_future_resolve(L, fidx, 1);
  return 0;
}

/* A result factory that raises fails the future with its error. */
static int req_done_fail(lua_State *L) {
  lreq *q = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, q->fref);
  lua_pushvalue(L, 3);
  lmk_future_fail(L, -2);
  return 0;
}

static void req_done(mk_req *r, void *ud) {
  lreq *q = ud;
  lconn *lc = q->lc;
  lmk_state *st = lc->st;
  lua_State *L = st->L;
  if (!silent(lc)) {
    lua_pushcfunction(L, req_done_lua);
    lua_pushlightuserdata(L, q);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      /* the future still pending: fail it with what was raised */
      lua_pushcfunction(L, req_done_fail);
      lua_pushlightuserdata(L, q);
      lua_pushnil(L);
      lua_rotate(L, -4, -1); /* fn, q, nil, err */
      if (lua_pcall(L, 3, 0, 0) != LUA_OK) lmk_report(L);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, q->fref);
    luaL_unref(L, LUA_REGISTRYINDEX, q->factory);
    unpend(L, lc);
  }
  free(q);
  mk_req_free(r);
}

static int cancel_req(lua_State *L, void *ud) {
  lreq *q = ud;
  (void)L;
  return q->lc->c ? mk_conn_cancel(q->lc->c, q->r) : 0;
}

/* Hooks from the core */

static int connected_lua(lua_State *L) {
  lconn *lc = lua_touserdata(L, 1);
  const mk_error *err = lua_touserdata(L, 2);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lc->connect_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lc->connect_ref);
  lc->connect_ref = LUA_NOREF;
  push_conn(L, lc);
  unpend(L, lc); /* the stack holds the connection now */
  if (err) {
    lmk_push_mk_error(L, err);
    lmk_future_fail(L, 1);
    return 0;
  }
  lua_getiuservalue(L, 2, 1);
  lua_getfield(L, 3, "connection_factory");
  if (lua_isnil(L, -1)) {
    lua_settop(L, 2);
    lmk_future_resolve(L, 1, 1);
    return 0;
  }
  /* the Lua layer runs the factory in a coroutine and then resolves the future */
  lua_getfield(L, LUA_REGISTRYINDEX, "momoko.after_connect");
  lua_insert(L, 1); /* after_connect, future, conn, uv, factory */
  lua_remove(L, 4);
  lua_call(L, 3, 0);
  return 0;
}

static void on_connected(mk_conn *c, const mk_error *err, void *ud) {
  lconn *lc = ud;
  (void)c;
  if (!silent(lc)) protect(lc->st, connected_lua, lc, (void *)err);
}

static int notice_lua(lua_State *L) {
  lconn *lc = lua_touserdata(L, 1);
  const char *msg = lua_touserdata(L, 2);
  size_t n = strlen(msg);
  push_conn(L, lc);
  if (lua_isnil(L, -1)) return 0;
  lua_getiuservalue(L, -1, 1);
  if (lua_getfield(L, -1, "on_notice") != LUA_TFUNCTION) return 0;
  lua_pushvalue(L, -3);
  while (n > 0 && msg[n - 1] == '\n') n--;
  lua_pushlstring(L, msg, n);
  lua_call(L, 2, 0);
  return 0;
}

static void on_notice(mk_conn *c, const char *msg, void *ud) {
  lconn *lc = ud;
  (void)c;
  if (!silent(lc)) protect(lc->st, notice_lua, lc, (void *)msg);
}

static const mk_conn_hooks hooks = {on_connected, on_notice, NULL};

/* Construction */

static const char *const known_options[] = {
  "dsn", "setsession", "cursor_factory", "connection_factory", "loop", "on_notice",
  "pipeline", "statement_cache_size", NULL};

static int check_factory(lua_State *L, int idx, const char *who) {
  if (lua_isnil(L, idx) || lua_isfunction(L, idx)) return 0;
  if (lua_type(L, idx) == LUA_TSTRING &&
      (strcmp(lua_tostring(L, idx), "array") == 0 || strcmp(lua_tostring(L, idx), "dict") == 0))
    return strcmp(lua_tostring(L, idx), "dict") == 0;
  return lmk_raise(L, MK_ERR_INTERFACE, "%s: cursor_factory must be momoko.cursors.array, momoko.cursors.dict or a function", who);
}

/* momoko.Connection(opts) or (dsn, opts). */
static int l_connection(lua_State *L) {
  lmk_state *st = lmk_state_of(L);
  lconn *lc;
  int opts, uv;
  char *err = NULL;
  PQconninfoOption *parsed;
  uv_loop_t *loop;
  if (lua_type(L, 1) == LUA_TSTRING) {
    if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2))
      return lmk_raise(L, MK_ERR_INTERFACE, "Connection: opts must be a table");
    lua_settop(L, 2);
    /* a copy with the dsn added: the caller's table is left as it was */
    lua_newtable(L);
    if (!lua_isnil(L, 2)) {
      lua_pushnil(L);
      while (lua_next(L, 2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 3);
      }
    }
    lua_replace(L, 2);
    lua_pushvalue(L, 1);
    lua_setfield(L, 2, "dsn");
    opts = 2;
  } else if (lua_istable(L, 1)) {
    opts = 1;
  } else {
    return lmk_raise(L, MK_ERR_INTERFACE, "Connection: a dsn string or an options table expected, got %s", luaL_typename(L, 1));
  }
  /* options, checked before anything is allocated */
  lua_pushnil(L);
  while (lua_next(L, opts)) {
    int i, ok = 0;
    lua_pop(L, 1);
    for (i = 0; known_options[i] && lua_type(L, -1) == LUA_TSTRING; i++)
      if (strcmp(lua_tostring(L, -1), known_options[i]) == 0) ok = 1;
    if (!ok) return lmk_raise(L, MK_ERR_INTERFACE, "Connection: unknown option '%s'", luaL_tolstring(L, -1, NULL));
  }
  lua_createtable(L, 0, 8);
  uv = lua_gettop(L);
  if (lua_getfield(L, opts, "dsn") != LUA_TSTRING)
    return lmk_raise(L, MK_ERR_INTERFACE, "Connection: dsn must be a string");
  parsed = PQconninfoParse(lua_tostring(L, -1), &err);
  if (!parsed) {
    lua_pushstring(L, err ? err : "out of memory");
    PQfreemem(err);
    return lmk_raise(L, MK_ERR_INTERFACE, "Connection: invalid dsn: %s", lua_tostring(L, -1));
  }
  {
    /* host and dbname for tostring; never the password */
    PQconninfoOption *o;
    for (o = parsed; o->keyword; o++) {
      if (o->val && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
                     strcmp(o->keyword, "dbname") == 0 || strcmp(o->keyword, "port") == 0)) {
        lua_pushstring(L, o->val);
        lua_setfield(L, uv, o->keyword);
      }
    }
    PQconninfoFree(parsed);
  }
  lua_setfield(L, uv, "dsn");
  lua_getfield(L, opts, "setsession");
  if (!lua_isnil(L, -1)) {
    lua_Integer i, n;
    if (!lua_istable(L, -1)) return lmk_raise(L, MK_ERR_INTERFACE, "Connection: setsession must be an array of SQL strings");
    n = (lua_Integer)lua_rawlen(L, -1);
    lua_createtable(L, (int)n, 0);
    for (i = 1; i <= n; i++) {
      if (lua_rawgeti(L, -2, i) != LUA_TSTRING)
        return lmk_raise(L, MK_ERR_INTERFACE, "Connection: setsession[%d] must be a string", (int)i);
      lua_rawseti(L, -2, i);
    }
    lua_setfield(L, uv, "setsession");
  }
  lua_pop(L, 1);
  lua_getfield(L, opts, "cursor_factory");
  (void)check_factory(L, -1, "Connection");
  lua_setfield(L, uv, "cursor_factory");
  lua_getfield(L, opts, "connection_factory");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    return lmk_raise(L, MK_ERR_INTERFACE, "Connection: connection_factory must be a function");
  lua_setfield(L, uv, "connection_factory");
  lua_getfield(L, opts, "on_notice");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    return lmk_raise(L, MK_ERR_INTERFACE, "Connection: on_notice must be a function");
  lua_setfield(L, uv, "on_notice");
  if (lua_getfield(L, opts, "pipeline") != LUA_TNIL && lua_toboolean(L, -1))
    return lmk_raise(L, MK_ERR_NOT_SUPPORTED, "Connection: pipeline mode is not available in this version");
  lua_pop(L, 1);
  if (lua_getfield(L, opts, "statement_cache_size") != LUA_TNIL &&
      !(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 0))
    return lmk_raise(L, MK_ERR_NOT_SUPPORTED, "Connection: the statement cache is not available in this version (only 0 is accepted)");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_setfield(L, uv, "decoders");
  if (lua_getfield(L, opts, "loop") != LUA_TNIL) {
    if (!lua_islightuserdata(L, -1)) return lmk_raise(L, MK_ERR_INTERFACE, "Connection: loop must be a uv_loop_t* light userdata");
    loop = lua_touserdata(L, -1);
  } else {
    loop = lmk_loop(L, st);
  }
  lua_pop(L, 1);

  /* the object is created closed, then given its resource (as liolib does) */
  lc = lua_newuserdatauv(L, sizeof *lc, 1);
  memset(lc, 0, sizeof *lc);
  lc->st = st;
  lc->anchor = LUA_NOREF;
  lc->connect_ref = LUA_NOREF;
  lc->finalized = 1;
  luaL_setmetatable(L, LMK_CONN);
  lua_pushvalue(L, uv);
  lua_setiuservalue(L, -2, 1);
  lua_getfield(L, uv, "cursor_factory");
  lc->dict = lua_type(L, -1) == LUA_TSTRING;
  lua_pop(L, 1);
  lc->c = mk_conn_new(loop, &hooks, lc);
  if (!lc->c) return luaL_error(L, "not enough memory");
  lc->finalized = 0;
  st->nhandles++;
  lc->next = st->conns;
  if (st->conns) st->conns->pprev = &lc->next;
  lc->pprev = &st->conns;
  st->conns = lc;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &conns_key);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, lc);
  lua_pop(L, 1);
  return 1;
}

static void conn_free(lconn *lc) {
  if (!lc->c) return;
  lc->finalized = 1;
  mk_conn_release(lc->c);
  lc->c = NULL;
  lc->st->nhandles--;
  *lc->pprev = lc->next;
  if (lc->next) lc->next->pprev = lc->pprev;
}

void lmk_conn_close_all(lmk_state *st) {
  while (st->conns) conn_free(st->conns);
}

static int conn_gc(lua_State *L) {
  conn_free(check_conn(L, 1));
  return 0;
}

/* Methods */

static lconn *open_conn(lua_State *L, const char *who) {
  lconn *lc = check_conn(L, 1);
  mk_conn_state s = lc->c ? mk_conn_state_of(lc->c) : MK_CONN_CLOSED;
  if (s == MK_CONN_CLOSED) lmk_raise(L, MK_ERR_INTERFACE, "%s: connection is closed", who);
  if (s == MK_CONN_NEW) lmk_raise(L, MK_ERR_INTERFACE, "%s: connection is not connected (call conn:connect() first)", who);
  return lc;
}

static int conn_connect(lua_State *L) {
  lconn *lc = check_conn(L, 1);
  mk_conn_state s = lc->c ? mk_conn_state_of(lc->c) : MK_CONN_CLOSED;
  const char **sess = NULL;
  int n = 0, i;
  lua_settop(L, 1);
  if (s == MK_CONN_CLOSED) return lmk_raise(L, MK_ERR_INTERFACE, "connect: connection is closed");
  if (lc->connect_ref != LUA_NOREF) { /* connecting: the same future */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lc->connect_ref);
    return 1;
  }
  if (s != MK_CONN_NEW) { /* connected: a done future */
    lmk_future_new(L);
    lua_pushvalue(L, 1);
    lmk_future_resolve(L, -2, 1);
    return 1;
  }
  lua_getiuservalue(L, 1, 1);
  if (lua_getfield(L, 2, "setsession") == LUA_TTABLE) {
    n = (int)lua_rawlen(L, 3);
    sess = lua_newuserdatauv(L, sizeof *sess * (size_t)(n ? n : 1), 0);
    for (i = 0; i < n; i++) {
      lua_rawgeti(L, 3, i + 1);
      sess[i] = lua_tostring(L, -1); /* anchored by the options table */
      lua_pop(L, 1);
    }
  }
  lua_getfield(L, 2, "dsn");
  lmk_future_new(L);
  lua_pushvalue(L, -1);
  lc->connect_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  pend(L, lc, 1);
  mk_conn_connect(lc->c, lua_tostring(L, -2), sess, n); /* copies what it keeps */
  return 1;
}

/* Builds and submits a request of nstmts prepared statements (on the stack from
 * first), resolving to kind; timeout and factory from the opts table at optidx. */
static int submit(lua_State *L, lconn *lc, int first, int nstmts, unsigned flags, int kind, int optidx) {
  lua_Integer timeout = 0;
  int i, factory = LUA_NOREF;
  lreq *q;
  mk_req *r;
  if (optidx) {
    if (lua_getfield(L, optidx, "timeout") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 0x7fffffff)
        return lmk_raise(L, MK_ERR_INTERFACE, "opts.timeout must be a non-negative integer (ms)");
      timeout = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, optidx, "cursor_factory");
    if (!lua_isnil(L, -1)) {
      check_factory(L, -1, "opts");
      factory = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
      lua_pop(L, 1);
    }
  }
  q = malloc(sizeof *q);
  r = mk_req_new(nstmts, flags, (int)timeout, req_done, q);
  if (!q || !r) goto nomem;
  for (i = 0; i < nstmts; i++)
    if (lmk_params_fill(L, r, i, first + i) < 0) goto nomem;
  q->lc = lc;
  q->r = r;
  q->kind = kind;
  q->factory = factory;
  {
    struct lfuture *f = lmk_future_new(L);
    lua_pushvalue(L, -1);
    q->fref = luaL_ref(L, LUA_REGISTRYINDEX);
    lmk_future_set_cancel(f, cancel_req, q);
  }
  pend(L, lc, 1);
  if (mk_conn_submit(lc->c, r) < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, q->fref);
    luaL_unref(L, LUA_REGISTRYINDEX, factory);
    unpend(L, lc);
    free(q);
    mk_req_free(r);
    return lmk_raise(L, MK_ERR_INTERFACE, "connection is closed");
  }
  return 1;
nomem:
  luaL_unref(L, LUA_REGISTRYINDEX, factory);
  free(q);
  mk_req_free(r);
  return luaL_error(L, "not enough memory");
}

static int opt_table(lua_State *L, int idx, const char *who) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (!lua_istable(L, idx)) return lmk_raise(L, MK_ERR_INTERFACE, "%s: opts must be a table", who);
  return idx;
}

static int conn_execute(lua_State *L) {
  lconn *lc = open_conn(L, "execute");
  int opts = opt_table(L, 4, "execute");
  lua_settop(L, 4);
  lmk_params_check(L, 2, 3);
  return submit(L, lc, 5, 1, 0, R_CURSOR, opts);
}

static int conn_callproc(lua_State *L) {
  lconn *lc = open_conn(L, "callproc");
  int opts = opt_table(L, 4, "callproc");
  size_t len;
  const char *name;
  lua_Integer i, n = 0;
  luaL_Buffer b;
  lua_settop(L, 4);
  if (lua_type(L, 2) != LUA_TSTRING) return lmk_raise(L, MK_ERR_INTERFACE, "callproc: name must be a string");
  name = lua_tolstring(L, 2, &len);
  if (!mk_sql_is_routine_name(name, len))
    return lmk_raise(L, MK_ERR_INTERFACE, "callproc: '%s' is not a routine name", name);
  if (!lua_isnil(L, 3)) {
    /* positional only: the count must be known before the SQL is built */
    if (!lua_istable(L, 3)) return lmk_raise(L, MK_ERR_INTERFACE, "callproc: params must be an array");
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "n") != 0)
        return lmk_raise(L, MK_ERR_INTERFACE, "callproc: params must be an array (named arguments are not supported)");
    }
    if (lua_getfield(L, 3, "n") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        return lmk_raise(L, MK_ERR_INTERFACE, "callproc: params.n must be a non-negative integer");
      n = lua_tointeger(L, -1);
    } else {
      n = (lua_Integer)lua_rawlen(L, 3);
    }
    lua_pop(L, 1);
    if (n > 65535)
      return lmk_raise(L, MK_ERR_INTERFACE, "callproc: too many parameters (%d; PostgreSQL allows 65535)", n > 0x7fffffff ? -1 : (int)n);
  }
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "SELECT * FROM ");
  luaL_addlstring(&b, name, len);
  luaL_addchar(&b, '(');
  for (i = 1; i <= n; i++) {
    if (i > 1) luaL_addstring(&b, ", ");
    lua_pushfstring(L, "$%d", (int)i);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  lua_replace(L, 2);
  lmk_params_check(L, 2, 3);
  return submit(L, lc, 5, 1, 0, R_CURSOR, opts);
}

static int conn_transaction(lua_State *L) {
  lconn *lc = open_conn(L, "transaction");
  int opts = opt_table(L, 3, "transaction"), first;
  unsigned flags = MK_REQ_TXN | MK_REQ_ROLLBACK;
  lua_Integer i, n;
  lua_settop(L, 3);
  if (!lua_istable(L, 2) || (n = (lua_Integer)lua_rawlen(L, 2)) == 0)
    return lmk_raise(L, MK_ERR_INTERFACE, "transaction: statements must be a non-empty array");
  if (opts && lua_getfield(L, opts, "auto_rollback") != LUA_TNIL && !lua_toboolean(L, -1)) flags = MK_REQ_TXN;
  lua_settop(L, 3);
  luaL_checkstack(L, (int)n + 8, "too many statements");
  first = 4;
  for (i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, 2, i), item = lua_gettop(L);
    if (t == LUA_TSTRING) {
      lua_pushnil(L);
    } else if (t == LUA_TTABLE) {
      lua_rawgeti(L, item, 1);
      lua_rawgeti(L, item, 2);
      lua_remove(L, item);
      item = lua_gettop(L) - 1;
      if (lua_type(L, item) != LUA_TSTRING)
        return lmk_raise(L, MK_ERR_INTERFACE, "transaction: statement %d must be \"sql\" or {\"sql\", params}", (int)i);
    } else {
      return lmk_raise(L, MK_ERR_INTERFACE, "transaction: statement %d must be \"sql\" or {\"sql\", params}", (int)i);
    }
    lmk_params_check(L, item, item + 1);
    lua_replace(L, item);
    lua_pop(L, 1);
  }
  return submit(L, lc, first, (int)n, flags, R_TXN, opts);
}

static int conn_ping(lua_State *L) {
  lconn *lc = open_conn(L, "ping");
  lua_settop(L, 1);
  lua_pushliteral(L, "SELECT 1");
  lmk_params_check(L, 2, 3);
  return submit(L, lc, 3, 1, 0, R_CONN, 0);
}

static int conn_mogrify(lua_State *L) {
  lconn *lc = check_conn(L, 1);
  PGconn *pg = lc->c ? mk_conn_pg(lc->c) : NULL;
  lua_settop(L, 3);
  if (!pg || mk_conn_state_of(lc->c) != MK_CONN_READY)
    return lmk_raise(L, MK_ERR_INTERFACE, "mogrify: connection is not connected");
  return lmk_mogrify(L, pg, 2, 3);
}

static int conn_close(lua_State *L) {
  lconn *lc = check_conn(L, 1);
  if (lc->c) mk_conn_close(lc->c);
  return 0;
}

/* conn:_set_decoder(oid, fn): decoder for this connection (the Lua layer's
 * register_json and register_hstore use it). */
static int conn_set_decoder(lua_State *L) {
  lua_Integer oid;
  check_conn(L, 1);
  oid = luaL_checkinteger(L, 2);
  lua_settop(L, 3);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "decoders");
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, oid);
  return 0;
}

static const char *state_name(lconn *lc) {
  if (!lc->c) return "closed";
  switch (mk_conn_state_of(lc->c)) {
  case MK_CONN_NEW: return "new";
  case MK_CONN_CONNECTING: return "connecting";
  case MK_CONN_READY: return mk_conn_busy(lc->c) ? "busy" : "idle";
  default: return "closed";
  }
}

static int conn_tostring(lua_State *L) {
  lconn *lc = check_conn(L, 1);
  PGconn *pg = lc->c ? mk_conn_pg(lc->c) : NULL;
  const char *host = NULL, *db = NULL;
  lua_getiuservalue(L, 1, 1);
  if (pg && mk_conn_state_of(lc->c) == MK_CONN_READY) {
    host = PQhost(pg);
    db = PQdb(pg);
  }
  if (!host && lua_getfield(L, 2, "host") == LUA_TSTRING) host = lua_tostring(L, -1);
  if (!host && lua_getfield(L, 2, "hostaddr") == LUA_TSTRING) host = lua_tostring(L, -1);
  if (!db && lua_getfield(L, 2, "dbname") == LUA_TSTRING) db = lua_tostring(L, -1);
  lua_pushfstring(L, "<momoko.Connection host=%s dbname=%s state=%s>", host ? host : "(default)",
                  db ? db : "(default)", state_name(lc));
  return 1;
}

static int conn_index(lua_State *L) {
  lconn *lc = check_conn(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "closed") == 0) {
    lua_pushboolean(L, !lc->c || mk_conn_state_of(lc->c) == MK_CONN_CLOSED);
    return 1;
  }
  if (k && strcmp(k, "server_version") == 0) {
    PGconn *pg = lc->c ? mk_conn_pg(lc->c) : NULL;
    if (!pg || mk_conn_state_of(lc->c) != MK_CONN_READY) return 0;
    lua_pushinteger(L, PQserverVersion(pg));
    return 1;
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

void lmk_open_conn(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"connect", conn_connect},   {"execute", conn_execute}, {"callproc", conn_callproc},
    {"transaction", conn_transaction}, {"ping", conn_ping}, {"mogrify", conn_mogrify},
    {"close", conn_close},       {"_set_decoder", conn_set_decoder}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__index", conn_index}, {"__gc", conn_gc}, {"__close", conn_close},
    {"__tostring", conn_tostring}, {NULL, NULL}};
  luaL_newmetatable(L, LMK_CONN);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  lua_setfield(L, -3, "Connection_methods"); /* the Lua layer adds methods here */
  lua_pop(L, 1);
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &conns_key);
  lua_pushcfunction(L, l_connection);
  lua_setfield(L, -2, "Connection");
}
