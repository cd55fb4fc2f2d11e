/* lreq: request records, their futures and their completion (see lreq.h). */
#include "lreq.h"

#include <stdlib.h>
#include <string.h>

#include "lcopy.h"
#include "lcursor.h"
#include "lerror.h"
#include "lfuture.h"
#include "loptions.h"
#include "lparams.h"
#include "ltypes.h"
#include "mk_sql.h"

/* What a request resolves to. */
enum { R_CURSOR, R_TXN, R_OWNER, R_COPY_FROM, R_COPY_SINK, R_COPY_STRING };

/* What a request keeps in Lua until it completes, in its future's resolver slots: its
 * one registry reference (fref, the future) holds them all. */
enum {
  SLOT_OWNER = LMK_FUTURE_SLOT, /* the Connection or Pool: anchored while the request is out */
  SLOT_FACTORY,                 /* the request's own cursor_factory, or nil */
  SLOT_SQL,                     /* the SQL (a table of them for a transaction): cursor.query */
  SLOT_DATA,                    /* copy_from: the source; copy_to: the sink (or nil) */
  NSLOTS = SLOT_DATA - LMK_FUTURE_SLOT + 1
};

struct lreq {
  lowner *o;
  mk_req *r;
  lmk_req_cancel_fn cancel;
  lfuture *f; /* the future, kept alive by fref */
  int fref;   /* the future */
  int kind;
  PGresult **res; /* the statements' results, taken from r once it completed */
  int nres;
  int looked_up;  /* the unknown types of its results were looked up (or tried) */
  int deferred;   /* its completion waits for that lookup */
  int in_done;    /* req_done is running Lua for it */
  double t0;      /* with a trace function: when it was built (lmk_trace_clock) */
  lua_Integer rows; /* with a trace function: its rowcount, summed over statements; -1: none */
  lcopy *copy;      /* copy_from, copy_to: their data (lcopy.h); else NULL */
  int in_hook;      /* a COPY hook is running its source or sink */
  int done_in_hook; /* it completed meanwhile (the source or sink closed the connection):
                       freed by the hook once that returns */
  int server;       /* where its owner ran it, for the query event (lmk_trace_set_server) */
};

/* Frees q, its request, its COPY state (copy_from, copy_to) and the results no cursor
 * took. Runs no Lua. */
static void req_free(lreq *q) {
  int i;
  for (i = 0; i < q->nres; i++) PQclear(q->res[i]);
  free(q->res);
  if (q->copy) mk_buf_free(&q->copy->buf);
  free(q->copy);
  mk_req_free(q->r);
  free(q);
}

/* Empties the resolver slots of the future at fidx: the future may live on long after
 * its request, and must not keep the owner, the factory or the SQL alive. */
static void clear_slots(lua_State *L, int fidx) {
  int i;
  fidx = lua_absindex(L, fidx);
  for (i = 0; i < NSLOTS; i++) {
    lua_pushnil(L);
    lua_setiuservalue(L, fidx, LMK_FUTURE_SLOT + i);
  }
}

/* Drops what q holds in Lua: its future's slots and its reference to the future. */
static void req_release(lua_State *L, lreq *q) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, q->fref);
  clear_slots(L, -1);
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, q->fref);
}

/* Takes the results out of the completed request, so that they outlive a lookup. */
static void take_results(lua_State *L, lreq *q) {
  int i, n = mk_req_count(q->r);
  if (q->res || n <= 0) return;
  q->res = calloc((size_t)n, sizeof *q->res);
  if (!q->res) luaL_error(L, "not enough memory");
  q->nres = n;
  for (i = 0; i < n; i++) q->res[i] = mk_req_take_result(q->r, i);
  if (q->o->trace) { /* the rowcount of the query event, before cursors take the results */
    for (i = 0; i < n; i++) {
      const char *t = q->res[i] ? PQcmdTuples(q->res[i]) : NULL;
      lua_Integer c = -1;
      if (q->res[i] && PQresultStatus(q->res[i]) == PGRES_TUPLES_OK) c = PQntuples(q->res[i]);
      else if (t && *t) c = (lua_Integer)strtoll(t, NULL, 10);
      if (c >= 0) q->rows = (q->rows < 0 ? 0 : q->rows) + c;
    }
  }
}

/* Pushes what result i becomes: a cursor, or the cursor factory's value. The future is
 * at 1, the owner's options table at uv. */
