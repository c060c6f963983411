/*
 * kafka-dev - a local Kafka broker for development and tests, built on
 * librdkafka's in-process mock cluster (rdkafka_mock.h): produce, fetch,
 * consumer groups and committed offsets, all in memory.
 *
 *   kafka-dev [--brokers N] [--port PORT] [--bootstrap-file PATH]
 *             [--topic NAME:PARTITIONS]...
 *
 * Creates the topics (default ratings:4), writes the bootstrap address to
 * PATH atomically (temporary file + rename, so a reader never sees a partial
 * address), prints one JSON log line with the address on stdout, and runs
 * until SIGTERM or SIGINT, then exits 0. Exit 2 on usage errors, 1 when the
 * cluster cannot be created. The brokers listen on 127.0.0.1 (librdkafka's
 * mock brokers bind loopback only), on random ports unless --port is given.
 *
 * --port: librdkafka 2.0.2 has no setting for the mock brokers' ports
 * (rd_kafka_mock_cluster_new binds each broker to 127.0.0.1 port 0, and no
 * configuration property or rdkafka_mock.h call changes that). So this
 * program interposes bind(2): while rd_kafka_mock_cluster_new runs, and only
 * for an IPv4 bind to port 0, the port becomes PORT, PORT+1, ... one per
 * broker. The result is checked against rd_kafka_mock_cluster_bootstraps:
 * if a future librdkafka binds differently, kafka-dev fails with a clear
 * error instead of listening elsewhere.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "movie/buf.h"

#include "movie/banned.h"

#define MAX_TOPICS     32
#define MAX_BROKERS    16
#define MAX_PARTITIONS 1024

struct topic_spec {
	char name[250];
	int partitions;
};

#ifndef MOVIE_VERSION_STRING
#define MOVIE_VERSION_STRING "0.0.0"
#endif
#ifndef MOVIE_GIT_COMMIT_STRING
#define MOVIE_GIT_COMMIT_STRING "unknown"
#endif

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: kafka-dev [--brokers N] [--port PORT] [--bootstrap-file PATH] "
	        "[--topic NAME:PARTITIONS]...\n"
	        "  --brokers N              mock brokers, 1..%d (default 1)\n"
	        "  --port PORT              first broker on 127.0.0.1:PORT, the next on PORT+1...\n"
	        "                           (default: random ports)\n"
	        "  --bootstrap-file PATH    write the bootstrap address there (atomically)\n"
	        "  --topic NAME:PARTITIONS  create a topic (repeatable; default ratings:4)\n"
	        "  --version                print the version and exit\n",
	        MAX_BROKERS);
}

/* ---- fixed ports: bind(2) interposed while the mock cluster is created ---- */

static int fixed_port_next; /* 0: bind untouched */
static int fixed_port_used;

/* Default visibility: the build hides symbols, and the interposer works only
 * if the executable exports it so that librdkafka's calls resolve here. */
__attribute__((visibility("default"))) int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	static int (*real_bind)(int, const struct sockaddr *, socklen_t);
	if (!real_bind) {
		*(void **)&real_bind = dlsym(RTLD_NEXT, "bind");
		if (!real_bind) {
			errno = ENOSYS;
			return -1;
		}
	}
	if (fixed_port_next && addr && addr->sa_family == AF_INET &&
	    len >= (socklen_t)sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;
		memcpy(&sin, addr, sizeof(sin));
		if (sin.sin_port == 0) {
			sin.sin_port = htons((uint16_t)fixed_port_next);
			fixed_port_next++;
			fixed_port_used++;
			return real_bind(fd, (const struct sockaddr *)&sin, sizeof(sin));
		}
	}
	return real_bind(fd, addr, len);
}

/* librdkafka 2.0.2 aborts (an assertion in rd_kafka_mock_cluster_destroy)
 * when a mock broker cannot bind, so a busy port is detected here first.
 * Returns 0 when 127.0.0.1:port binds now, else errno. */
static int port_unavailable(long port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return errno;
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	int rc = bind(fd, (const struct sockaddr *)&sin, sizeof(sin)) == 0 ? 0 : errno;
	close(fd);
	return rc;
}

/* True when the bootstrap list is exactly 127.0.0.1:PORT,...,PORT+n-1. */
static int bootstraps_match(const char *bootstrap, long port, long brokers)
{
	struct buf want;
	buf_init(&want, 4096);
	for (long i = 0; i < brokers; i++)
		buf_printf(&want, "%s127.0.0.1:%ld", i ? "," : "", port + i);
	int same = want.data && strcmp(want.data, bootstrap) == 0;
	buf_release(&want);
	return same;
}

static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_topic(const char *arg, struct topic_spec *t)
{
	const char *colon = strrchr(arg, ':');
	long parts;
	if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof(t->name))
		return -1;
	if (parse_int(colon + 1, 1, MAX_PARTITIONS, &parts) != 0)
		return -1;
	memcpy(t->name, arg, (size_t)(colon - arg));
	t->name[colon - arg] = '\0';
	t->partitions = (int)parts;
	return 0;
}

