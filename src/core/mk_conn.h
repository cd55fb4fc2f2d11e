/* mk_conn: one PostgreSQL connection driven by libpq in non-blocking mode on a libuv
 * loop, with a FIFO of requests. A request is one statement, or a transaction (BEGIN,
 * its statements, COMMIT, and ROLLBACK on failure) that holds the connection until it
 * ends, a stream (its rows one at a time), or a COPY. The queue keeps "sent" apart from
 * "queued": in pipeline mode (mk_conn_set_pipeline) several requests are in flight.
 *
 * Re-entrancy: completion callbacks and hooks may run any code, including submitting
 * to, cancelling on, closing or releasing this connection. The connection object stays
 * valid until the outermost callback returns; libpq's PGconn is finished then too.
 *
 * Results (PGresult) handed out outlive the connection safely: libpq calls the notice
 * receiver they copied with an argument that lives as long as the last of them. */
#ifndef MK_CONN_H
#define MK_CONN_H

#include <stddef.h>
#include <libpq-fe.h>

#include "mk_error.h"
#include "mk_loop.h"
#include "mk_req.h"

typedef struct mk_conn mk_conn;

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
  /* A NOTIFY on a channel this session LISTENs to (channel and payload are the core's,
   * valid during the call; pid is the notifying backend). Delivered whenever input is
   * read: while idle and between the results of requests in flight. May close or
   * release c. NULL: notifications are dropped. */
  void (*notify)(mk_conn *c, const char *channel, const char *payload, int pid, void *ud);
} mk_conn_hooks;

/* A new, unconnected connection on loop. The hooks (copied) and ud are for the owner.
 * Returns NULL when memory ran out. */
mk_conn *mk_conn_new(mk_loop *loop, const mk_conn_hooks *hooks, void *ud);
/* Starts connecting. setsession (nsetsession SQL strings, copied) runs in one
 * transaction before the connection counts as connected; if it fails, the connection
 * closes and the connect fails with its error. connect_timeout from the conninfo (or
 * PGCONNECT_TIMEOUT) bounds the whole connect. Host names of the conninfo are resolved
 * on the loop's thread pool first and given to libpq as hostaddr (never a blocking
 * lookup on the loop). hooks->connected reports the outcome, possibly before this
 * returns (a malformed conninfo, no memory). Returns 0, or -1 when the connection is
 * not new. */
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
 * was delivered, so that it cannot hit the next request; its end wakes the loop. One
 * not delivered within connect_timeout (10 s without one) closes c, as if it was lost
 * (hooks->lost; its requests fail with OperationalError). If no cancel request can be
 * started (memory, threads), c is closed at once (hooks->lost): r fails with
 * QueryCanceledError, the rest with OperationalError. Returns 1 whenever r is on c (r
 * then ends as cancelled unless it completes first), 0 if r is not on c. */
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

/* Before mk_conn_connect: on 1 puts c in libpq's pipeline mode, where the requests
 * queued on c go out together (each with a sync of its own, so each still succeeds or
 * fails alone) and a transaction goes out in one round trip. */
void mk_conn_set_pipeline(mk_conn *c, int on);
/* Before mk_conn_connect: how many parametrized statements c keeps prepared (LRU); a
 * statement is prepared the second time its SQL and parameter types are run. 0: none. */
void mk_conn_set_statement_cache(mk_conn *c, int size);
/* A stream request (MK_REQ_STREAM) whose io.row asked to stop reading: the socket is
 * read again, and what libpq holds already is handed out on the next loop turn. Runs no
 * callback (safe from a finalizer); nothing happens when r is not such a request on a
 * connection. */
void mk_conn_resume(mk_req *r);
/* Requests on c: sent and waiting for their results, plus queued. */
int mk_conn_load(const mk_conn *c);

#endif
