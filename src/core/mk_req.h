/* mk_req: one request for a connection: its statements and their parameters (copies
 * the request owns), its results and its error, and where it stands while a connection
 * runs it. The submitter owns a request except while it is queued on a connection;
 * the connection hands it back, exactly once, through its done callback.
 *
 * The struct is visible to the connection (mk_conn.c), which drives the steps; every
 * other user goes through the functions below. */
#ifndef MK_REQ_H
#define MK_REQ_H

#include <stddef.h>
#include <libpq-fe.h>

#include "mk_error.h"
#include "mk_loop.h"

typedef struct mk_req mk_req;
struct mk_conn;

/* Called exactly once per submitted request, when it ended (result, error, timeout,
 * cancel or closed connection). Ownership of r returns to the submitter, who frees it
 * with mk_req_free or submits it again after mk_req_reset. */
typedef void (*mk_req_done_fn)(mk_req *r, void *ud);


/* Request flags. */
#define MK_REQ_TXN 1u      /* BEGIN; statements; COMMIT */
#define MK_REQ_ROLLBACK 2u /* with MK_REQ_TXN: ROLLBACK after a failed statement */
/* One statement whose data goes through the request's io hooks (mk_req_set_io): */
#define MK_REQ_STREAM 4u    /* its rows one at a time (libpq's single-row mode) */
#define MK_REQ_COPY_IN 8u   /* COPY FROM STDIN: the data comes from io.copy_src */
#define MK_REQ_COPY_OUT 16u /* COPY TO STDOUT: the data goes to io.copy_sink */
/* Requests that hold their connection alone while they run: never pipelined with
 * others, nothing sent behind them until they ended. */
#define MK_REQ_ALONE (MK_REQ_TXN | MK_REQ_STREAM | MK_REQ_COPY_IN | MK_REQ_COPY_OUT)
/* The request only reads: an owner with read replicas may run it on one. The
 * connection itself does nothing with it. */
#define MK_REQ_READONLY 32u

/* The data hooks of a STREAM or COPY request, called by the connection while the
 * request runs. They may run any code (cancel, close); the connection looks again
 * after each. To fail the request, a hook sets its error with mk_req_fail. */
typedef struct mk_req_io {
  /* STREAM: row is a result of one row, owned by the callee from here; NULL when the
   * input read so far is used up (rows handed out since may be passed on in one go).
   * Returns 1 to stop reading the socket until mk_conn_resume, else 0. */
  int (*row)(mk_req *r, PGresult *row, void *ud);
  /* COPY_IN: the next piece of COPY data in *data, *len (valid until the next call)
   * and 1; 0 at the end of the data; -1 when the request's error is set: the COPY is
   * ended with that message, so the server rolls it back. */
  int (*copy_src)(mk_req *r, const char **data, size_t *len, void *ud);
  /* COPY_OUT: one data row of len bytes. Returns 0, or -1 when the request's error
   * is set: the rest is read and dropped. */
  int (*copy_sink)(mk_req *r, const char *data, size_t len, void *ud);
  void *ud;
} mk_req_io;


/* A new request of nstmts statements (1 unless MK_REQ_TXN). timeout_ms 0: none.
 * Returns NULL when memory ran out. */
mk_req *mk_req_new(int nstmts, unsigned flags, int timeout_ms, mk_req_done_fn done, void *ud);
/* Sets statement i's SQL (copied). nparams < 0 sends it with the simple protocol
 * (several statements allowed); otherwise with nparams bound parameters, each to be
 * set with mk_req_param. Returns 0 or -1 when memory ran out. */
int mk_req_stmt(mk_req *r, int i, const char *sql, size_t len, int nparams);
/* The longest parameter value libpq can take: its lengths are ints. (The server
 * refuses a message of more than 1 GB anyway; this only keeps a length from being cut
 * short.) */
#define MK_REQ_PARAM_MAX 0x7fffffff

/* Sets parameter j of statement i: val (copied; NULL for SQL NULL) of len bytes,
 * format 0 text or 1 binary, type OID (0 lets the server infer it). Returns 0, -1 when
 * memory ran out, or -2 (nothing copied) when len exceeds MK_REQ_PARAM_MAX. */
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
/* 1 once the request was handed to libpq on its connection (until mk_req_reset). */
int mk_req_sent(const mk_req *r);
/* Sets the data hooks (copied) of a STREAM or COPY request, before it is submitted. */
void mk_req_set_io(mk_req *r, const mk_req_io *io);
/* Sets the error of a request that is not queued on a connection (a pool's waiter),
 * or, from inside one of its io hooks, of the running request. */
void mk_req_fail(mk_req *r, mk_kind kind, const char *msg);
/* 1 once a transaction's BEGIN was sent. */
int mk_req_txn_started(const mk_req *r);
/* The flags it was made with (MK_REQ_*). */
unsigned mk_req_flags(const mk_req *r);

/* Bytes of a parameter value (its NUL included) kept inside the statement's block;
 * longer values get an allocation of their own. */
#define MK_STMT_INLINE 24

/* The connection's view of a request. */
typedef struct mk_stmt {
  char *block;       /* the one allocation: arrays, inline value slots, SQL */
  char *inline_vals; /* nparams slots of MK_STMT_INLINE bytes */
  char *sql;
  int nparams; /* -1: simple protocol */
  char **values;
  int *lengths;
  int *formats;
  Oid *types;
  /* set by the connection when the statement is sent: */
  int cache_checked; /* the statement cache was consulted for this run */
  unsigned cache_id; /* runs as prepared statement mk_<cache_id>; 0: unnamed */
  int prepare;       /* 1: prepared by this run (2 once the server confirmed it) */
} mk_stmt;

struct mk_req {
  mk_req *next;
  struct mk_conn *conn; /* set while queued or running */
  int nstmts;
  unsigned flags;
  int timeout_ms;
  int internal; /* the setsession request */
  mk_stmt *stmts;
  PGresult **results;
  mk_error err;
  int step; /* plain: 1. txn: 0 BEGIN, 1..n statements, n+1 COMMIT, n+2 ROLLBACK */
  int may_have_run;
  int txn_started;
  int timed_out;
  int copy_out;
  int sent;          /* handed to libpq (its first step, or its whole pipeline group) */
  int prep_phase;    /* the current step is the PREPARE of its statement */
  int pipelined;     /* went out in pipeline mode, as one group with one sync */
  int rolling_back;  /* pipelined transaction: its ROLLBACK group is out */
  int err_step;      /* pipelined: the step whose error the request has */
  int cancel_wanted; /* cancel or timeout asked for: a cancel request when it runs */
  int cancel_sent;   /* that cancel request was started */
  unsigned sent_epoch; /* the connection's cancel count when it was sent */
  int cache_retried; /* re-run once after the server dropped a cached statement */
  int stray_retried; /* re-run once after a cancel meant for another request hit it */
  int recheck;       /* failed while later requests of its pipeline ran: decided after them */
  mk_req_io io;      /* STREAM and COPY: the data hooks */
  int rows_unflushed; /* STREAM: rows handed to io.row since its last NULL call */
  mk_timer *timer;
  mk_req_done_fn done;
  void *ud;
};


#define MK_REQ_COMMIT_STEP(r) ((r)->nstmts + 1)
#define MK_REQ_ROLLBACK_STEP(r) ((r)->nstmts + 2)

#endif