/* Write `text` to `path` through a temporary sibling and rename(2). */
static int write_atomic(const char *path, const char *text)
{
	char tmp[4096];
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	int ok = fputs(text, f) >= 0;
	ok = (fflush(f) == 0) && ok;
	ok = (fsync(fileno(f)) == 0) && ok;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* One JSON log line in the project's format (log.h), built here so this tool
 * depends on nothing but libmovie_core and librdkafka. */
static void log_line(const char *level, const char *msg, const char *key, const char *value)
{
	struct buf b;
	struct timespec ts;
	struct tm tm;
	char when[40];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	buf_init(&b, 16384);
	buf_printf(
	    &b, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"service\":\"kafka-dev\",\"msg\":", when,
	    ts.tv_nsec / 1000000, level);
	buf_append_json_string(&b, msg, strlen(msg));
	if (key) {
		buf_printf(&b, ",\"%s\":", key);
		buf_append_json_string(&b, value, strlen(value));
	}
	buf_append_str(&b, "}\n");
	if (b.data) {
		fputs(b.data, stdout);
		fflush(stdout);
	}
	buf_release(&b);
}

int main(int argc, char **argv)
{
	struct topic_spec topics[MAX_TOPICS];
	size_t topic_count = 0;
	long brokers = 1;
	long port = 0;
	const char *bootstrap_file = NULL;
	char errstr[512];
	int status = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--brokers") == 0 && v) {
			if (parse_int(v, 1, MAX_BROKERS, &brokers) != 0) {
				fprintf(stderr, "kafka-dev: --brokers: expected 1..%d\n",
				        MAX_BROKERS);
				return 2;
			}
			i++;
		} else if (strcmp(a, "--version") == 0) {
			printf("kafka-dev %s (commit %s)\n", MOVIE_VERSION_STRING,
			       MOVIE_GIT_COMMIT_STRING);
			return 0;
		} else if (strcmp(a, "--port") == 0 && v) {
			if (parse_int(v, 1, 65535 - MAX_BROKERS, &port) != 0) {
				fprintf(stderr, "kafka-dev: --port: expected 1..%d\n",
				        65535 - MAX_BROKERS);
				return 2;
			}
			i++;
		} else if (strcmp(a, "--bootstrap-file") == 0 && v) {
			bootstrap_file = v;
			i++;
		} else if (strcmp(a, "--topic") == 0 && v) {
			if (topic_count == MAX_TOPICS ||
			    parse_topic(v, &topics[topic_count]) != 0) {
				fprintf(stderr,
				        "kafka-dev: --topic: expected NAME:PARTITIONS "
				        "(1..%d partitions, at most %d topics)\n",
				        MAX_PARTITIONS, MAX_TOPICS);
				return 2;
			}
			topic_count++;
			i++;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (topic_count == 0) {
		memcpy(topics[0].name, "ratings", sizeof("ratings"));
		topics[0].partitions = 4;
		topic_count = 1;
	}

	/* Block the stop signals before librdkafka starts its threads, so that
	 * they are delivered only to sigwait below. */
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	/* This handle only hosts the cluster: it has no bootstrap servers, and
	 * the notice saying so would only confuse. */
	rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		log_line("error", "cannot create kafka handle", "error", errstr);
		return 1;
	}
	for (long p = port; port && p < port + brokers; p++) {
		int err = port_unavailable(p);
		if (err) {
			char addr[32];
			snprintf(addr, sizeof(addr), "127.0.0.1:%ld", p);
			log_line("error",
			         err == EADDRINUSE ? "cannot listen: port in use" : "cannot listen",
			         "address", addr);
			goto fail_cluster;
		}
	}
	fixed_port_next = (int)port;
	rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
	fixed_port_next = 0;
	if (!mc) {
		log_line("error",
		         port ? "cannot create mock cluster (is the port in use?)"
		              : "cannot create mock cluster",
		         NULL, NULL);
		goto fail_cluster;
	}
	if (port && (fixed_port_used != brokers ||
	             !bootstraps_match(rd_kafka_mock_cluster_bootstraps(mc), port, brokers))) {
		log_line("error", "librdkafka did not listen on the requested --port", "bootstrap",
		         rd_kafka_mock_cluster_bootstraps(mc));
		goto fail_topics;
	}
	for (size_t i = 0; i < topic_count; i++) {
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
		    mc, topics[i].name, topics[i].partitions, (int)brokers < 3 ? (int)brokers : 3);
		if (err) {
			log_line("error", "cannot create topic", "error", rd_kafka_err2str(err));
			goto fail_topics;
		}
	}

	const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
	if (bootstrap_file) {
		char line[1024];
		snprintf(line, sizeof(line), "%s\n", bootstrap);
		if (write_atomic(bootstrap_file, line) != 0) {
			log_line("error", "cannot write bootstrap file", "path", bootstrap_file);
			goto fail_topics;
		}
	}
	log_line("info", "mock kafka cluster ready", "bootstrap", bootstrap);

	int sig = 0;
	while (sigwait(&stop_signals, &sig) != 0) {
	}
	log_line("info", "stopping", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	status = 0;

fail_topics:
	rd_kafka_mock_cluster_destroy(mc);
fail_cluster:
	rd_kafka_destroy(rk);
	return status;
}
