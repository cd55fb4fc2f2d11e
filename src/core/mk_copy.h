/* mk_copy: COPY's text format, as a COPY FROM STDIN reads it: one row per line, its
 * values separated by tabs, \N for NULL, and a backslash escape for the characters that
 * would end a value or a row (backslash, tab, newline, carriage return). Numbers and
 * booleans are written as the server's input functions read them. */
#ifndef MK_COPY_H
#define MK_COPY_H

#include <stddef.h>

#include "mk_buf.h"

/* Each function appends to b, and returns 0, or -1 when memory ran out (b is then as it
 * was). A row is its values with mk_copy_next_column between them, then
 * mk_copy_end_row. */

/* The n bytes of s as one value, escaped. Other bytes, NUL included, go as they are. */
int mk_copy_add_value(mk_buf *b, const char *s, size_t n);
/* A NULL value. */
int mk_copy_add_null(mk_buf *b);
/* v in decimal (as mk_text_int). */
int mk_copy_add_int(mk_buf *b, long long v);
/* x as mk_text_float: NaN, Infinity, -Infinity, or 17 significant digits. */
int mk_copy_add_float(mk_buf *b, double x);
/* A boolean: t or f. */
int mk_copy_add_bool(mk_buf *b, int v);
/* The tab between two values of a row. */
int mk_copy_next_column(mk_buf *b);
/* The newline that ends a row. */
int mk_copy_end_row(mk_buf *b);

#endif
