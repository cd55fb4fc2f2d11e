/* mk_dns: the host names of a conninfo, resolved on the loop's thread pool before
 * libpq starts. libpq would resolve them with a blocking getaddrinfo inside
 * PQconnectPoll, which stops the loop. The names are looked up first, then libpq gets
 * them as hostaddr beside host (which it still uses for TLS, .pgpass and its messages).
 * A name with several addresses becomes as many host entries, so libpq tries each in
 * turn as it would have; every other entry (an address, a socket directory, an empty
 * entry) is passed on as it was, with an empty hostaddr. */
#ifndef MK_DNS_H
#define MK_DNS_H

#include "mk_loop.h"

typedef struct mk_dns mk_dns;

/* The lookups ended: kw and vals (NULL-terminated, valid during the call only) are
 * the keywords and values for PQconnectStartParams, or err says why there are none
 * (no name resolved, no memory). Called once; the lookup frees itself after it. */
typedef void (*mk_dns_done_fn)(void *ud, const char *const *kw, const char *const *vals, const char *err);

/* Parses conninfo. Returns 1 when lookups were started (*out is set before anything
 * else happens; done runs later, or before this returns when none could start), 0 when
 * libpq can take conninfo as it is (nothing to resolve, a service file or hostaddr
 * given, or a conninfo libpq will refuse itself), -1 when memory ran out.
 * *timeout_ms: the conninfo's connect_timeout in ms, as libpq reads it (0 for none or
 * unparsable). */
int mk_dns_start(mk_loop *loop, const char *conninfo, mk_dns_done_fn done, void *ud, mk_dns **out,
                 int *timeout_ms);
/* Cancels lookups that have not ended (done is not called) and frees d. NULL is
 * ignored. */
void mk_dns_free(mk_dns *d);

#endif
