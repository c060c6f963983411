#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "movie/buf.h"
#include "movie/cfg.h"
#include "movie/err.h"
#include "../testing.h"
#include "movie/banned.h"

#ifndef CFG_TEST_DIR
#define CFG_TEST_DIR "/tmp/test_cfg_files"
#endif

struct tconf {
	char *api_host;
	int64_t api_port;
	int64_t api_workers;
	int64_t max_message_bytes;
	int64_t idle_timeout_ms;
	int64_t grace_ms;
	char *log_level;
	bool log_requests;
	char *password;
	char *password_file;
	struct cfg_string_list brokers;
	struct cfg_string_list peers;
	double retry_budget;
	double jitter;
	char *service_name;
	int64_t offset;
};

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

#define OPT(k, t, field, def) \
	.key = k, .type = t, .offset = offsetof(struct tconf, field), .default_value = def

static const struct cfg_option options[] = {
    {OPT("api.host", CFG_STRING, api_host, "0.0.0.0"), .help = "bind address"},
    {OPT("api.port", CFG_INT, api_port, "8081"), .min = 1, .max = 65535, .help = "port"},
    {OPT("api.workers", CFG_INT, api_workers, "0"), .min = 0, .max = 64},
    {OPT("api.max_message_bytes", CFG_SIZE, max_message_bytes, "4MiB")},
    {OPT("log.level", CFG_ENUM, log_level, "info"), .enum_values = levels},
    {OPT("api.idle_timeout", CFG_DURATION_MS, idle_timeout_ms, "5m")},
    {OPT("log.requests", CFG_BOOL, log_requests, "true"), .help = "a | b"},
    {OPT("shutdown.grace_period", CFG_DURATION_MS, grace_ms, "20s"), .min = 1000, .max = 3600000},
    {OPT("storage.mysql.password", CFG_STRING, password, ""), .flags = CFG_SECRET},
    {OPT("storage.mysql.password_file", CFG_STRING, password_file, "")},
    {OPT("kafka.brokers", CFG_STRING_LIST, brokers, "")},
    {OPT("peers.addresses", CFG_STRING_LIST, peers, "127.0.0.1:8081, 127.0.0.1:8082"), .max = 32},
    {OPT("peers.retry_budget", CFG_DOUBLE, retry_budget, "0.2"), .min = 0, .max = 1},
    {OPT("peers.jitter", CFG_DOUBLE, jitter, "1"), .dmin = 0.5, .dmax = 1.5},
    {OPT("service.name", CFG_STRING, service_name, NULL), .max = 16, .flags = CFG_REQUIRED},
    {OPT("rating.offset", CFG_INT, offset, "-3")},
};

static const struct cfg_schema schema = {
    .program = "test",
    .env_prefix = "TEST",
    .options = options,
    .option_count = sizeof(options) / sizeof(options[0]),
};

static void make_dir(void)
{
	if (mkdir(CFG_TEST_DIR, 0700) != 0 && errno != EEXIST)
		fprintf(stderr, "mkdir %s: %s\n", CFG_TEST_DIR, strerror(errno));
}

/* Write `content` to CFG_TEST_DIR/name; the path goes to `path`. */
static void write_file(const char *name, const char *content, size_t len, char *path,
                       size_t path_size)
{
	snprintf(path, path_size, "%s/%s", CFG_TEST_DIR, name);
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_INT_EQ(fwrite(content, 1, len, f), len);
	fclose(f);
}

/* A writable, NULL-terminated copy of string literals for envp. */
struct envv {
	char *v[8];
	char store[8][600];
};

static char *const *mkenv(struct envv *e, const char *const *src)
{
	size_t i = 0;
	for (; src[i] && i < 7; i++) {
		snprintf(e->store[i], sizeof(e->store[i]), "%s", src[i]);
		e->v[i] = e->store[i];
	}
	e->v[i] = NULL;
	return e->v;
}

static struct envv env_buf;
#define ENV(src) mkenv(&env_buf, (src))

static int apply(struct tconf *c, const char *yaml, struct cfg_error *err)
{
	return cfg_apply_yaml(&schema, c, "t.yaml", yaml, strlen(yaml), err);
}

static void format_err(const struct cfg_error *err, char *line, size_t size)
{
	cfg_error_format(err, line, size);
}

/* Apply `yaml` over defaults; check the code and the formatted error line. */
static void expect_yaml_error(const char *yaml, int rc, const char *line)
{
	struct tconf c = {0};
	struct cfg_error err;
	char got[1024];
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	int r = apply(&c, yaml, &err);
	format_err(&err, got, sizeof(got));
	if (r != rc || strcmp(got, line) != 0)
		fprintf(stderr, "  for YAML: %s\n", yaml);
	CHECK_INT_EQ(r, rc);
	CHECK_STR_EQ(got, line);
	cfg_release(&schema, &c);
}

static void expect_env_error(const char *const *src, int rc, const char *line)
{
	static struct envv e;
	char *const *env = mkenv(&e, src);
	struct tconf c = {0};
	struct cfg_error err;
	char got[1024];
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	CHECK_INT_EQ(cfg_apply_env(&schema, &c, env, &err), rc);
	format_err(&err, got, sizeof(got));
	CHECK_STR_EQ(got, line);
	cfg_release(&schema, &c);
}

static void test_defaults(void)
{
	struct tconf c = {0};
	struct cfg_error err;
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	CHECK_STR_EQ(c.api_host, "0.0.0.0");
	CHECK_INT_EQ(c.api_port, 8081);
	CHECK_INT_EQ(c.max_message_bytes, 4 * 1024 * 1024);
	CHECK_INT_EQ(c.idle_timeout_ms, 300000);
	CHECK_INT_EQ(c.grace_ms, 20000);
	CHECK_STR_EQ(c.log_level, "info");
	CHECK(c.log_requests);
	CHECK_STR_EQ(c.password, "");
	CHECK_INT_EQ(c.brokers.count, 0);
	CHECK_INT_EQ(c.peers.count, 2);
	if (c.peers.count == 2) {
		CHECK_STR_EQ(c.peers.items[0], "127.0.0.1:8081");
		CHECK_STR_EQ(c.peers.items[1], "127.0.0.1:8082");
	}
	CHECK(c.retry_budget == 0.2);
	CHECK(c.jitter == 1.0);
	CHECK(c.service_name == NULL);
	CHECK_INT_EQ(c.offset, -3);
	/* Defaults twice: the first values are freed (LSan checks). */
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	cfg_release(&schema, &c);
	CHECK(c.api_host == NULL);
	CHECK(c.peers.items == NULL && c.peers.count == 0);
}

