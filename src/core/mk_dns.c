/* mk_dns: host name lookups before libpq connects (see mk_dns.h). */
#include "mk_dns.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* connect_timeout as libpq reads it (the conninfo's value, else PGCONNECT_TIMEOUT):
 * seconds, 0 for none, and at least 2 as libpq enforces. */
static int timeout_ms_of(const char *val) {
  int secs;
  if (!val) val = getenv("PGCONNECT_TIMEOUT");
  secs = val ? atoi(val) : 0;
  if (secs <= 0) return 0;
  if (secs > INT_MAX / 1000) secs = INT_MAX / 1000;
  return (secs < 2 ? 2 : secs) * 1000;
}

static const char *opt_val(const PQconninfoOption *opts, const char *key) {
  const PQconninfoOption *o;
  for (o = opts; o && o->keyword; o++)
    if (strcmp(o->keyword, key) == 0) return o->val;
  return NULL;
}


/* A lookup whose result could not be kept (libuv's codes are other negative numbers). */
#define LOOKUP_NOMEM (-100000)

struct lookup {
  struct mk_dns *d;
  mk_resolve *req; /* NULL when none is needed, or once it ended */
  int needed;
  int status;
  char *addrs; /* malloc'd, comma-separated */
};

struct mk_dns {
  mk_dns_done_fn done;
  void *ud;
  PQconninfoOption *opts;
  char *hostbuf, *portbuf; /* copies of host and port, split at the commas */
  char **hosts, **ports;
  int nhosts, nports;
  struct lookup *lk; /* one per host */
  int left;
};

void mk_dns_free(mk_dns *d) {
  int i;
  if (!d) return;
  for (i = 0; d->lk && i < d->nhosts; i++) {
    mk_resolve_cancel(d->lk[i].req);
    free(d->lk[i].addrs);
  }
  free(d->lk);
  free(d->hosts);
  free(d->ports);
  free(d->hostbuf);
  free(d->portbuf);
  PQconninfoFree(d->opts);
  free(d);
}

/* Splits s at commas, in place, into a malloc'd array (*n entries). NULL: no memory. */
static char **split(char *s, int *n) {
  char **v, *p;
  int i = 1;
  for (p = s; *p; p++)
    if (*p == ',') i++;
  if (!(v = malloc((size_t)i * sizeof *v))) return NULL;
  *n = i;
  v[0] = s;
  for (i = 1, p = s; *p; p++)
    if (*p == ',') {
      *p = '\0';
      v[i++] = p + 1;
    }
  return v;
}

static int is_name(const char *h) {
  unsigned char buf[16];
  if (!h[0] || h[0] == '/' || h[0] == '@') return 0; /* default, or a socket directory */
  return inet_pton(AF_INET, h, buf) != 1 && inet_pton(AF_INET6, h, buf) != 1;
}

/* Appends s (and a comma before it unless first) to the malloc'd string *out. */
static int append(char **out, size_t *len, const char *s, int first) {
  size_t n = strlen(s);
  char *p = realloc(*out, *len + n + 2);
  if (!p) return -1;
  *out = p;
  if (!first) p[(*len)++] = ',';
  memcpy(p + *len, s, n + 1);
  *len += n;
  return 0;
}

/* Every lookup ended: hands the addresses found (or why there are none) to done, then
 * frees d. */
