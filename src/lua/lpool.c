/* lpool: momoko.Pool, a thin userdata around one mk_pool per server: the primary (the
 * dsn) and one per read replica (opts.replicas).
 *
 * Requests (execute, callproc, transaction, ping) are built by lreq.c and submitted
 * here to an mk_pool: those made with opts.readonly to the least busy replica that has
 * an open connection (least_busy_replica), falling back to the primary; all others,
 * and getconn, to the primary. getconn lends a
 * Connection (lconn.c) that shares the pool's options table; that table names the
 * pool (field "pool"), so a lent connection keeps its pool alive. While a connect,
 * request or getconn is outstanding, the pool is anchored (a connection setup holds it
 * through its lent Connection instead: see setup_finished). A notice
 * of a pool connection goes to on_notice(conn, message) with the Connection its holder
 * has, or, while the pool itself uses the connection, a stand-in Connection that runs
 * nothing (push_notice_conn). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lpool.h"

#include "lconn.h"
#include "lerror.h"
#include "lfuture.h"
#include "loptions.h"
#include "lparams.h"
#include "lreq.h"
#include "lstream.h"
#include "mk_pool.h"

typedef struct lpool {
  lowner o; /* first: lowner.c and lreq.c see the pool through it */
  mk_pool *p;          /* the primary's: the dsn's server (server number 0) */
  mk_pool **replicas;  /* replica i's (server number i + 1, uv.replicas[i + 1]), or NULL */
  int nreplicas;
  int turn;            /* the replica a tie of least_busy_replica looks at first */
  int connect_ref; /* the future of connect() */
  int connected;   /* connect() was called */
  int connect_left;     /* pools whose connect() has not ended yet */
  mk_error connect_err; /* the primary's connect() error, until every pool's ended */
  lmk_closer closer; /* closed at shutdown */
} lpool;

typedef struct lgetconn {
  lpool *lp;
  int fref;
} lgetconn;

/* What on_got hands to got_lua. */
typedef struct lmk_got {
  mk_pool *p;
  mk_pconn *pc;
  const mk_error *err;
} lmk_got;

static lpool *check_pool(lua_State *L, int idx) { return luaL_checkudata(L, idx, LMK_POOL); }

static void push_pool(lua_State *L, lpool *lp) { lmk_push_owner(L, &lp->o); }

/* Lent connections. The pool's options table holds, under "lent", a weak table from
 * each lent entry (light userdata mk_pconn) to its Connection, so that a notice finds
 * the Connection its holder has. */

/* Records the Connection at connidx (0: a placeholder) as the one lent for pc (the pool
 * at poolidx). Setting a key that holds a placeholder allocates nothing: callers
 * reserve the key before they make the Connection, so that nothing can fail between
 * making it and recording it. */
static void lent_set(lua_State *L, int poolidx, mk_pconn *pc, int connidx) {
  if (connidx) connidx = lua_absindex(L, connidx);
  lua_getiuservalue(L, poolidx, 1);
  if (lua_getfield(L, -1, "lent") != LUA_TTABLE) {
    lua_pop(L, 1);
    lmk_push_weak_table(L, "v");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "lent");
  }
  if (connidx)
    lua_pushvalue(L, connidx);
  else
    lua_pushboolean(L, 0);
  lua_rawsetp(L, -2, pc);
  lua_pop(L, 2);
}

/* Forgets the Connection lent for pc, if any (the pool at poolidx). */
static void lent_clear(lua_State *L, int poolidx, mk_pconn *pc) {
  lua_getiuservalue(L, poolidx, 1);
  if (lua_getfield(L, -1, "lent") == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawsetp(L, -2, pc);
  }
  lua_pop(L, 2);
}

/* Pushes the Connection that stands for pc in a notice: the lent one while its holder
 * has it, else a stand-in that shares the pool's options but runs nothing (its methods
 * raise InterfaceError, conn.closed is true): the pool itself is using pc. */
static void push_notice_conn(lua_State *L, int poolidx, lpool *lp, mk_pconn *pc) {
  lowner *owner = NULL;
  int top = lua_gettop(L);
  lua_getiuservalue(L, poolidx, 1);
  if (lua_getfield(L, -1, "lent") == LUA_TTABLE && lua_rawgetp(L, -1, pc) == LUA_TUSERDATA &&
      lmk_conn_lent(L, -1, &owner) == pc) {
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return;
  }
  lua_settop(L, top);
  lmk_conn_push_lent(L, poolidx, &lp->o, pc);
  lmk_conn_unlend(L, -1);
}

