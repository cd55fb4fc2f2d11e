/* mk_loop: the only door from the C core to libuv. It owns the libuv handles the core
 * uses (a socket watcher, a timer, a cross-thread wake-up, a name lookup) and frees
 * each one in its close callback, never earlier, so a handle may be closed from inside
 * its own callback.
 * After mk_*_close returns, the callback given at creation is never called again. */
#ifndef MK_LOOP_H
#define MK_LOOP_H

#include <stdint.h>

struct uv_loop_s;
typedef struct uv_loop_s mk_loop;

#define MK_READ 1
#define MK_WRITE 2

typedef struct mk_io mk_io;
typedef struct mk_timer mk_timer;

/* events is MK_READ|MK_WRITE as reported; status is 0 or a negative libuv error. */
typedef void (*mk_io_fn)(void *ud, int events, int status);
typedef void (*mk_timer_fn)(void *ud);

/* Watches fd on loop. Returns NULL if memory ran out or libuv refused the fd
 * (*err then holds the libuv error code, when err is not NULL). */
mk_io *mk_io_new(mk_loop *loop, int fd, mk_io_fn cb, void *ud, int *err);
/* Sets the events to watch (0 stops watching). Calls libuv only when they differ from
 * the armed ones (or libuv stopped the watcher after an error). Returns 0 or a negative
 * libuv error (the watcher is then stopped). */
int mk_io_watch(mk_io *io, int events);
/* Whether the watcher keeps the loop running (uv_run returns when only watchers that
 * do not are left). New watchers do. */
void mk_io_keepalive(mk_io *io, int on);
/* Stops and closes the watcher; its memory is freed by libuv's close callback. */
void mk_io_close(mk_io *io);

mk_timer *mk_timer_new(mk_loop *loop, mk_timer_fn cb, void *ud);
/* (Re)arms a one-shot timer. Returns 0 or a negative libuv error. */
int mk_timer_start(mk_timer *t, uint64_t ms);
void mk_timer_stop(mk_timer *t);
/* Whether the timer keeps the loop running while armed (new timers do). */
void mk_timer_keepalive(mk_timer *t, int on);
void mk_timer_close(mk_timer *t);

/* A wake-up from any thread: cb runs on the loop thread once after one or more
 * mk_async_send calls. New asyncs do not keep the loop running (mk_async_keepalive). */
typedef struct mk_async mk_async;
typedef void (*mk_async_fn)(void *ud);

mk_async *mk_async_new(mk_loop *loop, mk_async_fn cb, void *ud);
/* Thread-safe; the only mk_async call allowed off the loop thread. The caller makes
 * sure mk_async_close has not started (a send racing the close is undefined). */
int mk_async_send(mk_async *a);
void mk_async_keepalive(mk_async *a, int on);
/* Loop thread only; cb is never called afterwards, even for a send made before. */
void mk_async_close(mk_async *a);

/* Name resolution on libuv's thread pool (uv_getaddrinfo). cb gets status 0 and the
 * numeric addresses (TCP, in the resolver's order, joined by commas), or a negative
 * libuv error and NULL. addrs is valid during the call only. */
typedef struct mk_resolve mk_resolve;
typedef void (*mk_resolve_fn)(void *ud, int status, const char *addrs);
/* Starts resolving host. Returns NULL (*err set) if it could not start. */
mk_resolve *mk_resolve_start(mk_loop *loop, const char *host, mk_resolve_fn cb, void *ud, int *err);
/* cb is never called afterwards; the memory goes when the lookup ends. */
void mk_resolve_cancel(mk_resolve *r);

/* libuv's default loop (created on first use; never NULL on Linux). */
mk_loop *mk_loop_default(void);
/* Runs the loop: until nothing keeps it alive (once 0), or one iteration that waits for
 * an event (once 1). Returns non-zero if work is left. Not re-entrant: the caller makes
 * sure no uv_run is active on loop. */
int mk_loop_run(mk_loop *loop, int once);

/* The current loop time in milliseconds (libuv's cached clock). */
uint64_t mk_loop_now(mk_loop *loop);
/* Monotonic microseconds, read now (libuv's high-resolution clock), for durations that
 * must not stand still while a callback blocks, as the loop's cached clock does. */
uint64_t mk_clock_us(void);

/* Text of a libuv error code. */
const char *mk_loop_strerror(int err);

#endif
