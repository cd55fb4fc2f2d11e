/* mk_cancel: server-side cancel requests, each sent from a detached thread of its own.
 * libpq 15's PQcancel blocks with no timeout: on libuv's thread pool, a few cancels
 * stuck behind an unresponsive peer would hold up every other cancel (and the host's
 * own thread-pool work, and the process's exit). The thread and the connection share
 * one small reference-counted record; neither ever waits for the other. The thread
 * reports the end through an mk_async (mk_loop.h): nobody polls. A cancel that never
 * ends is the caller's to give up on (mk_conn.c closes the connection at a deadline). */
#ifndef MK_CANCEL_H
#define MK_CANCEL_H

#include <libpq-fe.h>

#include "mk_loop.h"

typedef struct mk_cancel mk_cancel;
typedef void (*mk_cancel_fn)(void *ud);

/* Starts sending a cancel request for pg's running query. Once it was delivered, or
 * failed, done(ud) runs on loop's thread (from a loop callback, never from inside this
 * call), unless the caller released its reference first. Returns the caller's
 * reference, or NULL if it could not start (no memory, no thread, no cancel data). */
mk_cancel *mk_cancel_start(mk_loop *loop, PGconn *pg, mk_cancel_fn done, void *ud);
/* 1 once the request was delivered, or failed. */
int mk_cancel_done(mk_cancel *k);
/* Drops the caller's reference (loop thread): done is not called afterwards; the
 * record is freed by whichever side is last. */
void mk_cancel_release(mk_cancel *k);

#endif
