/*
 * The client's transport against a scripted HTTP peer on 127.0.0.1: the
 * behaviours a real quaverd cannot be made to show on demand (a server that
 * never answers, 503 bursts, a 70 MiB answer) and what must hold on every
 * request (headers, keep-alive across threads, retries only where safe,
 * deadlines, cancellation, cursor paging). The peer is a test fixture
 * standing in for an unreliable network, not a model of quaverd.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dt_internal.h"
#include "util.h"

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

/* ---- the scripted peer ---- */

struct req {
	char method[16];
	char path[4096];
	char headers[8192];
	char body[65536];
};

struct reply {
	int status;
	char body[8192];
	bool hang;       /* never answer */
	size_t big;      /* stream this many bytes of body instead */
	int retry_after; /* seconds, 0: no header */
};

typedef void (*handler_fn)(const struct req *rq, struct reply *rp, int nth);

static handler_fn g_handler;
static atomic_int g_connections;
static atomic_int g_requests;
static atomic_bool g_stop;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct req g_last;
static char g_first_headers[8192]; /* of the first request of a scenario */
static char g_paths[64][256]; /* the first 64 request lines of a scenario */
static int g_listen_fd = -1;
static int g_port;

static void scenario(handler_fn fn)
{
	pthread_mutex_lock(&g_lock);
	g_handler = fn;
	g_requests = 0;
	g_connections = 0;
	memset(g_paths, 0, sizeof(g_paths));
	pthread_mutex_unlock(&g_lock);
}

/* Reads until @n bytes or the peer closes; stops when the test ends. */
static ssize_t read_some(int fd, char *p, size_t n)
{
	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int r = poll(&pfd, 1, 100);

		if (g_stop)
			return -1;
		if (r > 0)
			return read(fd, p, n);
	}
}

