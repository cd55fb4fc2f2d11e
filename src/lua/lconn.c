/* lconn: momoko.Connection, a userdata around one mk_conn, either its own or one lent
 * by a pool (getconn, or a new pool connection being set up by connection_factory).
 *
 * Requests are built by lreq.c and submitted here to the mk_conn. The synchronous
 * members (mogrify, escape_literal, escape_identifier, pid, transaction_status) read
 * the PGconn of a connected connection. User value 1 is a table of options (dsn,
 * setsession, factories, on_notice, command_timeout, decoders, learnt types); a lent
 * connection shares its pool's table. User value 2 is the LISTEN state (handlers by
 * channel, kept by the Lua layer's listen and run by notify_lua). An own idle
 * connection nobody references is closed by __gc; a lent one is given back to its pool
 * (on the next loop turn: a finalizer must not run the callbacks giving it back may
 * start). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lconn.h"

#include "lerror.h"
#include "lfuture.h"
#include "loptions.h"
#include "lparams.h"
#include "lreq.h"
#include "lstream.h"
#include "mk_pool.h"

/* A notification on its way to Lua. */
struct lnote {
  const char *channel, *payload;
  int pid;
};

typedef struct lconn {
  lowner o;        /* first: lowner.c and lreq.c see the connection through it */
  mk_conn *c;      /* NULL once finalized, or once a lent connection was given back */
  int connect_ref; /* the future of the running connect */
  mk_pconn *pc;    /* the pool's entry of a lent connection, else NULL */
  lowner *pool;    /* the pool that lent it */
  lmk_closer closer; /* own connections only: closed at shutdown */
  double connect_t0; /* with a trace function: when connect() was called */
} lconn;

static lconn *check_conn(lua_State *L, int idx) { return luaL_checkudata(L, idx, LMK_CONN); }

static void push_conn(lua_State *L, lconn *lc) { lmk_push_owner(L, &lc->o); }

/* Hooks from the core */

/* Done callback of a connect future whose connection factory runs (upvalue 1: the
 * Connection): the connect is over, a later connect() gets a done future. */
static int connect_over(lua_State *L) {
  lconn *lc = lua_touserdata(L, lua_upvalueindex(1));
  luaL_unref(L, LUA_REGISTRYINDEX, lc->connect_ref);
  lc->connect_ref = LUA_NOREF;
  return 0;
}

/* start_factory(future, conn, factory): keeps connect_ref until the future is done
 * (connect() returns it while the factory runs), then starts the factory runner. */
static int start_factory(lua_State *L) {
  lua_getfield(L, 1, "add_done_callback");
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, connect_over, 1);
  lua_call(L, 2, 0);
  lmk_conn_run_factory(L, 1, 2, 3);
  return 0;
}

static int connected_lua(lua_State *L) {
  lconn *lc = lua_touserdata(L, 1);
  const mk_error *err = lua_touserdata(L, 2);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lc->connect_ref);
  push_conn(L, lc);
  lmk_unpend(L, &lc->o); /* the stack holds the connection now */
  if (!err) {
    lua_getiuservalue(L, 2, 1);
    lua_getfield(L, 3, "connection_factory");
  }
  if (err || lua_isnil(L, -1)) {
    luaL_unref(L, LUA_REGISTRYINDEX, lc->connect_ref);
    lc->connect_ref = LUA_NOREF;
    lua_settop(L, 2);
    if (err) {
      lmk_push_mk_error(L, err);
      lmk_future_fail(L, 1);
    } else {
      lmk_future_resolve(L, 1, 1);
    }
    return 0;
  }
  /* the Lua layer runs the factory in a coroutine and then settles the future; if it
   * cannot even start (no runner, no memory), the connect fails with that error */
  lua_remove(L, 3);
  lua_pushcfunction(L, start_factory);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    if (lc->c) mk_conn_close(lc->c);
    lmk_future_fail(L, 1);
    if (lc->connect_ref != LUA_NOREF) { /* its done callback was not added */
      luaL_unref(L, LUA_REGISTRYINDEX, lc->connect_ref);
      lc->connect_ref = LUA_NOREF;
    }
  }
  return 0;
}

/* Tracing: event_lua(lc, ev) calls the trace function with a "connect" (ev->err: the
 * connect's error, or NULL) or "lost" event of the connection. */
typedef struct conn_event {
  const char *type;
  double ms;
  const mk_error *err;
} conn_event;

