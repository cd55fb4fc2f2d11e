/* ltypes: PostgreSQL values (text format) to Lua values: the built-in decoders by type
 * OID, arrays of every type (the built-in array types in a table, others learnt from
 * the server's catalog per owner), decoders registered from Lua (momoko.register_type,
 * per connection or global), and hstore's text form. Internal. */
#ifndef LTYPES_H
#define LTYPES_H

#include <stddef.h>
#include <lua.h>
#include <libpq-fe.h>

/* How a column's text becomes a Lua value. */
enum {
  LMK_D_TEXT,  /* string as is (numeric, dates, uuid, json unless registered, ...) */
  LMK_D_INT,   /* int2, int4, int8, oid */
  LMK_D_FLOAT, /* float4, float8 */
  LMK_D_BOOL,
  LMK_D_BYTEA,
  LMK_D_LUA,       /* a registered decoder fn(text) */
  LMK_D_ARRAY = 16 /* LMK_D_ARRAY + element decoding */
};

/* Pushes the two tables lmk_type_decoding reads, once for all the columns of a result:
 * the decoders registered for the owner (Connection or Pool) whose options table is at
 * uv (0: none), or nil, then the global ones. Runs no Lua code. */
void lmk_type_push_decoders(lua_State *L, int uv);
/* The decoding of type oid for the owner whose options table is at uv (0: none), with
 * the tables of lmk_type_push_decoders at dec and dec + 1: a decoder registered for the
 * owner or globally; else, for an array type (built in, or learnt from the server into
 * uv.types), its elements decoded as their own type is (its registered decoder, else the
 * built-in one); else the built-in one. For LMK_D_LUA and LMK_D_ARRAY + LMK_D_LUA the
 * decoder function is pushed; nothing is pushed otherwise. *delim is set to the element
 * delimiter of an array type (',' when unknown). uv and dec are absolute indices. Runs
 * no Lua code. */
int lmk_type_decoding(lua_State *L, int dec, int uv, Oid oid, char *delim);
/* 1 if the owner at uv (with a types table) does not know yet whether oid is an array
 * type: neither built in, nor registered, nor learnt. Runs no Lua code. */
int lmk_type_unknown(lua_State *L, int uv, Oid oid);
/* The catalog query that tells the array types among the OIDs of its $1 (an int8[]):
 * rows (oid, element oid, element delimiter). */
extern const char lmk_type_lookup_sql[];
/* Records in uv.types what a lookup found: every OID of the array at oidsidx is not
 * an array type unless one of the rows of the lookup (an array of {oid, elem, delim}
 * at rowsidx, 0 for none) describes it. Runs no Lua code. */
void lmk_type_learn(lua_State *L, int uv, int oidsidx, int rowsidx);
/* Pushes the Lua value of the non-NULL text s of len bytes decoded as dec (delim: the
 * element delimiter of arrays); fnidx is the stack index of the decoder function
 * (LMK_D_LUA kinds) or 0. s is copied before any Lua code can run (decoders, or
 * finalizers run by a GC step), so it may point into a PGresult that such code frees.
 * May raise (a decoder's error, a malformed bytea). */
void lmk_type_push(lua_State *L, int dec, char delim, int fnidx, const char *s, size_t len);
/* Pushes the Lua value of the non-NULL, NUL-terminated text s of an LMK_D_INT,
 * LMK_D_FLOAT or LMK_D_BOOL column: exactly what strtoll or strtod make of it, read
 * straight from s (no Lua string is made). Allocates nothing that can run Lua before s
 * was read. */
void lmk_type_push_number(lua_State *L, int dec, const char *s);
/* Pushes momoko.null. */
void lmk_push_null(lua_State *L);
/* Adds register_type and hstore_decode to the module table on top. */
void lmk_open_types(lua_State *L);

#endif