static void test_layering(void)
{
	char f1[512], f2[512], line[1024];
	const char *base = "api:\n  port: 9000\n  host: 10.0.0.1\nlog:\n  level: debug\n"
	                   "kafka:\n  brokers: [a:1, b:2]\nservice:\n  name: base\n";
	const char *prod = "api.port: 9001\nkafka:\n  brokers:\n    - c:3\n";
	write_file("base.yaml", base, strlen(base), f1, sizeof(f1));
	write_file("prod.yaml", prod, strlen(prod), f2, sizeof(f2));
	const char *files[] = {f1, f2};
	const char *const env[] = {"PATH=/bin",
	                           "TEST_API_WORKERS=4",
	                           "TEST_LOG_LEVEL=warn",
	                           "OTHER_X=1",
	                           "TEST_PEERS_ADDRESSES= x:1 ,y:2",
	                           "TESTING_NOT_OURS=1",
	                           NULL};
	struct tconf c = {0};
	struct cfg_error err;
	int rc = cfg_load(&schema, &c, files, 2, ENV(env), &err);
	cfg_error_format(&err, line, sizeof(line));
	CHECK_STR_EQ(line, "");
	CHECK_INT_EQ(rc, 0);
	CHECK_INT_EQ(c.api_port, 9001);          /* file2 over file1 */
	CHECK_STR_EQ(c.api_host, "10.0.0.1");    /* file1 over default */
	CHECK_INT_EQ(c.api_workers, 4);          /* env over default */
	CHECK_STR_EQ(c.log_level, "warn");       /* env over file1 */
	CHECK_INT_EQ(c.idle_timeout_ms, 300000); /* default kept */
	CHECK_INT_EQ(c.brokers.count, 1);        /* a list is replaced, not merged */
	if (c.brokers.count == 1)
		CHECK_STR_EQ(c.brokers.items[0], "c:3");
	CHECK_INT_EQ(c.peers.count, 2);
	if (c.peers.count == 2) {
		CHECK_STR_EQ(c.peers.items[0], "x:1");
		CHECK_STR_EQ(c.peers.items[1], "y:2");
	}
	CHECK_STR_EQ(c.service_name, "base");
	cfg_release(&schema, &c);

	/* A file that does not exist. */
	const char *missing[] = {CFG_TEST_DIR "/nope.yaml"};
	CHECK_INT_EQ(cfg_load(&schema, &c, missing, 1, NULL, &err), MV_EIO);
	cfg_error_format(&err, line, sizeof(line));
	CHECK_STR_EQ(line, CFG_TEST_DIR "/nope.yaml: cannot read: No such file or directory");
	cfg_release(&schema, &c);
}

static void test_yaml_errors(void)
{
	expect_yaml_error("api:\n  port: 70000\n", MV_ERANGE,
	                  "t.yaml:2:9: api.port: 70000 is out of range 1..65535");
	expect_yaml_error("api:\n  port: 0\n", MV_ERANGE,
	                  "t.yaml:2:9: api.port: 0 is out of range 1..65535");
	expect_yaml_error("api:\n  prot: 1\n", MV_EINVAL,
	                  "t.yaml:2:3: api.prot: unknown key (did you mean api.port?)");
	expect_yaml_error("port: 1\n", MV_EINVAL,
	                  "t.yaml:1:1: port: unknown key (did you mean api.port?)");
	expect_yaml_error("apii:\n  port: 1\n", MV_EINVAL,
	                  "t.yaml:1:1: apii: unknown key (did you mean api?)");
	expect_yaml_error("zzzzzzzz: 1\n", MV_EINVAL, "t.yaml:1:1: zzzzzzzz: unknown key");
	expect_yaml_error("api:\n  port: abc\n", MV_EINVAL,
	                  "t.yaml:2:9: api.port: \"abc\" is not a decimal integer");
	expect_yaml_error("api:\n  port: 1.5\n", MV_EINVAL,
	                  "t.yaml:2:9: api.port: \"1.5\" is not a decimal integer");
	expect_yaml_error("rating:\n  offset: 99999999999999999999\n", MV_ERANGE,
	                  "t.yaml:2:11: rating.offset: \"99999999999999999999\" does not fit in a "
	                  "64-bit integer");
	expect_yaml_error("api:\n  port: 1\n  port: 2\n", MV_EINVAL,
	                  "t.yaml:3:3: api.port: duplicate key (first set at 2:3)");
	expect_yaml_error("api.port: 1\napi:\n  port: 2\n", MV_EINVAL,
	                  "t.yaml:3:3: api.port: duplicate key (first set at 1:1)");
	expect_yaml_error("api:\n  port: 1\napi:\n  host: h\n", MV_EINVAL,
	                  "t.yaml:3:1: api: duplicate key (first at 1:1)");
	expect_yaml_error("api:\n  port: [1]\n", MV_EINVAL,
	                  "t.yaml:2:9: api.port: expected a decimal integer in 1..65535, got a "
	                  "sequence");
	expect_yaml_error("log:\n  level:\n    x: 1\n", MV_EINVAL,
	                  "t.yaml:3:5: log.level: expected one of debug, info, warn, error, got a "
	                  "mapping");
	expect_yaml_error(
	    "api: 5\n", MV_EINVAL,
	    "t.yaml:1:6: api: expected a mapping (a section of options), got a scalar");
	expect_yaml_error(
	    "kafka:\n  brokers: a:1\n", MV_EINVAL,
	    "t.yaml:2:12: kafka.brokers: expected a sequence of strings (e.g. [a, b]), "
	    "got a scalar");
	expect_yaml_error("kafka:\n  brokers:\n    - a\n    - {x: 1}\n", MV_EINVAL,
	                  "t.yaml:4:7: kafka.brokers: item 2: expected a string, got a mapping");
	expect_yaml_error("kafka:\n  brokers: [a, ]\n", 0, "");
	expect_yaml_error("kafka:\n  brokers: [a, '']\n", MV_EINVAL,
	                  "t.yaml:2:16: kafka.brokers: item 2 is empty");
	expect_yaml_error("api:\n  host: &h x\n", MV_EINVAL,
	                  "t.yaml:2:9: api.host: anchors (&name) are not supported");
	expect_yaml_error("api:\n  host: x\nlog:\n  level: *h\n", MV_EINVAL,
	                  "t.yaml:4:10: log.level: aliases (*name) are not supported");
	expect_yaml_error("api:\n  host: !!str x\n", MV_EINVAL,
	                  "t.yaml:2:9: api.host: tags (!tag) are not supported");
	expect_yaml_error("- a\n- b\n", MV_EINVAL,
	                  "t.yaml:1:1: the document must be a mapping of keys, got a sequence");
	expect_yaml_error("hello\n", MV_EINVAL,
	                  "t.yaml:1:1: the document must be a mapping of keys, got a scalar");
	expect_yaml_error("api:\n  port: 1\n---\napi:\n  port: 2\n", MV_EINVAL,
	                  "t.yaml:3:1: only one YAML document is allowed");
	expect_yaml_error("kafka:\n  brokers: [1, 2\n", MV_ESYNTAX,
	                  "t.yaml:3:1: did not find expected ',' or ']' (while parsing a flow "
	                  "sequence at 2:12)");
	expect_yaml_error("api:\n  port: 1\n host: x\n", MV_ESYNTAX,
	                  "t.yaml:3:2: did not find expected key (while parsing a block mapping at "
	                  "1:1)");
	expect_yaml_error("api:\n  host: \"a\xff\"\n", MV_ESYNTAX,
	                  "t.yaml:2:11: invalid leading UTF-8 octet (#xFF)");
	expect_yaml_error("api:\n  host: a\tb: c\n", MV_ESYNTAX,
	                  "t.yaml:2:12: mapping values are not allowed in this context");
	expect_yaml_error("[a: 1]: 2\n", MV_EINVAL,
	                  "t.yaml:1:1: a key must be a string, got a sequence");
	expect_yaml_error("\"\": 1\n", MV_EINVAL, "t.yaml:1:1: empty key");
	expect_yaml_error("log:\n  requests: maybe\n", MV_EINVAL,
	                  "t.yaml:2:13: log.requests: \"maybe\" is not a boolean (true/false, "
	                  "yes/no, on/off)");
	expect_yaml_error("log:\n  level: verbose\n", MV_EINVAL,
	                  "t.yaml:2:10: log.level: \"verbose\" is not one of debug, info, warn, "
	                  "error");
	expect_yaml_error(
	    "log:\n  level:\n", MV_EINVAL,
	    "t.yaml:2:9: log.level: missing value, expected one of the listed values");
	expect_yaml_error("shutdown:\n  grace_period: 2h\n", MV_ERANGE,
	                  "t.yaml:2:17: shutdown.grace_period: 2h is out of range 1s..1h");
	expect_yaml_error("shutdown:\n  grace_period: 5d\n", MV_EINVAL,
	                  "t.yaml:2:17: shutdown.grace_period: \"5d\" has no valid duration unit "
	                  "(expected a duration (250ms, 5s, 2m, 1h; bare number = ms))");
	expect_yaml_error(
	    "api:\n  idle_timeout: -5s\n", MV_EINVAL,
	    "t.yaml:2:17: api.idle_timeout: \"-5s\" is not a duration (250ms, 5s, 2m, "
	    "1h; bare number = ms)");
	expect_yaml_error("api:\n  max_message_bytes: 10KB\n", MV_EINVAL,
	                  "t.yaml:2:22: api.max_message_bytes: \"10KB\" has no valid size unit "
	                  "(expected a size (512KiB, 4MiB, 1GiB, 10B; bare number = bytes))");
	expect_yaml_error("service:\n  name: abcdefghijklmnopq\n", MV_ERANGE,
	                  "t.yaml:2:9: service.name: value is 17 bytes long, longer than 16");
	expect_yaml_error("service:\n  name: \"a\\0b\"\n", MV_EINVAL,
	                  "t.yaml:2:9: service.name: value contains a NUL byte");
	expect_yaml_error("peers:\n  retry_budget: 1.5\n", MV_ERANGE,
	                  "t.yaml:2:17: peers.retry_budget: 1.5 is out of range 0..1");
	expect_yaml_error("peers:\n  jitter: 0.25\n", MV_ERANGE,
	                  "t.yaml:2:11: peers.jitter: 0.25 is out of range 0.5..1.5");
	expect_yaml_error("peers:\n  retry_budget: nan\n", MV_EINVAL,
	                  "t.yaml:2:17: peers.retry_budget: \"nan\" is not a decimal number");
	expect_yaml_error("peers:\n  jitter: 1e400\n", MV_ERANGE,
	                  "t.yaml:2:11: peers.jitter: \"1e400\" is too large");
	expect_yaml_error("peers:\n  addresses: [abcdefghijabcdefghijabcdefghijabc]\n", MV_ERANGE,
	                  "t.yaml:2:15: peers.addresses: item 1: value is 33 bytes long, longer "
	                  "than 32");
}