static int event_lua(lua_State *L) {
  lconn *lc = lua_touserdata(L, 1);
  const conn_event *ev = lua_touserdata(L, 2);
  lua_settop(L, 0);
  push_conn(L, lc);
  if (lua_isnil(L, 1)) return 0;
  lua_getiuservalue(L, 1, 1);
  lmk_trace_push_event(L, 2, ev->type, ev->ms);
  if (ev->err) {
    lmk_push_mk_error(L, ev->err);
    lua_setfield(L, -2, "error");
  }
  lmk_trace_call(L, 2);
  return 0;
}

static void trace_event(lconn *lc, const char *type, double ms, const mk_error *err) {
  conn_event ev;
  ev.type = type;
  ev.ms = ms;
  ev.err = err;
  if (lc->o.trace && !lmk_silent(&lc->o)) lmk_enter(lc->o.st, event_lua, lc, &ev);
}

static void on_connected(mk_conn *c, const mk_error *err, void *ud) {
  lconn *lc = ud;
  (void)c;
  if (!lmk_silent(&lc->o)) lmk_enter(lc->o.st, connected_lua, lc, (void *)err);
  trace_event(lc, "connect", lc->o.trace ? lmk_trace_clock() - lc->connect_t0 : -1, err);
}

static int notice_lua(lua_State *L) {
  lconn *lc = lua_touserdata(L, 1);
  push_conn(L, lc);
  if (lua_isnil(L, -1)) return 0;
  lua_getiuservalue(L, -1, 1);
  lmk_call_notice(L, lua_gettop(L), lua_gettop(L) - 1, lua_touserdata(L, 2));
  return 0;
}

static void on_notice(mk_conn *c, const char *msg, void *ud) {
  lconn *lc = ud;
  (void)c;
  if (!lmk_silent(&lc->o)) lmk_enter(lc->o.st, notice_lua, lc, (void *)msg);
}

/* The LISTEN state of the owner userdata at 1 (user value 2), made on first use: a
 * table of handlers by channel ("handlers") and whatever the Lua layer keeps there. */
static void push_listen_state(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, 2) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_newtable(L);
  lua_setfield(L, -2, "handlers");
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, 2);
}

/* notify_lua(lc, note): runs the handler of note's channel, if any, in a coroutine of
 * its own (its error, or a failed await in it, goes to on_error). */
static int notify_lua(lua_State *L) {
  lconn *lc = lua_touserdata(L, 1);
  const struct lnote *n = lua_touserdata(L, 2);
  lua_State *co;
  push_conn(L, lc);
  if (lua_isnil(L, -1) || lua_getiuservalue(L, -1, 2) != LUA_TTABLE) return 0;
  if (lua_getfield(L, -1, "handlers") != LUA_TTABLE) return 0;
  if (lua_getfield(L, -1, n->channel) != LUA_TFUNCTION) return 0;
  co = lua_newthread(L);
  lua_pushvalue(L, -2);
  lua_pushstring(L, n->channel);
  lua_pushstring(L, n->payload);
  lua_pushinteger(L, n->pid);
  lua_xmove(L, co, 4);
  lmk_resume(L, co, 3);
  return 0;
}

static void on_notify(mk_conn *c, const char *channel, const char *payload, int pid, void *ud) {
  lconn *lc = ud;
  struct lnote n;
  (void)c;
  n.channel = channel;
  n.payload = payload;
  n.pid = pid;
  if (!lmk_silent(&lc->o)) lmk_enter(lc->o.st, notify_lua, lc, &n);
}

/* lost_lua(lc): calls the LISTEN state's on_lost(conn), if set (a pool's listener). */
static int lost_lua(lua_State *L) {
  lconn *lc = lua_touserdata(L, 1);
  push_conn(L, lc);
  if (lua_isnil(L, -1) || lua_getiuservalue(L, -1, 2) != LUA_TTABLE) return 0;
  if (lua_getfield(L, -1, "on_lost") != LUA_TFUNCTION) return 0;
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  return 0;
}

static void on_lost(mk_conn *c, void *ud) {
  lconn *lc = ud;
  (void)c;
  if (!lmk_silent(&lc->o)) lmk_enter(lc->o.st, lost_lua, lc, NULL);
  trace_event(lc, "lost", -1, NULL);
}

static const mk_conn_hooks hooks = {on_connected, on_notice, on_lost, on_notify};

/* Requests */

