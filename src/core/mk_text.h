/* mk_text: PostgreSQL text-format codecs that need no connection and no Lua: the
 * array parser and writer, hstore, bytea, quoting and number formatting.
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

/* ---- writing array literals ----
 * The writer builds the text form of an array, as array_in reads it, from a sequence of
 * calls: open a (sub)array, its elements, close it. It checks what the parser would
 * refuse, so a literal it finished is one the server accepts (up to matching
 * sub-array lengths, which only the server checks): no more than MK_TEXT_MAXDEPTH
 * levels, no level holding both values and sub-arrays, no string with a NUL byte. It
 * also records the kinds of elements seen, so the caller can type the array. The
 * writer owns no memory; it appends to the caller's buffer. After an error the buffer
 * holds a partial literal the caller discards. */

#define MK_TEXT_ENOMEM (-2) /* out of memory */
#define MK_TEXT_EDEPTH (-3) /* a sub-array beyond MK_TEXT_MAXDEPTH levels */
#define MK_TEXT_EMIXED (-4) /* values and sub-arrays in one (sub)array */
#define MK_TEXT_ENUL (-5)   /* a string element with a NUL byte */
#define MK_TEXT_ESTATE (-6) /* out of order: an element or close with no array open,
                               or anything after the outermost close */

/* Room for any number mk_text_int or mk_text_float writes, with its NUL. */
#define MK_TEXT_NUMLEN 32

/* Kinds of elements seen (mk_array_writer.kinds); NULLs count as none. */
#define MK_ARRAY_INT4 1u  /* integers within 32 bits */
#define MK_ARRAY_INT8 2u  /* integers beyond 32 bits */
#define MK_ARRAY_FLOAT 4u
#define MK_ARRAY_BOOL 8u
#define MK_ARRAY_OTHER 16u /* strings, bytea */

typedef struct mk_array_writer {
  mk_buf *out;
  char delim;
  int depth;      /* arrays open now */
  int finished;   /* the outermost array was closed */
  unsigned kinds; /* MK_ARRAY_* */
  /* what each open level holds so far: 0 nothing, 1 values, 2 sub-arrays */
  unsigned char holds[MK_TEXT_MAXDEPTH + 1];
} mk_array_writer;

/* Starts a literal appended to out, elements separated by delim (',' for every type
 * but box, whose delimiter is ';'). */
void mk_array_writer_init(mk_array_writer *w, mk_buf *out, char delim);
/* Each returns 0 or one of the MK_TEXT_E* codes above. open and close write '{' and
 * '}'; the element functions write one element of the array open now. A sub-array
 * beyond MK_TEXT_MAXDEPTH is MK_TEXT_EDEPTH even where it would also mix. */
int mk_array_writer_open(mk_array_writer *w);
int mk_array_writer_close(mk_array_writer *w);
/* NULL, unquoted. */
int mk_array_writer_null(mk_array_writer *w);
/* t or f. */
int mk_array_writer_bool(mk_array_writer *w, int v);
/* Decimal, as mk_text_int. */
int mk_array_writer_int(mk_array_writer *w, long long v);
/* As mk_text_float: NaN, Infinity, -Infinity, or 17 significant digits. */
int mk_array_writer_float(mk_array_writer *w, double x);
/* The n bytes at s, double-quoted (so "NULL", "" and blanks stay strings). */
int mk_array_writer_string(mk_array_writer *w, const char *s, size_t n);
/* Binary data as bytea's hex text form, quoted: "\\x00ff". */
int mk_array_writer_bytea(mk_array_writer *w, const void *s, size_t n);
/* The type OID that fits the elements written: int4[] (1007) when all are integers
 * within 32 bits, int8[] (1016) when all are integers, float8[] (1022) for numbers
 * with at least one float, bool[] (1000) for booleans only; 0 (let the server infer
 * it) for anything else, an empty array or NULLs only. */
unsigned mk_array_writer_type(const mk_array_writer *w);

/* Writes v in decimal into out (MK_TEXT_NUMLEN bytes); returns the length. */
int mk_text_int(char *out, long long v);
/* Writes x as float8in reads it back exactly: NaN, Infinity, -Infinity, or %.17g.
 * out has MK_TEXT_NUMLEN bytes; returns the length. */
int mk_text_float(char *out, double x);

#endif