static void push_result(lua_State *L, lreq *q, int i, int uv) {
  PGresult *none = NULL;
  int factory;
  if (lua_getiuservalue(L, 1, SLOT_FACTORY) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_getfield(L, uv, "cursor_factory");
  }
  factory = lua_gettop(L);
  if (lua_getiuservalue(L, 1, SLOT_SQL) == LUA_TTABLE) lua_rawgeti(L, -1, i + 1);
  /* the cursor takes the result from q once it exists: until then q still owns it */
  lmk_cursor_push(L, q->res ? &q->res[i] : &none, -1,
                  lua_type(L, factory) == LUA_TSTRING && strcmp(lua_tostring(L, factory), "dict") == 0, uv);
  lua_replace(L, factory + 1);
  lua_settop(L, factory + 1);
  if (lua_isfunction(L, factory)) {
    lua_pushvalue(L, factory);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
  }
  lua_replace(L, factory);
}

/* Tracing (API §10): trace_lua(q) builds q's query event and calls the owner's trace
 * function with it, once q's future is settled (its slots still hold the owner and the
 * SQL). The SQL of a transaction is its statements joined with "; "; rows is the sum
 * of the statements' rowcounts (nil when none has one); never a parameter value. */
static int trace_lua(lua_State *L) {
  lreq *q = lua_touserdata(L, 1);
  mk_error *err = mk_req_error(q->r);
  int fut, uv;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, q->fref);
  fut = lua_gettop(L);
  lua_getiuservalue(L, fut, SLOT_OWNER);
  lua_getiuservalue(L, -1, 1);
  uv = lua_gettop(L);
  lmk_trace_push_event(L, uv, "query", lmk_trace_clock() - q->t0);
  lmk_trace_set_server(L, uv, q->server);
  if (lua_getiuservalue(L, fut, SLOT_SQL) == LUA_TTABLE) {
    luaL_Buffer b;
    lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
    int t = lua_gettop(L);
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
      if (i > 1) luaL_addstring(&b, "; ");
      lua_rawgeti(L, t, i);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_replace(L, t);
  }
  lua_setfield(L, -2, "sql");
  if (q->rows >= 0) {
    lua_pushinteger(L, q->rows);
    lua_setfield(L, -2, "rows");
  }
  if (err) {
    lmk_push_mk_error(L, err);
    lua_setfield(L, -2, "error");
  }
  lmk_trace_call(L, uv);
  return 0;
}

/* Type lookups (see ltypes.c). A result with a column whose type the owner does not
 * know yet (not built in, not registered, not learnt) waits, before its future
 * resolves, for one catalog query run through the owner's own execute: so the
 * common case of built-in types costs no round trip, and each other type costs one
 * per Connection or Pool. The request record is then held by a box userdata that the
 * lookup's done callback finishes; at lua_close an unfinished box only frees. If the
 * lookup cannot run or fails, the columns come back as text this once. */

typedef struct lookup_box {
  lreq *q; /* NULL once finished */
} lookup_box;

static int box_gc(lua_State *L) {
  lookup_box *b = lua_touserdata(L, 1);
  if (b->q) req_free(b->q); /* only at lua_close: no Lua work any more */
  b->q = NULL;
  return 0;
}

static int req_finish_lua(lua_State *L);

/* Runs the final part of q's completion under pcall: a raise fails its future. */
static void finish(lua_State *L, lreq *q) {
  lua_pushcfunction(L, req_finish_lua);
  lua_pushlightuserdata(L, q);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, q->fref);
    lua_insert(L, -2);
    lmk_future_fail(L, -2);
    lua_pop(L, 1);
  }
}

/* learn(f, oids): records the rows of the lookup's cursor (f resolved) in the owner's
 * types table. */
static int learn_lua(lua_State *L) {
  lreq *q = lua_touserdata(L, 3);
  lua_settop(L, 3);
  lua_getfield(L, 1, "result");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1); /* the cursor */
  lua_getfield(L, -1, "fetchall");
  lua_insert(L, -2);
  lua_call(L, 1, 1); /* its rows */
  lmk_push_owner(L, q->o);
  lua_getiuservalue(L, -1, 1);
  lmk_type_learn(L, -1, 2, 4);
  return 0;
}