static void dns_done(mk_dns *d) {
  char *host = NULL, *addr = NULL, *port = NULL, err[400] = "";
  size_t hl = 0, al = 0, pl = 0;
  const char **kw = NULL, **vals = NULL;
  int i, n = 0, nopts = 0, k = 0, oom = 0;
  const PQconninfoOption *o;
  for (i = 0; i < d->nhosts && !oom; i++) {
    const char *p = d->nports > 1 ? d->ports[i] : NULL;
    if (!d->lk[i].needed) {
      oom = append(&host, &hl, d->hosts[i], n == 0) < 0 || append(&addr, &al, "", n == 0) < 0 ||
            (p && append(&port, &pl, p, n == 0) < 0);
      n++;
    } else if (d->lk[i].status < 0) {
      if (!err[0])
        snprintf(err, sizeof err, "could not translate host name \"%s\" to address: %s", d->hosts[i],
                 d->lk[i].status == LOOKUP_NOMEM ? "out of memory" : mk_loop_strerror(d->lk[i].status));
    } else {
      char *a = d->lk[i].addrs, *next;
      for (; a && !oom; a = next) {
        if ((next = strchr(a, ',')) != NULL) *next++ = '\0';
        oom = append(&host, &hl, d->hosts[i], n == 0) < 0 || append(&addr, &al, a, n == 0) < 0 ||
              (p && append(&port, &pl, p, n == 0) < 0);
        n++;
      }
    }
  }
  for (o = d->opts; o->keyword; o++) nopts++;
  if (!oom && n > 0) {
    kw = calloc((size_t)nopts + 4, sizeof *kw);
    vals = calloc((size_t)nopts + 4, sizeof *vals);
  }
  if (oom || (n > 0 && (!kw || !vals))) {
    d->done(d->ud, NULL, NULL, "out of memory");
  } else if (n == 0) {
    d->done(d->ud, NULL, NULL, err);
  } else {
    for (o = d->opts; o->keyword; o++) {
      if (!o->val || strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
          (port && strcmp(o->keyword, "port") == 0))
        continue;
      kw[k] = o->keyword;
      vals[k++] = o->val;
    }
    kw[k] = "host";
    vals[k++] = host;
    kw[k] = "hostaddr";
    vals[k++] = addr;
    if (port) {
      kw[k] = "port";
      vals[k++] = port;
    }
    kw[k] = NULL;
    vals[k] = NULL;
    d->done(d->ud, (const char *const *)kw, (const char *const *)vals, NULL);
  }
  mk_dns_free(d); /* after done: the arrays point into it */
  free(kw);
  free(vals);
  free(host);
  free(addr);
  free(port);
}

static void on_resolved(void *ud, int status, const char *addrs) {
  struct lookup *lk = ud;
  mk_dns *d = lk->d;
  lk->req = NULL;
  lk->status = status;
  if (status == 0 && !(lk->addrs = strdup(addrs))) lk->status = LOOKUP_NOMEM;
  if (--d->left == 0) dns_done(d);
}

int mk_dns_start(mk_loop *loop, const char *conninfo, mk_dns_done_fn done, void *ud, mk_dns **out,
                 int *timeout_ms) {
  mk_dns *d;
  const char *host, *port;
  char *errmsg = NULL;
  int i, err = 0;
  *timeout_ms = 0;
  *out = NULL;
  if (!(d = calloc(1, sizeof *d))) return -1;
  d->done = done;
  d->ud = ud;
  if (!(d->opts = PQconninfoParse(conninfo, &errmsg))) {
    /* malformed (libpq says so at the start), or no memory: either way libpq decides */
    PQfreemem(errmsg);
    free(d);
    return 0;
  }
  *timeout_ms = timeout_ms_of(opt_val(d->opts, "connect_timeout"));
  host = opt_val(d->opts, "host");
  if (!host) host = getenv("PGHOST");
  port = opt_val(d->opts, "port");
  /* a service file or an address given: nothing to resolve here */
  if (!host || opt_val(d->opts, "service") || opt_val(d->opts, "hostaddr") || getenv("PGHOSTADDR") ||
      getenv("PGSERVICE"))
    goto as_is;
  if (!(d->hostbuf = strdup(host)) || !(d->hosts = split(d->hostbuf, &d->nhosts))) goto nomem;
  if (port && port[0]) {
    if (!(d->portbuf = strdup(port)) || !(d->ports = split(d->portbuf, &d->nports))) goto nomem;
    if (d->nports > 1 && d->nports != d->nhosts) goto as_is; /* libpq reports the mismatch */
  }
  if (!(d->lk = calloc((size_t)d->nhosts, sizeof *d->lk))) goto nomem;
  for (i = 0; i < d->nhosts; i++) d->lk[i].needed = is_name(d->hosts[i]);
  for (i = 0; i < d->nhosts && !d->lk[i].needed; i++) {}
  if (i == d->nhosts) goto as_is;
  *out = d;
  d->left = 1; /* held while starting, so that no lookup ends it early */
  for (i = 0; i < d->nhosts; i++) {
    struct lookup *lk = &d->lk[i];
    if (!lk->needed) continue;
    lk->d = d;
    d->left++;
    lk->req = mk_resolve_start(loop, d->hosts[i], on_resolved, lk, &err);
    if (!lk->req) { /* counts as ended with that error */
      lk->status = err < 0 ? err : LOOKUP_NOMEM;
      d->left--;
    }
  }
  if (--d->left == 0) dns_done(d); /* none could start: fail with the first error */
  return 1;
as_is:
  mk_dns_free(d);
  return 0;
nomem:
  mk_dns_free(d);
  return -1;
}
