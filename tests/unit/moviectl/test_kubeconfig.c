/* Unit tests of kubeconfig.c: kubectl's loading and merging rules, relative
 * paths, base64 data, in-cluster configuration and exec credential plugins
 * (small shell scripts written by the test). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../testing.h"
#include "kube.h"

#include "movie/err.h"

static char dir[256];

static void write_file(const char *name, const char *text, int mode)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
	chmod(p, (mode_t)mode);
}

static const char *path(const char *name)
{
	static char p[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
	return p[k];
}

/* "-----BEGIN TEST-----\n" in base64. */
#define PEM_B64 "LS0tLS1CRUdJTiBURVNULS0tLS0K"

static const char *config_a = "apiVersion: v1\n"
                              "kind: Config\n"
                              "current-context: prod\n"
                              "clusters:\n"
                              "- name: c1\n"
                              "  cluster:\n"
                              "    server: https://10.0.0.1:6443/\n"
                              "    certificate-authority: certs/ca.crt\n"
                              "    tls-server-name: kubernetes\n"
                              "users:\n"
                              "- name: u1\n"
                              "  user:\n"
                              "    client-certificate-data: " PEM_B64 "\n"
                              "    client-key: /abs/key.pem\n"
                              "    token: static-token\n"
                              "    tokenFile: tok\n"
                              "contexts:\n"
                              "- name: prod\n"
                              "  context: {cluster: c1, user: u1, namespace: prod}\n";

/* A later file: its c1 is discarded whole, its current-context ignored. */
static const char *config_b = "apiVersion: v1\n"
                              "kind: Config\n"
                              "current-context: dev\n"
                              "clusters:\n"
                              "- name: c1\n"
                              "  cluster: {server: https://evil.example:1}\n"
                              "- name: c2\n"
                              "  cluster:\n"
                              "    server: http://127.0.0.1:8080\n"
                              "    insecure-skip-tls-verify: true\n"
                              "    proxy-url: socks5://127.0.0.1:1080\n"
                              "    certificate-authority-data: " PEM_B64 "\n"
                              "users:\n"
                              "- name: u2\n"
                              "  user:\n"
                              "    exec:\n"
                              "      apiVersion: client.authentication.k8s.io/v1\n"
                              "      command: ./plugin.sh\n"
                              "      args: [get-token, --cluster, c2]\n"
                              "      env: [{name: PLUGIN_MODE, value: ok}]\n"
                              "      interactiveMode: Never\n"
                              "      provideClusterInfo: true\n"
                              "contexts:\n"
                              "- name: dev\n"
                              "  context: {cluster: c2, user: u2}\n";

static void test_merge_first_wins_and_relative_paths(void)
{
	write_file("a.yaml", config_a, 0600);
	write_file("b.yaml", config_b, 0600);
	char list[1100];
	snprintf(list, sizeof(list), "%s:%s:%s", path("a.yaml"), path("missing.yaml"),
	         path("b.yaml"));
	struct kube_config_opts o = {.env_kubeconfig = list, .home = "/nonexistent"};
	struct kube_config c;
	char err[512] = "";
	CHECK_INT_EQ(kube_config_load(&o, &c, err, sizeof(err)), 0);
	CHECK_STR_EQ(c.context, "prod");
	CHECK_STR_EQ(c.server, "https://10.0.0.1:6443");
	CHECK_STR_EQ(c.namespace, "prod");
	CHECK_STR_EQ(c.ca_file, path("certs/ca.crt"));
	CHECK_STR_EQ(c.token_file, path("tok"));
	CHECK_STR_EQ(c.key_file, "/abs/key.pem");
	CHECK_STR_EQ(c.tls_server_name, "kubernetes");
	CHECK_STR_EQ(c.token, "static-token");
	CHECK_STR_EQ(c.cert_data.data, "-----BEGIN TEST-----\n");
	CHECK(!c.insecure);
	kube_config_release(&c);

	/* --context picks the second file's context; -n wins over it. */
	o.context = "dev";
	o.namespace = "canary";
	CHECK_INT_EQ(kube_config_load(&o, &c, err, sizeof(err)), 0);
	CHECK_STR_EQ(c.server, "http://127.0.0.1:8080");
	CHECK_STR_EQ(c.namespace, "canary");
	CHECK(c.insecure);
	CHECK_STR_EQ(c.proxy_url, "socks5://127.0.0.1:1080");
	CHECK_STR_EQ(c.ca_data.data, "-----BEGIN TEST-----\n");
	CHECK(c.exec != NULL);
	if (c.exec) {
		CHECK_STR_EQ(c.exec->command, path("plugin.sh"));
		CHECK_STR_EQ(c.exec->argv[1], "get-token");
		CHECK_STR_EQ(c.exec->argv[3], "c2");
		CHECK(c.exec->argv[4] == NULL);
		CHECK_STR_EQ(c.exec->env[0], "PLUGIN_MODE=ok");
		CHECK(c.exec->provide_cluster_info);
	}
	kube_config_release(&c);
	/* No namespace anywhere: "default". */
	o.namespace = NULL;
	CHECK_INT_EQ(kube_config_load(&o, &c, err, sizeof(err)), 0);
	CHECK_STR_EQ(c.namespace, "default");
	kube_config_release(&c);

	o.context = "nope";
	CHECK_INT_EQ(kube_config_load(&o, &c, err, sizeof(err)), MV_ENOTFOUND);
	CHECK(strstr(err, "context \"nope\" does not exist") != NULL);
	kube_config_release(&c);
}

