/* lstream: momoko.Stream (API §8), the rows of one query handed out one at a time as
 * they arrive (libpq's single-row mode), with at most about opts.chunk rows held: once
 * that many wait, the connection stops reading the socket until the consumer took half
 * of them. conn:stream and pool:stream build one here and hand its request to their
 * mk_conn or mk_pool. Internal. */
#ifndef LSTREAM_H
#define LSTREAM_H

#include "lowner.h"
#include "lreq.h"

/* Hands the stream's request to the owner's connection or pool: 0, or the kind of the
 * refusal with *why. *server (0 before the call) is set to the owner's number of the
 * server it went to, for the query event (see lmk_req_set_server). */
typedef int (*lmk_stream_submit_fn)(lowner *o, mk_req *r, int *server, const char **why);

/* owner:stream(sql, params?, opts?) with the owner's userdata at 1 (checked by the
 * caller): parses the arguments (InterfaceError before anything is allocated), submits
 * the request and pushes the Stream. A refused request gives a stream whose next()
 * fails with the refusal. The owner is anchored until the request ended. */
int lmk_stream_open(lua_State *L, lowner *o, lmk_stream_submit_fn submit, lmk_req_cancel_fn cancel);
/* Registers the Stream metatable and adds its methods table to the module's private
 * table (Stream_methods), on top of the stack. */
void lmk_open_stream(lua_State *L);

#endif
