/* mk_hosts: which host of a multi-host connect libpq is on (see mk_hosts.h). */
#include "mk_hosts.h"

#include <stdlib.h>
#include <string.h>

static const char *opt_val(const PQconninfoOption *opts, const char *key) {
  const PQconninfoOption *o;
  for (o = opts; o && o->keyword; o++)
    if (strcmp(o->keyword, key) == 0) return o->val;
  return NULL;
}

/* Entries of a comma-separated list (an absent or empty list has one, empty). */
static int count(const char *list) {
  int n = 1;
  for (; list && *list; list++)
    if (*list == ',') n++;
  return n;
}

/* The list after its first i entries (a suffix of list), or NULL past its end. */
static const char *from_entry(const char *list, int i) {
  for (; i > 0; i--) {
    list = list ? strchr(list, ',') : NULL;
    if (!list) return NULL;
    list++;
  }
  return list;
}

/* 1 if entry i of list (empty when list is absent) equals s; an empty entry, or an
 * unknown s, matches anything (libpq then uses a default). */
static int entry_is(const char *list, int i, const char *s) {
  const char *e = list ? from_entry(list, i) : NULL;
  size_t n;
  if (!e || !s || !s[0]) return 1;
  n = strcspn(e, ",");
  return n == 0 || (strlen(s) == n && strncmp(e, s, n) == 0);
}

/* Number of hosts in the lists of opts: libpq takes as many as host or hostaddr has. */
static int nhosts(const PQconninfoOption *opts) {
  const char *h = opt_val(opts, "host"), *a = opt_val(opts, "hostaddr");
  int nh = h && h[0] ? count(h) : 0, na = a && a[0] ? count(a) : 0;
  return nh > na ? nh : na;
}

int mk_hosts_current(PGconn *pg, int from) {
  PQconninfoOption *opts = PQconninfo(pg);
  const char *h, *a, *p, *cur_host = PQhost(pg), *cur_port = PQport(pg), *cur_addr = PQhostaddr(pg);
  int i, n, np, found = -1;
  if (!opts) return -1;
  h = opt_val(opts, "host");
  a = opt_val(opts, "hostaddr");
  p = opt_val(opts, "port");
  n = nhosts(opts);
  np = p && p[0] ? count(p) : 0;
  for (i = from > 0 ? from : 0; i < n && found < 0; i++) {
    /* PQhost gives the host name, or the address when the entry has no name */
    int named = h && from_entry(h, i) && strcspn(from_entry(h, i), ",") > 0;
    if (!entry_is(named ? h : a, i, cur_host)) continue;
    if (np > 0 && !entry_is(p, np == 1 ? 0 : i, cur_port)) continue;
    if (named && a && !entry_is(a, i, cur_addr)) continue;
    found = i;
  }
  PQconninfoFree(opts);
  return found;
}

int mk_hosts_after(PGconn *pg, int current, mk_hosts_rest *rest) {
  PQconninfoOption *opts = PQconninfo(pg), *o;
  int n, nopts = 0, k = 0;
  memset(rest, 0, sizeof *rest);
  if (!opts) return -1;
  n = nhosts(opts);
  if (current < 0 || current + 1 >= n) {
    PQconninfoFree(opts);
    return 0;
  }
  for (o = opts; o->keyword; o++) nopts++;
  rest->opts = opts;
  rest->kw = calloc((size_t)nopts + 1, sizeof *rest->kw);
  rest->vals = calloc((size_t)nopts + 1, sizeof *rest->vals);
  if (!rest->kw || !rest->vals) {
    mk_hosts_rest_free(rest);
    return -1;
  }
  for (o = opts; o->keyword; o++) {
    const char *v = o->val;
    if (!v) continue;
    /* the lists lose their first current + 1 entries; a single port serves them all */
    if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
        (strcmp(o->keyword, "port") == 0 && count(v) > 1))
      v = v[0] ? from_entry(v, current + 1) : v;
    if (!v) continue;
    rest->kw[k] = o->keyword;
    rest->vals[k++] = v;
  }
  return 1;
}

void mk_hosts_rest_free(mk_hosts_rest *rest) {
  free(rest->kw);
  free(rest->vals);
  PQconninfoFree(rest->opts);
  memset(rest, 0, sizeof *rest);
}
