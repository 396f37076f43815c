/*
 * The toolbox process API of the client library (dt_process.h) against a
 * scripted HTTP peer on 127.0.0.1: request shapes (paths, bodies, the
 * plain-text logs header), answer parsing (sessions with running and
 * finished commands, null lists, exec results), status mapping (404
 * ENOENT, 410 EPIPE, 409 "not started" EHOSTDOWN), logs past a skipped
 * prefix, and the stream-marker demultiplexer cut at every byte.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dt_internal.h"
#include "dt_process.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond);          \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

/* ---- the peer: one request per connection, answers from a script ---- */

struct exchange {
	char request[8192]; /* head and body as received */
	int status;
	const char *body;
};

static struct exchange g_ex;
static int g_listen_fd = -1, g_port;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static void answer(int status, const char *body)
{
	pthread_mutex_lock(&g_lock);
	g_ex.status = status;
	g_ex.body = body;
	g_ex.request[0] = '\0';
	pthread_mutex_unlock(&g_lock);
}

static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(g_listen_fd, NULL, NULL);
		char buf[8192], head[512];
		size_t got = 0;
		const char *end, *cl;
		size_t want = 0;
		int status;
		const char *body;

		if (fd < 0)
			return NULL;
		for (;;) {
			ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);

			if (n <= 0)
				break;
			got += (size_t)n;
			buf[got] = '\0';
			end = strstr(buf, "\r\n\r\n");
			if (!end)
				continue;
			cl = strcasestr(buf, "content-length:");
			want = (size_t)(end + 4 - buf) +
			       (cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0);
			if (got >= want)
				break;
		}
		buf[got] = '\0';
		pthread_mutex_lock(&g_lock);
		snprintf(g_ex.request, sizeof(g_ex.request), "%s", buf);
		status = g_ex.status;
		body = g_ex.body ? g_ex.body : "";
		pthread_mutex_unlock(&g_lock);
		snprintf(head, sizeof(head),
			 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
			 "%zu\r\nConnection: close\r\n\r\n",
			 status, strlen(body));
		if (write(fd, head, strlen(head)) < 0 || write(fd, body, strlen(body)) < 0)
			perror("write");
		close(fd);
	}
}

static void last_request(char *out, size_t size)
{
	pthread_mutex_lock(&g_lock);
	snprintf(out, size, "%s", g_ex.request);
	pthread_mutex_unlock(&g_lock);
}

