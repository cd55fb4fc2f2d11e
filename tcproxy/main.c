/* tcproxy/main.c — command line, start-up line, watchdogs and shutdown of tcproxy.
 *
 *   tcproxy --upstream HOST:PORT [--listen HOST:PORT] [--control HOST:PORT]
 *           [--exit-on-stdin-eof]
 *
 * HOST is an IPv4 address; a listen or control PORT of 0 (the default, on 127.0.0.1)
 * lets the kernel pick a free port. Once both ports listen, one line goes to stdout,
 * flushed:   listen 127.0.0.1:<port> control 127.0.0.1:<port>
 * The control protocol is described in control.c.
 *
 * tcproxy never outlives the process that started it: every 200 ms it compares
 * getppid() with the parent it started with and exits when they differ. With
 * --exit-on-stdin-eof (stdin a pipe or a terminal) it also exits when stdin reaches EOF,
 * i.e. as soon as the parent's write end is closed. SIGINT and SIGTERM, "quit", a lost
 * parent and a closed stdin all exit 0 after closing every handle; a start-up or fatal
 * error exits 1, a usage error 2. */
#include "proxy.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARENT_CHECK_MS 200

typedef struct tp_main {
  tp_proxy proxy;
  uv_loop_t loop;
  uv_timer_t parent_timer;
  pid_t parent;
  union {
    uv_pipe_t pipe;
    uv_tty_t tty;
  } in;
  char in_buf[256];
  uv_signal_t sigint, sigterm;
  /* handles initialised, to be closed on stop */
  int parent_open, in_open, sigint_open, sigterm_open;
} tp_main;

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static void usage(FILE *out) {
  fputs("usage: tcproxy --upstream HOST:PORT [--listen HOST:PORT] [--control HOST:PORT]\n"
        "               [--exit-on-stdin-eof]\n"
        "HOST is IPv4; a listen or control port of 0 (default 127.0.0.1:0) picks a free one.\n",
        out);
}

/* Parses "A.B.C.D:PORT" into addr. Returns 0, or -1 with a message on stderr. */
static int parse_addr(const char *opt, const char *text, struct sockaddr_in *addr, int port_may_be_0) {
  char host[64];
  const char *colon = strrchr(text, ':');
  char *end;
  long port;
  size_t hlen;
  int rc;
  if (!colon || colon == text || (hlen = (size_t)(colon - text)) >= sizeof host) {
    fprintf(stderr, "tcproxy: %s wants HOST:PORT, not '%s'\n", opt, text);
    return -1;
  }
  memcpy(host, text, hlen);
  host[hlen] = '\0';
  errno = 0;
  port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < (port_may_be_0 ? 0 : 1) || port > 65535) {
    fprintf(stderr, "tcproxy: %s: bad port in '%s'\n", opt, text);
    return -1;
  }
  rc = uv_ip4_addr(host, (int)port, addr);
  if (rc < 0) {
    fprintf(stderr, "tcproxy: %s: '%s' is not an IPv4 address\n", opt, host);
    return -1;
  }
  return 0;
}

/* Closes every handle the program owns; the loop then ends and main returns exit_code. */
static void stop(tp_proxy *p, int exit_code) {
  tp_main *m = CONTAINER_OF(p, tp_main, proxy);
  if (p->stopping) return;
  p->stopping = 1;
  p->exit_code = exit_code;
  tp_proxy_close(p);
  tp_control_close(p);
  if (m->parent_open) {
    m->parent_open = 0;
    uv_close((uv_handle_t *)&m->parent_timer, NULL);
  }
  if (m->in_open) {
    m->in_open = 0;
    uv_close((uv_handle_t *)&m->in, NULL);
  }
  if (m->sigint_open) {
    m->sigint_open = 0;
    uv_close((uv_handle_t *)&m->sigint, NULL);
  }
  if (m->sigterm_open) {
    m->sigterm_open = 0;
    uv_close((uv_handle_t *)&m->sigterm, NULL);
  }
}

static void on_parent_check(uv_timer_t *t) {
  tp_main *m = CONTAINER_OF(t, tp_main, parent_timer);
  if (getppid() != m->parent) stop(&m->proxy, 0);
}

static void on_signal(uv_signal_t *s, int signum) {
  tp_main *m = signum == SIGINT ? CONTAINER_OF(s, tp_main, sigint) : CONTAINER_OF(s, tp_main, sigterm);
  stop(&m->proxy, 0);
}

static void on_in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tp_main *m = h->data;
  (void)suggested;
  *buf = uv_buf_init(m->in_buf, (unsigned int)sizeof m->in_buf);
}

static void on_in_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tp_main *m = s->data;
  (void)buf; /* what the parent writes is ignored: only the end of stdin matters */
  if (nread < 0) stop(&m->proxy, 0);
}

