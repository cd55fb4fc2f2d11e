/* mk_copy: COPY's text format, as a COPY FROM STDIN reads it: one row per line, its
 * values separated by tabs, \N for NULL, and a backslash escape for the characters that
 * would end a value or a row (backslash, tab, newline, carriage return). */
#ifndef MK_COPY_H
#define MK_COPY_H

#include <stddef.h>

#include "mk_buf.h"

/* Appends the n bytes of s to b as one value, escaped. 0, or -1 when memory ran out
 * (b is then as it was). */
int mk_copy_add_value(mk_buf *b, const char *s, size_t n);
/* Appends a NULL value. 0 or -1 as above. */
int mk_copy_add_null(mk_buf *b);

#endif