static void test_explicit_file_and_home(void)
{
	struct kube_config c;
	char err[512] = "";
	/* --kubeconfig must exist and is the only file read. */
	struct kube_config_opts o = {
	    .kubeconfig = path("absent.yaml"), .env_kubeconfig = "", .home = dir};
	CHECK_INT_EQ(kube_config_load(&o, &c, err, sizeof(err)), MV_EIO);
	kube_config_release(&c);
	o.kubeconfig = path("b.yaml");
	CHECK_INT_EQ(kube_config_load(&o, &c, err, sizeof(err)), 0);
	CHECK_STR_EQ(c.context, "dev");
	kube_config_release(&c);
	/* ~/.kube/config when KUBECONFIG is unset. */
	mkdir(path(".kube"), 0700);
	write_file(".kube/config", config_a, 0600);
	struct kube_config_opts h = {.env_kubeconfig = "", .home = dir};
	CHECK_INT_EQ(kube_config_load(&h, &c, err, sizeof(err)), 0);
	CHECK_STR_EQ(c.ca_file, path(".kube/certs/ca.crt"));
	kube_config_release(&c);
}

static void test_bad_configs(void)
{
	const char *bad[] = {
	    "clusters: 3\n",
	    "clusters:\n- cluster: {server: https://x}\n", /* no name */
	    "current-context: x\ncontexts:\n- name: x\n  context: {cluster: none}\n",
	    "current-context: x\nclusters:\n- name: c\n  cluster: {server: ftp://x}\n"
	    "contexts:\n- name: x\n  context: {cluster: c}\n",
	    "current-context: x\nclusters:\n- name: c\n  cluster: {server: https://x, "
	    "certificate-authority-data: '!!notbase64'}\ncontexts:\n- name: x\n  context: "
	    "{cluster: c}\n",
	    "current-context: x\nclusters:\n- name: c\n  cluster: {server: https://x}\n"
	    "users:\n- name: u\n  user: {exec: {command: x}}\n"
	    "contexts:\n- name: x\n  context: {cluster: c, user: u}\n", /* exec without apiVersion */
	    "a: [unclosed\n",
	    "- 1\n- 2\n",
	    "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file("bad.yaml", bad[i], 0600);
		struct kube_config_opts o = {.kubeconfig = path("bad.yaml")};
		struct kube_config c;
		char err[512] = "";
		int rc = kube_config_load(&o, &c, err, sizeof(err));
		CHECK(rc < 0);
		CHECK(err[0] != '\0');
		if (rc >= 0 || !err[0])
			fprintf(stderr, "  bad config %zu: rc %d err '%s'\n", i, rc, err);
		kube_config_release(&c);
	}
}

static void test_in_cluster(void)
{
	mkdir(path("sa"), 0700);
	write_file("sa/token", "sa-token\n", 0600);
	write_file("sa/ca.crt", "-----BEGIN CERTIFICATE-----\n", 0600);
	write_file("sa/namespace", "prod\n", 0600);
	struct kube_config_opts o = {
	    .env_kubeconfig = "", .home = "/nonexistent", .sa_dir = path("sa")};
	struct kube_config c;
	char err[512] = "";
	unsetenv("KUBERNETES_SERVICE_HOST");
	CHECK_INT_EQ(kube_config_load(&o, &c, err, sizeof(err)), MV_ENOTFOUND);
	kube_config_release(&c);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	unsetenv("POD_NAMESPACE");
	CHECK_INT_EQ(kube_config_load(&o, &c, err, sizeof(err)), 0);
	CHECK_STR_EQ(c.server, "https://[fd00::1]:443");
	CHECK_STR_EQ(c.token_file, path("sa/token"));
	CHECK_STR_EQ(c.ca_file, path("sa/ca.crt"));
	CHECK_STR_EQ(c.namespace, "prod");
	CHECK_STR_EQ(c.context, "in-cluster");
	kube_config_release(&c);
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("POD_NAMESPACE", "staging", 1);
	CHECK_INT_EQ(kube_config_load(&o, &c, err, sizeof(err)), 0);
	CHECK_STR_EQ(c.server, "https://10.96.0.1:443");
	CHECK_STR_EQ(c.namespace, "staging");
	kube_config_release(&c);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	unsetenv("POD_NAMESPACE");
}