/* The connection at 1, ready for requests; raises InterfaceError naming who. */
static lconn *ready_conn(lua_State *L, const char *who) {
  lconn *lc = check_conn(L, 1);
  mk_conn_state s = lc->c ? mk_conn_state_of(lc->c) : MK_CONN_CLOSED;
  if (!lc->c && lc->pool) lmk_raise(L, MK_ERR_INTERFACE, "%s: connection was given back to its pool", who);
  if (s == MK_CONN_CLOSED) lmk_raise(L, MK_ERR_INTERFACE, "%s: connection is closed", who);
  if (s == MK_CONN_NEW) lmk_raise(L, MK_ERR_INTERFACE, "%s: connection is not connected (call conn:connect() first)", who);
  return lc;
}

static int cancel_on_conn(lowner *o, mk_req *r) {
  lconn *lc = (lconn *)o;
  return lc->c ? mk_conn_cancel(lc->c, r) : 0;
}

/* Hands the built request q to the connection; the future is on top. */
static int submit(lua_State *L, lconn *lc, lreq *q) {
  if (lc->c && mk_conn_submit(lc->c, lmk_req_core(q)) == 0) return 1;
  return lmk_req_refuse(L, q, MK_ERR_INTERFACE, "connection is closed", 1);
}

static int conn_execute(lua_State *L) {
  lconn *lc = ready_conn(L, "execute");
  return submit(L, lc, lmk_req_execute(L, &lc->o, cancel_on_conn));
}

static int submit_on_conn(lowner *o, mk_req *r, int *server, const char **why) {
  lconn *lc = (lconn *)o;
  (void)server; /* its one server: 0 */
  if (lc->c && mk_conn_submit(lc->c, r) == 0) return 0;
  *why = "connection is closed";
  return MK_ERR_INTERFACE;
}

static int conn_stream(lua_State *L) {
  lconn *lc = ready_conn(L, "stream");
  return lmk_stream_open(L, &lc->o, submit_on_conn, cancel_on_conn);
}

static int conn_copy_from(lua_State *L) {
  lconn *lc = ready_conn(L, "copy_from");
  return submit(L, lc, lmk_req_copy_from(L, &lc->o, cancel_on_conn));
}

static int conn_copy_to(lua_State *L) {
  lconn *lc = ready_conn(L, "copy_to");
  return submit(L, lc, lmk_req_copy_to(L, &lc->o, cancel_on_conn));
}

static int conn_callproc(lua_State *L) {
  lconn *lc = ready_conn(L, "callproc");
  return submit(L, lc, lmk_req_callproc(L, &lc->o, cancel_on_conn));
}

static int conn_transaction(lua_State *L) {
  lconn *lc = ready_conn(L, "transaction");
  return submit(L, lc, lmk_req_transaction(L, &lc->o, cancel_on_conn));
}

static int conn_ping(lua_State *L) {
  lconn *lc = ready_conn(L, "ping");
  return submit(L, lc, lmk_req_ping(L, &lc->o, cancel_on_conn));
}

/* Construction */

static void conn_close_at_shutdown(lmk_closer *c);

static const char *const known_options[] = {
  "dsn", "setsession", "cursor_factory", "connection_factory", "loop", "on_notice",
  "pipeline", "statement_cache_size", "pgbouncer", "command_timeout", "trace", NULL};

/* Pushes a new Connection userdata, created closed (finalized until it gets its
 * connection), with the options table at uv. */
static lconn *new_lconn(lua_State *L, int uv) {
  lconn *lc = (lconn *)lmk_owner_new(L, sizeof *lc, LMK_CONN, uv);
  lc->connect_ref = LUA_NOREF;
  return lc;
}


/* momoko.Connection(opts) or (dsn, opts). */
static int l_connection(lua_State *L) {
  lmk_state *st = lmk_state_of(L);
  lconn *lc;
  int opts, uv;
  mk_loop *loop;
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
  lmk_options_known(L, opts, known_options, "Connection");
  lua_createtable(L, 0, 8);
  uv = lua_gettop(L);
  loop = lmk_options_shared(L, opts, uv, "Connection");
  /* the object is created closed, then given its resource (as liolib does) */
  lc = new_lconn(L, uv);
  lc->c = mk_conn_new(loop, &hooks, lc);
  if (!lc->c) return lmk_raise(L, MK_ERR_INTERFACE, "Connection: out of memory");
  lua_getfield(L, uv, "pipeline");
  mk_conn_set_pipeline(lc->c, lua_toboolean(L, -1));
  lua_getfield(L, uv, "statement_cache_size");
  mk_conn_set_statement_cache(lc->c, (int)lua_tointeger(L, -1));
  lua_pop(L, 2);
  lc->o.finalized = 0;
  st->nhandles++;
  lc->closer.close = conn_close_at_shutdown;
  lmk_closer_add(st, &lc->closer);
  return 1;
}

