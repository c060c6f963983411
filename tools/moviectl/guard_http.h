/*
 * guard_http.h - the controller's own HTTP endpoint: GET /healthz and GET
 * /metrics (lib/obs registry, text format) on a loopback or pod address,
 * parsed with the project's HTTP/1.1 parser (movie/http1.h). One thread,
 * one connection at a time, each bounded by a 5 s I/O timeout and an 8 KiB
 * request head; responses close the connection. Enough for a kubelet probe
 * and a Prometheus scrape; not a general server.
 */
#ifndef MOVIECTL_GUARD_HTTP_H
#define MOVIECTL_GUARD_HTTP_H

struct metrics_registry;
struct guard_http;

/* 1 when healthy (answered 200 "ok"), else 503 with the reason written into why. */
typedef int (*guard_health_fn)(void *user, char *why, size_t whylen);

/*
 * Listen on addr ("127.0.0.1:9102", ":9102" = every IPv4 address) and serve
 * in a new thread. Returns 0, MV_EINVAL (bad address), MV_EIO (bind/listen:
 * errno kept), MV_ENOMEM.
 */
int guard_http_start(const char *addr, struct metrics_registry *reg, guard_health_fn health,
                     void *user, struct guard_http **out);
/* Stop the thread and close the socket. NULL is allowed. */
void guard_http_stop(struct guard_http *h);

#endif
