/*
 * ratingingester - produce rating events from a JSON array to Kafka.
 *
 *   ratingingester (--brokers HOST:PORT[,...] | --bootstrap-file PATH)
 *                  [--topic ratings] [--file events.json] [--timeout SECONDS]
 *                  [--allow-invalid] [--min-value N] [--max-value N]
 *
 * Input (the file, or stdin): a JSON array. An object element is one event,
 * produced as its compact JSON serialisation; a string element is produced as
 * the string's bytes, so a test can send text that is not JSON at all.
 * Every element is validated with the parser the rating service uses
 * (event.h); an invalid one is reported on stderr with its index and is not
 * produced, unless --allow-invalid, which sends it verbatim (for tests).
 *
 * Valid events are keyed "recordType/recordId", so all events of a record go
 * to one partition and keep their order; the producer is idempotent, so
 * retries neither reorder nor duplicate. Every delivery report is awaited, for
 * at most --timeout seconds (default 30) in total.
 *
 * Prints one JSON summary line on stdout:
 *   {"events":N,"invalid":I,"produced":P,"delivered":D,"failed":F,"undelivered":U}
 * Exit status: 0 when every produced event was delivered and none was invalid
 * (or --allow-invalid), 1 when a delivery failed or timed out, 2 for usage
 * errors, unreadable input, input that is not a JSON array, or invalid events.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "event.h"
#include "movie/buf.h"
#include "movie/err.h"

#include "movie/banned.h"

#define INPUT_MAX   ((size_t)1024 * 1024 * 1024) /* 1 GiB of JSON */
#define BROKERS_MAX 4096

struct opts {
	char brokers[BROKERS_MAX];
	const char *topic;
	const char *file;
	long timeout_s;
	bool allow_invalid;
	long min_value, max_value;
};

struct counts {
	size_t events, invalid, produced, delivered, failed;
};

#ifndef MOVIE_VERSION_STRING
#define MOVIE_VERSION_STRING "0.0.0"
#endif
#ifndef MOVIE_GIT_COMMIT_STRING
#define MOVIE_GIT_COMMIT_STRING "unknown"
#endif

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: ratingingester (--brokers HOST:PORT[,...] | --bootstrap-file PATH)\n"
	    "                      [--topic ratings] [--file events.json] [--timeout SECONDS]\n"
	    "                      [--allow-invalid] [--min-value N] [--max-value N]\n"
	    "                      [--help] [--version]\n"
	    "Produce rating events to Kafka, each validated as the rating service does.\n"
	    "\n"
	    "  --brokers HOST:PORT[,...]  Kafka bootstrap servers\n"
	    "  --bootstrap-file PATH      read them from PATH (what kafka-dev writes)\n"
	    "  --topic NAME               topic (default ratings)\n"
	    "  --file PATH                input file (default: standard input)\n"
	    "  --timeout SECONDS          wait at most this long for deliveries (default 30)\n"
	    "  --min-value N, --max-value N  accepted rating values (default 1..5)\n"
	    "  --allow-invalid            send invalid elements verbatim (tests)\n"
	    "\n"
	    "Input: one JSON array; each element is one event (tools/ratingingester/events.json):\n"
	    "  [\n"
	    "    {\"eventType\": \"put\", \"userId\": \"105\", \"recordId\": \"1\",\n"
	    "     \"recordType\": \"movie\", \"value\": 5, \"providerId\": \"imdb\"},\n"
	    "    {\"eventType\": \"delete\", \"userId\": \"105\", \"recordId\": \"1\",\n"
	    "     \"recordType\": \"movie\"}\n"
	    "  ]\n"
	    "  eventType    \"put\" (create or replace the user's rating) or \"delete\"\n"
	    "  userId, recordId, recordType  non-empty strings, at most 256 bytes, no\n"
	    "               control characters\n"
	    "  value        integer in --min-value..--max-value (put only)\n"
	    "  providerId   optional string; other members are ignored\n"
	    "A string element is sent as its bytes (with --allow-invalid: not-JSON tests).\n"
	    "Events of one record share a partition (key recordType/recordId), in order.\n"
	    "\n"
	    "Prints {\"events\":N,\"invalid\":I,\"produced\":P,\"delivered\":D,\"failed\":F,\n"
	    "        \"undelivered\":U} (U: no delivery report before --timeout).\n"
	    "Exit 0 all delivered, 1 a delivery failed or timed out, 2 usage or invalid input.\n");
}

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Read all of `f` into b (capped by b->limit). Returns 0, MV_EIO, MV_ETOOBIG, MV_ENOMEM. */
static int read_all(FILE *f, struct buf *b)
{
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		int rc = buf_append(b, chunk, n);
		if (rc != 0)
			return rc;
	}
	return ferror(f) ? MV_EIO : 0;
}

