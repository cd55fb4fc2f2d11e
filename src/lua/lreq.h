/* lreq: the requests of a Connection or a Pool (execute, callproc, transaction, ping, copy_from, copy_to):
 * their arguments, the request record and its future, and its completion. The owner
 * (lconn.c or lpool.c) checks its object, builds the request here, hands the core
 * request to its mk_conn or mk_pool, and says here when that refused it. Completion
 * runs its Lua work on the main thread (lmk_enter); once the owner is finalized or the
 * state is closing it only frees. Internal. */
#ifndef LREQ_H
#define LREQ_H

#include "lowner.h"
#include "mk_req.h"

typedef struct lreq lreq;

/* Cancels r on whatever the owner handed it to; 1 if anything was done. Runs no Lua. */
typedef int (*lmk_req_cancel_fn)(lowner *o, mk_req *r);

/* Each parses the arguments of its method (the owner's userdata at 1, already checked
 * by the caller), builds the request, anchors the owner for it (in a slot of the
 * future, which the request's one registry reference holds), and pushes its future.
 * Bad arguments raise InterfaceError before anything is allocated. The request is not
 * submitted yet: hand lmk_req_core(q) to the core, then, if the core refused it, call
 * lmk_req_refuse. The lreq and its mk_req are freed once the request completed. */
lreq *lmk_req_execute(lua_State *L, lowner *o, lmk_req_cancel_fn cancel);   /* (sql, params?, opts?) */
lreq *lmk_req_callproc(lua_State *L, lowner *o, lmk_req_cancel_fn cancel);  /* (name, params?, opts?) */
lreq *lmk_req_transaction(lua_State *L, lowner *o, lmk_req_cancel_fn cancel); /* (statements, opts?) */
lreq *lmk_req_ping(lua_State *L, lowner *o, lmk_req_cancel_fn cancel);      /* resolves to the owner */
/* (sql, source, opts?): COPY ... FROM STDIN, resolving to the number of rows copied */
lreq *lmk_req_copy_from(lua_State *L, lowner *o, lmk_req_cancel_fn cancel);
/* (sql, sink?, opts?): COPY ... TO STDOUT, resolving to the row count (sink) or the data */
lreq *lmk_req_copy_to(lua_State *L, lowner *o, lmk_req_cancel_fn cancel);
/* The core request of q. */
mk_req *lmk_req_core(lreq *q);
/* Records that q runs on server number server of its owner (0: the owner's dsn, i > 0:
 * its read replica i): its query event names that host (lmk_trace_set_server). */
void lmk_req_set_server(lreq *q, int server);
/* MK_REQ_READONLY when the opts table at opts (0: none) has readonly = true, else 0;
 * any other value than a boolean or nil raises InterfaceError naming who. execute,
 * callproc and streams take it (a pool may run them on a read replica). */
unsigned lmk_req_readonly_opt(lua_State *L, int opts, const char *who);
/* The core refused q (not submitted): frees it, its request and its COPY state, then
 * raises kind with why (raise set) or fails q's future, which is on top of the stack,
 * with it. Returns 1 (the future) when it does not raise. */
int lmk_req_refuse(lua_State *L, lreq *q, mk_kind kind, const char *why, int raise);
/* obj:_set_decoder(oid, fn): a decoder for the results of this object's requests (the
 * Lua layer's register_json and register_hstore use it). */
int lmk_req_set_decoder(lua_State *L);

#endif