static void test_yaml_accepts(void)
{
	struct tconf c = {0};
	struct cfg_error err;
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	/* Empty documents in their various spellings. */
	CHECK_INT_EQ(apply(&c, "", &err), 0);
	CHECK_INT_EQ(apply(&c, "---\n", &err), 0);
	CHECK_INT_EQ(apply(&c, "# only a comment\n", &err), 0);
	CHECK_INT_EQ(apply(&c, "~\n", &err), 0);
	CHECK_INT_EQ(apply(&c, "{}\n", &err), 0);
	CHECK_INT_EQ(apply(&c, "kafka:\n# brokers: [x]\n", &err), 0);
	CHECK_INT_EQ(cfg_apply_yaml(&schema, &c, "null-data", NULL, 0, &err), 0);
	CHECK_INT_EQ(c.api_port, 8081);
	/* Quoted numbers, flow mappings, nulls for strings and lists. */
	CHECK_INT_EQ(apply(&c,
	                   "api: {port: \"8080\", host: ~}\nkafka: {brokers: ~}\n"
	                   "log: {requests: Off}\n",
	                   &err),
	             0);
	CHECK_INT_EQ(c.api_port, 8080);
	CHECK_STR_EQ(c.api_host, "");
	CHECK_INT_EQ(c.brokers.count, 0);
	CHECK(!c.log_requests);
	/* A document applied twice over itself frees what it replaces. */
	CHECK_INT_EQ(apply(&c, "kafka:\n  brokers: [a, b, c]\napi:\n  host: x\n", &err), 0);
	CHECK_INT_EQ(apply(&c, "kafka:\n  brokers: [d]\napi:\n  host: y\n", &err), 0);
	CHECK_INT_EQ(c.brokers.count, 1);
	CHECK_STR_EQ(c.api_host, "y");
	/* A failing document leaves the struct releasable. */
	CHECK_INT_EQ(apply(&c, "kafka:\n  brokers: [p, q, {r: 1}]\n", &err), MV_EINVAL);
	CHECK_INT_EQ(c.brokers.count, 1);
	cfg_release(&schema, &c);

	/* The size cap. */
	size_t big = CFG_FILE_MAX + 1;
	char *data = malloc(big);
	CHECK(data != NULL);
	if (data) {
		memset(data, '#', big);
		CHECK_INT_EQ(cfg_apply_yaml(&schema, &c, "big.yaml", data, big, &err), MV_ETOOBIG);
		CHECK_INT_EQ(cfg_apply_yaml(&schema, &c, "big.yaml", data, big - 1, &err), 0);
		char path[512];
		write_file("big.yaml", data, big, path, sizeof(path));
		CHECK_INT_EQ(cfg_apply_file(&schema, &c, path, &err), MV_ETOOBIG);
		free(data);
	}
	cfg_release(&schema, &c);
}

/* Nesting: 15 sections + a list = 16 levels pass, 16 + a list fail. */
struct deep {
	struct cfg_string_list ok, tooDeep;
};

static void test_depth(void)
{
	static const struct cfg_option deep_options[] = {
	    {.key = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o",
	     .type = CFG_STRING_LIST,
	     .offset = offsetof(struct deep, ok)},
	    {.key = "z.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p",
	     .type = CFG_STRING_LIST,
	     .offset = offsetof(struct deep, tooDeep)},
	};
	static const struct cfg_schema deep_schema = {
	    .program = "deep", .env_prefix = "DEEP", .options = deep_options, .option_count = 2};
	struct deep d = {0};
	struct cfg_error err;
	char yaml[1024], line[1024];
	size_t o = 0;
	const char *segs = "abcdefghijklmno";
	for (size_t i = 0; i < 15; i++)
		o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "%*s%c:\n", (int)(2 * i), "",
		                      segs[i]);
	snprintf(yaml + o, sizeof(yaml) - o, "%*s- x\n", 30, "");
	CHECK_INT_EQ(cfg_set_defaults(&deep_schema, &d, &err), 0);
	CHECK_INT_EQ(cfg_apply_yaml(&deep_schema, &d, "d.yaml", yaml, strlen(yaml), &err), 0);
	CHECK_INT_EQ(d.ok.count, 1);

	o = 0;
	const char *zsegs = "zbcdefghijklmnop";
	for (size_t i = 0; i < 16; i++)
		o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "%*s%c:\n", (int)(2 * i), "",
		                      zsegs[i]);
	snprintf(yaml + o, sizeof(yaml) - o, "%*s- x\n", 32, "");
	CHECK_INT_EQ(cfg_apply_yaml(&deep_schema, &d, "d.yaml", yaml, strlen(yaml), &err),
	             MV_EINVAL);
	cfg_error_format(&err, line, sizeof(line));
	CHECK_STR_EQ(line, "d.yaml:17:33: z.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p: nesting deeper than 16 "
	                   "levels");
	cfg_release(&deep_schema, &d);
}