static bool read_request(int fd, struct req *rq, char *pending, size_t *npending)
{
	char *end, *cl;
	size_t need, hlen;

	memset(rq, 0, sizeof(*rq));
	while (!(end = memmem(pending, *npending, "\r\n\r\n", 4))) {
		ssize_t n = read_some(fd, pending + *npending, 16384 - 1 - *npending);

		if (n <= 0)
			return false;
		*npending += (size_t)n;
	}
	hlen = (size_t)(end - pending) + 4;
	if (hlen >= sizeof(rq->headers))
		return false;
	memcpy(rq->headers, pending, hlen);
	sscanf(rq->headers, "%15s %4095s", rq->method, rq->path);
	cl = strcasestr(rq->headers, "\r\nContent-Length:");
	need = cl ? strtoul(cl + 17, NULL, 10) : 0;
	if (need >= sizeof(rq->body))
		return false;
	while (*npending < hlen + need) {
		ssize_t n = read_some(fd, pending + *npending, 16384 - 1 - *npending);

		if (n <= 0)
			return false;
		*npending += (size_t)n;
	}
	memcpy(rq->body, pending + hlen, need);
	memmove(pending, pending + hlen + need, *npending - hlen - need);
	*npending -= hlen + need;
	return true;
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static void *serve_connection(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char *pending = malloc(16384);
	size_t npending = 0;
	struct req *rq = malloc(sizeof(*rq));
	struct reply *rp = malloc(sizeof(*rp));

	while (!g_stop && read_request(fd, rq, pending, &npending)) {
		char head[512];
		handler_fn handler;
		int nth, len;

		pthread_mutex_lock(&g_lock);
		handler = g_handler;
		nth = g_requests++;
		g_last = *rq;
		if (nth == 0)
			memcpy(g_first_headers, rq->headers, sizeof(g_first_headers));
		if (nth < 64)
			snprintf(g_paths[nth], sizeof(g_paths[nth]), "%.15s %.200s", rq->method, rq->path);
		pthread_mutex_unlock(&g_lock);

		memset(rp, 0, sizeof(*rp));
		rp->status = 200;
		handler(rq, rp, nth);
		if (rp->hang) {
			while (!g_stop && read_some(fd, pending, 1) > 0) {
			}
			break;
		}
		len = snprintf(head, sizeof(head),
			       "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			       "Content-Length: %zu\r\n%s\r\n",
			       rp->status, rp->big ? rp->big : strlen(rp->body),
			       rp->retry_after ? "Retry-After: 1\r\n" : "");
		if (!write_all(fd, head, (size_t)len))
			break;
		if (rp->big) {
			static char zeros[65536];
			size_t left = rp->big;

			while (left > 0) {
				size_t n = left < sizeof(zeros) ? left : sizeof(zeros);

				if (!write_all(fd, zeros, n))
					break;
				left -= n;
			}
			break;
		}
		if (!write_all(fd, rp->body, strlen(rp->body)))
			break;
	}
	close(fd);
	free(pending);
	free(rq);
	free(rp);
	return NULL;
}

static void *accept_loop(void *arg)
{
	while (!g_stop) {
		struct pollfd pfd = {g_listen_fd, POLLIN, 0};
		pthread_t t;
		int fd;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		fd = accept(g_listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		g_connections++;
		pthread_create(&t, NULL, serve_connection, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
	return NULL;
}

static int listen_on_loopback(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len)) {
		perror("listen");
		exit(2);
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* ---- helpers ---- */

static struct dt_client *client_for(int port, long request_timeout_ms, const char *jwt)
{
	char url[64];
	struct dt_config cfg = {0};
	struct dt_error err;
	struct dt_client *c;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/", port);
	cfg.api_url = url;
	if (jwt) {
		cfg.jwt = jwt;
		cfg.organization_id = "org-42";
	} else {
		cfg.api_key = "test-key-123";
	}
	cfg.target = "eu";
	cfg.request_timeout_ms = request_timeout_ms;
	cfg.connect_timeout_ms = 500;
	c = dt_client_new(&cfg, &err);
	if (!c) {
		fprintf(stderr, "dt_client_new: %s\n", err.message);
		exit(2);
	}
	return c;
}

static bool has_header(const char *line)
{
	bool found;

	pthread_mutex_lock(&g_lock);
	found = strcasestr(g_last.headers, line) != NULL;
	pthread_mutex_unlock(&g_lock);
	return found;
}

static const char *sandbox_json(const char *id, const char *state)
{
	static __thread char text[512];

	snprintf(text, sizeof(text),
		 "{\"id\":\"%s\",\"name\":\"n-%s\",\"state\":\"%s\",\"env\":{},\"labels\":{},"
		 "\"toolboxProxyUrl\":\"http://127.0.0.1:1/toolbox\"}",
		 id, id, state);
	return text;
}

/* ---- scenarios ---- */

static void h_sandbox_ok(const struct req *rq, struct reply *rp, int nth)
{
	snprintf(rp->body, sizeof(rp->body), "%s", sandbox_json("sb1", "started"));
}

static void test_headers_and_keepalive(void)
{
	struct dt_client *c = client_for(g_port, 5000, NULL);
	struct dt_sandbox s;
	struct dt_error err;
	char ua[64];

	scenario(h_sandbox_ok);
	CHECK(dt_sandbox_get(c, "sb1", &s, &err) == 0, "get: %s", err.message);
	CHECK(s.id && strcmp(s.state, "started") == 0, "get parsed");
	dt_sandbox_clear(&s);
	CHECK(strcmp(g_last.path, "/api/sandbox/sb1") == 0, "path %s", g_last.path);
	CHECK(has_header("\r\nAuthorization: Bearer test-key-123\r\n"), "auth header");
	CHECK(has_header("\r\nX-Daytona-Source: quaverfs\r\n"), "source header");
	CHECK(has_header("\r\nX-Daytona-SDK-Version: 0.218.0\r\n"), "sdk header");
	CHECK(has_header("\r\nAccept: application/json\r\n"), "accept header");
	snprintf(ua, sizeof(ua), "\r\nUser-Agent: quaverfs/%s\r\n", QUAVER_VERSION);
	CHECK(has_header(ua), "user agent: %s", g_last.headers);
	CHECK(!has_header("Content-Type"), "GET with a Content-Type");
	CHECK(!has_header("X-Daytona-Organization-ID"), "org header without org");

	/* Eight more requests from four threads in turn: still one connection. */
	for (int i = 0; i < 8; i++) {
		CHECK(dt_sandbox_get(c, "sb1", &s, &err) == 0, "get %d: %s", i, err.message);
		dt_sandbox_clear(&s);
	}
	CHECK(g_connections == 1, "keep-alive: %d connections for 9 requests",
	      (int)g_connections);
	dt_client_free(c);

	c = client_for(g_port, 5000, "jwt-abc");
	CHECK(dt_sandbox_set_labels(c, "sb1", (struct dt_kv[]){{"k", "v"}}, 1, &err) == 0, "labels");
	CHECK(has_header("\r\nAuthorization: Bearer jwt-abc\r\n"), "jwt auth");
	CHECK(has_header("\r\nX-Daytona-Organization-ID: org-42\r\n"), "org header");
	CHECK(has_header("\r\nContent-Type: application/json\r\n"), "json content type");
	CHECK(strcmp(g_last.method, "PUT") == 0 && strcmp(g_last.body, "{\"labels\":{\"k\":\"v\"}}") == 0,
	      "labels request: %s %s", g_last.method, g_last.body);
	dt_client_free(c);
}

struct thread_arg {
	struct dt_client *c;
	int ok;
};

static void *get_in_thread(void *p)
{
	struct thread_arg *a = p;
	struct dt_sandbox s;

	for (int i = 0; i < 5; i++) {
		if (dt_sandbox_get(a->c, "sb1", &s, NULL) == 0)
			a->ok++;
		dt_sandbox_clear(&s);
	}
	return NULL;
}

static void test_threads_reuse(void)
{
	struct dt_client *c = client_for(g_port, 5000, NULL);
	struct thread_arg args[4];
	pthread_t t[4];

	scenario(h_sandbox_ok);
	/* One after the other: each thread reuses the same pooled connection. */
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){c, 0};
		pthread_create(&t[i], NULL, get_in_thread, &args[i]);
		pthread_join(t[i], NULL);
		CHECK(args[i].ok == 5, "thread %d: %d/5", i, args[i].ok);
	}
	CHECK(g_connections == 1, "sequential threads: %d connections", (int)g_connections);
	/* At once: at most one connection per thread, all requests answered. */
	scenario(h_sandbox_ok);
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){c, 0};
		pthread_create(&t[i], NULL, get_in_thread, &args[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(args[i].ok == 5, "concurrent thread %d: %d/5", i, args[i].ok);
	}
	CHECK(g_connections <= 4, "concurrent threads: %d new connections", (int)g_connections);
	dt_client_free(c);
}

static void h_503_twice(const struct req *rq, struct reply *rp, int nth)
{
	if (nth < 2) {
		rp->status = 503;
		snprintf(rp->body, sizeof(rp->body), "{\"message\":\"busy\"}");
		return;
	}
	h_sandbox_ok(rq, rp, nth);
}

static void h_always(const struct req *rq, struct reply *rp, int nth, int status)
{
	rp->status = status;
	snprintf(rp->body, sizeof(rp->body), "{\"statusCode\":%d,\"message\":\"status %d\"}",
		 status, status);
}

static void h_503(const struct req *rq, struct reply *rp, int nth)
{
	h_always(rq, rp, nth, 503);
}

static void h_429(const struct req *rq, struct reply *rp, int nth)
{
	h_always(rq, rp, nth, 429);
	rp->retry_after = 1;
}

static void h_404(const struct req *rq, struct reply *rp, int nth)
{
	rp->status = 404;
	snprintf(rp->body, sizeof(rp->body),
		 "{\"statusCode\":404,\"error\":\"Not Found\",\"message\":\"Sandbox with ID or "
		 "name nope not found\"}");
}

static void test_retries(void)
{
	struct dt_client *c = client_for(g_port, 5000, NULL);
	struct dt_sandbox s;
	struct dt_error err;
	int64_t t0;

	scenario(h_503_twice);
	t0 = now_mono_ms();
	CHECK(dt_sandbox_get(c, "sb1", &s, &err) == 0, "GET after two 503s: %s", err.message);
	CHECK(g_requests == 3, "GET tries: %d", (int)g_requests);
	CHECK(now_mono_ms() - t0 >= 750, "backoff too short: %lld ms",
	      (long long)(now_mono_ms() - t0));
	dt_sandbox_clear(&s);

	scenario(h_503);
	CHECK(dt_sandbox_get(c, "sb1", &s, &err) == -EIO, "GET on 503 forever");
	CHECK(g_requests == 3, "GET tries on 503: %d", (int)g_requests);
	CHECK(err.http_status == 503 && strcmp(err.message, "get sandbox sb1: status 503") == 0,
	      "503 error: %d %s", err.http_status, err.message);

	/* A POST is not repeated: it may have done its work. */
	scenario(h_503);
	CHECK(dt_sandbox_action(c, "sb1", DT_START, &s, &err) == -EIO, "POST on 503");
	CHECK(g_requests == 1, "POST was retried: %d", (int)g_requests);

	/* ...but a 429 is: the server did nothing. */
	scenario(h_429);
	CHECK(dt_sandbox_action(c, "sb1", DT_START, &s, &err) == -EAGAIN, "POST on 429");
	CHECK(g_requests == 3, "POST on 429 tries: %d", (int)g_requests);

	/* Retry-After is honoured, within the deadline. */
	scenario(h_429);
	t0 = now_mono_ms();
	CHECK(dt_sandbox_get(c, "sb1", &s, &err) == -EAGAIN, "429: %d", err.err);
	CHECK(g_requests == 3 && now_mono_ms() - t0 >= 2000, "429 tries %d in %lld ms",
	      (int)g_requests, (long long)(now_mono_ms() - t0));

	/* A 404 is an answer, not a transient failure. */
	scenario(h_404);
	CHECK(dt_sandbox_get(c, "nope", &s, &err) == -ENOENT, "404: %d", err.err);
	CHECK(g_requests == 1 && strcmp(err.message, "get sandbox nope: Sandbox with ID or name "
						     "nope not found") == 0,
	      "404 message: %s", err.message);
	dt_client_free(c);

	/* A retry that cannot finish within the deadline is not attempted. */
	c = client_for(g_port, 600, NULL);
	scenario(h_503);
	t0 = now_mono_ms();
	CHECK(dt_sandbox_get(c, "sb1", &s, &err) == -EIO, "short deadline");
	CHECK(now_mono_ms() - t0 < 700, "deadline overrun: %lld ms",
	      (long long)(now_mono_ms() - t0));
	dt_client_free(c);
}

static void h_hang(const struct req *rq, struct reply *rp, int nth)
{
	rp->hang = true;
}

static bool cancel_at(void *arg)
{
	return now_mono_ms() >= *(int64_t *)arg;
}

static void test_deadlines_and_cancel(void)
{
	struct dt_client *c = client_for(g_port, 1000, NULL);
	struct dt_sandbox s;
	struct dt_error err;
	int64_t t0, at, took;
	int closed_port, fd;

	scenario(h_hang);
	t0 = now_mono_ms();
	CHECK(dt_sandbox_get(c, "sb1", &s, &err) == -ETIMEDOUT, "silent server: %d %s", err.err,
	      err.message);
	took = now_mono_ms() - t0;
	CHECK(took >= 950 && took < 1400, "deadline of 1000 ms took %lld ms", (long long)took);
	CHECK(err.transport && err.http_status == 0, "a silent server is a transport failure");

	/* Cancellation interrupts a request that gets no answer. */
	at = now_mono_ms() + 300;
	dt_set_cancel_hook(cancel_at, &at);
	CHECK(dt_sandbox_get(c, "sb1", &s, &err) == -EINTR, "cancel: %d %s", err.err, err.message);
	took = now_mono_ms() - at;
	CHECK(took < 200, "cancel took %lld ms", (long long)took);
	dt_set_cancel_hook(NULL, NULL);
	dt_client_free(c);

	/* A closed port: EIO within a second, retries included. */
	fd = listen_on_loopback(&closed_port);
	close(fd);
	c = client_for(closed_port, 30000, NULL);
	t0 = now_mono_ms();
	CHECK(dt_sandbox_get(c, "sb1", &s, &err) == -EIO, "closed port: %d", err.err);
	took = now_mono_ms() - t0;
	CHECK(took < 1000, "closed port took %lld ms", (long long)took);
	CHECK(strstr(err.message, "cannot reach http://127.0.0.1:") != NULL && err.transport,
	      "message: %s", err.message);
	dt_client_free(c);
}

static void h_starting(const struct req *rq, struct reply *rp, int nth)
{
	snprintf(rp->body, sizeof(rp->body), "%s", sandbox_json("sb1", "starting"));
}

static void h_stop(const struct req *rq, struct reply *rp, int nth)
{
	/* stop answers "stopping"; the third poll sees "stopped". */
	snprintf(rp->body, sizeof(rp->body), "%s",
		 sandbox_json("sb1", nth < 3 ? "stopping" : "stopped"));
}

static void h_delete(const struct req *rq, struct reply *rp, int nth)
{
	if (nth == 0) {
		snprintf(rp->body, sizeof(rp->body), "%s", sandbox_json("sb1", "destroying"));
		return;
	}
	if (nth == 1) {
		snprintf(rp->body, sizeof(rp->body), "%s", sandbox_json("sb1", "error"));
		return;
	}
	h_404(rq, rp, nth);
}

static void h_error_state(const struct req *rq, struct reply *rp, int nth)
{
	snprintf(rp->body, sizeof(rp->body),
		 "{\"id\":\"sb1\",\"state\":\"%s\",\"errorReason\":\"disk full\"}",
		 nth == 0 ? "starting" : "error");
}

static void test_waits(void)
{
	static const char *const started[] = {"started", NULL};
	struct dt_client *c = client_for(g_port, 5000, NULL);
	struct dt_sandbox s;
	struct dt_error err;
	int64_t t0, at, took;

	scenario(h_starting);
	t0 = now_mono_ms();
	CHECK(dt_sandbox_wait(c, "sb1", started, 1000, &s, &err) == -ETIMEDOUT, "wait timeout");
	took = now_mono_ms() - t0;
	CHECK(took >= 1000 && took < 1300, "wait of 1000 ms took %lld ms", (long long)took);
	/* 100, 150, 225, 337, 506 ms...: about 6 polls in one second, not 10 or 100. */
	CHECK(g_requests >= 5 && g_requests <= 8, "polls in 1 s: %d", (int)g_requests);
	CHECK(strstr(err.message, "still starting") && !err.transport, "timeout message: %s",
	      err.message);

	at = now_mono_ms() + 450;
	dt_set_cancel_hook(cancel_at, &at);
	CHECK(dt_sandbox_wait(c, "sb1", started, 10000, &s, &err) == -EINTR, "cancelled wait");
	took = now_mono_ms() - at;
	CHECK(took < 200, "cancelling a wait took %lld ms", (long long)took);
	dt_set_cancel_hook(NULL, NULL);

	scenario(h_stop);
	CHECK(dt_sandbox_action(c, "sb1", DT_STOP, &s, &err) == 0, "stop: %s", err.message);
	CHECK(s.state && strcmp(s.state, "stopped") == 0, "stop ends stopped");
	CHECK(strcmp(g_paths[0], "POST /api/sandbox/sb1/stop") == 0 &&
		      strcmp(g_paths[1], "GET /api/sandbox/sb1") == 0,
	      "stop requests: %s, %s", g_paths[0], g_paths[1]);
	CHECK(!strcasestr(g_first_headers, "Content-Type") &&
		      strcasestr(g_first_headers, "\r\nContent-Length: 0\r\n"),
	      "an empty POST must carry no form content type: %s", g_first_headers);
	dt_sandbox_clear(&s);

	scenario(h_delete);
	CHECK(dt_sandbox_delete(c, "sb1", &err) == 0, "delete: %s", err.message);
	CHECK(strcmp(g_paths[0], "DELETE /api/sandbox/sb1") == 0 && g_requests == 3,
	      "delete requests: %s, %d", g_paths[0], (int)g_requests);

	scenario(h_error_state);
	CHECK(dt_sandbox_wait(c, "sb1", started, 5000, &s, &err) == -EIO, "error state");
	CHECK(strstr(err.message, "disk full") != NULL, "errorReason: %s", err.message);

	scenario(h_404);
	CHECK(dt_sandbox_wait(c, "nope", started, 5000, &s, &err) == -ENOENT, "404 while waiting");
	dt_client_free(c);
}

static void h_create(const struct req *rq, struct reply *rp, int nth)
{
	snprintf(rp->body, sizeof(rp->body), "%s",
		 sandbox_json("sb9", nth == 0 ? "creating" : "started"));
}

static void test_create_body(void)
{
	struct dt_client *c = client_for(g_port, 5000, NULL);
	struct dt_create_params p;
	struct dt_sandbox s;
	struct dt_error err;
	char body[sizeof(g_last.body)];

	scenario(h_create);
	dt_create_params_init(&p);
	p.name = "demo";
	p.language = "typescript";
	CHECK(dt_sandbox_create(c, &p, &s, &err) == 0, "create: %s", err.message);
	CHECK(strcmp(s.id, "sb9") == 0 && strcmp(s.state, "started") == 0, "created and waited");
	dt_sandbox_clear(&s);
	pthread_mutex_lock(&g_lock);
	CHECK(strcmp(g_paths[0], "POST /api/sandbox") == 0, "create path %s", g_paths[0]);
	pthread_mutex_unlock(&g_lock);

	dt_client_free(c);

	/* Without a poll the last request is the POST itself. */
	scenario(h_sandbox_ok);
	c = client_for(g_port, 5000, NULL);
	dt_create_params_init(&p);
	p.name = "plain";
	CHECK(dt_sandbox_create(c, &p, NULL, &err) == 0, "create 3: %s", err.message);
	snprintf(body, sizeof(body), "%s", g_last.body);
	CHECK(strcmp(body, "{\"env\":{},\"labels\":{\"code-toolbox-language\":\"python\"},"
			   "\"name\":\"plain\",\"target\":\"eu\"}") == 0,
	      "minimal create body: %s", body);

	scenario(h_sandbox_ok);
	dt_create_params_init(&p);
	p.name = "full";
	p.language = "javascript";
	p.snapshot = "base";
	p.user = "daytona";
	p.env = (struct dt_kv[]){{"A", "1"}};
	p.nenv = 1;
	p.labels = (struct dt_kv[]){{"team", "x"}, {"code-toolbox-language", "python"}};
	p.nlabels = 2;
	p.volumes = (struct dt_volume_mount[]){{"vol1", "/data", "sub"}, {"vol2", "/v2", NULL}};
	p.nvolumes = 2;
	p.auto_stop_interval = 0;
	p.auto_delete_interval = -1;
	p.is_public = 1;
	p.cpu = 2;
	p.memory = 4;
	CHECK(dt_sandbox_create(c, &p, NULL, &err) == 0, "create 4: %s", err.message);
	snprintf(body, sizeof(body), "%s", g_last.body);
	CHECK(strcmp(body, "{\"env\":{\"A\":\"1\"},\"labels\":{\"team\":\"x\","
			   "\"code-toolbox-language\":\"javascript\"},\"name\":\"full\","
			   "\"snapshot\":\"base\",\"user\":\"daytona\",\"target\":\"eu\",\"cpu\":2,"
			   "\"memory\":4,\"autoStopInterval\":0,\"autoDeleteInterval\":-1,"
			   "\"public\":true,\"volumes\":[{\"volumeId\":\"vol1\",\"mountPath\":"
			   "\"/data\",\"subpath\":\"sub\"},{\"volumeId\":\"vol2\",\"mountPath\":"
			   "\"/v2\"}]}") == 0,
	      "full create body: %s", body);
	dt_client_free(c);
}

static void h_pages(const struct req *rq, struct reply *rp, int nth)
{
	const char *cursor = strstr(rq->path, "cursor=");
	int page = cursor ? atoi(cursor + 7) : 0;
	struct buf b = BUF_INIT;

	buf_append_str(&b, "{\"items\":[");
	for (int i = 0; i < 3; i++) {
		char id[32];

		snprintf(id, sizeof(id), "p%di%d", page, i);
		buf_printf(&b, "%s%s", i ? "," : "", sandbox_json(id, "started"));
	}
	if (page < 2)
		buf_printf(&b, "],\"nextCursor\":\"%d\"}", page + 1);
	else
		buf_append_str(&b, "],\"nextCursor\":null}");
	snprintf(rp->body, sizeof(rp->body), "%s", b.data);
	buf_free(&b);
}

static void h_same_cursor(const struct req *rq, struct reply *rp, int nth)
{
	snprintf(rp->body, sizeof(rp->body), "{\"items\":[%s],\"nextCursor\":\"again\"}",
		 sandbox_json("x", "started"));
}

static void h_big(const struct req *rq, struct reply *rp, int nth)
{
	rp->big = DT_MAX_RESPONSE + 1024;
}

static void test_paging_and_bounds(void)
{
	struct dt_client *c = client_for(g_port, 10000, NULL);
	struct dt_list_query q = {"de mo", (struct dt_kv[]){{"env", "dev"}}, 1, 3};
	struct dt_sandbox_list l;
	struct dt_sandbox s;
	struct dt_error err;

	scenario(h_pages);
	CHECK(dt_sandbox_list(c, &q, &l, &err) == 0, "list: %s", err.message);
	CHECK(l.count == 9 && g_requests == 3, "paging: %zu items in %d requests", l.count,
	      (int)g_requests);
	CHECK(l.count == 9 && strcmp(l.items[8].id, "p2i2") == 0, "order");
	CHECK(strcmp(g_paths[0], "GET /api/sandbox?limit=3&name=de%20mo&labels=%7B%22env%22%3A%22"
				 "dev%22%7D") == 0,
	      "first page: %s", g_paths[0]);
	CHECK(strcmp(g_paths[1], "GET /api/sandbox?limit=3&cursor=1&name=de%20mo&labels=%7B%22env"
				 "%22%3A%22dev%22%7D") == 0,
	      "second page: %s", g_paths[1]);
	dt_sandbox_list_clear(&l);

	scenario(h_same_cursor);
	CHECK(dt_sandbox_list(c, NULL, &l, &err) == -EIO, "a repeated cursor must end the walk");
	CHECK(l.count == 0 && l.items == NULL, "failed list is cleared");

	scenario(h_big);
	CHECK(dt_sandbox_get(c, "sb1", &s, &err) == -EIO, "70 MiB answer: %d", err.err);
	CHECK(strstr(err.message, "64 MiB") != NULL, "too large: %s", err.message);
	dt_client_free(c);
}

static void test_bad_config(void)
{
	struct dt_config cfg = {0};
	struct dt_error err;

	CHECK(!dt_client_new(&cfg, &err) && err.err == EINVAL, "no url");
	cfg.api_url = "http://127.0.0.1:1/api";
	CHECK(!dt_client_new(&cfg, &err) && err.err == EACCES, "no key");
	cfg.jwt = "j";
	CHECK(!dt_client_new(&cfg, &err) && err.err == EINVAL, "jwt without org");
	cfg.jwt = NULL;
	cfg.api_key = "k\r\nX-Evil: 1";
	CHECK(!dt_client_new(&cfg, &err) && err.err == EINVAL, "header injection");
	cfg.api_key = "k";
	cfg.api_url = "ftp://x/api";
	CHECK(!dt_client_new(&cfg, &err) && err.err == EINVAL, "ftp url");
	cfg.api_url = "http://user:pw@x/api";
	CHECK(!dt_client_new(&cfg, &err) && err.err == EINVAL && !strstr(err.message, "pw"),
	      "credentials in url: %s", err.message);
}

int main(void)
{
	pthread_t acceptor;

	/* The fixture writes to sockets the client may have closed. */
	signal(SIGPIPE, SIG_IGN);
	g_listen_fd = listen_on_loopback(&g_port);
	pthread_create(&acceptor, NULL, accept_loop, NULL);

	test_bad_config();
	test_headers_and_keepalive();
	test_threads_reuse();
	test_retries();
	test_deadlines_and_cancel();
	test_waits();
	test_create_body();
	test_paging_and_bounds();

	g_stop = true;
	pthread_join(acceptor, NULL);
	close(g_listen_fd);
	usleep(250000); /* lets the connection threads see g_stop and exit */
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("all transport checks passed\n");
	return 0;
}
