/*
 * kafka-dev-consumer - the rating service's Kafka ingestion (ingest.c) wired
 * to a real rating store and nothing else: for measuring ingestion throughput
 * (bench/ingest.sh) without the API server in the way.
 *
 *   kafka-dev-consumer (--brokers H:P[,..] | --bootstrap-file PATH)
 *       [--topic ratings] [--group rating-bench] [--batch-max 1000]
 *       [--driver sqlite|mysql|memory] [--sqlite-path PATH]
 *       [--mysql-host 127.0.0.1] [--mysql-port 3306] [--mysql-user movie]
 *       [--mysql-password PW] [--mysql-database movie]
 *       [--expect N] [--timeout SECONDS]
 *
 * With --expect N it exits once N events were consumed and applied (or
 * rejected), printing {"events":N,"seconds":S,"events_per_s":R} measured from
 * the first consumed event; exit 1 on --timeout (default 600). Without
 * --expect it runs until SIGTERM/SIGINT. Exit 2 on usage errors.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingest.h"
#include "movie/log.h"
#include "movie/metrics.h"
#include "store.h"

#include "movie/banned.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_ll(const char *s, long long min, long long max, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static uint64_t counter(struct metrics_registry *reg, const char *name)
{
	struct metrics_family *f = metrics_counter_family(reg, name, "", 0, NULL);
	return f ? metrics_counter_value(metrics_counter_get(f, NULL)) : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: kafka-dev-consumer (--brokers H:P | --bootstrap-file PATH) "
	                "[--topic T] [--group G] [--batch-max N] [--driver sqlite|mysql|memory]\n"
	                "  [--sqlite-path P] [--mysql-host H] [--mysql-port P] [--mysql-user U]\n"
	                "  [--mysql-password W] [--mysql-database D] [--expect N] [--timeout S]\n");
}

int main(int argc, char **argv)
{
	char brokers[4096] = "";
	const char *topic = "ratings", *group = "rating-bench";
	long long batch_max = 1000, expect = 0, timeout_s = 600, port = 3306;
	struct store_config sc = {
	    .driver = "sqlite",
	    .sqlite_path = "data/rating.db",
	    .sqlite_busy_timeout_ms = 5000,
	    .mysql_host = "127.0.0.1",
	    .mysql_port = 3306,
	    .mysql_user = "movie",
	    .mysql_password = "",
	    .mysql_database = "movie",
	    .mysql_pool_size = 2,
	    .mysql_connect_timeout_ms = 2000,
	    .mysql_query_timeout_ms = 5000,
	};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--version") == 0) {
			printf("kafka-dev-consumer %s (commit %s)\n", MOVIE_VERSION_STRING,
			       MOVIE_GIT_COMMIT_STRING);
			return 0;
		}
		if (!v)
			goto bad;
		i++;
		if (strcmp(a, "--brokers") == 0) {
			snprintf(brokers, sizeof(brokers), "%s", v);
		} else if (strcmp(a, "--bootstrap-file") == 0) {
			FILE *f = fopen(v, "r");
			if (!f || !fgets(brokers, sizeof(brokers), f)) {
				fprintf(stderr, "kafka-dev-consumer: cannot read %s\n", v);
				if (f)
					fclose(f);
				return 2;
			}
			fclose(f);
			brokers[strcspn(brokers, "\r\n")] = '\0';
		} else if (strcmp(a, "--topic") == 0) {
			topic = v;
		} else if (strcmp(a, "--group") == 0) {
			group = v;
		} else if (strcmp(a, "--batch-max") == 0) {
			if (parse_ll(v, 1, 100000, &batch_max))
				goto bad;
		} else if (strcmp(a, "--driver") == 0) {
			sc.driver = v;
		} else if (strcmp(a, "--sqlite-path") == 0) {
			sc.sqlite_path = v;
		} else if (strcmp(a, "--mysql-host") == 0) {
			sc.mysql_host = v;
		} else if (strcmp(a, "--mysql-port") == 0) {
			if (parse_ll(v, 1, 65535, &port))
				goto bad;
			sc.mysql_port = port;
		} else if (strcmp(a, "--mysql-user") == 0) {
			sc.mysql_user = v;
		} else if (strcmp(a, "--mysql-password") == 0) {
			sc.mysql_password = v;
		} else if (strcmp(a, "--mysql-database") == 0) {
			sc.mysql_database = v;
		} else if (strcmp(a, "--expect") == 0) {
			if (parse_ll(v, 1, (long long)1 << 40, &expect))
				goto bad;
		} else if (strcmp(a, "--timeout") == 0) {
			if (parse_ll(v, 1, 86400, &timeout_s))
				goto bad;
		} else {
			goto bad;
		}
	}
	if (!brokers[0])
		goto bad;

	log_init("kafka-dev-consumer", MV_LOG_WARN, 2);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	char err[512];
	int status = 1;
	struct rating_store *store = rating_store_open(&sc, err, sizeof(err));
	if (!store) {
		fprintf(stderr, "kafka-dev-consumer: store: %s\n", err);
		return 1;
	}
	struct metrics_registry *reg = metrics_registry_new();
	if (!reg)
		goto out_store;
	const char *broker_list[1] = {brokers};
	struct ingest_config cfg = {
	    .brokers = broker_list,
	    .broker_count = 1,
	    .topic = topic,
	    .group_id = group,
	    .dead_letter_topic = "",
	    .batch_max = batch_max,
	    .session_timeout_ms = 6000,
	    .min_value = 1,
	    .max_value = 5,
	};
	struct ingest *in = ingest_start(&cfg, store, reg, err, sizeof(err));
	if (!in) {
		fprintf(stderr, "kafka-dev-consumer: ingest: %s\n", err);
		goto out_reg;
	}

	double start = now_s(), first = 0;
	uint64_t done = 0;
	while (!stop_requested && now_s() - start < (double)timeout_s) {
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
		if (!first && counter(reg, "rating_ingest_events_consumed_total") > 0)
			first = now_s();
		if (!expect)
			continue;
		/* stored + rejected: every event either applied or skipped. */
		uint64_t consumed = counter(reg, "rating_ingest_events_consumed_total");
		uint64_t stored = counter(reg, "rating_ingest_events_stored_total");
		if (consumed >= (uint64_t)expect && stored > 0) {
			/* All consumed; wait for the last batch to be stored. */
			uint64_t prev = stored;
			done = stored;
			struct timespec settle = {0, 50 * 1000 * 1000};
			nanosleep(&settle, NULL);
			if (counter(reg, "rating_ingest_events_stored_total") == prev)
				break;
		}
	}
	double end = now_s();
	if (expect) {
		uint64_t consumed = counter(reg, "rating_ingest_events_consumed_total");
		double secs = first ? end - first : 0;
		printf("{\"events\":%llu,\"stored\":%llu,\"seconds\":%.3f,\"events_per_s\":%.0f}\n",
		       (unsigned long long)consumed, (unsigned long long)done, secs,
		       secs > 0 ? (double)consumed / secs : 0.0);
		status = consumed >= (uint64_t)expect ? 0 : 1;
	} else {
		status = 0;
	}
	ingest_stop(in);
out_reg:
	metrics_registry_free(reg);
out_store:
	rating_store_close(store);
	return status;
bad:
	usage();
	return 2;
}