static void test_env(void)
{
	const char *const ok[] = {"TEST_API_PORT=9090",
	                          "TEST_KAFKA_BROKERS=a:1,b:2",
	                          "TEST_LOG_REQUESTS=no",
	                          "TEST_API_MAX_MESSAGE_BYTES=1GiB",
	                          "TEST_PEERS_RETRY_BUDGET=0.75",
	                          "TEST_API_HOST=",
	                          NULL};
	struct tconf c = {0};
	struct cfg_error err;
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	CHECK_INT_EQ(cfg_apply_env(&schema, &c, ENV(ok), &err), 0);
	CHECK_INT_EQ(c.api_port, 9090);
	CHECK_INT_EQ(c.brokers.count, 2);
	CHECK(!c.log_requests);
	CHECK_INT_EQ(c.max_message_bytes, (int64_t)1 << 30);
	CHECK(c.retry_budget == 0.75);
	CHECK_STR_EQ(c.api_host, "");
	cfg_release(&schema, &c);

	/* Kubernetes/Docker service-link variables of a Service named "test" are ignored. */
	const char *const links[] = {"TEST_SERVICE_HOST=10.0.0.1",
	                             "TEST_SERVICE_PORT=8081",
	                             "TEST_SERVICE_PORT_GRPC=8081",
	                             "TEST_PORT=tcp://10.0.0.1:8081",
	                             "TEST_PORT_8081_TCP=tcp://10.0.0.1:8081",
	                             "TEST_PORT_8081_TCP_ADDR=10.0.0.1",
	                             NULL};
	struct tconf l = {0};
	CHECK_INT_EQ(cfg_set_defaults(&schema, &l, &err), 0);
	CHECK_INT_EQ(cfg_apply_env(&schema, &l, ENV(links), &err), 0);
	cfg_release(&schema, &l);
	const char *const not_link[] = {"TEST_PORTS=1", NULL};
	expect_env_error(not_link, MV_EINVAL,
	                 "env TEST_PORTS: unknown variable: no option has this name");

	const char *const unknown[] = {"TEST_API_PROT=1", NULL};
	expect_env_error(unknown, MV_EINVAL,
	                 "env TEST_API_PROT: unknown variable: no option has this name (did you "
	                 "mean TEST_API_PORT?)");
	const char *const far[] = {"TEST_NOTHING_LIKE_IT=1", NULL};
	expect_env_error(far, MV_EINVAL,
	                 "env TEST_NOTHING_LIKE_IT: unknown variable: no option has this name");
	const char *const range[] = {"TEST_API_PORT=70000", NULL};
	expect_env_error(range, MV_ERANGE,
	                 "env TEST_API_PORT: api.port: 70000 is out of range 1..65535");
	const char *const bad_list[] = {"TEST_KAFKA_BROKERS=a,,b", NULL};
	expect_env_error(bad_list, MV_EINVAL,
	                 "env TEST_KAFKA_BROKERS: kafka.brokers: empty item in comma-separated "
	                 "list");
	const char *const space[] = {"TEST_API_PORT= 80", NULL};
	expect_env_error(space, MV_EINVAL,
	                 "env TEST_API_PORT: api.port: \" 80\" is not a decimal integer");
	const char *const lower[] = {"test_api_port=abc", "TEST=1", "TEST_=1", NULL};
	expect_env_error(lower, 0, "");
}

static void test_secrets(void)
{
	char path[512], env_file[600], line[1024];
	struct tconf c = {0};
	struct cfg_error err;
	write_file("pw", "s3cret\r\n", 8, path, sizeof(path));
	snprintf(env_file, sizeof(env_file), "TEST_STORAGE_MYSQL_PASSWORD_FILE=%s", path);
	const char *const env[] = {env_file, "TEST_SERVICE_NAME=svc", NULL};
	CHECK_INT_EQ(cfg_load(&schema, &c, NULL, 0, ENV(env), &err), 0);
	CHECK_STR_EQ(c.password, "s3cret");
	cfg_release(&schema, &c);

	/* Only one trailing newline goes. */
	write_file("pw2", "two\n\n", 5, path, sizeof(path));
	snprintf(env_file, sizeof(env_file), "TEST_STORAGE_MYSQL_PASSWORD_FILE=%s", path);
	CHECK_INT_EQ(cfg_load(&schema, &c, NULL, 0, ENV(env), &err), 0);
	CHECK_STR_EQ(c.password, "two\n");
	cfg_release(&schema, &c);

	/* Both set. */
	const char *const both[] = {env_file, "TEST_SERVICE_NAME=svc",
	                            "TEST_STORAGE_MYSQL_PASSWORD=x", NULL};
	CHECK_INT_EQ(cfg_load(&schema, &c, NULL, 0, ENV(both), &err), MV_EINVAL);
	cfg_error_format(&err, line, sizeof(line));
	CHECK_STR_EQ(line,
	             "env TEST_STORAGE_MYSQL_PASSWORD_FILE: storage.mysql.password_file: both "
	             "storage.mysql.password (set at env TEST_STORAGE_MYSQL_PASSWORD) and "
	             "storage.mysql.password_file are set; use only one");
	cfg_release(&schema, &c);

	/* Unreadable, from YAML: the error points at the YAML value. */
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	CHECK_INT_EQ(apply(&c,
	                   "service: {name: s}\nstorage:\n  mysql:\n    password_file: "
	                   "/nonexistent/pw\n",
	                   &err),
	             0);
	CHECK_INT_EQ(cfg_finish(&schema, &c, &err), MV_EIO);
	cfg_error_format(&err, line, sizeof(line));
	CHECK_STR_EQ(line, "t.yaml:4:20: storage.mysql.password_file: cannot read secret file "
	                   "/nonexistent/pw: No such file or directory");
	cfg_release(&schema, &c);

	/* Too big, and a directory. */
	size_t big = CFG_SECRET_MAX + 1;
	char *data = calloc(1, big);
	CHECK(data != NULL);
	if (data) {
		memset(data, 'p', big);
		write_file("pwbig", data, big, path, sizeof(path));
		snprintf(env_file, sizeof(env_file), "TEST_STORAGE_MYSQL_PASSWORD_FILE=%s", path);
		CHECK_INT_EQ(cfg_load(&schema, &c, NULL, 0, ENV(env), &err), MV_ETOOBIG);
		cfg_release(&schema, &c);
		write_file("pwmax", data, big - 1, path, sizeof(path));
		snprintf(env_file, sizeof(env_file), "TEST_STORAGE_MYSQL_PASSWORD_FILE=%s", path);
		CHECK_INT_EQ(cfg_load(&schema, &c, NULL, 0, ENV(env), &err), 0);
		CHECK_INT_EQ(c.password ? strlen(c.password) : 0, big - 1);
		cfg_release(&schema, &c);
		free(data);
	}
	snprintf(env_file, sizeof(env_file), "TEST_STORAGE_MYSQL_PASSWORD_FILE=%s", CFG_TEST_DIR);
	CHECK_INT_EQ(cfg_load(&schema, &c, NULL, 0, ENV(env), &err), MV_EIO);
	cfg_release(&schema, &c);
	write_file("pwnul", "a\0b", 3, path, sizeof(path));
	snprintf(env_file, sizeof(env_file), "TEST_STORAGE_MYSQL_PASSWORD_FILE=%s", path);
	CHECK_INT_EQ(cfg_load(&schema, &c, NULL, 0, ENV(env), &err), MV_EINVAL);
	cfg_release(&schema, &c);
}

