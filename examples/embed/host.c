/* examples/embed/host.c — an HTTP server in C on its own libuv loop that embeds Lua 5.4
 * and gives momoko that loop (momoko.h, docs/embedding.md).
 *
 *   momoko-embed [--port PORT] HANDLER.lua
 *
 * Start-up: a Lua state, require "momoko", momoko_set_loop with the host's loop, then
 * HANDLER.lua is run once; it returns the request handler, a function
 * handle(method, target, respond). The server listens on 127.0.0.1:PORT (0, the
 * default, lets the kernel choose) and prints one line, flushed:
 *   listening on http://127.0.0.1:PORT/ pid PID
 *
 * Each connection carries one request (request line and headers, at most 8 KiB; a body
 * is not read) and gets one answer with "Connection: close". The host runs handle in a
 * coroutine of its own (lua_resume); when the handler awaits momoko's futures, momoko
 * resumes it from the loop's callbacks. respond(status, content_type, body) answers,
 * once; a handler that raises before its first await, or whose coroutine ends up
 * collected without answering, gets a 500 from the host.
 *
 * GET /quit (answered "bye"), SIGINT and SIGTERM stop the server: no new connections,
 * connections still sending their request are closed, requests being handled are
 * answered; then the loop is left, and the shutdown order of momoko.h follows. A second
 * signal stops at once, closing the connections still open. Exit status: 0 after a
 * clean shutdown (uv_loop_close returned 0), 1 for an error, 2 for a usage error. */
#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "momoko.h"

#define REQUEST_MAX 8192
#define ANSWER_META "momoko-embed.answer"

typedef struct host host;
typedef struct client client;

/* The respond object a handler gets (a Lua userdata): answers client, until it did. */
typedef struct answer {
  client *c; /* NULL once answered, or when the connection was closed first */
} answer;

struct client {
  uv_tcp_t tcp;
  uv_write_t write;
  host *h;
  client *next, **pprev; /* on h->clients until the close callback */
  enum { READING, HANDLING, WRITING, CLOSING } state;
  answer *answer; /* while HANDLING: the handler's respond object */
  char *out;      /* while WRITING: the answer (malloc) */
  const char *method, *target; /* in in[], once the request line was read */
  size_t len;
  char in[REQUEST_MAX + 1]; /* + 1: the NUL after the request line's target */
};

struct host {
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_signal_t sigint, sigterm;
  int listener_open, sigint_open, sigterm_open;
  lua_State *L;
  int handler_ref; /* registry: the function HANDLER.lua returned */
  client *clients; /* every connection not yet closed */
  int stopping;    /* no new connections; the loop is left once clients is empty */
};

static void log_uv(const char *what, int rc) { fprintf(stderr, "momoko-embed: %s: %s\n", what, uv_strerror(rc)); }

static void close_handle(uv_handle_t *handle, int *open) {
  if (!*open) return;
  *open = 0;
  uv_close(handle, NULL);
}

/* Leaves the loop once stopping and no connection is left. */
static void finish_if_idle(host *h) {
  if (!h->stopping || h->clients) return;
  close_handle((uv_handle_t *)&h->sigint, &h->sigint_open);
  close_handle((uv_handle_t *)&h->sigterm, &h->sigterm_open);
  uv_stop(&h->loop);
}

static void on_client_closed(uv_handle_t *handle) {
  client *c = handle->data;
  host *h = c->h;
  *c->pprev = c->next;
  if (c->next) c->next->pprev = c->pprev;
  free(c->out);
  free(c);
  finish_if_idle(h);
}

/* Closes c's connection; c is freed in the close callback. A respond object still
 * waiting for c answers nothing any more. */
static void close_client(client *c) {
  if (c->state == CLOSING) return;
  c->state = CLOSING;
  if (c->answer) {
    c->answer->c = NULL;
    c->answer = NULL;
  }
  uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void on_written(uv_write_t *req, int status) {
  client *c = req->data;
  if (status < 0 && status != UV_ECANCELED) log_uv("write", status);
  close_client(c);
}

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  default: return "";
  }
}