/* The lookup's done callback: upvalues the box and the OIDs looked up. */
static int lookup_done(lua_State *L) {
  lookup_box *b = lua_touserdata(L, lua_upvalueindex(1));
  lreq *q = b->q;
  if (!q) return 0;
  b->q = NULL;
  lua_settop(L, 1);
  lua_getfield(L, 1, "error");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  if (lua_isnil(L, -1)) { /* learnt; a failure to record it only costs another lookup */
    lua_pushcfunction(L, learn_lua);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushlightuserdata(L, q);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
  lua_settop(L, 0);
  finish(L, q);
  q->deferred = 0;
  if (!q->in_done) { /* else req_done frees it when it returns */
    if (q->o->trace && !lmk_silent(q->o)) { /* errors of the trace function go to on_error */
      lua_pushcfunction(L, trace_lua);
      lua_pushlightuserdata(L, q);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) lmk_report(L);
    }
    req_release(L, q);
    req_free(q);
  }
  return 0;
}

/* start_lookup(owner, oids): runs owner:execute(lookup, {oids}) and returns its future. */
static int start_lookup_lua(lua_State *L) {
  lua_settop(L, 2);
  lua_getfield(L, 1, "execute");
  lua_pushvalue(L, 1);
  lua_pushstring(L, lmk_type_lookup_sql);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "cursor_factory");
  lua_call(L, 4, 1);
  return 1;
}

/* Looks up the types of q's results the owner (at owner, options table at uv) does
 * not know. Returns 1 when q now waits for that lookup, 0 when it can finish now. */
static int maybe_lookup(lua_State *L, lreq *q, int owner, int uv) {
  int i, col, oids, top = lua_gettop(L), any = 0;
  lookup_box *b;
  for (i = 0; i < q->nres && !any; i++) { /* the common case: nothing unknown, no tables */
    PGresult *res = q->res[i];
    int n = res ? PQnfields(res) : 0;
    for (col = 0; col < n && !any; col++) any = lmk_type_unknown(L, uv, PQftype(res, col));
  }
  if (!any) return 0;
  lua_newtable(L); /* oid -> true */
  lua_newtable(L); /* the OIDs, in order */
  oids = lua_gettop(L);
  for (i = 0; i < q->nres; i++) {
    PGresult *res = q->res[i];
    int n = res ? PQnfields(res) : 0;
    for (col = 0; col < n; col++) {
      Oid oid = PQftype(res, col);
      if (!lmk_type_unknown(L, uv, oid) || lua_rawgeti(L, oids - 1, (lua_Integer)oid) != LUA_TNIL) {
        lua_settop(L, oids);
        continue;
      }
      lua_pop(L, 1);
      lua_pushboolean(L, 1);
      lua_rawseti(L, oids - 1, (lua_Integer)oid);
      lua_pushinteger(L, (lua_Integer)oid);
      lua_rawseti(L, oids, (lua_Integer)lua_rawlen(L, oids) + 1);
    }
  }
  if (lua_rawlen(L, oids) == 0) {
    lua_settop(L, top);
    return 0;
  }
  lua_pushcfunction(L, start_lookup_lua);
  lua_pushvalue(L, owner);
  lua_pushvalue(L, oids);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) { /* refused at the call: text this time */
    lua_settop(L, top);
    return 0;
  }
  /* a future done already (refused by a pool): learn from it if it can, go on */
  lua_getfield(L, -1, "done");
  lua_pushvalue(L, -2);
  lua_call(L, 1, 1);
  if (lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_getfield(L, -1, "error");
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
      lua_pushcfunction(L, learn_lua);
      lua_pushvalue(L, -3);
      lua_pushvalue(L, oids);
      lua_pushlightuserdata(L, q);
      if (lua_pcall(L, 3, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
    lua_settop(L, top);
    return 0;
  }
  lua_pop(L, 1);
  lua_getfield(L, -1, "add_done_callback");
  lua_insert(L, -2);
  b = lua_newuserdatauv(L, sizeof *b, 0);
  b->q = NULL;
  if (luaL_newmetatable(L, "momoko.lookup")) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_pushvalue(L, oids);
  lua_pushcclosure(L, lookup_done, 2);
  b->q = q; /* the box owns q from here... */
  /* f:add_done_callback(lookup_done): f is pending, so it is not called at once */
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    b->q = NULL; /* ...unless that failed: finish now, with the text form */
    lua_settop(L, top);
    return 0;
  }
  q->deferred = 1;
  lua_settop(L, top);
  return 1;
}

