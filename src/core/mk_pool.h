/* mk_pool: a pool of mk_conn connections to one server. It opens `size` connections,
 * grows up to `max_size` only for requests that wait, hands each request to a free
 * connection (or queues it, FIFO, bounded by acquire_timeout and max_waiting), watches
 * idle connections and reopens dead ones every reconnect_interval, replays requests
 * whose connection died according to the retry policy, shrinks idle connections, and
 * reserves connections for getconn/putconn, and replaces connections that lived past
 * max_lifetime when they are next free. With opts.pipeline, a request that finds no
 * free connection (once growth to max_size is under way or done) joins the least loaded
 * busy one, up to pipeline_depth requests each; transactions, getconn and requests
 * that open a transaction (BEGIN, START) take a connection of their own.
 *
 * Every submitted request and every getconn completes exactly once, also when the pool
 * closes. Callbacks may re-enter the pool (submit, getconn, putconn, close, release);
 * the pool stays allocated until the outermost callback returns. */
#ifndef MK_POOL_H
#define MK_POOL_H

#include "mk_conn.h"

typedef struct mk_pool mk_pool;
typedef struct mk_pconn mk_pconn; /* one connection of the pool */

typedef enum mk_retry { MK_RETRY_SAFE, MK_RETRY_ALWAYS, MK_RETRY_NEVER } mk_retry;

typedef struct mk_pool_opts {
  const char *conninfo;             /* copied */
  const char *const *setsession;    /* copied */
  int nsetsession;
  int size;                         /* >= 1 */
  int max_size;                     /* >= size */
  int raise_connect_errors;
  int reconnect_interval_ms;
  int auto_shrink;
  int shrink_delay_ms, shrink_period_ms;
  int acquire_timeout_ms;           /* 0: none */
  int max_waiting;                  /* < 0: none */
  mk_retry retry;
  int max_lifetime_ms;              /* 0: connections live as long as they work */
  int setup;                        /* call hooks.setup for every new connection */
  int pipeline;                     /* connections in pipeline mode (mk_conn_set_pipeline), and
                                     * requests stacked onto busy ones */
  int pipeline_depth;               /* with pipeline: requests per connection before one waits (>= 1) */
  int statement_cache_size;         /* mk_conn_set_statement_cache of each connection */
} mk_pool_opts;

/* What the event hook reports (tracing: API §10). */
typedef enum mk_pool_event {
  MK_POOL_EV_CONNECT,         /* a connection finished connecting (err set: it failed); ms */
  MK_POOL_EV_LOST,            /* a connection died (err: the error of a request on it, if any) */
  MK_POOL_EV_RECONNECT,       /* a connection replacing a dead one is open; ms */
  MK_POOL_EV_GROW,            /* a connection opened past `size` for waiting requests is open; ms */
  MK_POOL_EV_SHRINK,          /* an idle connection past `size` was closed */
  MK_POOL_EV_ACQUIRE_TIMEOUT, /* a request or getconn waited acquire_timeout; ms */
  MK_POOL_EV_RETRY            /* a request whose connection died is replayed; err: why */
} mk_pool_event;

typedef struct mk_pool_hooks {
  /* pool connect() ended: every one of the first `size` connections was tried. err is
   * NULL on success (or with raise_connect_errors off). */
  void (*connected)(mk_pool *p, const mk_error *err, void *ud);
  /* A new connection finished connecting (setsession included); the owner prepares it
   * (connection_factory) and calls mk_pool_setup_done. Only with opts.setup. */
  void (*setup)(mk_pool *p, mk_pconn *pc, void *ud);
  /* A notice of the pool connection pc (reserved, in setup, or running the pool's own
   * requests). pc is valid during the call. */
  void (*notice)(mk_pool *p, mk_pconn *pc, const char *msg, void *ud);
  /* Optional (NULL: no event is prepared). An event of the pool: ms < 0 when it has none,
   * err (valid during the call) NULL when it has none. Called from loop callbacks only,
   * once the pool is consistent again; it may re-enter the pool. */
  void (*event)(mk_pool *p, mk_pool_event kind, double ms, const mk_error *err, void *ud);
} mk_pool_hooks;