/* push_lent_lua(pool, lp, pc): the lent Connection, made under its own pcall. */
static int push_lent_lua(lua_State *L) {
  lpool *lp = lua_touserdata(L, 2);
  mk_pconn *pc = lua_touserdata(L, 3);
  lent_set(L, 1, pc, 0);
  lmk_conn_push_lent(L, 1, &lp->o, pc);
  lent_set(L, 1, pc, -1);
  return 1;
}

/* Requests */

/* The pool at 1, ready for requests; raises PoolError naming who. */
static lpool *ready_pool(lua_State *L, const char *who) {
  lpool *lp = check_pool(L, 1);
  if (!lp->p || mk_pool_closed(lp->p)) lmk_raise(L, MK_ERR_POOL, "%s: pool is closed", who);
  if (!lp->connected) lmk_raise(L, MK_ERR_POOL, "%s: pool is not connected (call pool:connect() first)", who);
  return lp;
}

static int cancel_on_pool(lowner *o, mk_req *r) {
  lpool *lp = (lpool *)o;
  return lp->p ? mk_pool_cancel(r) : 0;
}

/* Routing. A request made with opts.readonly goes to the least busy replica among
 * those with a connection open: fewest requests running and waiting, less its free
 * connections (so a replica with idle connections beats one without). Ties go round
 * the replicas in turn. With no replica open (all down, or none configured), or when
 * that replica refuses the request, it goes to the primary. */

/* The index of the replica r is to try first, or -1 for the primary. */
static int least_busy_replica(lpool *lp, const mk_req *r) {
  int k, best = -1, best_load = 0;
  if (!(mk_req_flags(r) & MK_REQ_READONLY)) return -1;
  for (k = 0; k < lp->nreplicas; k++) {
    int i = (lp->turn + k) % lp->nreplicas, load;
    mk_pool_stats s;
    mk_pool_stats_of(lp->replicas[i], &s);
    if (s.size == 0) continue; /* nothing open: down, or still connecting */
    load = s.busy + s.waiting - s.free;
    if (best < 0 || load < best_load) {
      best = i;
      best_load = load;
    }
  }
  if (best >= 0) lp->turn = (best + 1) % lp->nreplicas;
  return best;
}

/* Hands the built request q to a pool (see Routing); the future is on top.
 * max_waiting and an unreachable server fail the request's future rather than raise.
 * q's server is set before each attempt: a submitted request may end (and be freed)
 * before mk_pool_submit returns. */
static int submit(lua_State *L, lpool *lp, lreq *q) {
  const char *why = NULL;
  mk_req *r = lmk_req_core(q);
  int i = least_busy_replica(lp, r), kind;
  if (i >= 0) {
    lmk_req_set_server(q, i + 1);
    if (mk_pool_submit(lp->replicas[i], r, &why) == 0) return 1;
    lmk_req_set_server(q, 0);
  }
  kind = mk_pool_submit(lp->p, r, &why);
  if (kind) return lmk_req_refuse(L, q, (mk_kind)kind, why, 0);
  return 1;
}

static int pool_execute(lua_State *L) {
  lpool *lp = ready_pool(L, "execute");
  return submit(L, lp, lmk_req_execute(L, &lp->o, cancel_on_pool));
}

static int submit_on_pool(lowner *o, mk_req *r, int *server, const char **why) {
  lpool *lp = (lpool *)o;
  int i = least_busy_replica(lp, r);
  if (i >= 0) {
    *server = i + 1;
    if (mk_pool_submit(lp->replicas[i], r, why) == 0) return 0;
    *server = 0;
  }
  return mk_pool_submit(lp->p, r, why);
}

static int pool_stream(lua_State *L) {
  lpool *lp = ready_pool(L, "stream");
  return lmk_stream_open(L, &lp->o, submit_on_pool, cancel_on_pool);
}

static int pool_copy_from(lua_State *L) {
  lpool *lp = ready_pool(L, "copy_from");
  return submit(L, lp, lmk_req_copy_from(L, &lp->o, cancel_on_pool));
}

static int pool_copy_to(lua_State *L) {
  lpool *lp = ready_pool(L, "copy_to");
  return submit(L, lp, lmk_req_copy_to(L, &lp->o, cancel_on_pool));
}

static int pool_callproc(lua_State *L) {
  lpool *lp = ready_pool(L, "callproc");
  return submit(L, lp, lmk_req_callproc(L, &lp->o, cancel_on_pool));
}