/* Watches stdin for its end. Returns 0, or -1 with a message on stderr. */
static int watch_stdin(tp_main *m) {
  uv_handle_type type = uv_guess_handle(0);
  int rc;
  if (type == UV_NAMED_PIPE) {
    rc = uv_pipe_init(&m->loop, &m->in.pipe, 0);
    m->in_open = rc == 0;
    if (rc == 0) rc = uv_pipe_open(&m->in.pipe, 0);
  } else if (type == UV_TTY) {
    rc = uv_tty_init(&m->loop, &m->in.tty, 0, 1);
    m->in_open = rc == 0;
  } else {
    fprintf(stderr, "tcproxy: --exit-on-stdin-eof wants stdin to be a pipe or a terminal\n");
    return -1;
  }
  if (rc == 0) {
    ((uv_handle_t *)&m->in)->data = m;
    rc = uv_read_start((uv_stream_t *)&m->in, on_in_alloc, on_in_read);
  }
  if (rc < 0) {
    tp_log_uv("stdin", rc);
    return -1;
  }
  return 0;
}

static int watch_signal(tp_main *m, uv_signal_t *s, int *open, int signum) {
  int rc = uv_signal_init(&m->loop, s);
  if (rc < 0) return rc;
  *open = 1;
  return uv_signal_start(s, on_signal, signum);
}

/* Everything after the command line: returns 0 when the proxy runs, else a message
 * went to stderr. */
static int start(tp_main *m, const struct sockaddr_in *listen_addr, const struct sockaddr_in *control_addr,
                 int exit_on_stdin_eof) {
  char lhost[32], chost[32];
  int rc, lport, cport;
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN; /* a write to a closed socket is an error, not a signal */
  if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGPIPE, &sa, NULL) != 0) {
    perror("tcproxy: sigaction");
    return -1;
  }
  if ((rc = watch_signal(m, &m->sigint, &m->sigint_open, SIGINT)) < 0 ||
      (rc = watch_signal(m, &m->sigterm, &m->sigterm_open, SIGTERM)) < 0) {
    tp_log_uv("signals", rc);
    return -1;
  }
  m->parent = getppid();
  rc = uv_timer_init(&m->loop, &m->parent_timer);
  if (rc == 0) {
    m->parent_open = 1;
    rc = uv_timer_start(&m->parent_timer, on_parent_check, PARENT_CHECK_MS, PARENT_CHECK_MS);
  }
  if (rc < 0) {
    tp_log_uv("parent watch", rc);
    return -1;
  }
  if (exit_on_stdin_eof && watch_stdin(m) < 0) return -1;
  if ((rc = tp_proxy_listen(&m->proxy, listen_addr)) < 0) {
    tp_log_uv("listen", rc);
    return -1;
  }
  if ((rc = tp_control_listen(&m->proxy, control_addr)) < 0) {
    tp_log_uv("control", rc);
    return -1;
  }
  if ((lport = tp_bound_port(&m->proxy.listener)) < 0 || (cport = tp_bound_port(&m->proxy.control)) < 0) {
    tp_log_uv("getsockname", lport < 0 ? lport : cport);
    return -1;
  }
  if ((rc = uv_ip4_name(listen_addr, lhost, sizeof lhost)) < 0 ||
      (rc = uv_ip4_name(control_addr, chost, sizeof chost)) < 0) {
    tp_log_uv("address", rc);
    return -1;
  }
  if (printf("listen %s:%d control %s:%d\n", lhost, lport, chost, cport) < 0 || fflush(stdout) != 0) {
    perror("tcproxy: stdout");
    return -1;
  }
  return 0;
}

static void close_leftover(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int main(int argc, char **argv) {
  static tp_main m; /* static: zeroed, and alive for every callback */
  struct sockaddr_in listen_addr, control_addr;
  int have_upstream = 0, exit_on_stdin_eof = 0, i, rc;

  if (uv_ip4_addr("127.0.0.1", 0, &listen_addr) < 0 || uv_ip4_addr("127.0.0.1", 0, &control_addr) < 0) return 1;
  for (i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(opt, "--exit-on-stdin-eof") == 0) {
      exit_on_stdin_eof = 1;
    } else if (strcmp(opt, "--listen") == 0 || strcmp(opt, "--upstream") == 0 || strcmp(opt, "--control") == 0) {
      struct sockaddr_in *addr = opt[2] == 'l' ? &listen_addr : opt[2] == 'u' ? &m.proxy.upstream : &control_addr;
      if (i + 1 >= argc) {
        fprintf(stderr, "tcproxy: %s needs HOST:PORT\n", opt);
        return 2;
      }
      if (parse_addr(opt, argv[++i], addr, opt[2] != 'u') < 0) return 2;
      if (opt[2] == 'u') have_upstream = 1;
    } else {
      fprintf(stderr, "tcproxy: unknown argument '%s'\n", opt);
      usage(stderr);
      return 2;
    }
  }
  if (!have_upstream) {
    fprintf(stderr, "tcproxy: --upstream is required\n");
    usage(stderr);
    return 2;
  }

  rc = uv_loop_init(&m.loop);
  if (rc < 0) {
    tp_log_uv("loop", rc);
    return 1;
  }
  m.proxy.loop = &m.loop;
  m.proxy.stop = stop;
  if (start(&m, &listen_addr, &control_addr, exit_on_stdin_eof) < 0) stop(&m.proxy, 1);

  /* returns once every handle is closed (non-zero only after uv_stop, never called) */
  (void)uv_run(&m.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&m.loop) == UV_EBUSY) {
    fprintf(stderr, "tcproxy: handles left open at exit (a bug)\n");
    uv_walk(&m.loop, close_leftover, NULL);
    (void)uv_run(&m.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&m.loop) < 0) return 1;
    return 1;
  }
  return m.proxy.exit_code;
}
