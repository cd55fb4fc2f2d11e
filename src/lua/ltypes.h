/* ltypes: PostgreSQL values (text format) to Lua values: the built-in decoders by type
 * OID, arrays, decoders registered from Lua (momoko.register_type, per connection or
 * global), and hstore's text form. Internal. */
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

/* The decoding of type oid: a registered one from the table at decoders (0: none) or
 * the global registry, else the built-in one. For LMK_D_LUA and LMK_D_ARRAY +
 * LMK_D_LUA the decoder function is pushed; nothing is pushed otherwise. */
int lmk_type_decoding(lua_State *L, int decoders, Oid oid);
/* Pushes the Lua value of the non-NULL text s of len bytes decoded as dec; fnidx is
 * the stack index of the decoder function (LMK_D_LUA kinds) or 0. May raise (a
 * decoder's error, a malformed bytea). */
void lmk_type_push(lua_State *L, int dec, int fnidx, const char *s, size_t len);
/* Pushes momoko.null. */
void lmk_push_null(lua_State *L);
/* Adds register_type and hstore_decode to the module table on top. */
void lmk_open_types(lua_State *L);

#endif