static int pool_transaction(lua_State *L) {
  lpool *lp = ready_pool(L, "transaction");
  return submit(L, lp, lmk_req_transaction(L, &lp->o, cancel_on_pool));
}

static int pool_ping(lua_State *L) {
  lpool *lp = ready_pool(L, "ping");
  return submit(L, lp, lmk_req_ping(L, &lp->o, cancel_on_pool));
}

/* Hooks from the core */

static int connected_lua(lua_State *L) {
  lpool *lp = lua_touserdata(L, 1);
  const mk_error *err = lua_touserdata(L, 2);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->connect_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->connect_ref);
  lp->connect_ref = LUA_NOREF;
  push_pool(L, lp);
  lmk_unpend(L, &lp->o);
  if (err) {
    lmk_push_mk_error(L, err);
    lmk_future_fail(L, 1);
  } else {
    lmk_future_resolve(L, 1, 1);
  }
  return 0;
}

/* connect() ends once every pool's connect() did, with the primary's outcome: replicas
 * never fail it (raise_connect_errors is off for them; requests fall back meanwhile). */
static void on_connected(mk_pool *p, const mk_error *err, void *ud) {
  lpool *lp = ud;
  if (p == lp->p && err) mk_error_set(&lp->connect_err, err->kind, mk_error_message(err));
  if (--lp->connect_left > 0) return;
  if (!lmk_silent(&lp->o))
    lmk_enter(lp->o.st, connected_lua, lp, lp->connect_err.kind != MK_ERR_NONE ? &lp->connect_err : NULL);
  mk_error_clear(&lp->connect_err);
}

/* Setup of a new connection: connection_factory(conn) in a coroutine; when its future
 * is done, the lent connection is taken back and the pool told the outcome.
 *
 * The pool is not anchored for it. Whatever can still end the setup (the factory's
 * coroutine, the future, this callback) holds the lent Connection, whose options table
 * names the pool: the pool lives as long as they do. Once they are all garbage (a
 * factory that yielded and was never resumed), an anchor would keep the pool forever;
 * instead the Connection's finalizer gives the entry back (mk_pool_putconn_later
 * counts it as a failed setup), or the pool goes with them. */
static int setup_finished(lua_State *L) {
  lpool *lp = lua_touserdata(L, lua_upvalueindex(2));
  lowner *pool;
  mk_pconn *pc = lmk_conn_lent(L, lua_upvalueindex(1), &pool);
  int ok;
  lua_getfield(L, 1, "error");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  ok = lua_isnil(L, -1);
  lua_settop(L, 1);
  lmk_conn_unlend(L, lua_upvalueindex(1));
  if (!pc || !lp->p || lmk_silent(&lp->o)) return 0;
  push_pool(L, lp);
  if (!lua_isnil(L, -1)) lent_clear(L, -1, pc);
  mk_pool_setup_done(mk_pconn_pool(pc), pc, ok);
  return 0;
}

/* Runs the factory runner after_connect(future, conn, factory) (the arguments 1-3). */
static int run_factory_lua(lua_State *L) {
  lmk_conn_run_factory(L, 1, 2, 3);
  return 0;
}

/* What on_setup hands to setup_lua. */
typedef struct lmk_setup {
  mk_pconn *pc;
  int started; /* the callback that ends the setup is registered */
} lmk_setup;

static int setup_lua(lua_State *L) {
  lpool *lp = lua_touserdata(L, 1);
  lmk_setup *s = lua_touserdata(L, 2);
  mk_pconn *pc = s->pc;
  lua_settop(L, 0);
  /* Everything that can fail (memory) comes before the Connection exists, or unlends
   * it again: a Connection left lent for an entry the pool then drops would give a
   * freed entry back when collected. */
  push_pool(L, lp);                                 /* 1 */
  lent_set(L, 1, pc, 0);
  lmk_future_new(L);                                /* 2 */
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "connection_factory");        /* 4 */
  lua_getfield(L, 2, "add_done_callback");          /* 5 */
  lua_pushvalue(L, 2);                              /* 6 */
  lua_pushnil(L);
  lua_pushlightuserdata(L, lp);
  lua_pushcclosure(L, setup_finished, 2);           /* 7 */
  lmk_conn_push_lent(L, 1, &lp->o, pc);             /* 8 */
  lua_pushvalue(L, 8);
  lua_setupvalue(L, 7, 1);
  lent_set(L, 1, pc, 8);
  lua_insert(L, 5);                                 /* conn at 5: the call takes 6..8 */
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    lmk_conn_unlend(L, 5);
    return lua_error(L);
  }
  s->started = 1; /* from here the future's end, whatever it is, ends the setup */
  lua_pushcfunction(L, run_factory_lua);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 5);
  lua_pushvalue(L, 4);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) lmk_future_fail(L, 2);
  return 0;
}

