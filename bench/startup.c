/*
 * startup - time from exec of a server to its first answered gRPC call.
 *
 *   startup HOST PORT PATH REQUEST_FILE -- PROGRAM [ARGS...]
 *
 * Forks and execs PROGRAM, then connects to HOST:PORT as fast as it can
 * (retrying refused connections) and sends one unary gRPC request (PATH with
 * the serialized message in REQUEST_FILE) over HTTP/2 prior knowledge, until
 * a response with grpc-status 0 arrives. Prints the elapsed microseconds,
 * sends SIGTERM to the server and waits for it. Exit 0 on success.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "movie/banned.h"

struct probe {
	const uint8_t *body;
	size_t body_len;
	size_t sent;
	int grpc_status; /* -1 until seen */
	bool closed;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
	struct probe *p = user;
	size_t n = p->body_len - p->sent < len ? p->body_len - p->sent : len;
	memcpy(buf, p->body + p->sent, n);
	p->sent += n;
	if (p->sent == p->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
	struct probe *p = user;
	if (nl == 11 && memcmp(name, "grpc-status", 11) == 0)
		p->grpc_status = (vl == 1 && value[0] == '0') ? 0 : 1;
	return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
	((struct probe *)user)->closed = true;
	return 0;
}

/* One attempt: 0 = answered OK, 1 = try again. */
static int attempt(const char *host, int port, const char *path, const uint8_t *msg, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, host, &sa.sin_addr);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return 1;
	}
	uint8_t *body = malloc(len + 5);
	body[0] = 0;
	body[1] = (uint8_t)(len >> 24);
	body[2] = (uint8_t)(len >> 16);
	body[3] = (uint8_t)(len >> 8);
	body[4] = (uint8_t)len;
	memcpy(body + 5, msg, len);
	struct probe p = {.body = body, .body_len = len + 5, .grpc_status = -1};
	nghttp2_session_callbacks *cbs;
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
	nghttp2_session *s;
	nghttp2_session_client_new(&s, cbs, &p);
	nghttp2_session_callbacks_del(cbs);
	nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
	char authority[64];
	snprintf(authority, sizeof(authority), "%s:%d", host, port);
	const char *hv[][2] = {{":method", "POST"},
	                       {":scheme", "http"},
	                       {":authority", authority},
	                       {":path", path},
	                       {"content-type", "application/grpc"},
	                       {"te", "trailers"}};
	nghttp2_nv nv[6];
	for (int i = 0; i < 6; i++) {
		nv[i].name = (uint8_t *)(uintptr_t)hv[i][0];
		nv[i].value = (uint8_t *)(uintptr_t)hv[i][1];
		nv[i].namelen = strlen(hv[i][0]);
		nv[i].valuelen = strlen(hv[i][1]);
		nv[i].flags = NGHTTP2_NV_FLAG_NONE;
	}
	nghttp2_data_provider dp = {.read_callback = read_body};
	nghttp2_submit_request(s, NULL, nv, 6, &dp, NULL);
	int rc = 1;
	for (int round = 0; round < 100 && !p.closed; round++) {
		const uint8_t *out;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(s, &out)) > 0)
			if (write(fd, out, (size_t)n) != n)
				goto done;
		uint8_t in[16384];
		ssize_t r = read(fd, in, sizeof(in));
		if (r <= 0)
			goto done;
		if (nghttp2_session_mem_recv(s, in, (size_t)r) < 0)
			goto done;
	}
	rc = p.closed && p.grpc_status == 0 ? 0 : 1;
done:
	nghttp2_session_del(s);
	free(body);
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 7 || strcmp(argv[5], "--") != 0) {
		fprintf(stderr,
		        "usage: startup HOST PORT PATH REQUEST_FILE -- PROGRAM [ARGS...]\n");
		return 2;
	}
	const char *host = argv[1];
	char *end;
	long port = strtol(argv[2], &end, 10);
	if (*end || port < 1 || port > 65535) {
		fprintf(stderr, "startup: bad port\n");
		return 2;
	}
	FILE *f = fopen(argv[4], "rb");
	if (!f) {
		perror(argv[4]);
		return 2;
	}
	uint8_t msg[65536];
	size_t len = fread(msg, 1, sizeof(msg), f);
	fclose(f);

	int64_t t0 = now_us();
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[6], argv + 6);
		perror("exec");
		_exit(127);
	}
	int64_t elapsed = -1;
	/* Bounded: 5 s of attempts at most. */
	while (now_us() - t0 < 5000000) {
		if (attempt(host, (int)port, argv[3], msg, len) == 0) {
			elapsed = now_us() - t0;
			break;
		}
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "startup: server exited early\n");
			return 1;
		}
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	if (elapsed < 0) {
		fprintf(stderr, "startup: no answer within 5 s\n");
		return 1;
	}
	printf("%lld\n", (long long)elapsed);
	return 0;
}