static struct kube_exec_config plugin(const char *script, char **argv, char **env)
{
	write_file("plugin.sh", script, 0700);
	static char api_version[] = "client.authentication.k8s.io/v1";
	struct kube_exec_config e = {
	    .api_version = api_version,
	    .command = (char *)(uintptr_t)path("plugin.sh"),
	    .argv = argv,
	    .env = env,
	    .provide_cluster_info = 1,
	};
	argv[0] = e.command;
	return e;
}

static void test_exec_plugin(void)
{
	static char arg1[] = "get-token", env1[] = "PLUGIN_MODE=ok", nowhere[] = "/nonexistent/p";
	char *argv[] = {NULL, arg1, NULL};
	char *env[] = {env1, NULL};
	/* The plugin checks what the protocol says it gets. */
	struct kube_exec_config e = plugin(
	    "#!/bin/sh\n"
	    "[ \"$1\" = get-token ] || exit 3\n"
	    "[ \"$PLUGIN_MODE\" = ok ] || exit 4\n"
	    "case \"$KUBERNETES_EXEC_INFO\" in\n"
	    "  *'\"kind\":\"ExecCredential\"'*'\"interactive\":false'*) ;;\n"
	    "  *) exit 5 ;;\n"
	    "esac\n"
	    "case \"$KUBERNETES_EXEC_INFO\" in *'https://k.example:6443'*) ;; *) exit 6 ;; esac\n"
	    "read -r x && exit 7\n" /* stdin is /dev/null */
	    "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
	    "\"status\":{\"token\":\"tok-from-plugin\",\"expirationTimestamp\":"
	    "\"2030-01-01T00:00:00Z\"}}'\n",
	    argv, env);
	struct kube_exec_cred cred;
	char err[512] = "";
	CHECK_INT_EQ(kube_exec_run(&e, "https://k.example:6443", 10000, &cred, err, sizeof(err)),
	             0);
	if (err[0])
		fprintf(stderr, "  %s\n", err);
	CHECK_STR_EQ(cred.token, "tok-from-plugin");
	CHECK_INT_EQ(cred.expires, 1893456000);
	kube_exec_cred_release(&cred);

	e = plugin("#!/bin/sh\necho nope >&2\nexit 9\n", argv, env);
	CHECK_INT_EQ(kube_exec_run(&e, NULL, 10000, &cred, err, sizeof(err)), MV_EIO);
	CHECK(strstr(err, "exit status 9") != NULL);

	/* Bounded run time: a hanging plugin is killed. */
	e = plugin("#!/bin/sh\nexec sleep 30\n", argv, env);
	CHECK_INT_EQ(kube_exec_run(&e, NULL, 300, &cred, err, sizeof(err)), MV_ETIMEDOUT);

	/* Bounded output. */
	e = plugin("#!/bin/sh\nhead -c 3000000 /dev/zero | tr '\\0' x\n", argv, env);
	CHECK_INT_EQ(kube_exec_run(&e, NULL, 10000, &cred, err, sizeof(err)), MV_ETOOBIG);

	e = plugin("#!/bin/sh\necho '{\"kind\":\"ExecCredential\"}'\n", argv, env);
	CHECK_INT_EQ(kube_exec_run(&e, NULL, 10000, &cred, err, sizeof(err)), MV_EPROTO);

	struct kube_exec_config missing = e;
	missing.command = nowhere;
	CHECK_INT_EQ(kube_exec_run(&missing, NULL, 10000, &cred, err, sizeof(err)), MV_EIO);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/moviectl-kubeconfig-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	RUN(test_merge_first_wins_and_relative_paths);
	RUN(test_explicit_file_and_home);
	RUN(test_bad_configs);
	RUN(test_in_cluster);
	RUN(test_exec_plugin);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return TEST_SUMMARY();
}
