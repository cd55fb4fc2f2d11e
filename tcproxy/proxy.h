/* tcproxy/proxy.h — shared declarations of tcproxy, the project's small TCP proxy for
 * failure tests.
 *
 * tcproxy sits between a client and an upstream server (PostgreSQL in the specs). Every
 * accepted client gets its own upstream connection (a "pair"); bytes are copied both
 * ways through bounded per-direction queues. A line protocol on a control port
 * (control.c) drops live pairs, refuses new clients, stalls or delays forwarding and
 * reports counters. main.c parses the command line and watches the parent process.
 *
 * Everything runs on one libuv loop, on one thread. */
#ifndef TCPROXY_PROXY_H
#define TCPROXY_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Bytes read at most per read callback (one chunk). */
#define TP_READ_SIZE (64 * 1024)
/* When more than this many bytes wait to be written to one side, reading from the other
 * side stops; it resumes once the queue has drained to half of it. */
#define TP_QUEUE_HIGH (256 * 1024)
#define TP_QUEUE_LOW (TP_QUEUE_HIGH / 2)
/* The longest control command line, without its newline. */
#define TP_LINE_MAX 256
/* The largest delay the control port accepts, in ms. */
#define TP_DELAY_MAX 3600000u

typedef struct tp_pair tp_pair;
typedef struct tp_ctl tp_ctl;
typedef struct tp_proxy tp_proxy;

struct tp_proxy {
  uv_loop_t *loop;
  uv_tcp_t listener;            /* clients connect here */
  uv_tcp_t control;             /* the control port */
  struct sockaddr_in upstream;  /* where each client's pair connects to */
  int listening, controlling;   /* the two listeners are initialised (need a close) */

  /* Behaviour, set through the control port. */
  int refuse;        /* reset new clients at once */
  int stall;         /* forward nothing, keep what arrives buffered */
  uint64_t delay_ms; /* each chunk waits this long before it is forwarded */

  tp_pair *pairs; /* live pairs, a doubly-linked list */
  tp_ctl *ctls;   /* open control connections, a doubly-linked list */

  /* Counters for "stats". */
  uint64_t npairs, accepted, refused, bytes_up, bytes_down;

  int stopping;  /* tp_proxy_stop ran: everything is closing */
  int exit_code; /* what main returns once the loop has ended */
  /* Set by main: closes every handle so that the loop ends (idempotent). */
  void (*stop)(tp_proxy *p, int exit_code);
};

/* proxy.c: the client listener and the pairs. */
int tp_proxy_listen(tp_proxy *p, const struct sockaddr_in *addr);
void tp_proxy_close(tp_proxy *p);          /* closes the listener and resets every pair */
uint64_t tp_proxy_drop(tp_proxy *p);       /* resets every live pair; returns how many */
void tp_proxy_set_stall(tp_proxy *p, int on);
void tp_proxy_set_delay(tp_proxy *p, uint64_t ms);

/* control.c: the control listener and its connections. */
int tp_control_listen(tp_proxy *p, const struct sockaddr_in *addr);
void tp_control_close(tp_proxy *p);        /* closes the listener and every connection */

/* The port a bound TCP handle listens on, or a negative libuv error. */
int tp_bound_port(const uv_tcp_t *tcp);
/* Reports a libuv failure on stderr: "tcproxy: what: message". */
void tp_log_uv(const char *what, int err);

#endif