static void on_setup(mk_pool *p, mk_pconn *pc, void *ud) {
  lpool *lp = ud;
  lmk_setup s;
  if (lmk_silent(&lp->o)) {
    mk_pool_setup_done(p, pc, 0);
    return;
  }
  s.pc = pc;
  s.started = 0;
  /* setup_lua failed before anything could end the setup (no memory): it fails now */
  if (lmk_enter(lp->o.st, setup_lua, lp, &s) != LUA_OK && !s.started) mk_pool_setup_done(p, pc, 0);
}

/* What on_notice hands to notice_lua. */
typedef struct lmk_notice {
  mk_pconn *pc;
  const char *msg;
} lmk_notice;

/* on_notice(conn, message) with the Connection that stands for the pool connection
 * (push_notice_conn). */
static int notice_lua(lua_State *L) {
  lpool *lp = lua_touserdata(L, 1);
  const lmk_notice *n = lua_touserdata(L, 2);
  int pool;
  lua_settop(L, 0);
  push_pool(L, lp);
  if (lua_isnil(L, -1)) return 0;
  pool = lua_gettop(L);
  lua_getiuservalue(L, pool, 1);
  if (lua_getfield(L, -1, "on_notice") != LUA_TFUNCTION) return 0; /* nothing is made */
  lua_pop(L, 1);
  push_notice_conn(L, pool, lp, n->pc);
  lmk_call_notice(L, pool + 1, pool + 2, n->msg);
  return 0;
}

static void on_notice(mk_pool *p, mk_pconn *pc, const char *msg, void *ud) {
  lpool *lp = ud;
  lmk_notice n;
  (void)p;
  n.pc = pc;
  n.msg = msg;
  if (!lmk_silent(&lp->o)) lmk_enter(lp->o.st, notice_lua, lp, &n);
}

/* Tracing (API §10): an event of the core pool, for the trace function. */
typedef struct pool_event {
  mk_pool_event kind;
  int server; /* the number of the server of its pool (lpool.replicas) */
  double ms;
  const mk_error *err;
} pool_event;

static int event_lua(lua_State *L) {
  static const char *const names[] = {"connect", "lost", "reconnect", "grow", "shrink",
                                      "acquire_timeout", "retry"};
  lpool *lp = lua_touserdata(L, 1);
  const pool_event *ev = lua_touserdata(L, 2);
  lua_settop(L, 0);
  lmk_push_owner(L, &lp->o);
  if (lua_isnil(L, 1)) return 0;
  lua_getiuservalue(L, 1, 1);
  lmk_trace_push_event(L, 2, names[ev->kind], ev->ms);
  lmk_trace_set_server(L, 2, ev->server);
  if (ev->err && ev->err->kind != MK_ERR_NONE) {
    lmk_push_mk_error(L, ev->err);
    lua_setfield(L, -2, "error");
  }
  lmk_trace_call(L, 2);
  return 0;
}

/* Errors of the trace function go to on_error (lmk_enter). */
static void on_event(mk_pool *p, mk_pool_event kind, double ms, const mk_error *err, void *ud) {
  lpool *lp = ud;
  pool_event ev;
  int i;
  ev.kind = kind;
  ev.server = 0;
  for (i = 0; i < lp->nreplicas; i++)
    if (lp->replicas[i] == p) ev.server = i + 1;
  ev.ms = ms;
  ev.err = err;
  if (!lmk_silent(&lp->o)) lmk_enter(lp->o.st, event_lua, lp, &ev);
}

/* Without a trace function the core prepares no event. */
static const mk_pool_hooks hooks = {on_connected, on_setup, on_notice, NULL};
static const mk_pool_hooks traced_hooks = {on_connected, on_setup, on_notice, on_event};

/* Construction */

static void pool_close_at_shutdown(lmk_closer *c);

static const char *const known_options[] = {
  "dsn", "setsession", "cursor_factory", "connection_factory", "loop", "on_notice",
  "pipeline", "statement_cache_size", "pgbouncer", "command_timeout", "size", "max_size", "raise_connect_errors",
  "reconnect_interval", "auto_shrink", "shrink_delay", "shrink_period", "acquire_timeout",
  "max_waiting", "retry", "max_lifetime", "pipeline_depth", "trace", "replicas", "replica_size", NULL};

