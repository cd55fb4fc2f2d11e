/* fuzz_util.h: helpers shared by the libFuzzer targets in this folder.
 * FUZZ_CHECK aborts with a message naming the broken invariant, so libFuzzer records
 * the input as a crash. Buffers come from fuzz_alloc: exactly the size asked for, so
 * AddressSanitizer catches any access past the end. */
#ifndef MK_FUZZ_UTIL_H
#define MK_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);    \
      abort();                                                                        \
    }                                                                                 \
  } while (0)

/* n bytes (at least 1 allocated, so the pointer is never NULL); aborts when out of
 * memory, since a harness that cannot allocate proves nothing. */
static inline char *fuzz_alloc(size_t n) {
  char *p = malloc(n ? n : 1);
  if (p == NULL) {
    fputs("fuzz: out of memory\n", stderr);
    abort();
  }
  return p;
}

/* A malloc'd copy of the n bytes at s with nothing after them. */
static inline char *fuzz_copy(const void *s, size_t n) {
  char *p = fuzz_alloc(n);
  if (n)
    memcpy(p, s, n);
  return p;
}

/* 1 if [p, p+n) lies within [base, base+size). */
static inline int fuzz_within(const char *p, size_t n, const char *base, size_t size) {
  uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
  return a >= b && a - b <= size && n <= size - (a - b);
}

/* A small deterministic hash of the input, to pick things like a stop position. */
static inline uint32_t fuzz_hash(const uint8_t *d, size_t n) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++) {
    h ^= d[i];
    h *= 16777619u;
  }
  return h;
}

/* Reads fuzz data as a stream of choices; yields zeros once it runs out. */
typedef struct fuzz_reader {
  const uint8_t *p;
  size_t n;
} fuzz_reader;

static inline unsigned fuzz_byte(fuzz_reader *r) {
  if (r->n == 0)
    return 0;
  r->n--;
  return *r->p++;
}

static inline uint64_t fuzz_u64(fuzz_reader *r) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++)
    v = (v << 8) | fuzz_byte(r);
  return v;
}

#endif
