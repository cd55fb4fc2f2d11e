/* mk_cancel: cancel requests on detached threads (see mk_cancel.h).
 *
 * The wake-up handle is the loop's: only the loop thread closes it, and only after it
 * set `abandoned` under the lock, so the thread, which sends only under the lock while
 * `abandoned` is 0, never touches a closing handle. The handle's memory is freed by its
 * close callback; the record by the last of the two references. */
#include "mk_cancel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct mk_cancel {
  PGcancel *cancel; /* the thread's: freed by it */
  atomic_int refs;  /* 2 while both the thread and the caller hold it */
  atomic_int done;
  pthread_mutex_t lock; /* guards abandoned and the use of async by the thread */
  int abandoned;        /* the caller released it: no wake-up any more */
  mk_async *async;      /* the caller's; closed by mk_cancel_release */
  mk_cancel_fn cb;
  void *ud;
};

static void unref(mk_cancel *k) {
  if (atomic_fetch_sub(&k->refs, 1) == 1) {
    pthread_mutex_destroy(&k->lock);
    free(k);
  }
}

static void *send_cancel(void *arg) {
  mk_cancel *k = arg;
  char errbuf[256];
  /* A failed cancel needs no report beyond "done": the request then ends on its own
   * (or its timeout closes the connection). */
  (void)PQcancel(k->cancel, errbuf, sizeof errbuf);
  PQfreeCancel(k->cancel);
  k->cancel = NULL;
  atomic_store(&k->done, 1);
  pthread_mutex_lock(&k->lock);
  if (!k->abandoned) (void)mk_async_send(k->async); /* fails only for a closing handle */
  pthread_mutex_unlock(&k->lock);
  unref(k);
  return NULL;
}

static void on_async(void *ud) {
  mk_cancel *k = ud; /* the caller's reference is held: the handle is not closed yet */
  if (!k->abandoned && k->cb) k->cb(k->ud);
}

mk_cancel *mk_cancel_start(mk_loop *loop, PGconn *pg, mk_cancel_fn done, void *ud) {
  mk_cancel *k = calloc(1, sizeof *k);
  pthread_attr_t attr;
  pthread_t tid;
  int rc;
  if (!k) return NULL;
  if (pthread_mutex_init(&k->lock, NULL) != 0) {
    free(k);
    return NULL;
  }
  k->cb = done;
  k->ud = ud;
  k->async = mk_async_new(loop, on_async, k);
  k->cancel = k->async ? PQgetCancel(pg) : NULL;
  if (!k->cancel) goto fail;
  atomic_init(&k->refs, 2);
  atomic_init(&k->done, 0);
  if (pthread_attr_init(&attr) != 0) goto fail;
  rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (rc == 0) rc = pthread_create(&tid, &attr, send_cancel, k);
  pthread_attr_destroy(&attr);
  if (rc != 0) goto fail;
  return k;
fail:
  if (k->cancel) PQfreeCancel(k->cancel);
  mk_async_close(k->async);
  pthread_mutex_destroy(&k->lock);
  free(k);
  return NULL;
}

int mk_cancel_done(mk_cancel *k) { return atomic_load(&k->done); }

void mk_cancel_release(mk_cancel *k) {
  pthread_mutex_lock(&k->lock);
  k->abandoned = 1;
  pthread_mutex_unlock(&k->lock);
  mk_async_close(k->async);
  k->async = NULL;
  unref(k);
}