/* Makes the pools of the nreplicas replicas of the options table at uv: the primary's
 * options o with the replica's dsn, replica_size connections kept open, grown to
 * max_size as the primary's when max_size is above size, and no PartiallyConnectedError
 * (requests fall back to the primary meanwhile). Returns 0, or -1 (nothing is left
 * made) when memory ran out. */
static int open_replicas(lua_State *L, lpool *lp, mk_loop *loop, const mk_pool_opts *o, int uv, int nreplicas,
                         int replica_size) {
  mk_pool_opts ro = *o;
  int i;
  if (nreplicas == 0) return 0;
  ro.size = replica_size;
  ro.max_size = o->max_size > o->size && o->max_size > replica_size ? o->max_size : replica_size;
  ro.raise_connect_errors = 0;
  lp->replicas = calloc((size_t)nreplicas, sizeof *lp->replicas);
  if (!lp->replicas) return -1;
  lua_getfield(L, uv, "replicas");
  for (i = 0; i < nreplicas; i++) {
    lua_rawgeti(L, -1, i + 1);
    lua_getfield(L, -1, "dsn");
    ro.conninfo = lua_tostring(L, -1); /* copied by mk_pool_new */
    lp->replicas[i] = mk_pool_new(loop, &ro, lp->o.trace ? &traced_hooks : &hooks, lp);
    lua_pop(L, 2);
    if (!lp->replicas[i]) break;
  }
  lua_pop(L, 1);
  if (i == nreplicas) {
    lp->nreplicas = nreplicas;
    return 0;
  }
  while (i-- > 0) mk_pool_release(lp->replicas[i]);
  free(lp->replicas);
  lp->replicas = NULL;
  return -1;
}

/* momoko.Pool(opts) */
static int l_pool(lua_State *L) {
  lmk_state *st = lmk_state_of(L);
  mk_pool_opts o;
  lpool *lp;
  mk_loop *loop;
  int uv, n = 0, nreplicas, replica_size;
  const char **sess = NULL;
  if (!lua_istable(L, 1))
    return lmk_raise(L, MK_ERR_INTERFACE, "Pool: an options table expected, got %s", luaL_typename(L, 1));
  lua_settop(L, 1);
  lmk_options_known(L, 1, known_options, "Pool");
  memset(&o, 0, sizeof o);
  o.size = lmk_opt_int(L, 1, "size", 1, 1, 10000, "Pool");
  o.max_size = lmk_opt_int(L, 1, "max_size", o.size, 1, 10000, "Pool");
  if (o.max_size < o.size) return lmk_raise(L, MK_ERR_INTERFACE, "Pool: max_size must not be below size");
  o.raise_connect_errors = lmk_opt_bool(L, 1, "raise_connect_errors", 1, "Pool");
  o.reconnect_interval_ms = lmk_opt_int(L, 1, "reconnect_interval", 500, 1, 0x7fffffff, "Pool");
  o.auto_shrink = lmk_opt_bool(L, 1, "auto_shrink", 0, "Pool");
  o.shrink_delay_ms = lmk_opt_int(L, 1, "shrink_delay", 120000, 0, 0x7fffffff, "Pool");
  o.shrink_period_ms = lmk_opt_int(L, 1, "shrink_period", 120000, 1, 0x7fffffff, "Pool");
  o.acquire_timeout_ms = lmk_opt_int(L, 1, "acquire_timeout", 0, 1, 0x7fffffff, "Pool");
  o.max_waiting = lmk_opt_int(L, 1, "max_waiting", -1, 0, 0x7fffffff, "Pool");
  o.max_lifetime_ms = lmk_opt_int(L, 1, "max_lifetime", 3600000, 0, 0x7fffffff, "Pool");
  o.pipeline_depth = lmk_opt_int(L, 1, "pipeline_depth", 16, 1, 100000, "Pool");
  replica_size = lmk_opt_int(L, 1, "replica_size", o.size, 1, 10000, "Pool");
  lua_getfield(L, 1, "retry");
  if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "safe") == 0))
    o.retry = MK_RETRY_SAFE;
  else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "always") == 0)
    o.retry = MK_RETRY_ALWAYS;
  else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "never") == 0)
    o.retry = MK_RETRY_NEVER;
  else
    return lmk_raise(L, MK_ERR_INTERFACE, "Pool: retry must be \"safe\", \"always\" or \"never\"");
  lua_pop(L, 1);

  lua_createtable(L, 0, 10);
  uv = lua_gettop(L);
  loop = lmk_options_shared(L, 1, uv, "Pool");
  lua_getfield(L, uv, "connection_factory");
  o.setup = !lua_isnil(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, uv, "pipeline");
  o.pipeline = lua_toboolean(L, -1);
  lua_getfield(L, uv, "statement_cache_size");
  o.statement_cache_size = (int)lua_tointeger(L, -1);
  lua_pop(L, 2);
  nreplicas = lmk_options_replicas(L, 1, uv, "Pool");
  sess = lmk_setsession(L, uv, &n);
  lua_getfield(L, uv, "dsn");
  o.conninfo = lua_tostring(L, -1);
  o.setsession = sess;
  o.nsetsession = n;

  lp = (lpool *)lmk_owner_new(L, sizeof *lp, LMK_POOL, uv);
  lp->connect_ref = LUA_NOREF;
  lua_pushvalue(L, -1);
  lua_setfield(L, uv, "pool"); /* lent connections reach their pool through it */
  lp->p = mk_pool_new(loop, &o, lp->o.trace ? &traced_hooks : &hooks, lp); /* copies conninfo and setsession */
  if (!lp->p) return lmk_raise(L, MK_ERR_INTERFACE, "Pool: out of memory");
  if (open_replicas(L, lp, loop, &o, uv, nreplicas, replica_size) < 0) {
    mk_pool_release(lp->p);
    lp->p = NULL;
    return lmk_raise(L, MK_ERR_INTERFACE, "Pool: out of memory");
  }
  lp->o.finalized = 0;
  st->nhandles++;
  lp->closer.close = pool_close_at_shutdown;
  lmk_closer_add(st, &lp->closer);
  return 1;
}