static void push_copy_result(lua_State *L, lreq *q);

static int req_finish_lua(lua_State *L) {
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
  lua_getiuservalue(L, 1, SLOT_OWNER);
  if (q->kind == R_OWNER) {
    lmk_future_resolve(L, 1, 1);
    return 0;
  }
  if (q->kind >= R_COPY_FROM) {
    push_copy_result(L, q);
    lmk_future_resolve(L, 1, 1);
    return 0;
  }
  lua_getiuservalue(L, 2, 1);
  uv = lua_gettop(L);
  take_results(L, q);
  if (!q->looked_up) {
    q->looked_up = 1;
    if (maybe_lookup(L, q, 2, uv)) return 0;
  }
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

/* Resolves or fails the future; a result factory (or anything else) that raises fails
 * the future with its error, which thus reaches whoever awaits it. */
static int req_done_lua(lua_State *L) {
  finish(L, lua_touserdata(L, 1));
  return 0;
}

/* The core hands r back. No Lua may reach the core's request once it completed: the
 * cancel hook goes before anything runs (a cursor_factory may call f:cancel()). A
 * request whose results wait for a type lookup is finished and freed by it. */
static void req_done(mk_req *r, void *ud) {
  lreq *q = ud;
  lowner *o = q->o;
  lua_State *L = o->st->L;
  (void)r;
  lmk_future_set_cancel(q->f, NULL, NULL);
  if (!lmk_silent(o)) {
    q->in_done = 1;
    lmk_enter(o->st, req_done_lua, q, NULL);
    q->in_done = 0;
    if (q->deferred) return;
    if (o->trace && !lmk_silent(o)) lmk_enter(o->st, trace_lua, q, NULL); /* errors: on_error */
    req_release(L, q);
  }
  if (q->in_hook) {
    q->done_in_hook = 1;
    q->copy->ended = 1; /* the source is asked for nothing more */
    return;
  }
  req_free(q);
}

static int cancel_req(lua_State *L, void *ud) {
  lreq *q = ud;
  (void)L;
  return q->cancel(q->o, q->r);
}

/* Builds a request of nstmts prepared statements (on the stack from first) for the
 * owner at index 1, resolving to kind; timeout and factory from the opts table at
 * optidx. Pushes the future. Whatever may raise happens before the mallocs, and when
 * a malloc fails everything is freed before raising. */
static lreq *build(lua_State *L, lowner *o, lmk_req_cancel_fn cancel, int first, int nstmts, unsigned flags,
                   int kind, int optidx) {
  lua_Integer timeout = -1;
  int i, fut, fref, rc = -1;
  lfuture *f;
  lreq *q;
  mk_req *r;
  if (optidx) {
    if (lua_getfield(L, optidx, "timeout") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 0x7fffffff)
        lmk_raise(L, MK_ERR_INTERFACE, "opts.timeout must be a non-negative integer (ms)");
      timeout = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, optidx, "cursor_factory");
    if (!lua_isnil(L, -1)) lmk_check_factory(L, -1, "opts");
  } else {
    lua_pushnil(L);
  }
  if (timeout < 0) { /* none of its own: the owner's command_timeout (0: none) */
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, "command_timeout");
    timeout = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    lua_pop(L, 2);
  }
  f = lmk_future_new_slots(L, NSLOTS);
  lua_insert(L, -2); /* the factory (or nil) on top */
  fut = lua_gettop(L) - 1;
  lua_setiuservalue(L, fut, SLOT_FACTORY);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, fut, SLOT_OWNER);
  if (nstmts == 1) {
    lmk_params_push_sql(L, first);
  } else {
    lua_createtable(L, nstmts, 0);
    for (i = 0; i < nstmts; i++) {
      lmk_params_push_sql(L, first + i);
      lua_rawseti(L, -2, i + 1);
    }
  }
  lua_setiuservalue(L, fut, SLOT_SQL);
  lua_pushvalue(L, fut);
  fref = luaL_ref(L, LUA_REGISTRYINDEX);
  q = malloc(sizeof *q);
  r = mk_req_new(nstmts, flags, (int)timeout, req_done, q);
  if (!q || !r) goto nomem;
  for (i = 0; i < nstmts; i++)
    if ((rc = lmk_params_fill(L, r, i, first + i)) < 0) goto nomem;
  q->o = o;
  q->r = r;
  q->cancel = cancel;
  q->kind = kind;
  q->f = f;
  q->fref = fref;
  q->res = NULL;
  q->nres = 0;
  q->looked_up = 0;
  q->deferred = 0;
  q->t0 = o->trace ? lmk_trace_clock() : 0;
  q->rows = -1;
  q->in_done = 0;
  q->copy = NULL;
  q->in_hook = 0;
  q->done_in_hook = 0;
  q->server = 0;
  lmk_future_set_cancel(f, cancel_req, q);
  return q;
