/* mk_conn: one PostgreSQL connection driven by libpq in non-blocking mode on a libuv
 * loop, with a FIFO of requests. A request is one statement, or a transaction (BEGIN,
 * its statements, COMMIT, and ROLLBACK on failure) that holds the connection until it
 * ends. The queue keeps "sent" apart from "queued" so that pipeline mode can later put
 * several requests in flight; today one request is in flight at a time.
 *
 * Re-entrancy: completion callbacks and hooks may run any code, including submitting
 * to, cancelling on, closing or releasing this connection. The connection object stays
 * valid until the outermost callback returns; libpq's PGconn is finished then too. */
#ifndef MK_CONN_H
#define MK_CONN_H

#include <stddef.h>
#include <libpq-fe.h>

#include "mk_error.h"
#include "mk_loop.h"

typedef struct mk_conn mk_conn;
typedef struct mk_req mk_req;

/* Called exactly once per submitted request, when it ended (result, error, timeout,
 * cancel or closed connection). Ownership of r returns to the submitter, who frees it
 * with mk_req_free or submits it again after mk_req_reset. */
typedef void (*mk_req_done_fn)(mk_req *r, void *ud);

typedef enum mk_conn_state {
  MK_CONN_NEW,        /* created, connect not started */
  MK_CONN_CONNECTING, /* libpq handshake or setsession running */
  MK_CONN_READY,      /* connected */
  MK_CONN_CLOSED      /* closed by the user, failed to connect, or lost */
} mk_conn_state;

typedef struct mk_conn_hooks {
  /* The connect (and setsession) ended; err is NULL on success. */
  void (*connected)(mk_conn *c, const mk_error *err, void *ud);
  /* A server notice, or a warning of the core nobody else can receive (a failed
   * ROLLBACK after a failed transaction). */
  void (*notice)(mk_conn *c, const char *msg, void *ud);
  /* The connection died on its own (killed backend, server restart, network);
   * not called for mk_conn_close. Every request has already completed. */
  void (*lost)(mk_conn *c, void *ud);
} mk_conn_hooks;

/* Request flags. */
#define MK_REQ_TXN 1u      /* BEGIN; statements; COMMIT */
#define MK_REQ_ROLLBACK 2u /* with MK_REQ_TXN: ROLLBACK after a failed statement */

/* A new request of nstmts statements (1 unless MK_REQ_TXN). timeout_ms 0: none.
 * Returns NULL when memory ran out. */
mk_req *mk_req_new(int nstmts, unsigned flags, int timeout_ms, mk_req_done_fn done, void *ud);
/* Sets statement i's SQL (copied). nparams < 0 sends it with the simple protocol
 * (several statements allowed); otherwise with nparams bound parameters, each to be
 * set with mk_req_param. Returns 0 or -1 when memory ran out. */
int mk_req_stmt(mk_req *r, int i, const char *sql, size_t len, int nparams);
/* Sets parameter j of statement i: val (copied; NULL for SQL NULL) of len bytes,
 * format 0 text or 1 binary, type OID (0 lets the server infer it). 0 or -1. */
int mk_req_param(mk_req *r, int i, int j, const char *val, size_t len, int format, Oid type);
/* Frees a request that is not queued on a connection, with any results it holds. */
void mk_req_free(mk_req *r);
/* Clears results and error of a completed request so that it can be submitted again. */
void mk_req_reset(mk_req *r);
void *mk_req_ud(const mk_req *r);
/* The SQL of statement i as it was set. */
const char *mk_req_sql(const mk_req *r, int i);
void mk_req_set_done(mk_req *r, mk_req_done_fn done, void *ud);
void mk_req_get_done(const mk_req *r, mk_req_done_fn *done, void **ud);
/* Number of statements, and the result of statement i: ownership moves to the caller
 * (NULL when it has none or it was taken). */
int mk_req_count(const mk_req *r);
PGresult *mk_req_take_result(mk_req *r, int i);
/* The error, or NULL when the request succeeded. */
mk_error *mk_req_error(mk_req *r);
/* 1 if the request may have taken effect on the server: it was handed to libpq on a
 * healthy connection, and was not answered with the server ending the session before
 * any result (57P01-57P03, which rolls it back). 0 if it certainly did not. */
int mk_req_may_have_run(const mk_req *r);
/* Sets the error of a request that is not queued on a connection (a pool's waiter). */
void mk_req_fail(mk_req *r, mk_kind kind, const char *msg);
/* 1 once a transaction's BEGIN was sent. */
int mk_req_txn_started(const mk_req *r);

/* A new, unconnected connection on loop. The hooks (copied) and ud are for the owner.
 * Returns NULL when memory ran out. */
mk_conn *mk_conn_new(mk_loop *loop, const mk_conn_hooks *hooks, void *ud);
/* Starts connecting. setsession (nsetsession SQL strings, copied) runs in one
 * transaction before the connection counts as connected; if it fails, the connection
 * closes and the connect fails with its error. connect_timeout from the conninfo (or
 * PGCONNECT_TIMEOUT) bounds the whole connect. hooks->connected reports the outcome,
 * possibly before this returns (a malformed conninfo). Returns 0, or -1 when the
 * connection is not new. */
int mk_conn_connect(mk_conn *c, const char *conninfo, const char *const *setsession,
                    int nsetsession);
/* Queues r and sends it at once when the connection is free (from inside a callback
 * of c: when that callback returns). r->done runs later, or before this returns only
 * if sending found the connection dead. Returns 0, or -1 if the connection is closed
 * or not connecting/connected (r stays the caller's). */
int mk_conn_submit(mk_conn *c, mk_req *r);
/* Cancels r: a queued request is removed and completes with QueryCanceledError before
 * this returns; a running one gets a cancel request sent to the server (from a thread
 * of its own, see mk_cancel.h). Nothing new is sent on c until that cancel request
 * was delivered, so that it cannot hit the next request. Returns 1 if anything was
 * done, 0 if r is not on c. */
int mk_conn_cancel(mk_conn *c, mk_req *r);
/* Closes: every request completes with InterfaceError("connection closed") before this
 * returns; a running query is cancelled on the server. Idempotent. */
void mk_conn_close(mk_conn *c);
/* Closes, drops the hooks, and frees c once no callback of it is running and no
 * cancel request of it is under way. c must not be used afterwards. */
void mk_conn_release(mk_conn *c);

mk_conn_state mk_conn_state_of(const mk_conn *c);
/* 1 if requests are queued or running. Only then (or while connecting) does c keep
 * the loop alive; an idle connection is still watched, to notice its death. */
int mk_conn_busy(const mk_conn *c);
/* The PGconn (NULL before connect and after close), for escaping and status. */
PGconn *mk_conn_pg(const mk_conn *c);
/* Loop milliseconds of the last completed request or of the connect. */
uint64_t mk_conn_last_used(const mk_conn *c);

#endif