static void test_required(void)
{
	struct tconf c = {0};
	struct cfg_error err;
	char line[1024];
	CHECK_INT_EQ(cfg_load(&schema, &c, NULL, 0, NULL, &err), MV_EINVAL);
	cfg_error_format(&err, line, sizeof(line));
	CHECK_STR_EQ(line, "service.name: required option is not set (set it in a config file or "
	                   "TEST_SERVICE_NAME)");
	cfg_release(&schema, &c);

	/* An explicit empty value counts as set; a default never does. */
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	CHECK_INT_EQ(apply(&c, "service:\n  name: \"\"\n", &err), 0);
	CHECK_INT_EQ(cfg_finish(&schema, &c, &err), 0);
	cfg_release(&schema, &c);

	static const struct cfg_option req_default[] = {
	    {.key = "x", .type = CFG_INT, .offset = 0, .default_value = "5", .flags = CFG_REQUIRED},
	};
	static const struct cfg_schema s2 = {
	    .program = "r", .env_prefix = "R", .options = req_default, .option_count = 1};
	int64_t x = 0;
	CHECK_INT_EQ(cfg_set_defaults(&s2, &x, &err), 0);
	CHECK_INT_EQ(x, 5);
	CHECK_INT_EQ(cfg_finish(&s2, &x, &err), MV_EINVAL);
	const char *const env[] = {"R_X=0", NULL};
	CHECK_INT_EQ(cfg_apply_env(&s2, &x, ENV(env), &err), 0);
	CHECK_INT_EQ(cfg_finish(&s2, &x, &err), 0);
	CHECK_INT_EQ(x, 0);
	cfg_release(&s2, &x);
}

static const char expected_dump[] = "api:\n"
                                    "  host: \"h\\\"q\\\\ \\t caf\xc3\xa9 \\u2028\"\n"
                                    "  port: 9000\n"
                                    "  workers: 0\n"
                                    "  max_message_bytes: 1536KiB\n"
                                    "  idle_timeout: 90s\n"
                                    "log:\n"
                                    "  level: \"info\"\n"
                                    "  requests: true\n"
                                    "shutdown:\n"
                                    "  grace_period: 20s\n"
                                    "storage:\n"
                                    "  mysql:\n"
                                    "    password: \"<redacted>\"\n"
                                    "    password_file: \"\"\n"
                                    "kafka:\n"
                                    "  brokers: []\n"
                                    "peers:\n"
                                    "  addresses:\n"
                                    "    - \"a:1\"\n"
                                    "    - \"b:2\"\n"
                                    "  retry_budget: 0.1\n"
                                    "  jitter: 1\n"
                                    "service:\n"
                                    "  name: \"n\"\n"
                                    "rating:\n"
                                    "  offset: -3\n";

static void test_dump(void)
{
	struct tconf c = {0}, again = {0};
	struct cfg_error err;
	struct buf out, out2;
	buf_init(&out, 0);
	buf_init(&out2, 0);
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	CHECK_INT_EQ(apply(&c,
	                   "api:\n  port: 9000\n  host: \"h\\\"q\\\\ \\t caf\xc3\xa9 \\L\"\n"
	                   "  max_message_bytes: 1572864\n  idle_timeout: 90000\n"
	                   "peers: {addresses: [a:1, b:2], retry_budget: 0.1}\n"
	                   "storage: {mysql: {password: hunter2}}\nservice.name: n\n",
	                   &err),
	             0);
	CHECK_INT_EQ(cfg_dump(&schema, &c, &out), 0);
	CHECK_STR_EQ(out.data, expected_dump);
	CHECK(out.data && strstr(out.data, "hunter2") == NULL);

	/* The dump loads back to the same values (secret aside). */
	CHECK_INT_EQ(cfg_set_defaults(&schema, &again, &err), 0);
	CHECK_INT_EQ(cfg_apply_yaml(&schema, &again, "dump", out.data, out.len, &err), 0);
	CHECK_STR_EQ(again.api_host, c.api_host);
	CHECK_INT_EQ(again.max_message_bytes, c.max_message_bytes);
	CHECK(again.retry_budget == c.retry_budget);
	CHECK_INT_EQ(cfg_dump(&schema, &again, &out2), 0);
	CHECK_STR_EQ(out2.data, out.data);

	/* A string with no value. */
	buf_reset(&out2);
	cfg_release(&schema, &again);
	CHECK_INT_EQ(cfg_set_defaults(&schema, &again, &err), 0);
	CHECK_INT_EQ(cfg_dump(&schema, &again, &out2), 0);
	CHECK(out2.data && strstr(out2.data, "\nservice:\n  name: ~\nrating:\n"));

	/* A cap on the output buffer is honoured. */
	struct buf small;
	buf_init(&small, 16);
	CHECK_INT_EQ(cfg_dump(&schema, &c, &small), MV_ETOOBIG);
	buf_release(&small);

	buf_release(&out);
	buf_release(&out2);
	cfg_release(&schema, &c);
	cfg_release(&schema, &again);
}

static void test_describe(void)
{
	struct buf out;
	buf_init(&out, 0);
	CHECK_INT_EQ(cfg_describe(&schema, &out), 0);
	const char *text = out.data ? out.data : "";
	CHECK(strncmp(text, "| key | type | default | range | env | meaning |\n|---|", 52) == 0);
	CHECK(strstr(text, "| api.port | int | `8081` | 1..65535 | `TEST_API_PORT` | port |\n"));
	CHECK(strstr(text, "| log.level | enum: debug, info, warn, error | `info` |  | "
	                   "`TEST_LOG_LEVEL` |  |\n"));
	CHECK(
	    strstr(text, "| log.requests | bool | `true` |  | `TEST_LOG_REQUESTS` | a \\| b |\n"));
	CHECK(strstr(text, "| shutdown.grace_period | duration | `20s` | 1s..1h |"));
	CHECK(strstr(text, "| storage.mysql.password | secret string | `\"\"` |"));
	CHECK(strstr(text, "| service.name | string | (required) | max 16 bytes | "
	                   "`TEST_SERVICE_NAME` |  |\n"));
	CHECK(strstr(text, "| peers.jitter | double | `1` | 0.5..1.5 |"));
	buf_release(&out);
}