static void conn_free(lconn *lc) {
  if (!lc->c) return;
  lc->o.finalized = 1;
  if (lc->pc) { /* lent: the pool still owns the connection */
    if (!lc->pool->finalized && !lc->o.st->closing) mk_pool_putconn_later(mk_pconn_pool(lc->pc), lc->pc);
    lc->c = NULL;
    lc->pc = NULL;
    return;
  }
  mk_conn_release(lc->c);
  lc->c = NULL;
  lc->o.st->nhandles--;
  lmk_closer_remove(&lc->closer);
}

static void conn_close_at_shutdown(lmk_closer *c) {
  conn_free((lconn *)((char *)c - offsetof(lconn, closer)));
}

static int conn_gc(lua_State *L) {
  conn_free(check_conn(L, 1));
  return 0;
}

/* Lent connections */

void lmk_conn_push_lent(lua_State *L, int poolidx, lowner *pool, mk_pconn *pc) {
  lconn *lc;
  poolidx = lua_absindex(L, poolidx);
  lua_getiuservalue(L, poolidx, 1);
  lc = new_lconn(L, lua_gettop(L));
  lua_remove(L, -2);
  lc->c = mk_pconn_conn(pc);
  lc->pc = pc;
  lc->pool = pool;
  lc->o.finalized = 0;
}

mk_pconn *lmk_conn_lent(lua_State *L, int idx, lowner **pool) {
  lconn *lc = luaL_testudata(L, idx, LMK_CONN);
  if (!lc || !lc->pc) return NULL;
  *pool = lc->pool;
  return lc->pc;
}

void lmk_conn_unlend(lua_State *L, int idx) {
  lconn *lc = luaL_testudata(L, idx, LMK_CONN);
  if (!lc) return;
  lc->c = NULL;
  lc->pc = NULL;
}

/* Methods */

void lmk_conn_run_factory(lua_State *L, int futidx, int connidx, int factoryidx) {
  futidx = lua_absindex(L, futidx);
  connidx = lua_absindex(L, connidx);
  factoryidx = lua_absindex(L, factoryidx);
  lua_getfield(L, LUA_REGISTRYINDEX, "momoko.after_connect");
  lua_pushvalue(L, futidx);
  lua_pushvalue(L, connidx);
  lua_pushvalue(L, factoryidx);
  lua_call(L, 3, 0);
}


static int conn_connect(lua_State *L) {
  lconn *lc = check_conn(L, 1);
  if (lc->pool) return lmk_raise(L, MK_ERR_INTERFACE, "connect: a pool's connection is connected by its pool");
  mk_conn_state s = lc->c ? mk_conn_state_of(lc->c) : MK_CONN_CLOSED;
  const char **sess;
  int n;
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
  sess = lmk_setsession(L, 2, &n);
  lua_getfield(L, 2, "dsn");
  lmk_future_new(L);
  lua_pushvalue(L, -1);
  lc->connect_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (lc->o.trace) lc->connect_t0 = lmk_trace_clock();
  lmk_pend(L, &lc->o, 1);
  mk_conn_connect(lc->c, lua_tostring(L, -2), sess, n); /* copies what it keeps */
  return 1;
}

static int conn_mogrify(lua_State *L) {
  lconn *lc = check_conn(L, 1);
  PGconn *pg = lc->c ? mk_conn_pg(lc->c) : NULL;
  lua_settop(L, 3);
  if (!pg || mk_conn_state_of(lc->c) != MK_CONN_READY)
    return lmk_raise(L, MK_ERR_INTERFACE, "mogrify: connection is not connected");
  return lmk_mogrify(L, pg, 2, 3);
}

/* The PGconn of the connected Connection at 1, for synchronous libpq calls; raises
 * InterfaceError naming who otherwise. */
static PGconn *connected_pg(lua_State *L, const char *who) {
  lconn *lc = check_conn(L, 1);
  PGconn *pg = lc->c ? mk_conn_pg(lc->c) : NULL;
  if (!lc->c && lc->pool) lmk_raise(L, MK_ERR_INTERFACE, "%s: connection was given back to its pool", who);
  if (!pg || mk_conn_state_of(lc->c) != MK_CONN_READY)
    lmk_raise(L, MK_ERR_INTERFACE, "%s: connection is not connected", who);
  return pg;
}