static int read_bootstrap_file(const char *path, char *out, size_t out_size)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(out, (int)out_size, f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	out[strcspn(out, "\r\n")] = '\0';
	return out[0] ? 0 : -1;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct counts *c = opaque;
	if (m->err) {
		c->failed++;
		fprintf(stderr, "ratingingester: delivery failed: %s\n", rd_kafka_err2str(m->err));
	} else {
		c->delivered++;
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	const char *bootstrap_file = NULL;
	o->brokers[0] = '\0';
	o->topic = "ratings";
	o->file = NULL;
	o->timeout_s = 30;
	o->allow_invalid = false;
	o->min_value = 1;
	o->max_value = 5;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--allow-invalid") == 0) {
			o->allow_invalid = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strcmp(a, "--version") == 0) {
			printf("ratingingester %s (commit %s)\n", MOVIE_VERSION_STRING,
			       MOVIE_GIT_COMMIT_STRING);
			exit(0);
		}
		if (!v)
			goto bad;
		i++;
		if (strcmp(a, "--brokers") == 0) {
			int n = snprintf(o->brokers, sizeof(o->brokers), "%s", v);
			if (n < 0 || (size_t)n >= sizeof(o->brokers))
				goto bad;
		} else if (strcmp(a, "--bootstrap-file") == 0) {
			bootstrap_file = v;
		} else if (strcmp(a, "--topic") == 0) {
			o->topic = v;
		} else if (strcmp(a, "--file") == 0) {
			o->file = v;
		} else if (strcmp(a, "--timeout") == 0) {
			if (parse_long(v, 1, 86400, &o->timeout_s) != 0)
				goto bad;
		} else if (strcmp(a, "--min-value") == 0) {
			if (parse_long(v, INT32_MIN, INT32_MAX, &o->min_value) != 0)
				goto bad;
		} else if (strcmp(a, "--max-value") == 0) {
			if (parse_long(v, INT32_MIN, INT32_MAX, &o->max_value) != 0)
				goto bad;
		} else {
			goto bad;
		}
	}
	if (bootstrap_file && !o->brokers[0] &&
	    read_bootstrap_file(bootstrap_file, o->brokers, sizeof(o->brokers)) != 0) {
		fprintf(stderr, "ratingingester: cannot read a bootstrap address from %s\n",
		        bootstrap_file);
		return -1;
	}
	if (!o->brokers[0] || !o->topic[0] || o->min_value > o->max_value)
		goto bad;
	return 0;
bad:
	usage(stderr);
	return -1;
}

