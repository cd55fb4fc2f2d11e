/* lcopy: the Lua side of the data of copy_from and copy_to (API §8): taking COPY data
 * from a source (a string, an array of items, or a function returning items) and
 * encoding row tables in COPY's text format; handing each row of a COPY TO STDOUT to a
 * sink function, or collecting them into one string. The request itself (lreq.c) owns
 * an lcopy and calls these from its io hooks, on the main thread. Internal. */
#ifndef LCOPY_H
#define LCOPY_H

#include <lua.h>

#include "mk_buf.h"

typedef struct lcopy {
  mk_buf buf;            /* copy_from: the piece being sent; copy_to without a sink: all data */
  size_t str_off;        /* a string source: how much of it went */
  lua_Integer item;      /* items taken from an array or function source so far */
  int ended;             /* the source gave its last item */
  lua_Integer rows;      /* copy_to: rows received */
} lcopy;

/* Raises InterfaceError (naming who) unless the value at idx is a string, a table or
 * a function. */
void lmk_copy_check_source(lua_State *L, int idx, const char *who);
/* The next piece of COPY data from the source at srcidx, in *data and *len (valid until
 * the next call: it points into cp->buf or into the source string): 1, or 0 at the end.
 * -1 when the source raised or gave an item that cannot be sent: an error message is
 * pushed. A source function is called under pcall, from the loop (it must not await). */
int lmk_copy_next(lua_State *L, lcopy *cp, int srcidx, const char **data, size_t *len);
/* One data row of a COPY TO STDOUT, to the sink function at sinkidx (under pcall, from
 * the loop: it must not await). 0, or -1 with an error message pushed. */
int lmk_copy_sink(lua_State *L, lcopy *cp, int sinkidx, const char *data, size_t len);
/* One data row of a COPY TO STDOUT without a sink: appended to cp->buf. 0, or -1 when
 * memory ran out. Runs no Lua. */
int lmk_copy_collect(lcopy *cp, const char *data, size_t len);

#endif
