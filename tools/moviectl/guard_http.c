/*
 * guard_http.c - /healthz and /metrics for the guard controller (guard_http.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "guard_http.h"

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/http1.h"
#include "movie/metrics.h"
#include "movie/banned.h"

#define HEAD_MAX     8192
#define IO_TIMEOUT_S 5

struct guard_http {
	int fd;
	pthread_t thread;
	atomic_int stop;
	struct metrics_registry *reg;
	guard_health_fn health;
	void *user;
};

static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
	const char *colon = strrchr(addr, ':');
	if (!colon || !colon[1])
		return MV_EINVAL;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port <= 0 || port > 65535)
		return MV_EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	char host[64];
	size_t n = (size_t)(colon - addr);
	if (n >= sizeof(host))
		return MV_EINVAL;
	memcpy(host, addr, n);
	host[n] = '\0';
	if (n == 0) {
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : MV_EINVAL;
}

static void respond(int fd, int status, const char *ctype, const char *body, size_t len)
{
	struct buf out;
	buf_init(&out, (size_t)64 * 1024 * 1024);
	if (http1_response_build(&out, status, ctype, NULL, body, len, false) == 0) {
		size_t off = 0;
		while (off < out.len) {
			ssize_t w = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	buf_release(&out);
}

static void route(struct guard_http *h, int fd, const struct http1_request *rq)
{
	const char *p = rq->target.data;
	size_t n = rq->path_len;
	if (rq->method != HTTP1_GET && rq->method != HTTP1_HEAD) {
		respond(fd, 405, "text/plain", "method not allowed\n", 19);
	} else if (n == 8 && memcmp(p, "/healthz", 8) == 0) {
		char why[256] = "";
		if (h->health(h->user, why, sizeof(why)))
			respond(fd, 200, "text/plain", "ok\n", 3);
		else {
			char body[300];
			int len = snprintf(body, sizeof(body), "unhealthy: %s\n", why);
			respond(fd, 503, "text/plain", body, (size_t)len);
		}
	} else if (n == 8 && memcmp(p, "/metrics", 8) == 0) {
		struct buf m;
		buf_init(&m, (size_t)16 * 1024 * 1024);
		if (metrics_render(h->reg, &m) == 0)
			respond(fd, 200, "text/plain; version=0.0.4; charset=utf-8",
			        m.data ? m.data : "", m.len);
		else
			respond(fd, 500, "text/plain", "cannot render\n", 14);
		buf_release(&m);
	} else {
		respond(fd, 404, "text/plain", "not found\n", 10);
	}
}

static void serve(struct guard_http *h, int fd)
{
	struct timeval tv = {IO_TIMEOUT_S, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct http1_limits lim = {HEAD_MAX, 0};
	struct http1_parser ps;
	http1_parser_init(&ps, &lim);
	char data[2048];
	for (;;) {
		ssize_t r = recv(fd, data, sizeof(data), 0);
		if (r <= 0)
			break;
		size_t used;
		int res = http1_parser_feed(&ps, data, (size_t)r, &used);
		if (res == HTTP1_NEED_MORE)
			continue;
		if (res == HTTP1_REQUEST_READY)
			route(h, fd, &ps.request);
		else
			respond(fd, res, "text/plain", "bad request\n", 12);
		break;
	}
	http1_parser_release(&ps);
}

static void *loop(void *arg)
{
	struct guard_http *h = arg;
	while (!atomic_load(&h->stop)) {
		struct pollfd p = {h->fd, POLLIN, 0};
		if (poll(&p, 1, 200) <= 0)
			continue;
		int c = accept(h->fd, NULL, NULL);
		if (c < 0)
			continue;
		serve(h, c);
		close(c);
	}
	return NULL;
}

int guard_http_start(const char *addr, struct metrics_registry *reg, guard_health_fn health,
                     void *user, struct guard_http **out)
{
	*out = NULL;
	struct sockaddr_in sa;
	if (parse_addr(addr, &sa))
		return MV_EINVAL;
	struct guard_http *h = calloc(1, sizeof(*h));
	if (!h)
		return MV_ENOMEM;
	h->reg = reg;
	h->health = health;
	h->user = user;
	h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (h->fd < 0 || setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(h->fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(h->fd, 16))
		goto fail;
	if (pthread_create(&h->thread, NULL, loop, h)) {
		errno = EAGAIN;
		goto fail;
	}
	*out = h;
	return 0;
fail:;
	int e = errno;
	if (h->fd >= 0)
		close(h->fd);
	free(h);
	errno = e;
	return MV_EIO;
}

void guard_http_stop(struct guard_http *h)
{
	if (!h)
		return;
	atomic_store(&h->stop, 1);
	pthread_join(h->thread, NULL);
	close(h->fd);
	free(h);
}
