/*
 * gRPC client name resolution: each target host is resolved (uv_getaddrinfo,
 * off the loop) to all its addresses, again every resolve_interval_ms and
 * after a connection failure. The result is diffed against the address set:
 * new addresses get a connection, vanished ones drain, and a failed
 * resolution keeps what we have.
 */
#include "client_internal.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "movie/cfg.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/banned.h"

static void addr_label(const struct sockaddr *sa, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		uv_ip6_name(s6, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		snprintf(out, size, "[%s]:%d", ip, port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		uv_ip4_name(s4, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
		snprintf(out, size, "%s:%d", ip, port);
	}
}

static struct grpc_client_addr *addr_find(struct grpc_channel *ch, const struct sockaddr *sa,
                                          socklen_t len)
{
	for (size_t i = 0; i < ch->addr_count; i++) {
		struct grpc_client_addr *a = ch->addrs[i];
		if (a->sa_len == len && memcmp(&a->sa, sa, len) == 0)
			return a;
	}
	return NULL;
}

/* The address vanished from DNS: its connection drains, then closes. */
static void addr_remove(struct grpc_channel *ch, size_t i)
{
	struct grpc_client_addr *a = ch->addrs[i];
	log_info("grpc client: address removed", MV_LOG_S("peer", ch->name),
	         MV_LOG_S("addr", a->label));
	if (a->conn) {
		struct grpc_client_conn *cn = a->conn;
		a->conn = NULL;
		grpc_client_conn_orphan(cn);
	}
	free(a);
	ch->addrs[i] = ch->addrs[--ch->addr_count];
}

static void target_apply(struct grpc_channel *ch, struct grpc_client_target *t,
                         const struct addrinfo *res)
{
	for (size_t i = 0; i < ch->addr_count; i++)
		if (ch->addrs[i]->target == t->index)
			ch->addrs[i]->seen = false;
	size_t taken = 0;
	for (const struct addrinfo *ai = res; ai && taken < MAX_ADDRS_PER_TARGET;
	     ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(struct sockaddr_storage))
			continue;
		taken++;
		struct grpc_client_addr *a = addr_find(ch, ai->ai_addr, (socklen_t)ai->ai_addrlen);
		if (a) {
			if (a->target == t->index)
				a->seen = true;
			continue; /* duplicates (also across targets) collapse */
		}
		if (ch->addr_count >= MAX_ADDRS)
			continue;
		a = calloc(1, sizeof(*a));
		if (!a)
			continue;
		memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
		a->sa_len = (socklen_t)ai->ai_addrlen;
		a->target = t->index;
		a->seen = true;
		addr_label(ai->ai_addr, a->label, sizeof(a->label));
		ch->addrs[ch->addr_count++] = a;
		log_info("grpc client: address added", MV_LOG_S("peer", ch->name),
		         MV_LOG_S("addr", a->label));
		grpc_client_conn_open(ch, a);
	}
	for (size_t i = ch->addr_count; i-- > 0;)
		if (ch->addrs[i]->target == t->index && !ch->addrs[i]->seen)
			addr_remove(ch, i);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct grpc_client_target *t = req->data;
	struct grpc_channel *ch = t->ch;
	t->resolving = false;
	ch->open_handles--;
	if (ch->closed) {
		uv_freeaddrinfo(res);
		grpc_channel_maybe_free(ch);
		return;
	}
	if (status < 0) {
		/* Keep the addresses we have: a DNS hiccup must not empty the channel. */
		log_warn("grpc client: resolution failed", MV_LOG_S("peer", ch->name),
		         MV_LOG_S("target", t->authority), MV_LOG_S("error", uv_strerror(status)));
	} else {
		target_apply(ch, t, res);
	}
	uv_freeaddrinfo(res);
	if (ch->queue.count)
		grpc_channel_dispatch(ch);
	grpc_channel_fail_if_hopeless(ch);
}

void grpc_client_resolve(struct grpc_channel *ch)
{
	ch->last_resolve_ms = grpc_channel_now_ms(ch);
	for (size_t i = 0; i < ch->target_count; i++) {
		struct grpc_client_target *t = &ch->targets[i];
		if (t->resolving)
			continue;
		struct addrinfo hints = {.ai_family = AF_UNSPEC,
		                         .ai_socktype = SOCK_STREAM,
		                         .ai_protocol = IPPROTO_TCP,
		                         .ai_flags = AI_NUMERICSERV};
		t->req.data = t;
		if (uv_getaddrinfo(ch->loop, &t->req, on_resolved, t->host, t->port, &hints) == 0) {
			t->resolving = true;
			ch->open_handles++;
		}
	}
}

bool grpc_client_resolving(const struct grpc_channel *ch)
{
	for (size_t i = 0; i < ch->target_count; i++)
		if (ch->targets[i].resolving)
			return true;
	return false;
}

int grpc_client_target_parse(const char *s, struct grpc_client_target *t)
{
	size_t len = strlen(s);
	const char *colon;
	const char *host = s;
	size_t host_len;
	char why[160];
	/* The rule config validation applies (peers.*.addresses), so that a
	 * target is either accepted by both or refused by both. */
	if (len == 0 || len >= MAX_HOST || cfg_check_host_port(s, len, why, sizeof(why)) != 0)
		return MV_EINVAL;
	if (s[0] == '[') {
		const char *end = memchr(s, ']', len);
		if (!end || end[1] != ':')
			return MV_EINVAL;
		host = s + 1;
		host_len = (size_t)(end - host);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return MV_EINVAL;
		host_len = (size_t)(colon - s);
	}
	const char *port = colon + 1;
	size_t port_len = strlen(port);
	if (host_len == 0 || port_len == 0 || port_len > 5)
		return MV_EINVAL;
	long p = 0;
	for (size_t i = 0; i < port_len; i++) {
		if (port[i] < '0' || port[i] > '9')
			return MV_EINVAL;
		p = p * 10 + (port[i] - '0');
	}
	if (p < 1 || p > 65535)
		return MV_EINVAL;
	memcpy(t->host, host, host_len);
	t->host[host_len] = '\0';
	memcpy(t->port, port, port_len);
	t->port[port_len] = '\0';
	snprintf(t->authority, sizeof(t->authority), "%s", s);
	return 0;
}