/* Sends the answer to c, then closes the connection. Runs no Lua. */
static void send_answer(client *c, int status, const char *content_type, const char *body, size_t len) {
  static const char format[] = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                               "Connection: close\r\n\r\n";
  uv_buf_t buf;
  int head, rc;
  if (c->answer) {
    c->answer->c = NULL;
    c->answer = NULL;
  }
  head = snprintf(NULL, 0, format, status, reason(status), content_type, len);
  if (head < 0 || !(c->out = malloc((size_t)head + 1 + len))) {
    fputs("momoko-embed: out of memory for an answer\n", stderr);
    close_client(c);
    return;
  }
  snprintf(c->out, (size_t)head + 1, format, status, reason(status), content_type, len);
  memcpy(c->out + head, body, len);
  c->state = WRITING;
  c->write.data = c;
  buf = uv_buf_init(c->out, (unsigned int)((size_t)head + len));
  if ((rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_written)) < 0) {
    log_uv("write", rc);
    close_client(c);
  }
}

static void send_text(client *c, int status, const char *text) {
  send_answer(c, status, "text/plain", text, strlen(text));
}

/* respond(status, content_type, body): answers the request, once. Returns true, or
 * false when it was answered already or its connection is closed. */
static int answer_call(lua_State *L) {
  answer *a = luaL_checkudata(L, 1, ANSWER_META);
  lua_Integer status = luaL_checkinteger(L, 2);
  const char *content_type = luaL_checkstring(L, 3);
  size_t len;
  const char *body = luaL_checklstring(L, 4, &len);
  luaL_argcheck(L, status >= 100 && status <= 599, 2, "an HTTP status (100 to 599) expected");
  luaL_argcheck(L, strcspn(content_type, "\r\n") == strlen(content_type), 3, "no line break allowed");
  if (!a->c) {
    lua_pushboolean(L, 0);
    return 1;
  }
  send_answer(a->c, (int)status, content_type, body, len);
  lua_pushboolean(L, 1);
  return 1;
}

/* A respond object collected unanswered: its handler's coroutine ended without an
 * answer, or was dropped while suspended on something that nothing resumes. */
static int answer_gc(lua_State *L) {
  answer *a = lua_touserdata(L, 1);
  if (a->c) send_text(a->c, 500, "the handler ended without answering\n");
  return 0;
}

/* Runs the handler for the client (light userdata 1) in a new coroutine, under the
 * host's lua_pcall: everything here may raise (memory). The coroutine stays on L's
 * stack while it runs; when it waits on a momoko future, momoko holds it. */
static int run_handler(lua_State *L) {
  client *c = lua_touserdata(L, 1);
  lua_State *co = lua_newthread(L);
  int nres, rc;
  lua_rawgeti(co, LUA_REGISTRYINDEX, c->h->handler_ref);
  lua_pushstring(co, c->method);
  lua_pushstring(co, c->target);
  c->answer = lua_newuserdatauv(co, sizeof *c->answer, 0);
  c->answer->c = c;
  luaL_setmetatable(co, ANSWER_META);
  rc = lua_resume(co, L, 3, &nres);
  if (rc == LUA_OK || rc == LUA_YIELD) {
    lua_pop(co, nres);
    return 0;
  }
  lua_xmove(co, L, 1);
  lua_resetthread(co); /* closes its to-be-closed variables */
  return lua_error(L);
}

static void handle_request(client *c) {
  lua_State *L = c->h->L;
  c->state = HANDLING;
  lua_pushcfunction(L, run_handler);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "momoko-embed: handler failed: %s\n", msg ? msg : "(an error that is not a string)");
    lua_pop(L, 1);
    /* unanswered (the handler raised, or the coroutine could not be made) */
    if (c->state == HANDLING) send_text(c, 500, "the handler failed\n");
  }
}

static void stop(host *h);