static void pool_free(lpool *lp) {
  int i;
  if (!lp->p) return;
  lp->o.finalized = 1;
  mk_pool_release(lp->p);
  lp->p = NULL;
  for (i = 0; i < lp->nreplicas; i++) mk_pool_release(lp->replicas[i]);
  free(lp->replicas);
  lp->replicas = NULL;
  lp->nreplicas = 0;
  lp->o.st->nhandles--;
  lmk_closer_remove(&lp->closer);
  /* a connect() error held until every pool's connect() ended: the state may close
   * (os.exit(0, true)) inside a callback of that connect(), before on_connected clears it */
  mk_error_clear(&lp->connect_err);
}

static void pool_close_at_shutdown(lmk_closer *c) {
  pool_free((lpool *)((char *)c - offsetof(lpool, closer)));
}

static int pool_gc(lua_State *L) {
  pool_free(check_pool(L, 1));
  return 0;
}

/* Methods */

static int pool_connect(lua_State *L) {
  lpool *lp = check_pool(L, 1);
  int i;
  lua_settop(L, 1);
  if (!lp->p || mk_pool_closed(lp->p)) return lmk_raise(L, MK_ERR_POOL, "connect: pool is closed");
  if (lp->connect_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->connect_ref);
    return 1;
  }
  if (lp->connected) { /* connected already: a done future */
    lmk_future_new(L);
    lua_pushvalue(L, 1);
    lmk_future_resolve(L, -2, 1);
    return 1;
  }
  lp->connected = 1;
  lmk_future_new(L);
  lua_pushvalue(L, -1);
  lp->connect_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lmk_pend(L, &lp->o, 1);
  lp->connect_left = 1 + lp->nreplicas;
  mk_pool_connect(lp->p);
  for (i = 0; i < lp->nreplicas; i++) mk_pool_connect(lp->replicas[i]);
  return 1;
}

/* Resolves the getconn future with a lent Connection, or fails it. Should making the
 * Connection fail (memory), nobody got pc: it goes back to the pool, and the error to
 * on_error. */
static int got_lua(lua_State *L) {
  lgetconn *g = lua_touserdata(L, 1);
  const lmk_got *got = lua_touserdata(L, 2);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->fref);
  if (got->err) {
    lmk_push_mk_error(L, got->err);
    lmk_future_fail(L, 1);
    return 0;
  }
  push_pool(L, g->lp);
  lua_pushcfunction(L, push_lent_lua);
  lua_pushvalue(L, 2);
  lua_pushlightuserdata(L, g->lp);
  lua_pushlightuserdata(L, got->pc);
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) { /* no Connection (no memory): give it back, fail */
    mk_pool_putconn(got->p, got->pc);
    lmk_future_fail(L, 1);
    return 0;
  }
  lmk_future_resolve(L, 1, 1);
  return 0;
}