static int start_peer(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	pthread_t t;

	g_listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (g_listen_fd < 0 || bind(g_listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(g_listen_fd, 16) < 0 || getsockname(g_listen_fd, (struct sockaddr *)&a, &len))
		return -1;
	g_port = ntohs(a.sin_port);
	return pthread_create(&t, NULL, serve, NULL);
}

/* ---- the tests ---- */

struct pieces {
	char out[256], err[256];
	size_t nout, nerr;
};

static void collect(void *arg, int stream, const char *data, size_t len)
{
	struct pieces *p = arg;
	char *dst = stream == 2 ? p->err : p->out;
	size_t *n = stream == 2 ? &p->nerr : &p->nout;

	memcpy(dst + *n, data, len);
	*n += len;
}

static void test_demux(void)
{
	static const char stream[] = "plain\1\1\1out1\2\2\2err1\1\1out\1\1\1 2\2\2\2\2\2\2e\1";
	const size_t len = sizeof(stream) - 1;

	/* Every cut into two and three pieces gives the same split. */
	for (size_t a = 0; a <= len; a++) {
		for (size_t b = a; b <= len; b++) {
			struct dt_log_demux d = {0};
			struct pieces p = {0};

			dt_log_demux_feed(&d, stream, a, collect, &p);
			dt_log_demux_feed(&d, stream + a, b - a, collect, &p);
			dt_log_demux_feed(&d, stream + b, len - b, collect, &p);
			dt_log_demux_end(&d, collect, &p);
			/* "\1\1out" is no marker: bytes of stderr, the stream then. */
			CHECK(p.nout == 11 && !memcmp(p.out, "plainout1 2", 11),
			      "stdout at cuts %zu,%zu: %.*s", a, b, (int)p.nout, p.out);
			CHECK(p.nerr == 11 && !memcmp(p.err, "err1\1\1oute\1", 11),
			      "stderr at cuts %zu,%zu: %zu [%.*s]", a, b, p.nerr, (int)p.nerr,
			      p.err);
		}
	}
}

static int append(void *arg, const char *data, size_t len)
{
	struct buf *b = arg;

	return buf_append(b, data, len) ? -ENOMEM : 0;
}

static void test_sessions(struct dt_toolbox *tb)
{
	struct dt_session_exec_result res = {0};
	struct dt_session_list list = {0};
	struct dt_session s = {0};
	struct dt_session_command c = {0};
	struct dt_error err = {0};
	struct buf logs = BUF_INIT;
	char req[8192];
	int64_t total = 0;
	int rc;

	answer(201, "");
	rc = dt_session_create(tb, "my session", &err);
	last_request(req, sizeof(req));
	CHECK(rc == 0, "create: %s", err.message);
	CHECK(strstr(req, "POST /toolbox/sb1/process/session HTTP") &&
		  strstr(req, "{\"sessionId\":\"my session\"}"),
	      "create request: %s", req);

	answer(202, "{\"cmdId\":\"c-1\"}");
	rc = dt_session_exec(tb, "my session", "echo hi", true, &res, &err);
	last_request(req, sizeof(req));
	CHECK(rc == 0 && res.cmd_id && !strcmp(res.cmd_id, "c-1") && !res.has_exit, "exec: %s",
	      err.message);
	CHECK(strstr(req, "POST /toolbox/sb1/process/session/my%20session/exec HTTP") &&
		  strstr(req, "\"command\":\"echo hi\"") && strstr(req, "\"runAsync\":true"),
	      "exec request: %s", req);
	dt_session_exec_result_clear(&res);

	answer(200, "{\"cmdId\":\"c-2\",\"output\":\"x\",\"stdout\":\"x\",\"stderr\":\"\","
		    "\"exitCode\":3}");
	rc = dt_session_exec(tb, "s", "exit 3", false, &res, &err);
	CHECK(rc == 0 && res.has_exit && res.exit_code == 3 && !strcmp(res.out, "x"), "sync exec");
	dt_session_exec_result_clear(&res);

	answer(200,
	       "[{\"sessionId\":\"a\",\"commands\":[{\"id\":\"x\",\"command\":\"ls\","
	       "\"exitCode\":0},{\"id\":\"y\",\"command\":\"sleep 9\"},{\"command\":\"no id\"}]},"
	       "{\"sessionId\":\"b\",\"commands\":null},{\"nothing\":1}]");
	rc = dt_session_list(tb, &list, &err);
	CHECK(rc == 0 && list.count == 2, "list: %d %zu %s", rc, list.count, err.message);
	if (rc == 0 && list.count == 2) {
		CHECK(!strcmp(list.items[0].id, "a") && list.items[0].ncommands == 2, "list a");
		CHECK(list.items[0].commands[0].has_exit &&
			  list.items[0].commands[0].exit_code == 0,
		      "finished command");
		CHECK(!list.items[0].commands[1].has_exit &&
			  !strcmp(list.items[0].commands[1].command, "sleep 9"),
		      "running command");
		CHECK(!strcmp(list.items[1].id, "b") && list.items[1].ncommands == 0, "list b");
	}
	dt_session_list_clear(&list);

	answer(200, "null");
	rc = dt_session_list(tb, &list, &err);
	CHECK(rc == 0 && list.count == 0, "a null list is empty");

	answer(404, "{\"message\":\"session nope not found\",\"statusCode\":404}");
	rc = dt_session_get(tb, "nope", &s, &err);
	CHECK(rc == -ENOENT && strstr(err.message, "not found"), "404: %d %s", rc, err.message);

	answer(410, "{\"message\":\"session s has ended\"}");
	rc = dt_session_exec(tb, "s", "ls", true, &res, &err);
	CHECK(rc == -EPIPE && err.err == EPIPE, "410: %d %s", rc, err.message);

	answer(409, "{\"message\":\"Sandbox sb1 is not started\"}");
	rc = dt_session_command_get(tb, "s", "c", &c, &err);
	CHECK(rc == -EHOSTDOWN, "not started: %d %s", rc, err.message);

	answer(200, "{\"id\":\"c\",\"command\":\"sleep 1\",\"exitCode\":137}");
	rc = dt_session_command_get(tb, "s", "c", &c, &err);
	last_request(req, sizeof(req));
	CHECK(rc == 0 && c.has_exit && c.exit_code == 137, "command status");
	CHECK(strstr(req, "GET /toolbox/sb1/process/session/s/command/c HTTP"), "%s", req);
	dt_session_command_clear(&c);

	answer(200, "0123456789");
	rc = dt_session_command_logs(tb, "s", "c", 4, append, &logs, &total, &err);
	last_request(req, sizeof(req));
	CHECK(rc == 0 && total == 10 && logs.len == 6 && !memcmp(logs.data, "456789", 6),
	      "logs past 4: %d %lld %zu", rc, (long long)total, logs.len);
	/* The plain-text form: our version line comes before the engine's. */
	CHECK(strstr(req, "GET /toolbox/sb1/process/session/s/command/c/logs HTTP") &&
		  strstr(req, "X-Daytona-SDK-Version: 0.26.0") &&
		  strstr(req, "X-Daytona-SDK-Version: 0.26.0") <
		      strstr(req, "X-Daytona-SDK-Version: 0.218.0"),
	      "logs request: %s", req);
	buf_reset(&logs);
	rc = dt_session_command_logs(tb, "s", "c", 20, append, &logs, &total, &err);
	CHECK(rc == 0 && total == 10 && logs.len == 0, "logs past the end");
	buf_free(&logs);

	answer(200, "");
	rc = dt_session_input(tb, "s", "c", "a\0b", 3, &err);
	CHECK(rc == -EINVAL, "input with a NUL is refused before sending");
	rc = dt_session_input(tb, "s", "c", "line\n", 5, &err);
	last_request(req, sizeof(req));
	CHECK(rc == 0 && strstr(req, "/process/session/s/command/c/input HTTP") &&
		  strstr(req, "{\"data\":\"line\\n\"}"),
	      "input: %s", req);

	answer(204, "");
	rc = dt_session_delete(tb, "s", &err);
	last_request(req, sizeof(req));
	CHECK(rc == 0 && strstr(req, "DELETE /toolbox/sb1/process/session/s HTTP"), "delete");
	rc = dt_session_delete(tb, "..", &err);
	CHECK(rc == -EINVAL, "a session named .. is refused");
}

static void test_execute(struct dt_toolbox *tb)
{
	struct dt_exec_result r = {0};
	struct dt_error err = {0};
	struct dt_kv env = {"A", "b"};
	const char *argv[] = {"x"};
	char req[8192];
	int rc;

	answer(200, "{\"exitCode\":3,\"result\":\"out\\n\"}");
	rc = dt_process_execute(tb, "exit 3", "/tmp", &env, 1, 5, &r, &err);
	last_request(req, sizeof(req));
	CHECK(rc == 0 && r.exit_code == 3 && !strcmp(r.result, "out\n"), "execute");
	CHECK(strstr(req, "POST /toolbox/sb1/process/execute HTTP") &&
		  strstr(req, "\"cwd\":\"/tmp\"") && strstr(req, "\"envs\":{\"A\":\"b\"}") &&
		  strstr(req, "\"timeout\":5"),
	      "execute request: %s", req);
	dt_exec_result_clear(&r);

	answer(200, "{\"exitCode\":0}");
	rc = dt_process_code_run(tb, "print(1)", NULL, argv, 1, NULL, 0, 0, &r, &err);
	last_request(req, sizeof(req));
	CHECK(rc == 0 && r.exit_code == 0 && r.result && !r.result[0], "code-run");
	CHECK(strstr(req, "\"language\":\"python\"") && strstr(req, "\"argv\":[\"x\"]"),
	      "code-run request: %s", req);
	dt_exec_result_clear(&r);

	answer(408, "{\"message\":\"timed out\"}");
	rc = dt_process_execute(tb, "sleep 9", NULL, NULL, 0, 1, &r, &err);
	CHECK(rc == -ETIMEDOUT, "408 is ETIMEDOUT: %d", rc);

	answer(200, "{\"result\":\"no code\"}");
	rc = dt_process_execute(tb, "x", NULL, NULL, 0, 0, &r, &err);
	CHECK(rc == -EIO, "an answer without exitCode is EIO");
}

int main(void)
{
	struct dt_config cfg = {0};
	struct dt_error err = {0};
	struct dt_client *c;
	struct dt_toolbox *tb;
	char api[128], proxy[128];

	test_demux();
	if (start_peer()) {
		perror("peer");
		return 1;
	}
	snprintf(api, sizeof(api), "http://127.0.0.1:%d/api", g_port);
	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d/toolbox/", g_port);
	cfg.api_url = api;
	cfg.api_key = "test-key";
	cfg.max_retries = -1;
	c = dt_client_new(&cfg, &err);
	tb = c ? dt_toolbox_new(c, "sb1", proxy, &err) : NULL;
	if (!tb) {
		fprintf(stderr, "client: %s\n", err.message);
		return 1;
	}
	test_sessions(tb);
	test_execute(tb);
	dt_toolbox_free(tb);
	dt_client_free(c);
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
