/* mk_text: PostgreSQL text-format codecs that need no connection and no Lua.
 * Parsers never allocate: the caller passes a scratch area at least as long as the
 * input, into which unescaped strings are written. Callbacks return 0 to go on; any
 * other value stops the parse and is returned as is. */
#ifndef MK_TEXT_H
#define MK_TEXT_H

#include <stddef.h>
#include <sys/types.h>
#include "mk_buf.h"

#define MK_TEXT_EPARSE (-1)   /* malformed input */
#define MK_TEXT_MAXDEPTH 6    /* PostgreSQL's MAXDIM */

typedef struct mk_array_sink {
  int (*open)(void *ud);  /* a '{': a (sub)array starts */
  int (*close)(void *ud); /* its '}' */
  /* one element; s points into scratch (or the input) and is not NUL-terminated.
   * is_null is 1 for an unquoted NULL (any case), then s/len are unspecified. */
  int (*elem)(void *ud, const char *s, size_t len, int is_null);
  void *ud;
} mk_array_sink;

/* Parses an array literal such as {1,"a \"b\"",NULL,{2,3}} with an optional dimension
 * prefix ([0:1]={...}). delim is the element type's delimiter (',' for all but box).
 * Returns 0, MK_TEXT_EPARSE, or a callback's non-zero value. Depth is bounded by
 * MK_TEXT_MAXDEPTH. */
int mk_array_parse(const char *text, size_t len, char delim, char *scratch,
                   const mk_array_sink *sink);

typedef int (*mk_hstore_pair_fn)(void *ud, const char *key, size_t klen,
                                 const char *val, size_t vlen, int val_null);

/* Parses hstore output: "k"=>"v", "k2"=>NULL (keys always quoted by the server, but
 * unquoted words are accepted as hstore's input parser does). */
int mk_hstore_parse(const char *text, size_t len, char *scratch,
                    mk_hstore_pair_fn pair, void *ud);

/* Decodes a bytea in text form, hex ("\x4142") or escape format ("A\\102\\\\").
 * out must hold len bytes. Returns the decoded length, or -1 if malformed. */
ssize_t mk_bytea_decode(const char *text, size_t len, char *out);

/* Appends s as a double-quoted element for an array literal or hstore, escaping '"' and
 * '\\'. Returns 0 or -1 (out of memory). */
int mk_text_quote(mk_buf *b, const char *s, size_t n);

#endif