/* The request line and headers are in: "METHOD TARGET VERSION\r\n...". */
static void on_request(client *c) {
  char *eol = strstr(c->in, "\r\n");
  char *sp1 = memchr(c->in, ' ', (size_t)(eol - c->in));
  char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
  if (!sp1 || sp1 == c->in || !sp2 || sp2 == sp1 + 1) {
    send_text(c, 400, "bad request line\n");
    return;
  }
  *sp1 = '\0';
  *sp2 = '\0';
  c->method = c->in;
  c->target = sp1 + 1;
  if (strcmp(c->target, "/quit") == 0) {
    send_text(c, 200, "bye\n");
    stop(c->h);
  } else {
    handle_request(c);
  }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  client *c = handle->data;
  (void)suggested;
  *buf = uv_buf_init(c->in + c->len, (unsigned int)(REQUEST_MAX - c->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  client *c = stream->data;
  size_t from = c->len > 3 ? c->len - 3 : 0;
  int rc;
  (void)buf;
  if (nread < 0) {
    if (nread != UV_EOF) log_uv("read", (int)nread);
    close_client(c);
    return;
  }
  c->len += (size_t)nread;
  c->in[c->len] = '\0';
  if (memchr(c->in + from, '\0', c->len - from)) {
    if ((rc = uv_read_stop(stream)) < 0) log_uv("read stop", rc);
    send_text(c, 400, "NUL byte in the request\n");
  } else if (strstr(c->in + from, "\r\n\r\n")) {
    if ((rc = uv_read_stop(stream)) < 0) log_uv("read stop", rc);
    on_request(c);
  } else if (c->len == REQUEST_MAX) {
    if ((rc = uv_read_stop(stream)) < 0) log_uv("read stop", rc);
    send_text(c, 431, "request header too large\n");
  }
}

static void on_connection(uv_stream_t *listener, int status) {
  host *h = listener->data;
  client *c;
  int rc;
  if (status < 0) {
    log_uv("accept", status);
    return;
  }
  if (!(c = calloc(1, sizeof *c))) {
    fputs("momoko-embed: out of memory for a connection\n", stderr);
    return;
  }
  if ((rc = uv_tcp_init(&h->loop, &c->tcp)) < 0) {
    log_uv("tcp init", rc);
    free(c);
    return;
  }
  c->h = h;
  c->tcp.data = c;
  c->next = h->clients;
  if (h->clients) h->clients->pprev = &c->next;
  c->pprev = &h->clients;
  h->clients = c;
  if ((rc = uv_accept(listener, (uv_stream_t *)&c->tcp)) < 0) {
    log_uv("accept", rc);
    close_client(c);
  } else if ((rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) < 0) {
    log_uv("read start", rc);
    close_client(c);
  }
}

/* The first stop: no new connections; requests being handled are answered. A second
 * one closes every connection at once. */
static void stop(host *h) {
  client *c, *next;
  int again = h->stopping;
  h->stopping = 1;
  close_handle((uv_handle_t *)&h->listener, &h->listener_open);
  for (c = h->clients; c; c = next) {
    next = c->next;
    if (again || c->state == READING) close_client(c);
  }
  finish_if_idle(h);
  if (again) uv_stop(&h->loop);
}

static void on_signal(uv_signal_t *signal, int signum) {
  (void)signum;
  stop(signal->data);
}

static int watch_signal(host *h, uv_signal_t *signal, int *open, int signum) {
  int rc = uv_signal_init(&h->loop, signal);
  if (rc < 0) return rc;
  *open = 1;
  signal->data = h;
  return uv_signal_start(signal, on_signal, signum);
}

/* Under lua_pcall: require "momoko", give it the loop (light userdata 1), run the
 * handler file (string 2), keep the function it returns. */
static int start_lua(lua_State *L) {
  host *h = lua_touserdata(L, 1);
  const char *path = lua_tostring(L, 2);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "momoko");
  lua_call(L, 1, 0);
  if (momoko_set_loop(L, &h->loop) != 0) return luaL_error(L, "momoko_set_loop failed");
  if (luaL_loadfile(L, path) != LUA_OK) return lua_error(L);
  lua_call(L, 0, 1);
  if (!lua_isfunction(L, -1)) return luaL_error(L, "%s: returned %s, not a function", path, luaL_typename(L, -1));
  h->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_newmetatable(L, ANSWER_META);
  lua_pushcfunction(L, answer_call);
  lua_setfield(L, -2, "__call");
  lua_pushcfunction(L, answer_gc);
  lua_setfield(L, -2, "__gc");
  return 0;
}

/* Everything between the command line and the loop. Returns 0, or -1 with a message
 * on stderr. */
static int start(host *h, int port, const char *handler) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int rc, namelen = (int)sizeof bound;
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN; /* a write to a closed socket is an error, not a signal */
  if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGPIPE, &sa, NULL) != 0) {
    perror("momoko-embed: sigaction");
    return -1;
  }
  if ((rc = watch_signal(h, &h->sigint, &h->sigint_open, SIGINT)) < 0 ||
      (rc = watch_signal(h, &h->sigterm, &h->sigterm_open, SIGTERM)) < 0) {
    log_uv("signals", rc);
    return -1;
  }
  lua_pushcfunction(h->L, start_lua);
  lua_pushlightuserdata(h->L, h);
  lua_pushstring(h->L, handler);
  if (lua_pcall(h->L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "momoko-embed: %s\n", lua_tostring(h->L, -1));
    lua_pop(h->L, 1);
    return -1;
  }
  if ((rc = uv_ip4_addr("127.0.0.1", port, &addr)) < 0) {
    log_uv("address", rc);
    return -1;
  }
  if ((rc = uv_tcp_init(&h->loop, &h->listener)) < 0) {
    log_uv("tcp init", rc);
    return -1;
  }
  h->listener_open = 1;
  h->listener.data = h;
  if ((rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&addr, 0)) < 0 ||
      (rc = uv_listen((uv_stream_t *)&h->listener, 128, on_connection)) < 0 ||
      (rc = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &namelen)) < 0) {
    log_uv("listen", rc);
    return -1;
  }
  printf("listening on http://127.0.0.1:%d/ pid %d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port),
         (int)getpid());
  fflush(stdout);
  return 0;
}

