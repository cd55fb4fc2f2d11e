/* mk_buf: a growable byte buffer owned by whoever declared it.
 * Every function that can grow it returns 0 on success and -1 when memory ran out,
 * leaving the contents as they were. mk_buf_free releases the memory; the buffer is
 * then empty and may be reused. */
#ifndef MK_BUF_H
#define MK_BUF_H

#include <stddef.h>

typedef struct mk_buf {
  char *data; /* NUL-terminated when len > 0 or after mk_buf_cstr */
  size_t len;
  size_t cap;
} mk_buf;

void mk_buf_init(mk_buf *b);
int mk_buf_reserve(mk_buf *b, size_t extra);
int mk_buf_add(mk_buf *b, const char *s, size_t n);
int mk_buf_addc(mk_buf *b, char c);
int mk_buf_adds(mk_buf *b, const char *s);
/* Returns data, NUL-terminated (an empty buffer gives ""), or NULL when out of memory. */
const char *mk_buf_cstr(mk_buf *b);
void mk_buf_free(mk_buf *b);

#endif