struct parse_case {
	const char *key;
	const char *text;
	int rc;
	int64_t value;
};

static void test_parse_edges(void)
{
	static const struct parse_case cases[] = {
	    {"rating.offset", "0", 0, 0},
	    {"rating.offset", "-0", 0, 0},
	    {"rating.offset", "+7", 0, 7},
	    {"rating.offset", "-9223372036854775808", 0, INT64_MIN},
	    {"rating.offset", "9223372036854775807", 0, INT64_MAX},
	    {"rating.offset", "9223372036854775808", MV_ERANGE, 0},
	    {"rating.offset", "-9223372036854775809", MV_ERANGE, 0},
	    {"rating.offset", "0644", MV_EINVAL, 0},
	    {"rating.offset", "0x10", MV_EINVAL, 0},
	    {"rating.offset", "1_000", MV_EINVAL, 0},
	    {"rating.offset", "", MV_EINVAL, 0},
	    {"rating.offset", "-", MV_EINVAL, 0},
	    {"rating.offset", "12 ", MV_EINVAL, 0},
	    {"api.idle_timeout", "250ms", 0, 250},
	    {"api.idle_timeout", "5s", 0, 5000},
	    {"api.idle_timeout", "2m", 0, 120000},
	    {"api.idle_timeout", "1h", 0, 3600000},
	    {"api.idle_timeout", "42", 0, 42},
	    {"api.idle_timeout", "0", 0, 0},
	    {"api.idle_timeout", "1.5s", MV_EINVAL, 0},
	    {"api.idle_timeout", "5 s", MV_EINVAL, 0},
	    {"api.idle_timeout", "5S", MV_EINVAL, 0},
	    {"api.idle_timeout", "1h30m", MV_EINVAL, 0},
	    {"api.idle_timeout", "s", MV_EINVAL, 0},
	    {"api.idle_timeout", "9223372036854775807ms", 0, INT64_MAX},
	    {"api.idle_timeout", "9223372036854775807s", MV_ERANGE, 0},
	    {"api.max_message_bytes", "512KiB", 0, 512 * 1024},
	    {"api.max_message_bytes", "4MiB", 0, 4 * 1024 * 1024},
	    {"api.max_message_bytes", "1GiB", 0, (int64_t)1 << 30},
	    {"api.max_message_bytes", "10B", 0, 10},
	    {"api.max_message_bytes", "1000", 0, 1000},
	    {"api.max_message_bytes", "10KB", MV_EINVAL, 0},
	    {"api.max_message_bytes", "1kib", MV_EINVAL, 0},
	    {"api.max_message_bytes", "-1", MV_EINVAL, 0},
	    {"api.max_message_bytes", "9007199254740992GiB", MV_ERANGE, 0},
	    {"log.requests", "true", 0, 1},
	    {"log.requests", "TRUE", 0, 1},
	    {"log.requests", "yes", 0, 1},
	    {"log.requests", "on", 0, 1},
	    {"log.requests", "false", 0, 0},
	    {"log.requests", "No", 0, 0},
	    {"log.requests", "off", 0, 0},
	    {"log.requests", "1", MV_EINVAL, 0},
	    {"log.requests", "y", MV_EINVAL, 0},
	};
	char msg[256];
	struct tconf c = {0};
	struct cfg_error err;
	CHECK_INT_EQ(cfg_set_defaults(&schema, &c, &err), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_case *pc = &cases[i];
		char env[128];
		char name[64];
		size_t n = 0;
		for (const char *k = pc->key; *k && n + 1 < sizeof(name); k++)
			name[n++] = *k == '.' ? '_' : (char)(*k >= 'a' && *k <= 'z' ? *k - 32 : *k);
		name[n] = '\0';
		snprintf(env, sizeof(env), "TEST_%s=%s", name, pc->text);
		const char *const envp[] = {env, NULL};
		int rc = cfg_apply_env(&schema, &c, ENV(envp), &err);
		cfg_error_format(&err, msg, sizeof(msg));
		if (rc != pc->rc)
			fprintf(stderr, "  case %s: %s\n", env, msg);
		CHECK_INT_EQ(rc, pc->rc);
		if (rc || pc->rc)
			continue;
		int64_t got = 0;
		if (strcmp(pc->key, "rating.offset") == 0)
			got = c.offset;
		else if (strcmp(pc->key, "api.idle_timeout") == 0)
			got = c.idle_timeout_ms;
		else if (strcmp(pc->key, "api.max_message_bytes") == 0)
			got = c.max_message_bytes;
		else
			got = c.log_requests;
		if (got != pc->value)
			fprintf(stderr, "  case %s\n", env);
		CHECK_INT_EQ(got, pc->value);
	}
	const char *const dbl[] = {"TEST_PEERS_RETRY_BUDGET=1e-1", NULL};
	CHECK_INT_EQ(cfg_apply_env(&schema, &c, ENV(dbl), &err), 0);
	CHECK(c.retry_budget == 0.1);
	static const char *const bad_doubles[] = {"",     ".",  "1.", "0x1p-3", "inf",
	                                          "-nan", " 1", "1e", "--1",    "0.5.5"};
	for (size_t i = 0; i < sizeof(bad_doubles) / sizeof(bad_doubles[0]); i++) {
		char env[64];
		snprintf(env, sizeof(env), "TEST_PEERS_RETRY_BUDGET=%s", bad_doubles[i]);
		const char *const envp[] = {env, NULL};
		int rc = cfg_apply_env(&schema, &c, ENV(envp), &err);
		if (strcmp(bad_doubles[i], "1.") == 0) {
			CHECK_INT_EQ(rc, 0); /* strtod's "1." is a fine 1.0 */
		} else {
			if (rc != MV_EINVAL)
				fprintf(stderr, "  double case %s\n", env);
			CHECK_INT_EQ(rc, MV_EINVAL);
		}
	}
	cfg_release(&schema, &c);
}

