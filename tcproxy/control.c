/* tcproxy/control.c — the control port: a line protocol that drives the proxy.
 *
 * One command per line (LF or CRLF), one reply line per command, "ok ..." or
 * "error ...". Blank lines get no reply. Several connections may be open at once.
 *
 *   drop            resets every live pair          -> ok dropped=N
 *   refuse on|off   reset new clients at once       -> ok refuse=on|off
 *   stall on|off    hold all data, sockets stay open -> ok stall=on|off
 *   delay MS        hold each chunk MS ms (0: none) -> ok delay=MS
 *   stats           counters                        -> ok pairs=N accepted=N refused=N
 *                                                      bytes_up=N bytes_down=N
 *   quit            close everything and exit 0     -> ok bye
 *
 * bytes_up counts bytes written to the upstream, bytes_down bytes written to clients.
 * A line longer than TP_LINE_MAX gets "error line too long" and the connection closes. */
#include "proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tp_ctl {
  uv_tcp_t tcp;
  tp_proxy *proxy;
  tp_ctl *prev, *next;
  int closing;
  size_t len;                  /* bytes of the current, unfinished line */
  char line[TP_LINE_MAX + 1];  /* the current line, NUL-terminated when complete */
  char rbuf[1024];             /* read buffer: libuv reads into it, one read at a time */
};

/* A reply being written; quit stops the proxy once it is out. */
typedef struct tp_reply {
  uv_write_t req;
  tp_proxy *proxy;
  int quit;
  size_t len;
  char text[];
} tp_reply;

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static void on_ctl_closed(uv_handle_t *h) {
  free(CONTAINER_OF(h, tp_ctl, tcp));
}

static void ctl_close(tp_ctl *ctl) {
  tp_proxy *p = ctl->proxy;
  if (ctl->closing) return;
  ctl->closing = 1;
  if (ctl->prev) ctl->prev->next = ctl->next;
  else p->ctls = ctl->next;
  if (ctl->next) ctl->next->prev = ctl->prev;
  ctl->prev = ctl->next = NULL;
  uv_close((uv_handle_t *)&ctl->tcp, on_ctl_closed);
}

static void on_reply_written(uv_write_t *req, int status) {
  tp_reply *r = CONTAINER_OF(req, tp_reply, req);
  tp_proxy *p = r->proxy;
  int quit = r->quit;
  (void)status; /* a client gone before its reply is no concern of the proxy's */
  free(r);
  if (quit) p->stop(p, 0);
}

/* Sends one reply line (text without its newline). */
static void reply(tp_ctl *ctl, int quit, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reply(tp_ctl *ctl, int quit, const char *fmt, ...) {
  tp_proxy *p = ctl->proxy;
  char text[512];
  tp_reply *r;
  uv_buf_t buf;
  va_list ap;
  int n, rc;
  va_start(ap, fmt);
  n = vsnprintf(text, sizeof text - 1, fmt, ap); /* room for the newline */
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n > sizeof text - 2) n = (int)(sizeof text - 2);
  text[n++] = '\n';
  r = malloc(sizeof *r + (size_t)n);
  if (!r) {
    ctl_close(ctl);
    if (quit) p->stop(p, 0);
    return;
  }
  r->proxy = p;
  r->quit = quit;
  r->len = (size_t)n;
  memcpy(r->text, text, (size_t)n);
  buf = uv_buf_init(r->text, (unsigned int)r->len);
  rc = uv_write(&r->req, (uv_stream_t *)&ctl->tcp, &buf, 1, on_reply_written);
  if (rc < 0) {
    free(r);
    ctl_close(ctl);
    if (quit) p->stop(p, 0);
  }
}

/* "on" -> 1, "off" -> 0, anything else -> -1. */
static int parse_switch(const char *arg) {
  if (!arg) return -1;
  if (strcmp(arg, "on") == 0) return 1;
  if (strcmp(arg, "off") == 0) return 0;
  return -1;
}

/* A delay in ms, 0..TP_DELAY_MAX, digits only; -1 if it is not one. */
static long parse_delay(const char *arg) {
  char *end;
  unsigned long v;
  if (!arg || *arg < '0' || *arg > '9') return -1;
  errno = 0;
  v = strtoul(arg, &end, 10);
  if (errno != 0 || *end != '\0' || v > TP_DELAY_MAX) return -1;
  return (long)v;
}