/* What stays open after a failed start; the loop is then run for their close. */
static void close_all(host *h) {
  close_handle((uv_handle_t *)&h->listener, &h->listener_open);
  close_handle((uv_handle_t *)&h->sigint, &h->sigint_open);
  close_handle((uv_handle_t *)&h->sigterm, &h->sigterm_open);
}

int main(int argc, char **argv) {
  static host h; /* static: zeroed, and its handles outlive every callback */
  long port = 0;
  char *end;
  int rc, started;
  if (argc == 4 && strcmp(argv[1], "--port") == 0) {
    errno = 0;
    port = strtol(argv[2], &end, 10);
    if (errno || *end || end == argv[2] || port < 0 || port > 65535) argc = 0;
  } else if (argc != 2) {
    argc = 0;
  }
  if (argc == 0) {
    fputs("usage: momoko-embed [--port PORT] HANDLER.lua\n", stderr);
    return 2;
  }
  if ((rc = uv_loop_init(&h.loop)) < 0) {
    log_uv("loop init", rc);
    return 1;
  }
  if (!(h.L = luaL_newstate())) {
    fputs("momoko-embed: no memory for a Lua state\n", stderr);
    return 1;
  }
  luaL_openlibs(h.L);
  started = start(&h, (int)port, argv[argc - 1]) == 0;
  if (started) {
    uv_run(&h.loop, UV_RUN_DEFAULT); /* until stop() left it */
  } else {
    close_all(&h);
  }
  /* momoko.h's shutdown order: lua_close (momoko closes its handles), one more uv_run
   * for their close callbacks, then uv_loop_close. */
  lua_close(h.L);
  uv_run(&h.loop, UV_RUN_DEFAULT);
  if ((rc = uv_loop_close(&h.loop)) < 0) {
    log_uv("loop close", rc);
    return 1;
  }
  return started ? 0 : 1;
}
