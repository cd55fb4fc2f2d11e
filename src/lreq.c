/* lreq: requests of a Connection or a Pool (execute, callproc, transaction, ping):
 * argument checks, the request's future, and its completion. Both objects start with
 * an lowner, which says how to hand a request over; while requests are outstanding
 * the object is anchored in the registry, so a request always finds its owner.
 * Completion runs its Lua work under lua_pcall on the main thread; once the owner is
 * finalized (or the state is closing) it only frees. */
#include <stdlib.h>
#include <string.h>

#include "lmomoko.h"
#include "mk_sql.h"

/* What a request resolves to. */
enum { R_CURSOR, R_TXN, R_OWNER };

typedef struct lreq {
  lowner *o;
  mk_req *r;
  struct lfuture *f; /* the future, kept alive by fref */
  int fref;    /* the future */
  int factory; /* registry ref of a per-request cursor_factory, or LUA_NOREF */
  int kind;
} lreq;

void lmk_pend(lua_State *L, lowner *o, int idx) {
  if (o->pending++ == 0) {
    lua_pushvalue(L, idx);
    o->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

void lmk_unpend(lua_State *L, lowner *o) {
  if (--o->pending == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, o->anchor);
    o->anchor = LUA_NOREF;
  }
}

static const char owners_key = 'O'; /* registry: weak lightuserdata(owner) -> userdata */

void lmk_push_owner(lua_State *L, lowner *o) {
  if (o->pending > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->anchor);
    return;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &owners_key);
  lua_rawgetp(L, -1, o);
  lua_remove(L, -2);
}

lowner *lmk_owner_new(lua_State *L, size_t size, const char *mt, const lowner_ops *ops, int uv) {
  lowner *o;
  uv = lua_absindex(L, uv);
  o = lua_newuserdatauv(L, size, 1);
  memset(o, 0, size);
  o->ops = ops;
  o->st = lmk_state_of(L);
  o->anchor = LUA_NOREF;
  o->finalized = 1;
  luaL_setmetatable(L, mt);
  lua_pushvalue(L, uv);
  lua_setiuservalue(L, -2, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &owners_key);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, o);
  lua_pop(L, 1);
  return o;
}

int lmk_owner_method(lua_State *L) {
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

void lmk_open_owner_class(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods,
                          const char *field) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &owners_key) != LUA_TTABLE) {
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &owners_key);
  }
  lua_pop(L, 1);
  luaL_newmetatable(L, mt);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lmk_add_request_methods(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  lua_setfield(L, -3, field); /* module[field]: the Lua layer adds methods there */
  lua_pop(L, 1);
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

void lmk_protect(lmk_state *st, lua_CFunction fn, void *a, void *b) {
  lua_State *L = st->L;
  int rc;
  st->callbacks++;
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, a);
  lua_pushlightuserdata(L, b);
  rc = lua_pcall(L, 2, 0, 0);
  st->callbacks--;
  if (rc != LUA_OK) lmk_report(L);
}

int lmk_silent(const lowner *o) { return o->finalized || o->st->closing; }

int lmk_check_factory(lua_State *L, int idx, const char *who) {
  if (lua_isnil(L, idx) || lua_isfunction(L, idx)) return 0;
  if (lua_type(L, idx) == LUA_TSTRING &&
      (strcmp(lua_tostring(L, idx), "array") == 0 || strcmp(lua_tostring(L, idx), "dict") == 0))
    return strcmp(lua_tostring(L, idx), "dict") == 0;
  return lmk_raise(L, MK_ERR_INTERFACE, "%s: cursor_factory must be momoko.cursors.array, momoko.cursors.dict or a function", who);
}

