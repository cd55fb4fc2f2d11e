/* mk_hosts: the host list of a connect that libpq is running. libpq applies
 * connect_timeout to each host in turn, but only in its blocking connect; with
 * PQconnectPoll the caller keeps the time. These tell which host of the list a PGconn
 * is trying, and give the parameters to go on with the hosts after it, so that a host
 * that does not answer in time is given up for the next one. */
#ifndef MK_HOSTS_H
#define MK_HOSTS_H

#include <libpq-fe.h>

/* Connection parameters for PQconnectStartParams: kw and vals (NULL-terminated) point
 * into opts. */
typedef struct mk_hosts_rest {
  PQconninfoOption *opts;
  const char **kw, **vals;
} mk_hosts_rest;

/* The index in pg's host list of the host pg is trying (its host, port and address as
 * PQhost, PQport and PQhostaddr give them), looking from index `from` on (libpq goes
 * through the list in order); -1 when it cannot tell. pg is only read. */
int mk_hosts_current(PGconn *pg, int from);

/* Fills *rest with pg's parameters (PQconninfo), its host, hostaddr and port lists cut
 * to the entries after index `current`. Returns 1, 0 when there is no entry after it
 * (nothing is filled), -1 when memory ran out. The caller owns *rest once filled and
 * frees it with mk_hosts_rest_free; pg is only read. */
int mk_hosts_after(PGconn *pg, int current, mk_hosts_rest *rest);
/* Frees what mk_hosts_after filled in (a zeroed rest is ignored). */
void mk_hosts_rest_free(mk_hosts_rest *rest);

#endif