nomem:
  luaL_unref(L, LUA_REGISTRYINDEX, fref);
  free(q);
  mk_req_free(r);
  if (rc == -2)
    lmk_raise(L, MK_ERR_INTERFACE, "parameter too large: libpq sends at most %d bytes per value", MK_REQ_PARAM_MAX);
  lmk_raise(L, MK_ERR_INTERFACE, "not enough memory");
  return NULL;
}

mk_req *lmk_req_core(lreq *q) { return q->r; }

void lmk_req_set_server(lreq *q, int server) { q->server = server; }

unsigned lmk_req_readonly_opt(lua_State *L, int opts, const char *who) {
  int t;
  if (!opts) return 0;
  t = lua_getfield(L, opts, "readonly");
  if (t != LUA_TNIL && t != LUA_TBOOLEAN) lmk_raise(L, MK_ERR_INTERFACE, "%s: opts.readonly must be a boolean", who);
  t = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return t ? MK_REQ_READONLY : 0;
}

int lmk_req_refuse(lua_State *L, lreq *q, mk_kind kind, const char *why, int raise) {
  lmk_future_set_cancel(q->f, NULL, NULL);
  clear_slots(L, -1);
  luaL_unref(L, LUA_REGISTRYINDEX, q->fref);
  req_free(q); /* its COPY state too: a refused COPY leaked it */
  if (raise) return lmk_raise(L, kind, "%s", why);
  lmk_push_error(L, kind, why); /* the future fails with it */
  lmk_future_fail(L, -2);
  return 1;
}

static int opt_table(lua_State *L, int idx, const char *who) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (!lua_istable(L, idx)) return lmk_raise(L, MK_ERR_INTERFACE, "%s: opts must be a table", who);
  return idx;
}

lreq *lmk_req_execute(lua_State *L, lowner *o, lmk_req_cancel_fn cancel) {
  int opts = opt_table(L, 4, "execute");
  lua_settop(L, 4);
  lmk_params_check(L, 2, 3);
  return build(L, o, cancel, 5, 1, lmk_req_readonly_opt(L, opts, "execute"), R_CURSOR, opts);
}

lreq *lmk_req_callproc(lua_State *L, lowner *o, lmk_req_cancel_fn cancel) {
  int opts = opt_table(L, 4, "callproc");
  size_t len;
  const char *name;
  lua_Integer i, n = 0;
  luaL_Buffer b;
  lua_settop(L, 4);
  if (lua_type(L, 2) != LUA_TSTRING) lmk_raise(L, MK_ERR_INTERFACE, "callproc: name must be a string");
  name = lua_tolstring(L, 2, &len);
  if (strlen(name) != len) lmk_raise(L, MK_ERR_INTERFACE, "callproc: name contains a NUL byte");
  if (!mk_sql_is_routine_name(name, len))
    lmk_raise(L, MK_ERR_INTERFACE,
              "callproc: '%s' is not a routine name (one to three dot-separated identifiers, plain or "
              "double-quoted, of at most %d bytes each)", name, MK_SQL_NAME_MAX);
  if (!lua_isnil(L, 3)) {
    /* positional only: the count must be known before the SQL is built */
    if (!lua_istable(L, 3)) lmk_raise(L, MK_ERR_INTERFACE, "callproc: params must be an array");
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "n") != 0)
        lmk_raise(L, MK_ERR_INTERFACE, "callproc: params must be an array (named arguments are not supported)");
    }
    if (lua_getfield(L, 3, "n") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        lmk_raise(L, MK_ERR_INTERFACE, "callproc: params.n must be a non-negative integer");
      n = lua_tointeger(L, -1);
    } else {
      n = (lua_Integer)lua_rawlen(L, 3);
    }
    lua_pop(L, 1);
    if (n > 65535)
      lmk_raise(L, MK_ERR_INTERFACE, "callproc: too many parameters (%d; PostgreSQL allows 65535)", n > 0x7fffffff ? -1 : (int)n);
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
  return build(L, o, cancel, 5, 1, lmk_req_readonly_opt(L, opts, "callproc"), R_CURSOR, opts);
}