void lmk_run_factory(lua_State *L, int futidx, int connidx, int factoryidx) {
  futidx = lua_absindex(L, futidx);
  connidx = lua_absindex(L, connidx);
  factoryidx = lua_absindex(L, factoryidx);
  lua_getfield(L, LUA_REGISTRYINDEX, "momoko.after_connect");
  lua_pushvalue(L, futidx);
  lua_pushvalue(L, connidx);
  lua_pushvalue(L, factoryidx);
  lua_call(L, 3, 0);
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

lowner *lmk_check_owner(lua_State *L, int idx, const char *who) {
  lowner *o = luaL_testudata(L, idx, LMK_CONN);
  if (!o) o = luaL_testudata(L, idx, LMK_POOL);
  if (!o) lmk_raise(L, MK_ERR_INTERFACE, "%s: a momoko.Connection or momoko.Pool expected, got %s", who, luaL_typename(L, idx));
  o->ops->check(L, o, who);
  return o;
}

/* Completion */

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
  int uv;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, q->fref);
  if (err) {
    lmk_push_mk_error(L, err);
    lmk_future_fail(L, 1);
    return 0;
  }
  lmk_push_owner(L, q->o);
  if (q->kind == R_OWNER) {
    lmk_future_resolve(L, 1, 1);
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
  lmk_future_resolve(L, 1, 1);
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
  lowner *o = q->o;
  lua_State *L = o->st->L;
  if (lmk_silent(o)) {
    lmk_future_set_cancel(q->f, NULL, NULL); /* q is freed below: no Lua runs here */
  } else {
    int rc;
    o->st->callbacks++;
    lua_pushcfunction(L, req_done_lua);
    lua_pushlightuserdata(L, q);
    rc = lua_pcall(L, 1, 0, 0);
    o->st->callbacks--;
    if (rc != LUA_OK) {
      /* the future still pending: fail it with what was raised */
      lua_pushcfunction(L, req_done_fail);
      lua_pushlightuserdata(L, q);
      lua_pushnil(L);
      lua_rotate(L, -4, -1); /* fn, q, nil, err */
      if (lua_pcall(L, 3, 0, 0) != LUA_OK) lmk_report(L);
      lmk_future_set_cancel(q->f, NULL, NULL);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, q->fref);
    luaL_unref(L, LUA_REGISTRYINDEX, q->factory);
    lmk_unpend(L, o);
  }
  free(q);
  mk_req_free(r);
}

static int cancel_req(lua_State *L, void *ud) {
  lreq *q = ud;
  (void)L;
  return q->o->ops->cancel(q->o, q->r);
}

/* Builds and submits a request of nstmts prepared statements (on the stack from
 * first) for the owner at index 1, resolving to kind; timeout and factory from the
 * opts table at optidx. */
static int submit(lua_State *L, lowner *o, int first, int nstmts, unsigned flags, int kind, int optidx) {
  lua_Integer timeout = 0;
  int i, factory = LUA_NOREF, refused, raise = 0;
  const char *why = NULL;
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
      lmk_check_factory(L, -1, "opts");
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
  q->o = o;
  q->r = r;
  q->kind = kind;
  q->factory = factory;
  q->f = lmk_future_new(L);
  lua_pushvalue(L, -1);
  q->fref = luaL_ref(L, LUA_REGISTRYINDEX);
  lmk_future_set_cancel(q->f, cancel_req, q);
  lmk_pend(L, o, 1);
  refused = o->ops->submit(o, r, &why, &raise);
  if (refused) {
    lmk_unpend(L, o);
    luaL_unref(L, LUA_REGISTRYINDEX, q->fref);
    luaL_unref(L, LUA_REGISTRYINDEX, factory);
    free(q);
    mk_req_free(r);
    if (raise) return lmk_raise(L, (mk_kind)refused, "%s", why);
    lmk_push_error(L, (mk_kind)refused, why); /* the future fails with it */
    lmk_future_fail(L, -2);
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

static int req_execute(lua_State *L) {
  lowner *o = lmk_check_owner(L, 1, "execute");
  int opts = opt_table(L, 4, "execute");
  lua_settop(L, 4);
  lmk_params_check(L, 2, 3);
  return submit(L, o, 5, 1, 0, R_CURSOR, opts);
}

static int req_callproc(lua_State *L) {
  lowner *o = lmk_check_owner(L, 1, "callproc");
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
  return submit(L, o, 5, 1, 0, R_CURSOR, opts);
}

static int req_transaction(lua_State *L) {
  lowner *o = lmk_check_owner(L, 1, "transaction");
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
  return submit(L, o, first, (int)n, flags, R_TXN, opts);
}

static int req_ping(lua_State *L) {
  lowner *o = lmk_check_owner(L, 1, "ping");
  lua_settop(L, 1);
  lua_pushliteral(L, "SELECT 1");
  lmk_params_check(L, 2, 3);
  return submit(L, o, 3, 1, 0, R_OWNER, 0);
}

/* obj:_set_decoder(oid, fn): a decoder for the results of this object's requests
 * (the Lua layer's register_json and register_hstore use it). */
static int req_set_decoder(lua_State *L) {
  lua_Integer oid;
  if (!luaL_testudata(L, 1, LMK_CONN)) luaL_checkudata(L, 1, LMK_POOL);
  oid = luaL_checkinteger(L, 2);
  lua_settop(L, 3);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "decoders");
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, oid);
  return 0;
}

void lmk_add_request_methods(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"execute", req_execute}, {"callproc", req_callproc}, {"transaction", req_transaction},
    {"ping", req_ping},       {"_set_decoder", req_set_decoder}, {NULL, NULL}};
  luaL_setfuncs(L, methods, 0);
}