/* conn:escape_literal(s), conn:escape_identifier(s): libpq's escaping for this
 * connection's encoding and settings, quotes included. */
static int conn_escape_literal(lua_State *L) {
  PGconn *pg = connected_pg(L, "escape_literal");
  return lmk_escape(L, pg, 2, 0, "escape_literal");
}

static int conn_escape_identifier(lua_State *L) {
  PGconn *pg = connected_pg(L, "escape_identifier");
  return lmk_escape(L, pg, 2, 1, "escape_identifier");
}

static int conn_close(lua_State *L) {
  lconn *lc = check_conn(L, 1);
  if (lc->c) mk_conn_close(lc->c);
  return 0;
}

/* __close: an own connection closes; a lent one goes back to its pool. */
static int conn_tbc_close(lua_State *L) {
  lconn *lc = check_conn(L, 1);
  if (!lc->pool) return conn_close(L);
  if (!lc->pc) return 0; /* already given back */
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "pool"); /* the pool's options table names the pool */
  lua_getfield(L, -1, "putconn");
  lua_insert(L, -2);
  lua_pushvalue(L, 1);
  lua_call(L, 2, 0);
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
  if (k && strcmp(k, "pid") == 0) { /* nil unless connected */
    PGconn *pg = lc->c ? mk_conn_pg(lc->c) : NULL;
    int pid = pg && mk_conn_state_of(lc->c) == MK_CONN_READY ? PQbackendPID(pg) : 0;
    if (pid <= 0) return 0;
    lua_pushinteger(L, pid);
    return 1;
  }
  if (k && strcmp(k, "transaction_status") == 0) {
    static const char *const names[] = {"idle", "active", "intrans", "inerror", "unknown"};
    PGconn *pg = lc->c ? mk_conn_pg(lc->c) : NULL;
    PGTransactionStatusType t = pg && mk_conn_state_of(lc->c) == MK_CONN_READY ? PQtransactionStatus(pg)
                                                                                : PQTRANS_UNKNOWN;
    lua_pushstring(L, (unsigned)t < sizeof names / sizeof *names ? names[t] : "unknown");
    return 1;
  }
  if (k && strcmp(k, "server_version") == 0) {
    PGconn *pg = lc->c ? mk_conn_pg(lc->c) : NULL;
    if (!pg || mk_conn_state_of(lc->c) != MK_CONN_READY) return 0;
    lua_pushinteger(L, PQserverVersion(pg));
    return 1;
  }
  return lmk_owner_method(L);
}

/* listen_state(obj) (private): the LISTEN state table of an own Connection or a Pool
 * (made on first use), nil for a lent Connection (its pool's hooks get its input). */
static int l_listen_state(lua_State *L) {
  lconn *lc = luaL_testudata(L, 1, LMK_CONN);
  luaL_checktype(L, 1, LUA_TUSERDATA);
  if (lc && lc->pool) return 0;
  push_listen_state(L, 1);
  return 1;
}

/* owner_options(obj) (private): the options table of a Connection or a Pool. */
static int l_owner_options(lua_State *L) {
  luaL_checktype(L, 1, LUA_TUSERDATA);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

void lmk_open_conn(lua_State *L) {
  static const luaL_Reg private_fns[] = {{"listen_state", l_listen_state}, {"owner_options", l_owner_options}, {NULL, NULL}};
  static const luaL_Reg methods[] = {
    {"connect", conn_connect},   {"mogrify", conn_mogrify},         {"close", conn_close},
    {"stream", conn_stream},
    {"copy_from", conn_copy_from}, {"copy_to", conn_copy_to},
    {"execute", conn_execute},   {"callproc", conn_callproc},       {"transaction", conn_transaction},
    {"ping", conn_ping},
    {"escape_literal", conn_escape_literal}, {"escape_identifier", conn_escape_identifier},
    {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__index", conn_index}, {"__gc", conn_gc}, {"__close", conn_tbc_close},
    {"__tostring", conn_tostring}, {NULL, NULL}};
  lmk_open_owner_class(L, LMK_CONN, meta, methods, "Connection_methods");
  lmk_add_private(L, private_fns);
  lua_pushcfunction(L, l_connection);
  lua_setfield(L, -2, "Connection");
}
