/* lcursor: momoko.Cursor, a userdata over one PGresult, which it owns from the push
 * on and clears once (close or __gc). Internal. */
#ifndef LCURSOR_H
#define LCURSOR_H

#include <lua.h>
#include <libpq-fe.h>

#define LMK_CURSOR "momoko.Cursor"

/* Pushes a cursor that takes the result *resp (NULL: no result): *resp is set to NULL
 * once the cursor userdata exists and owns it (its GC clears it, also if the rest
 * raises); if making the userdata raises, *resp is left to its owner. queryidx is the
 * index of the query's Lua string (cursor.query, kept as is). dict selects rows keyed
 * by column name. owneruv is the index of the options table of the Connection or Pool
 * that ran the query (its decoders and learnt types, see ltypes.h), or 0. Calls no decoder. Fetching is safe
 * against decoders that fetch from, scroll or close the same cursor: a cursor closed
 * while a row is being built raises InterfaceError. */
void lmk_cursor_push(lua_State *L, PGresult **resp, int queryidx, int dict, int owneruv);
/* The cursor at idx (made by lmk_cursor_push) takes the result *resp in place of its own,
 * which it clears: *resp is set to NULL. The new result must have the columns of the
 * first one (the rows of one query in single-row mode do): their decodings are kept.
 * Its rows are fetched from the start. */
void lmk_cursor_replace(lua_State *L, int idx, PGresult **resp);
/* Registers the Cursor metatable. */
void lmk_open_cursor(lua_State *L);

#endif
