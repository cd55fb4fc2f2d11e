/* lparams: Lua values to PostgreSQL parameters, for requests and for mogrify, and the
 * tagged parameter values momoko.bytea, momoko.json and momoko.hstore. Internal. */
#ifndef LPARAMS_H
#define LPARAMS_H

#include <lua.h>
#include <libpq-fe.h>

#include "mk_req.h"

#define LMK_PARAM "momoko.Param"

/* Pushes the prepared form of the statement at sqlidx with the parameters at pidx
 * (none, nil, an array, or a table of :names). Raises InterfaceError for bad values,
 * for a $n with no value (or an invalid $n), for an array given to :name SQL and for
 * names given to $n SQL; nothing is allocated outside Lua. Integers are typed int4
 * when they fit in 32 bits, else int8; arrays by the core's array writer. */
void lmk_params_check(lua_State *L, int sqlidx, int pidx);
/* Pushes the SQL the prepared statement at prepidx sends (its :names rewritten), as a
 * Lua string (the one it keeps; lmk_params_check refused SQL with a NUL byte). */
void lmk_params_push_sql(lua_State *L, int prepidx);
/* Copies the prepared statement at prepidx into statement i of r. Never raises;
 * returns 0, -1 when memory ran out, or -2 when a value is longer than libpq takes
 * (MK_REQ_PARAM_MAX). */
int lmk_params_fill(lua_State *L, mk_req *r, int i, int prepidx);
/* Pushes sql with its parameters inlined as literals escaped for pg. */
int lmk_mogrify(lua_State *L, PGconn *pg, int sqlidx, int pidx);
/* Pushes the string at idx escaped by libpq for pg, quotes included: a literal
 * (PQescapeLiteral) or, with identifier set, an identifier (PQescapeIdentifier).
 * Raises InterfaceError naming who for a non-string, a string with a NUL byte or a
 * libpq failure (an invalid multibyte character); libpq's copy is freed before
 * anything can raise. Returns 1. */
int lmk_escape(lua_State *L, PGconn *pg, int idx, int identifier, const char *who);
/* Registers momoko.Param and adds bytea, json_text, hstore to the module table. */
void lmk_open_params(lua_State *L);

#endif