lreq *lmk_req_transaction(lua_State *L, lowner *o, lmk_req_cancel_fn cancel) {
  int opts = opt_table(L, 3, "transaction"), first;
  unsigned flags = MK_REQ_TXN | MK_REQ_ROLLBACK;
  lua_Integer i, n;
  lua_settop(L, 3);
  if (!lua_istable(L, 2) || (n = (lua_Integer)lua_rawlen(L, 2)) == 0)
    lmk_raise(L, MK_ERR_INTERFACE, "transaction: statements must be a non-empty array");
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
        lmk_raise(L, MK_ERR_INTERFACE, "transaction: statement %d must be \"sql\" or {\"sql\", params}", (int)i);
    } else {
      lmk_raise(L, MK_ERR_INTERFACE, "transaction: statement %d must be \"sql\" or {\"sql\", params}", (int)i);
    }
    lmk_params_check(L, item, item + 1);
    lua_replace(L, item);
    lua_pop(L, 1);
  }
  return build(L, o, cancel, first, (int)n, flags, R_TXN, opts);
}

/* COPY (API §8). The request's io hooks run the source or the sink on the main thread
 * (lmk_enter); what they raise fails the request with InterfaceError, and the core ends
 * the COPY so that nothing of it is committed. */

typedef struct copy_call {
  lreq *q;
  const char **data; /* copy_from: the piece */
  size_t *len;
  const char *row;   /* copy_to: the row */
  size_t rowlen;
  int rc;
} copy_call;

/* The source or sink (SLOT_DATA of q's future) is pushed at 2. */
static void push_copy_fn(lua_State *L, lreq *q) {
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, q->fref);
  lua_getiuservalue(L, 1, SLOT_DATA);
}

static int copy_src_lua(lua_State *L) {
  lreq *q = lua_touserdata(L, 1);
  copy_call *a = lua_touserdata(L, 2);
  push_copy_fn(L, q);
  a->rc = lmk_copy_next(L, q->copy, 2, a->data, a->len);
  if (a->rc < 0 && !q->done_in_hook) mk_req_fail(q->r, MK_ERR_INTERFACE, lua_tostring(L, -1));
  return 0;
}

static int copy_sink_lua(lua_State *L) {
  lreq *q = lua_touserdata(L, 1);
  copy_call *a = lua_touserdata(L, 2);
  push_copy_fn(L, q);
  a->rc = lmk_copy_sink(L, q->copy, 2, a->row, a->rowlen);
  if (a->rc < 0 && !q->done_in_hook) mk_req_fail(q->r, MK_ERR_INTERFACE, lua_tostring(L, -1));
  return 0;
}

/* Runs fn for a hook of q; -1 (with the request's error set) if it could not run. A
 * source or sink that closed the connection completed q meanwhile: q is freed here and
 * 0 returned, so that the core, which finds its connection closed, sets nothing on the
 * request (freed too). */
static int copy_enter(lreq *q, lua_CFunction fn, copy_call *a, const char *who) {
  int rc;
  a->q = q;
  a->rc = -1;
  if (lmk_silent(q->o)) {
    if (!mk_req_error(q->r)) mk_req_fail(q->r, MK_ERR_INTERFACE, who);
    return -1;
  }
  q->in_hook = 1;
  rc = lmk_enter(q->o->st, fn, q, a);
  q->in_hook = 0;
  if (q->done_in_hook) {
    req_free(q);
    return 0;
  }
  if (rc != LUA_OK) {
    if (!mk_req_error(q->r)) mk_req_fail(q->r, MK_ERR_INTERFACE, who);
    return -1;
  }
  return a->rc;
}

static int copy_src_hook(mk_req *r, const char **data, size_t *len, void *ud) {
  copy_call a;
  (void)r;
  a.data = data;
  a.len = len;
  return copy_enter(ud, copy_src_lua, &a, "copy_from: the source could not be run");
}