/* getconn's outcome: pc reserved for the caller, or err (pc NULL). */
typedef void (*mk_pool_got_fn)(mk_pool *p, mk_pconn *pc, const mk_error *err, void *ud);

typedef struct mk_pool_stats {
  int size, free, busy, connecting, waiting, dead; /* busy: with requests on it, reserved,
                                                    * in setup or rolling back */
  long long acquired, timeouts, reconnects, retries;
} mk_pool_stats;

/* Validated options (the owner checks ranges). NULL when memory ran out. */
mk_pool *mk_pool_new(mk_loop *loop, const mk_pool_opts *opts, const mk_pool_hooks *hooks, void *ud);
/* Opens `size` connections. Returns 0, or -1 if connect was already called. */
int mk_pool_connect(mk_pool *p);
/* Runs r on a free connection (with pipeline: or on a busy one it may join), or
 * queues it. Returns 0, or an error kind when r was refused at once (the pool is
 * closed: MK_ERR_POOL; too many waiting: MK_ERR_POOL with *why set; no connection can
 * be opened: MK_ERR_NOT_AVAILABLE). r stays the caller's when refused. */
int mk_pool_submit(mk_pool *p, mk_req *r, const char **why);
/* Cancels r, a request submitted to a pool and not handed back yet (queued: completes
 * with QueryCanceledError; running: as mk_conn_cancel). An owner of several pools need
 * not know which one has r. Returns 1 if r was queued or running, 0 if it is no longer
 * the pool's (completed). */
int mk_pool_cancel(mk_req *r);
/* Reserves a connection; got() runs when one is ready (pinged first when ping is set
 * and the connection was idle for a second or more), or with the error that ended the
 * wait. Returns 0, or the refusal kind as submit (got is then not called). */
int mk_pool_getconn(mk_pool *p, int ping, mk_pool_got_fn got, void *ud, const char **why);
/* Gives a reserved connection back. Returns 0, or -1 if pc is not reserved (also while
 * it is being given back or discarded: a second putconn from a callback of the first
 * is refused). An open transaction is rolled back first; a running query is cancelled
 * and the connection discarded; a dead one is replaced. A connection past its
 * max_lifetime is closed and replaced. */
int mk_pool_putconn(mk_pool *p, mk_pconn *pc);
/* putconn from a finalizer: pc goes back on the next loop turn (nothing runs now). For
 * a connection in setup, the setup fails then (its holder is gone). */
void mk_pool_putconn_later(mk_pool *p, mk_pconn *pc);
/* The setup hook's answer: ok 0 discards the connection (and reopens later). */
void mk_pool_setup_done(mk_pool *p, mk_pconn *pc, int ok);
/* The connection of pc (valid while pc is reserved or in setup). */
mk_conn *mk_pconn_conn(const mk_pconn *pc);
mk_pool *mk_pconn_pool(const mk_pconn *pc);
/* 1 while pc is reserved by getconn (or being set up). */
int mk_pconn_reserved(const mk_pconn *pc);
/* 1 while pc is in its getconn holder's hands, so that mk_pool_putconn takes it. */
int mk_pconn_returnable(const mk_pconn *pc);
/* Closes: waiting requests fail with PoolError("pool is closed"), running ones with
 * InterfaceError, getconn waiters with PoolError; timers stop. Idempotent. */
void mk_pool_close(mk_pool *p);
/* Closes, drops the hooks, and frees p when no callback of it runs any more. */
void mk_pool_release(mk_pool *p);
int mk_pool_closed(const mk_pool *p);
void mk_pool_stats_of(const mk_pool *p, mk_pool_stats *s);

#endif
