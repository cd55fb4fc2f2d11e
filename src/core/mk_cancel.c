/* mk_cancel: cancel requests on detached threads (see mk_cancel.h). */
#include "mk_cancel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct mk_cancel {
  PGcancel *cancel; /* the thread's: freed by it */
  atomic_int refs;  /* 2 while both the thread and the caller hold it */
  atomic_int done;
};

static void *send_cancel(void *arg) {
  mk_cancel *k = arg;
  char errbuf[256];
  /* A failed cancel needs no report: the request then ends on its own (or its
   * timeout closes the connection). */
  (void)PQcancel(k->cancel, errbuf, sizeof errbuf);
  PQfreeCancel(k->cancel);
  k->cancel = NULL;
  atomic_store(&k->done, 1);
  mk_cancel_release(k);
  return NULL;
}

mk_cancel *mk_cancel_start(PGconn *pg) {
  mk_cancel *k = malloc(sizeof *k);
  pthread_attr_t attr;
  pthread_t tid;
  int rc;
  if (!k) return NULL;
  k->cancel = PQgetCancel(pg);
  if (!k->cancel) {
    free(k);
    return NULL;
  }
  atomic_init(&k->refs, 2);
  atomic_init(&k->done, 0);
  if (pthread_attr_init(&attr) != 0) {
    PQfreeCancel(k->cancel);
    free(k);
    return NULL;
  }
  rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (rc == 0) rc = pthread_create(&tid, &attr, send_cancel, k);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    PQfreeCancel(k->cancel);
    free(k);
    return NULL;
  }
  return k;
}

int mk_cancel_done(mk_cancel *k) { return atomic_load(&k->done); }

void mk_cancel_release(mk_cancel *k) {
  if (atomic_fetch_sub(&k->refs, 1) == 1) free(k);
}