/* Produce one message, waiting (bounded by `deadline`) while the local queue is full. */
static int produce(rd_kafka_t *rk, const char *topic, const char *key, size_t key_len,
                   const char *payload, size_t len, double deadline)
{
	for (;;) {
		rd_kafka_resp_err_t err = rd_kafka_producev(
		    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)(uintptr_t)payload, len),
		    RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return 0;
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || now_s() > deadline) {
			fprintf(stderr, "ratingingester: produce failed: %s\n",
			        rd_kafka_err2str(err));
			return -1;
		}
		rd_kafka_poll(rk, 50);
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	struct counts c = {0};
	struct buf in;
	json_t *arr = NULL;
	rd_kafka_t *rk = NULL;
	json_error_t jerr;
	char errstr[512];
	int status = 2;

	if (parse_args(argc, argv, &o) != 0)
		return 2;

	buf_init(&in, INPUT_MAX);
	FILE *f = o.file ? fopen(o.file, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "ratingingester: %s: %s\n", o.file, strerror(errno));
		goto out_buf;
	}
	int rc = read_all(f, &in);
	if (f != stdin)
		fclose(f);
	if (rc != 0) {
		fprintf(stderr, "ratingingester: cannot read input: %s\n", mv_strerror(rc));
		goto out_buf;
	}
	arr = json_loadb(in.data ? in.data : "", in.len, 0, &jerr);
	if (!arr || !json_is_array(arr)) {
		fprintf(stderr, "ratingingester: input is not a JSON array: %s (line %d)\n",
		        arr ? "top level is not an array" : jerr.text, arr ? 0 : jerr.line);
		goto out_json;
	}

	double deadline = now_s() + (double)o.timeout_s;
	char timeout_ms[32];
	snprintf(timeout_ms, sizeof(timeout_ms), "%ld", o.timeout_s * 1000);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", o.brokers, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "message.timeout.ms", timeout_ms, errstr, sizeof(errstr))) {
		fprintf(stderr, "ratingingester: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		goto out_json;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_opaque(conf, &c);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "ratingingester: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		goto out_json;
	}

	bool produce_failed = false;
	size_t index;
	json_t *el;
	json_array_foreach(arr, index, el)
	{
		char *owned = NULL;
		const char *payload;
		size_t len;
		c.events++;
		if (json_is_string(el)) {
			payload = json_string_value(el);
			len = json_string_length(el);
		} else {
			owned = json_dumps(el, JSON_COMPACT | JSON_ENCODE_ANY);
			if (!owned) {
				fprintf(stderr, "ratingingester: out of memory\n");
				produce_failed = true;
				break;
			}
			payload = owned;
			len = strlen(owned);
		}
		struct rating_event ev;
		struct rating_event_error err;
		char key[2 * RATING_ID_MAX + 2];
		size_t key_len = 0;
		if (rating_event_parse(payload, len, (int32_t)o.min_value, (int32_t)o.max_value,
		                       &ev, &err) == 0) {
			int n = snprintf(key, sizeof(key), "%s/%s", ev.record_type, ev.record_id);
			key_len = n > 0 ? (size_t)n : 0;
		} else {
			c.invalid++;
			fprintf(stderr, "ratingingester: event %zu: %s: %s%s\n", index,
			        rating_event_reason_name(err.reason), err.detail,
			        o.allow_invalid ? " (sent anyway)" : "");
			if (!o.allow_invalid) {
				free(owned);
				continue;
			}
		}
		if (produce(rk, o.topic, key_len ? key : NULL, key_len, payload, len, deadline) ==
		    0)
			c.produced++;
		else
			produce_failed = true;
		free(owned);
		rd_kafka_poll(rk, 0);
		if (produce_failed)
			break;
	}

	double left = deadline - now_s();
	rd_kafka_flush(rk, left > 0 ? (int)(left * 1000) : 0);
	size_t pending = (size_t)rd_kafka_outq_len(rk);
	printf("{\"events\":%zu,\"invalid\":%zu,\"produced\":%zu,\"delivered\":%zu,\"failed\":%zu,"
	       "\"undelivered\":%zu}\n",
	       c.events, c.invalid, c.produced, c.delivered, c.failed,
	       c.produced - c.delivered - c.failed);
	fflush(stdout);
	if (produce_failed || c.failed || pending || c.delivered != c.produced)
		status = 1;
	else if (c.invalid && !o.allow_invalid)
		status = 2;
	else
		status = 0;
	rd_kafka_destroy(rk);
out_json:
	json_decref(arr);
out_buf:
	buf_release(&in);
	return status;
}