/* Runs one complete, NUL-terminated line. */
static void run_line(tp_ctl *ctl, char *line) {
  tp_proxy *p = ctl->proxy;
  char *save = NULL;
  char *cmd = strtok_r(line, " \t\r", &save);
  char *arg = cmd ? strtok_r(NULL, " \t\r", &save) : NULL;
  char *extra = arg ? strtok_r(NULL, " \t\r", &save) : NULL;
  int on;
  long ms;
  if (!cmd) return; /* blank line */
  if (extra) {
    reply(ctl, 0, "error too many arguments");
  } else if (strcmp(cmd, "drop") == 0 && !arg) {
    uint64_t n = tp_proxy_drop(p);
    reply(ctl, 0, "ok dropped=%" PRIu64, n);
  } else if (strcmp(cmd, "refuse") == 0) {
    if ((on = parse_switch(arg)) < 0) {
      reply(ctl, 0, "error usage: refuse on|off");
      return;
    }
    p->refuse = on;
    reply(ctl, 0, "ok refuse=%s", on ? "on" : "off");
  } else if (strcmp(cmd, "stall") == 0) {
    if ((on = parse_switch(arg)) < 0) {
      reply(ctl, 0, "error usage: stall on|off");
      return;
    }
    tp_proxy_set_stall(p, on);
    reply(ctl, 0, "ok stall=%s", on ? "on" : "off");
  } else if (strcmp(cmd, "delay") == 0) {
    if ((ms = parse_delay(arg)) < 0) {
      reply(ctl, 0, "error usage: delay MS (0 to %u)", TP_DELAY_MAX);
      return;
    }
    tp_proxy_set_delay(p, (uint64_t)ms);
    reply(ctl, 0, "ok delay=%ld", ms);
  } else if (strcmp(cmd, "stats") == 0 && !arg) {
    reply(ctl, 0, "ok pairs=%" PRIu64 " accepted=%" PRIu64 " refused=%" PRIu64 " bytes_up=%" PRIu64
                  " bytes_down=%" PRIu64,
          p->npairs, p->accepted, p->refused, p->bytes_up, p->bytes_down);
  } else if (strcmp(cmd, "quit") == 0 && !arg) {
    reply(ctl, 1, "ok bye");
  } else if (strcmp(cmd, "drop") == 0 || strcmp(cmd, "stats") == 0 || strcmp(cmd, "quit") == 0) {
    reply(ctl, 0, "error %s takes no argument", cmd);
  } else {
    reply(ctl, 0, "error unknown command: %.64s", cmd);
  }
}

static void on_ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tp_ctl *ctl = CONTAINER_OF(h, tp_ctl, tcp);
  (void)suggested;
  *buf = uv_buf_init(ctl->rbuf, (unsigned int)sizeof ctl->rbuf);
}

static void on_ctl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tp_ctl *ctl = CONTAINER_OF(s, tp_ctl, tcp);
  ssize_t i;
  if (nread < 0) {
    ctl_close(ctl); /* EOF or error: nothing more to answer */
    return;
  }
  for (i = 0; i < nread && !ctl->closing && !ctl->proxy->stopping; i++) {
    char ch = buf->base[i];
    if (ch != '\n') {
      if (ctl->len == TP_LINE_MAX) {
        reply(ctl, 0, "error line too long");
        ctl_close(ctl);
        return;
      }
      ctl->line[ctl->len++] = ch;
      continue;
    }
    ctl->line[ctl->len] = '\0';
    ctl->len = 0;
    run_line(ctl, ctl->line);
  }
}

static void on_ctl_connection(uv_stream_t *server, int status) {
  tp_proxy *p = server->data;
  tp_ctl *ctl;
  int rc;
  if (status < 0) {
    tp_log_uv("control accept", status);
    return;
  }
  ctl = calloc(1, sizeof *ctl);
  if (!ctl) {
    tp_log_uv("control connection", UV_ENOMEM);
    p->stop(p, 1); /* an unaccepted connection would stall the listener for good */
    return;
  }
  ctl->proxy = p;
  rc = uv_tcp_init(p->loop, &ctl->tcp);
  if (rc < 0) {
    tp_log_uv("control connection", rc);
    free(ctl);
    p->stop(p, 1);
    return;
  }
  ctl->next = p->ctls;
  if (p->ctls) p->ctls->prev = ctl;
  p->ctls = ctl;
  rc = uv_accept(server, (uv_stream_t *)&ctl->tcp);
  if (rc == 0) rc = uv_read_start((uv_stream_t *)&ctl->tcp, on_ctl_alloc, on_ctl_read);
  if (rc < 0) {
    tp_log_uv("control connection", rc);
    ctl_close(ctl);
  }
}

int tp_control_listen(tp_proxy *p, const struct sockaddr_in *addr) {
  int rc = uv_tcp_init(p->loop, &p->control);
  if (rc < 0) return rc;
  p->control.data = p;
  p->controlling = 1;
  rc = uv_tcp_bind(&p->control, (const struct sockaddr *)addr, 0);
  if (rc < 0) return rc;
  return uv_listen((uv_stream_t *)&p->control, 16, on_ctl_connection);
}

void tp_control_close(tp_proxy *p) {
  while (p->ctls) ctl_close(p->ctls); /* ctl_close unlinks it */
  if (p->controlling) {
    p->controlling = 0;
    uv_close((uv_handle_t *)&p->control, NULL);
  }
}