static void test_schema_checks(void)
{
	struct cfg_error err;
	char line[512];
	int64_t v[4] = {0};
	static const struct cfg_option dup[] = {
	    {.key = "a.b", .type = CFG_INT, .offset = 0},
	    {.key = "a.b", .type = CFG_INT, .offset = 8},
	};
	static const struct cfg_option prefix[] = {
	    {.key = "a", .type = CFG_INT, .offset = 0},
	    {.key = "a.b", .type = CFG_INT, .offset = 8},
	};
	static const struct cfg_option env_clash[] = {
	    {.key = "a.b", .type = CFG_INT, .offset = 0},
	    {.key = "a_b", .type = CFG_INT, .offset = 8},
	};
	static const struct cfg_option bad_default[] = {
	    {.key = "a", .type = CFG_INT, .offset = 0, .default_value = "x", .min = 1, .max = 2},
	};
	static const struct cfg_option bad_key[] = {
	    {.key = "a..b", .type = CFG_INT, .offset = 0},
	};
	struct {
		const struct cfg_option *options;
		size_t count;
		const char *line;
	} cases[] = {
	    {dup, 2, "schema: a.b: option declared twice"},
	    {prefix, 2, "schema: a: option is also the parent of other options"},
	    {env_clash, 2, "schema: a_b: same environment variable S_A_B as a.b"},
	    {bad_default, 1, "default: a: \"x\" is not a decimal integer"},
	    {bad_key, 1, "schema: a..b: invalid option key"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cfg_schema s = {.program = "s",
		                       .env_prefix = "S",
		                       .options = cases[i].options,
		                       .option_count = cases[i].count};
		CHECK_INT_EQ(cfg_set_defaults(&s, v, &err), MV_EINVAL);
		cfg_error_format(&err, line, sizeof(line));
		CHECK_STR_EQ(line, cases[i].line);
		cfg_release(&s, v);
	}
}

static void test_error_format(void)
{
	struct cfg_error err = {{0}, {0}, {0}};
	char line[64];
	snprintf(err.message, sizeof(err.message), "boom");
	cfg_error_format(&err, line, sizeof(line));
	CHECK_STR_EQ(line, "boom");
	snprintf(err.key, sizeof(err.key), "a.b");
	cfg_error_format(&err, line, sizeof(line));
	CHECK_STR_EQ(line, "a.b: boom");
	snprintf(err.where, sizeof(err.where), "f:1:2");
	cfg_error_format(&err, line, 10);
	CHECK_STR_EQ(line, "f:1:2: a.");
}

/* A schema with a host:port list and a cross-option rule, for the collecting
 * API (issue 12 item 12: every error of a file, the same rules everywhere). */
struct vconf {
	int64_t lo, hi;
	struct cfg_string_list peers;
	char *name;
	char *secret;
	char *secret_file;
};

#define VOPT(k, t, field, def) \
	.key = k, .type = t, .offset = offsetof(struct vconf, field), .default_value = def

static int v_validate(const struct cfg_schema *s, const void *config, struct cfg_errors *errs)
{
	const struct vconf *c = config;
	if (c->lo <= c->hi)
		return 0;
	cfg_errors_add(errs, MV_EINVAL, cfg_origin(s, config, "range.lo"), "range.lo",
	               "greater than range.hi");
	return MV_EINVAL;
}

static const struct cfg_option voptions[] = {
    {VOPT("range.lo", CFG_INT, lo, "1"), .min = -100, .max = 100},
    {VOPT("range.hi", CFG_INT, hi, "5"), .min = -100, .max = 100},
    {VOPT("peers", CFG_STRING_LIST, peers, "127.0.0.1:1"), .check = cfg_check_host_port},
    {VOPT("name", CFG_STRING, name, "x"), .max = 8},
    {VOPT("secret", CFG_STRING, secret, ""), .flags = CFG_SECRET},
    {VOPT("secret_file", CFG_STRING, secret_file, "")},
};

static const struct cfg_schema vschema = {
    .program = "v",
    .env_prefix = "V",
    .options = voptions,
    .option_count = sizeof(voptions) / sizeof(voptions[0]),
    .config_size = sizeof(struct vconf),
    .validate = v_validate,
};

/* The errors of `errs` as "where|key|message" lines, for comparisons. */
static void errors_text(const struct cfg_errors *errs, char *out, size_t out_size)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < errs->count && o < out_size; i++) {
		int n = snprintf(out + o, out_size - o, "%s|%s|%s\n", errs->items[i].where,
		                 errs->items[i].key, errs->items[i].message);
		if (n < 0)
			break;
		o += (size_t)n;
	}
}

static void test_collects_every_error(void)
{
	struct vconf c = {0};
	struct cfg_errors *errs = malloc(sizeof(*errs));
	char text[8192];
	CHECK(errs != NULL);
	if (!errs)
		return;
	cfg_errors_init(errs);
	CHECK_INT_EQ(cfg_set_defaults(&vschema, &c, NULL), 0);
	const char *yaml = "range:\n"
	                   "  lo: 1000\n"          /* out of range */
	                   "  typo: {a: [1, 2]}\n" /* unknown, subtree skipped */
	                   "  hi: x\n"             /* not an integer */
	                   "peers: [\"ok:1\", \"nohost\", {a: 1}, \"h:0\"]\n"
	                   "name: [1]\n" /* a sequence for a string */
	                   "range:\n"    /* duplicate section */
	                   "  lo: 2\n"
	                   "name2: 1\n";
	struct cfg_source src = {.name = "f.yaml", .data = yaml, .len = strlen(yaml)};
	CHECK_INT_EQ(cfg_apply_source(&vschema, &c, &src, errs), MV_ERANGE);
	errors_text(errs, text, sizeof(text));
	fprintf(stderr, "%s", text);
	CHECK_INT_EQ(errs->count, 9);
	CHECK(strstr(text, "f.yaml:2:7|range.lo|") != NULL);
	CHECK(strstr(text, "f.yaml:3:3|range.typo|unknown key") != NULL);
	CHECK(strstr(text, "f.yaml:4:7|range.hi|") != NULL);
	CHECK(strstr(text, "f.yaml:5:17|peers|item 2: \"nohost\": missing :port") != NULL);
	CHECK(strstr(text, "f.yaml:5:27|peers|item 3: expected a string, got a mapping") != NULL);
	CHECK(strstr(text, "f.yaml:5:35|peers|item 4: \"h:0\": the port must be") != NULL);
	CHECK(strstr(text, "f.yaml:6:7|name|expected") != NULL);
	CHECK(strstr(text, "f.yaml:7:1|range|duplicate key (first at 1:1)") != NULL);
	/* The walk goes on after the duplicate section. */
	CHECK(strstr(text, "f.yaml:9:1|name2|unknown key (did you mean name?)") != NULL);
	/* Refused values leave the earlier ones in place. */
	CHECK_INT_EQ(c.lo, 1);
	CHECK_INT_EQ(c.hi, 5);
	CHECK_INT_EQ(c.peers.count, 1);
	CHECK_STR_EQ(c.name, "x");
	CHECK_INT_EQ(errs->first_rc, MV_ERANGE);
	cfg_release(&vschema, &c);
	free(errs);
}

static void test_source_offsets(void)
{
	struct vconf c = {0};
	struct cfg_errors *errs = malloc(sizeof(*errs));
	char text[4096];
	CHECK(errs != NULL);
	if (!errs)
		return;
	cfg_errors_init(errs);
	CHECK_INT_EQ(cfg_set_defaults(&vschema, &c, NULL), 0);
	/* A ConfigMap value whose first line is line 11 of the manifest, indented 4. */
	const char *yaml = "range:\n  lo: 9\n  hi: 7\nrange:\n  x: [1\n";
	struct cfg_source src = {.name = "m.yaml",
	                         .data = yaml,
	                         .len = strlen(yaml),
	                         .line_offset = 10,
	                         .column_offset = 4};
	CHECK(cfg_apply_source(&vschema, &c, &src, errs) != 0);
	errors_text(errs, text, sizeof(text));
	fprintf(stderr, "%s", text);
	/* The syntax error ends the document; what came before still counts. */
	CHECK(strstr(text, "m.yaml:14:5|range|duplicate key (first at 11:5)") != NULL);
	CHECK(strstr(text, "m.yaml:1") != NULL);
	CHECK_STR_EQ(cfg_origin(&vschema, &c, "range.lo"), "m.yaml:12:11");
	CHECK(cfg_origin(&vschema, &c, "name") == NULL);
	CHECK(cfg_origin(&vschema, &c, "nope") == NULL);
	/* The cross-option rule, placed where range.lo was written. */
	cfg_errors_init(errs);
	CHECK_INT_EQ(cfg_check_all(&vschema, &c, errs), MV_EINVAL);
	CHECK_INT_EQ(errs->count, 1);
	CHECK_STR_EQ(errs->items[0].where, "m.yaml:12:11");
	CHECK_STR_EQ(errs->items[0].key, "range.lo");
	const int64_t *lo = cfg_get(&vschema, &c, "range.lo", CFG_INT);
	CHECK(lo != NULL && *lo == 9);
	CHECK(cfg_get(&vschema, &c, "range.lo", CFG_STRING) == NULL);
	CHECK(cfg_get(&vschema, &c, "range", CFG_INT) == NULL);
	cfg_release(&vschema, &c);
	free(errs);
}