static void on_got(mk_pool *p, mk_pconn *pc, const mk_error *err, void *ud) {
  lgetconn *g = ud;
  lpool *lp = g->lp;
  lua_State *L = lp->o.st->L;
  lmk_got got;
  if (lmk_silent(&lp->o)) {
    free(g);
    return;
  }
  got.p = p;
  got.pc = pc;
  got.err = err;
  lmk_enter(lp->o.st, got_lua, g, &got);
  luaL_unref(L, LUA_REGISTRYINDEX, g->fref);
  lmk_unpend(L, &lp->o);
  free(g);
}

/* pool:getconn{ping = true}: a future of a Connection reserved until putconn. */
static int pool_getconn(lua_State *L) {
  lpool *lp = ready_pool(L, "getconn");
  int ping = 1, kind, fref;
  const char *why = NULL;
  lgetconn *g;
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_istable(L, 2)) return lmk_raise(L, MK_ERR_INTERFACE, "getconn: opts must be a table");
    int t = lua_getfield(L, 2, "ping");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN) return lmk_raise(L, MK_ERR_INTERFACE, "getconn: opts.ping must be a boolean");
    if (t != LUA_TNIL) ping = lua_toboolean(L, -1);
  }
  lua_settop(L, 1);
  lmk_future_new(L);
  lua_pushvalue(L, -1);
  fref = luaL_ref(L, LUA_REGISTRYINDEX);
  lmk_pend(L, &lp->o, 1); /* may raise (its registry ref): before the malloc */
  g = malloc(sizeof *g);
  if (!g) {
    luaL_unref(L, LUA_REGISTRYINDEX, fref);
    lmk_unpend(L, &lp->o);
    return lmk_raise(L, MK_ERR_INTERFACE, "getconn: out of memory");
  }
  g->lp = lp;
  g->fref = fref;
  kind = mk_pool_getconn(lp->p, ping, on_got, g, &why);
  if (kind) {
    luaL_unref(L, LUA_REGISTRYINDEX, g->fref);
    lmk_unpend(L, &lp->o);
    free(g);
    lmk_push_error(L, (mk_kind)kind, why);
    lmk_future_fail(L, 2);
  }
  return 1;
}

/* pool:putconn(conn): gives a getconn'd connection back (also after close). The
 * Connection is given back (unlent) before the core sees it: what the core runs while
 * it gives the connection back (a request of it completing, whose done callback or
 * to-be-closed variable puts conn again) finds it returned already. */
static int pool_putconn(lua_State *L) {
  lpool *lp = check_pool(L, 1);
  lowner *owner = NULL;
  mk_pconn *pc = lmk_conn_lent(L, 2, &owner);
  if (!pc || owner != &lp->o)
    return lmk_raise(L, MK_ERR_POOL, "putconn: not a connection of this pool, or already given back");
  if (!lp->p || !mk_pconn_returnable(pc))
    return lmk_raise(L, MK_ERR_POOL, "putconn: the connection is not reserved");
  lent_clear(L, 1, pc);
  lmk_conn_unlend(L, 2);
  if (mk_pool_putconn(lp->p, pc) < 0) /* cannot happen after the check above */
    return lmk_raise(L, MK_ERR_POOL, "putconn: the connection is not reserved");
  return 0;
}

/* private pool_owns(pool, conn): true while conn is lent by this pool (manage checks
 * it at the call). */
static int pool_owns(lua_State *L) {
  lpool *lp = check_pool(L, 1);
  lowner *owner = NULL;
  mk_pconn *pc = lmk_conn_lent(L, 2, &owner);
  lua_pushboolean(L, pc != NULL && owner == &lp->o);
  return 1;
}

/* private pool_check_params(pool, sql, params): raises InterfaceError for what execute
 * would refuse at the call (pool:mogrify checks its arguments before it waits for a
 * connection). */
static int pool_check_params(lua_State *L) {
  check_pool(L, 1);
  lua_settop(L, 3);
  lmk_params_check(L, 2, 3);
  return 0;
}

static int pool_close(lua_State *L) {
  lpool *lp = check_pool(L, 1);
  int i;
  if (lp->p) mk_pool_close(lp->p);
  for (i = 0; i < lp->nreplicas; i++) mk_pool_close(lp->replicas[i]);
  return 0;
}