static int copy_sink_hook(mk_req *r, const char *data, size_t len, void *ud) {
  lreq *q = ud;
  copy_call a;
  if (q->kind == R_COPY_STRING) {
    if (lmk_copy_collect(q->copy, data, len) == 0) return 0;
    mk_req_fail(r, MK_ERR_INTERFACE, "copy_to: not enough memory");
    return -1;
  }
  a.row = data;
  a.rowlen = len;
  return copy_enter(q, copy_sink_lua, &a, "copy_to: the sink could not be run");
}

/* Pushes what a completed COPY resolves to: the row count, or (copy_to without a sink)
 * the data. */
static void push_copy_result(lua_State *L, lreq *q) {
  PGresult *res = mk_req_take_result(q->r, 0);
  const char *t = res ? PQcmdTuples(res) : NULL;
  lua_Integer n = (t && *t) ? (lua_Integer)strtoll(t, NULL, 10) : q->copy->rows;
  PQclear(res);
  q->rows = n;
  if (q->kind == R_COPY_STRING)
    lua_pushlstring(L, q->copy->buf.data ? q->copy->buf.data : "", q->copy->buf.len);
  else
    lua_pushinteger(L, n);
}

/* Checks copy_from's or copy_to's SQL at 2 (who names the method) and pushes what build
 * takes for it at the top. */
static void copy_sql(lua_State *L, const char *who, const char *direction) {
  if (lua_type(L, 2) != LUA_TSTRING) lmk_raise(L, MK_ERR_INTERFACE, "%s: sql must be a string", who);
  if (!mk_sql_starts_with_keyword(lua_tostring(L, 2), "copy"))
    lmk_raise(L, MK_ERR_INTERFACE, "%s: sql must be a COPY ... %s statement", who, direction);
  lua_pushvalue(L, 2);
  lua_pushnil(L);
  lmk_params_check(L, lua_gettop(L) - 1, lua_gettop(L));
}

/* Gives the built request q (future on top) its COPY state and hooks, with the source
 * or sink at dataidx. */
static lreq *copy_setup(lua_State *L, lreq *q, int dataidx) {
  mk_req_io io = {NULL, copy_src_hook, copy_sink_hook, NULL};
  q->copy = calloc(1, sizeof *q->copy);
  if (!q->copy) {
    lmk_req_refuse(L, q, MK_ERR_INTERFACE, "not enough memory", 1);
    return NULL;
  }
  mk_buf_init(&q->copy->buf);
  io.ud = q;
  mk_req_set_io(q->r, &io);
  lua_pushvalue(L, dataidx);
  lua_setiuservalue(L, -2, SLOT_DATA);
  return q;
}

lreq *lmk_req_copy_from(lua_State *L, lowner *o, lmk_req_cancel_fn cancel) {
  int opts = opt_table(L, 4, "copy_from"), first;
  lua_settop(L, 4);
  copy_sql(L, "copy_from", "FROM STDIN");
  lmk_copy_check_source(L, 3, "copy_from");
  first = lua_gettop(L);
  return copy_setup(L, build(L, o, cancel, first, 1, MK_REQ_COPY_IN, R_COPY_FROM, opts), 3);
}

lreq *lmk_req_copy_to(lua_State *L, lowner *o, lmk_req_cancel_fn cancel) {
  int opts = opt_table(L, 4, "copy_to"), first, kind = R_COPY_SINK;
  lua_settop(L, 4);
  copy_sql(L, "copy_to", "TO STDOUT");
  if (lua_isnil(L, 3))
    kind = R_COPY_STRING;
  else if (!lua_isfunction(L, 3))
    lmk_raise(L, MK_ERR_INTERFACE, "copy_to: sink must be a function or nil, got %s", luaL_typename(L, 3));
  first = lua_gettop(L);
  return copy_setup(L, build(L, o, cancel, first, 1, MK_REQ_COPY_OUT, kind, opts), 3);
}

lreq *lmk_req_ping(lua_State *L, lowner *o, lmk_req_cancel_fn cancel) {
  lua_settop(L, 1);
  lua_pushliteral(L, "SELECT 1");
  lmk_params_check(L, 2, 3);
  return build(L, o, cancel, 3, 1, 0, R_OWNER, 0);
}

int lmk_req_set_decoder(lua_State *L) {
  lua_Integer oid;
  luaL_checktype(L, 1, LUA_TUSERDATA);
  oid = luaL_checkinteger(L, 2);
  lua_settop(L, 3);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "decoders");
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, oid);
  return 0;
}