static void test_load_all(void)
{
	char a[512], b[512], secret[512];
	struct vconf c = {0};
	struct cfg_errors *errs = malloc(sizeof(*errs));
	CHECK(errs != NULL);
	if (!errs)
		return;
	make_dir();
	const char *va = "range:\n  lo: 4\n  bogus: 1\n";
	const char *vb = "range:\n  hi: 3\nname: waytoolongname\n";
	write_file("va.yaml", va, strlen(va), a, sizeof(a));
	write_file("vb.yaml", vb, strlen(vb), b, sizeof(b));
	write_file("vsecret", "pw\n", 3, secret, sizeof(secret));
	const char *files[] = {a, "/nonexistent/v.yaml", b};
	char env_secret[600];
	snprintf(env_secret, sizeof(env_secret), "V_SECRET_FILE=%s", secret);
	char e1[] = "V_PEERS=h:1,[zz]:2", e2[] = "V_NAMEX=1", e3[] = "V_SECRET=inline";
	char *envp[] = {e1, e2, e3, env_secret, NULL};
	cfg_errors_init(errs);
	CHECK(cfg_load_all(&vschema, &c, files, 3, envp, errs) != 0);
	char text[8192];
	errors_text(errs, text, sizeof(text));
	fprintf(stderr, "%s", text);
	CHECK(strstr(text, ":3:3|range.bogus|unknown key") != NULL);
	CHECK(strstr(text, "/nonexistent/v.yaml||cannot read") != NULL);
	CHECK(strstr(text, "vb.yaml:3:7|name|") != NULL);
	CHECK(strstr(text, "env V_PEERS|peers|item 2: \"[zz]:2\": not an IPv6 address") != NULL);
	CHECK(strstr(text, "env V_NAMEX||unknown variable") != NULL);
	CHECK(strstr(text, "|secret_file|both secret") != NULL);
	CHECK(strstr(text, "vb.yaml:2:7") == NULL); /* hi is fine... */
	CHECK(strstr(text, "va.yaml:2:7|range.lo|greater than range.hi") != NULL); /* ...lo > hi */
	CHECK_INT_EQ(errs->count, 7);
	cfg_release(&vschema, &c);

	/* The single-error API reports the first of them. */
	struct cfg_error err;
	CHECK_INT_EQ(cfg_load(&vschema, &c, files, 3, envp, &err), MV_EINVAL);
	CHECK_STR_EQ(err.key, "range.bogus");
	cfg_release(&vschema, &c);

	/* Bounded: 200 unknown keys keep CFG_ERRORS_MAX and count the rest. */
	char big[4096];
	size_t o = 0;
	for (int i = 0; i < 200; i++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "k%d: 1\n", i);
	cfg_errors_init(errs);
	CHECK_INT_EQ(cfg_set_defaults(&vschema, &c, NULL), 0);
	struct cfg_source src = {.name = "big", .data = big, .len = o};
	CHECK_INT_EQ(cfg_apply_source(&vschema, &c, &src, errs), MV_EINVAL);
	CHECK_INT_EQ(errs->count, CFG_ERRORS_MAX);
	CHECK_INT_EQ(errs->dropped, 200 - CFG_ERRORS_MAX);
	cfg_release(&vschema, &c);
	free(errs);
}

static void test_env_known(void)
{
	CHECK(cfg_env_known(&vschema, "V_RANGE_LO"));
	CHECK(cfg_env_known(&vschema, "V_SECRET_FILE"));
	CHECK(cfg_env_known(&vschema, "V_SERVICE_HOST")); /* a service link, ignored */
	CHECK(cfg_env_known(&vschema, "V_PORT_1_TCP"));
	CHECK(!cfg_env_known(&vschema, "V_RANGE_LOW"));
	CHECK(!cfg_env_known(&vschema, "V_"));
	CHECK(!cfg_env_known(&vschema, "W_RANGE_LO"));
	CHECK(!cfg_env_known(&vschema, "VRANGE_LO"));
}

static void test_host_port(void)
{
	static const char *const good_addrs[] = {
	    "a:1",           "metadata-headless:8081", "10.0.0.1:65535",
	    "[::1]:8081",    "[fe80::1%eth0]:1",       "x.y.svc.cluster.local:80",
	    "under_score:2",
	};
	static const char *const bad_addrs[] = {
	    "",      ":99999",    "host:0", "[a:1]",  "127.0.0.1:99999", "nohost", "[::1",
	    "[::1]", "[::1]8081", "[]:1",   "a:b:80", "h:80x",           "h:",     "h:123456",
	    "h o:1", "h:-1",      "h:+1",
	};
	char msg[256], long_addr[300];
	/* 250 + ":8081" fits the client's 256 bytes; one more does not. */
	memset(long_addr, 'h', 250);
	memcpy(long_addr + 250, ":8081", 6);
	CHECK_INT_EQ(cfg_check_host_port(long_addr, 255, msg, sizeof(msg)), 0);
	memset(long_addr, 'h', 251);
	memcpy(long_addr + 251, ":8081", 6);
	CHECK_INT_EQ(cfg_check_host_port(long_addr, 256, msg, sizeof(msg)), MV_EINVAL);
	for (size_t i = 0; i < sizeof(good_addrs) / sizeof(good_addrs[0]); i++) {
		int rc =
		    cfg_check_host_port(good_addrs[i], strlen(good_addrs[i]), msg, sizeof(msg));
		if (rc)
			fprintf(stderr, "%s: %s\n", good_addrs[i], msg);
		CHECK_INT_EQ(rc, 0);
	}
	for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
		msg[0] = '\0';
		CHECK_INT_EQ(
		    cfg_check_host_port(bad_addrs[i], strlen(bad_addrs[i]), msg, sizeof(msg)),
		    MV_EINVAL);
		CHECK(msg[0] != '\0');
	}
}

int main(void)
{
	make_dir();
	RUN(test_defaults);
	RUN(test_layering);
	RUN(test_yaml_errors);
	RUN(test_yaml_accepts);
	RUN(test_depth);
	RUN(test_env);
	RUN(test_secrets);
	RUN(test_required);
	RUN(test_dump);
	RUN(test_describe);
	RUN(test_parse_edges);
	RUN(test_schema_checks);
	RUN(test_error_format);
	RUN(test_collects_every_error);
	RUN(test_source_offsets);
	RUN(test_load_all);
	RUN(test_host_port);
	RUN(test_env_known);
	return TEST_SUMMARY();
}
