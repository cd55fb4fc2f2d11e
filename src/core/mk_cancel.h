/* mk_cancel: server-side cancel requests, each sent from a detached thread of its own.
 * libpq 15's PQcancel blocks with no timeout: on libuv's thread pool, a few cancels
 * stuck behind an unresponsive peer would hold up every other cancel (and the host's
 * own thread-pool work, and the process's exit). The thread and the connection share one small
 * reference-counted record; neither ever waits for the other. */
#ifndef MK_CANCEL_H
#define MK_CANCEL_H

#include <libpq-fe.h>

typedef struct mk_cancel mk_cancel;

/* Starts sending a cancel request for pg's running query. Returns the caller's
 * reference, or NULL if it could not start (no memory, no thread, no cancel data). */
mk_cancel *mk_cancel_start(PGconn *pg);
/* 1 once the request was delivered, or failed. */
int mk_cancel_done(mk_cancel *k);
/* Drops the caller's reference; the record is freed by whichever side is last. */
void mk_cancel_release(mk_cancel *k);

#endif