/* Pushes stats().replicas (a pool without replicas has none): for each replica, in the order of opts.replicas,
 * {dsn_host =, free =, busy =, dead =} (dsn_host: its DSN's host or hostaddr). */
static void push_replica_stats(lua_State *L, lpool *lp) {
  int i;
  lua_createtable(L, lp->nreplicas, 0);
  lua_getiuservalue(L, 1, 1);
  for (i = 0; i < lp->nreplicas; i++) {
    mk_pool_stats s;
    mk_pool_stats_of(lp->replicas[i], &s);
    lua_createtable(L, 0, 4);
    lmk_options_replica_host(L, -2, i + 1);
    lua_setfield(L, -2, "dsn_host");
    lua_pushinteger(L, s.free);
    lua_setfield(L, -2, "free");
    lua_pushinteger(L, s.busy);
    lua_setfield(L, -2, "busy");
    lua_pushinteger(L, s.dead);
    lua_setfield(L, -2, "dead");
    lua_rawseti(L, -3, i + 1);
  }
  lua_pop(L, 1);
}

static int pool_stats(lua_State *L) {
  lpool *lp = check_pool(L, 1);
  mk_pool_stats s;
  memset(&s, 0, sizeof s);
  if (lp->p) mk_pool_stats_of(lp->p, &s);
  lua_createtable(L, 0, 10);
#define FIELD(name)                  \
  lua_pushinteger(L, s.name);        \
  lua_setfield(L, -2, #name)
  FIELD(size);
  FIELD(free);
  FIELD(busy);
  FIELD(connecting);
  FIELD(waiting);
  FIELD(dead);
  FIELD(acquired);
  FIELD(timeouts);
  FIELD(reconnects);
  FIELD(retries);
#undef FIELD
  if (lp->nreplicas > 0) {
    push_replica_stats(L, lp);
    lua_setfield(L, -2, "replicas");
  }
  return 1;
}

static int pool_tostring(lua_State *L) {
  lpool *lp = check_pool(L, 1);
  mk_pool_stats s;
  luaL_Buffer b;
  static const char *const parts[] = {"host", "hostaddr", "port", "dbname", NULL};
  int i, first = 1;
  memset(&s, 0, sizeof s);
  if (lp->p) mk_pool_stats_of(lp->p, &s);
  lua_getiuservalue(L, 1, 1);
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "<momoko.Pool size=%d free=%d busy=%d connecting=%d waiting=%d%s dsn=", s.size,
                  s.free, s.busy, s.connecting, s.waiting, (!lp->p || mk_pool_closed(lp->p)) ? " closed" : "");
  luaL_addvalue(&b);
  for (i = 0; parts[i]; i++) {
    if (lua_getfield(L, 2, parts[i]) == LUA_TSTRING) { /* never the password */
      lua_pushfstring(L, "%s%s=%s", first ? "" : " ", parts[i], lua_tostring(L, -1));
      lua_remove(L, -2);
      luaL_addvalue(&b);
      first = 0;
    } else {
      lua_pop(L, 1);
    }
  }
  luaL_addchar(&b, '>');
  luaL_pushresult(&b);
  return 1;
}

static int pool_index(lua_State *L) {
  lpool *lp = check_pool(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "closed") == 0) {
    lua_pushboolean(L, !lp->p || mk_pool_closed(lp->p));
    return 1;
  }
  return lmk_owner_method(L);
}

void lmk_open_pool(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"stream", pool_stream},
    {"copy_from", pool_copy_from}, {"copy_to", pool_copy_to},
    {"connect", pool_connect},   {"getconn", pool_getconn},     {"putconn", pool_putconn},
    {"close", pool_close},       {"stats", pool_stats},
    {"execute", pool_execute},   {"callproc", pool_callproc},   {"transaction", pool_transaction},
    {"ping", pool_ping},         {NULL, NULL}};
  static const luaL_Reg private_fns[] = {
    {"pool_owns", pool_owns}, {"pool_check_params", pool_check_params}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__index", pool_index}, {"__gc", pool_gc}, {"__close", pool_close},
    {"__tostring", pool_tostring}, {NULL, NULL}};
  lmk_open_owner_class(L, LMK_POOL, meta, methods, "Pool_methods");
  lmk_add_private(L, private_fns);
  lua_pushcfunction(L, l_pool);
  lua_setfield(L, -2, "Pool");
}
