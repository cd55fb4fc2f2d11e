/* fuzz_bytea.c: mk_bytea_decode on arbitrary input, and round trips.
 * Invariants:
 *  - decoding arbitrary text into an area of exactly its length returns -1 or a length
 *    of at most that; text starting with "\x" gives -1 or exactly half of the digits;
 *  - whatever decodes re-encodes (escape format) and decodes to the same bytes;
 *  - the input taken as raw bytes, encoded as hex "\x.." (lower and upper case digits)
 *    and in escape format (as byteaout writes it, and with every byte as \ooo),
 *    decodes back to exactly those bytes. */
#include "fuzz_util.h"

#include "mk_text.h"

enum { HEX_LOWER, HEX_UPPER, ESC_BYTEAOUT, ESC_ALL_OCTAL };

/* Encodes n bytes in the given form into a malloc'd buffer; *outlen gets its length. */
static char *encode(const unsigned char *s, size_t n, int form, size_t *outlen) {
  const char *digits = form == HEX_UPPER ? "0123456789ABCDEF" : "0123456789abcdef";
  char *out = fuzz_alloc(2 + 4 * n), *o = out;
  size_t i;

  if (form == HEX_LOWER || form == HEX_UPPER) {
    *o++ = '\\';
    *o++ = 'x';
    for (i = 0; i < n; i++) {
      *o++ = digits[s[i] >> 4];
      *o++ = digits[s[i] & 15];
    }
  } else {
    for (i = 0; i < n; i++) {
      if (s[i] == '\\') {
        *o++ = '\\';
        *o++ = '\\';
      } else if (form == ESC_ALL_OCTAL || s[i] < 0x20 || s[i] > 0x7e) {
        *o++ = '\\';
        *o++ = (char)('0' + (s[i] >> 6));
        *o++ = (char)('0' + ((s[i] >> 3) & 7));
        *o++ = (char)('0' + (s[i] & 7));
      } else {
        *o++ = (char)s[i];
      }
    }
  }
  *outlen = (size_t)(o - out);
  return out;
}

/* Encodes s in form, decodes it from an exact-size copy and compares. */
static void round_trip(const unsigned char *s, size_t n, int form) {
  size_t elen;
  char *enc = encode(s, n, form, &elen);
  char *text = fuzz_copy(enc, elen), *out = fuzz_alloc(elen);
  ssize_t rc = mk_bytea_decode(text, elen, out);

  if (rc != (ssize_t)n || (n > 0 && memcmp(out, s, n) != 0)) {
    fprintf(stderr, "bytea round trip failed: form %d, %zu bytes, rc %zd\n", form, n, rc);
    abort();
  }
  free(enc);
  free(text);
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_copy(data, size), *out = fuzz_alloc(size);
  ssize_t rc = mk_bytea_decode(text, size, out);
  int form;

  FUZZ_CHECK(rc >= -1 && rc <= (ssize_t)size);
  if (size >= 2 && text[0] == '\\' && text[1] == 'x')
    FUZZ_CHECK(rc == -1 || (size % 2 == 0 && (size_t)rc == (size - 2) / 2));
  if (rc >= 0) {
    unsigned char *dec = (unsigned char *)fuzz_copy(out, (size_t)rc);
    for (form = HEX_LOWER; form <= ESC_ALL_OCTAL; form++)
      round_trip(dec, (size_t)rc, form);
    free(dec);
  }
  for (form = HEX_LOWER; form <= ESC_ALL_OCTAL; form++)
    round_trip(data, size, form);
  free(text);
  free(out);
  return 0;
}
