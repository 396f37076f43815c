/*
 * The toolbox file API of the client library against a scripted HTTP peer
 * on 127.0.0.1, and its parsers on their own: FileInfo listings (hostile
 * names and sizes), Range answers (206, 200 whole, 416), big streamed
 * downloads and uploads whose bytes never sit in memory, the upload-v2 to
 * bulk-upload fallback, stalls and cancellation, and the multipart reader
 * of bulk-download. The peer stands in for an unreliable or old server;
 * the integration run against quaverd is separate.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dt_internal.h"
#include "dt_multipart.h"
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

#define MIB (1024 * 1024)
#define KEPT_BODY (2 * MIB) /* the peer keeps this much of a request body */

/*
 * Most a 20 MiB transfer may add to the peak RSS of this process (client
 * and peer). Under ThreadSanitizer its own bookkeeping grows with the
 * transfer by about 22 MiB, while a client holding the file there would add
 * the file plus 4x shadow memory, over 100 MiB.
 */
#if defined(__SANITIZE_THREAD__)
#define MAX_GROWTH_KB (48 * 1024)
#else
#define MAX_GROWTH_KB (8 * 1024)
#endif

/* The remote file's content: byte i of a file is pat(i); a shift by one is visible. */
static unsigned char pat(int64_t i)
{
	return (unsigned char)((i * 7 + (i >> 10) * 13 + (i >> 18)) & 0xff);
}

static uint64_t fnv_add(uint64_t h, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

#define FNV_INIT 14695981039346656037ULL

/* ---- the scripted peer ---- */

struct req {
	char method[16];
	char target[4096];
	char headers[8192];
	int64_t content_length; /* -1: none */
	int64_t body_total;	/* bytes received */
	uint64_t body_hash;
	int body_reads;	     /* read() calls that brought body bytes */
	unsigned char *body; /* the first KEPT_BODY bytes */
	size_t body_kept;
};

struct reply {
	int status;
	char headers[1024];   /* extra lines, each ending in \r\n */
	char body[65536];     /* a small body, as text */
	size_t body_len;      /* 0: strlen(body) */
	int64_t pattern_from; /* stream pat(pattern_from ...) */
	int64_t pattern_len;  /* that many bytes (0: use body) */
	int64_t declared;     /* Content-Length to claim; -1: the real length */
	int chunk_delay_ms;   /* pause between 64 KiB chunks */
	int64_t stall_after;  /* stop sending after this many body bytes; -1: never */
	bool close_after;     /* close the connection after the answer */
};

/* Before the body: true answers at once (rp filled) without reading the body. */
typedef bool (*early_fn)(const struct req *rq, struct reply *rp);
typedef void (*answer_fn)(const struct req *rq, struct reply *rp, int nth);

static early_fn g_early;
static answer_fn g_answer;
static atomic_int g_requests;
static atomic_bool g_stop;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_lines[64][512];
static struct req g_last; /* the last request, its body in g_last_body */
static unsigned char *g_last_body;
static atomic_int g_slow_read_ms; /* pause after each body read */
static int g_listen_fd = -1;
static int g_port;

static void scenario(early_fn early, answer_fn answer)
{
	pthread_mutex_lock(&g_lock);
	g_early = early;
	g_answer = answer;
	g_requests = 0;
	memset(g_lines, 0, sizeof(g_lines));
	pthread_mutex_unlock(&g_lock);
}

static ssize_t read_some(int fd, void *p, size_t n)
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

static bool write_all(int fd, const void *data, size_t n)
{
	const char *p = data;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static const char *header_in(const char *headers, const char *name)
{
	char needle[128];
	const char *p;

	snprintf(needle, sizeof(needle), "\r\n%s:", name);
	p = strcasestr(headers, needle);
	if (!p)
		return NULL;
	p += strlen(needle);
	while (*p == ' ')
		p++;
	return p;
}

/* Reads the head into rq; leftover body bytes stay in pending. */
static bool read_head(int fd, struct req *rq, char *pending, size_t *npending)
{
	char *end;
	size_t hlen;
	const char *cl;

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
	rq->headers[hlen] = '\0';
	sscanf(rq->headers, "%15s %4095s", rq->method, rq->target);
	cl = header_in(rq->headers, "Content-Length");
	rq->content_length = cl ? strtoll(cl, NULL, 10) : -1;
	memmove(pending, pending + hlen, *npending - hlen);
	*npending -= hlen;
	return true;
}

static void take_body_bytes(struct req *rq, const void *p, size_t n)
{
	size_t keep = rq->body_kept < KEPT_BODY ? KEPT_BODY - rq->body_kept : 0;

	if (keep > n)
		keep = n;
	memcpy(rq->body + rq->body_kept, p, keep);
	rq->body_kept += keep;
	rq->body_total += (int64_t)n;
	rq->body_hash = fnv_add(rq->body_hash, p, n);
	rq->body_reads++;
}

static bool read_body(int fd, struct req *rq, char *pending, size_t *npending)
{
	static __thread unsigned char chunk[65536];
	int64_t left = rq->content_length > 0 ? rq->content_length : 0;

	if (*npending > 0 && left > 0) {
		size_t n = (int64_t)*npending < left ? *npending : (size_t)left;

		take_body_bytes(rq, pending, n);
		memmove(pending, pending + n, *npending - n);
		*npending -= n;
		left -= (int64_t)n;
	}
	while (left > 0) {
		ssize_t n = read_some(fd, chunk,
				      left < (int64_t)sizeof(chunk) ? (size_t)left : sizeof(chunk));

		if (n <= 0)
			return false;
		take_body_bytes(rq, chunk, (size_t)n);
		left -= n;
		if (g_slow_read_ms)
			usleep((useconds_t)g_slow_read_ms * 1000);
	}
	return true;
}

static bool send_reply(int fd, struct reply *rp)
{
	static __thread unsigned char chunk[65536];
	char head[2048];
	int64_t len = rp->pattern_len ? rp->pattern_len
				      : (int64_t)(rp->body_len ? rp->body_len : strlen(rp->body));
	int64_t sent = 0;
	int hlen;

	hlen =
	    snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %" PRId64 "\r\n%s%s\r\n",
		     rp->status, rp->declared >= 0 ? rp->declared : len, rp->headers,
		     rp->close_after ? "Connection: close\r\n" : "");
	if (!write_all(fd, head, (size_t)hlen))
		return false;
	if (!rp->pattern_len)
		return write_all(fd, rp->body, (size_t)len) && !rp->close_after;
	while (sent < len) {
		size_t n =
		    len - sent < (int64_t)sizeof(chunk) ? (size_t)(len - sent) : sizeof(chunk);

		if (rp->stall_after >= 0 && sent >= rp->stall_after) {
			while (!g_stop && read_some(fd, chunk, 1) > 0) {
			}
			return false;
		}
		if (rp->stall_after >= 0 && sent + (int64_t)n > rp->stall_after)
			n = (size_t)(rp->stall_after - sent);
		for (size_t i = 0; i < n; i++)
			chunk[i] = pat(rp->pattern_from + sent + (int64_t)i);
		if (!write_all(fd, chunk, n))
			return false;
		sent += (int64_t)n;
		if (rp->chunk_delay_ms)
			usleep((useconds_t)rp->chunk_delay_ms * 1000);
	}
	return !rp->close_after;
}

static void *serve_connection(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char *pending = malloc(16384);
	size_t npending = 0;
	struct req *rq = calloc(1, sizeof(*rq));
	struct reply *rp = malloc(sizeof(*rp));

	rq->body = malloc(KEPT_BODY);
	for (;;) {
		unsigned char *body = rq->body;
		early_fn early;
		answer_fn answer;
		bool answered;
		int nth;

		memset(rq, 0, sizeof(*rq));
		rq->body = body;
		rq->body_hash = FNV_INIT;
		if (g_stop || !read_head(fd, rq, pending, &npending))
			break;
		memset(rp, 0, sizeof(*rp));
		rp->status = 200;
		rp->declared = -1;
		rp->stall_after = -1;
		pthread_mutex_lock(&g_lock);
		early = g_early;
		answer = g_answer;
		nth = g_requests++;
		if (nth < 64)
			snprintf(g_lines[nth], sizeof(g_lines[nth]), "%s %.400s", rq->method,
				 rq->target);
		pthread_mutex_unlock(&g_lock);

		answered = early && early(rq, rp);
		if (answered) {
			const char *expect = header_in(rq->headers, "Expect");

			/*
			 * Refused before the body: a client that asked to wait sends
			 * none; from another one it is drained first, as servers do,
			 * so the answer is not lost to a reset.
			 */
			if (!(expect && strncasecmp(expect, "100-continue", 12) == 0) &&
			    !read_body(fd, rq, pending, &npending))
				break;
			rp->close_after = true;
		} else {
			const char *expect = header_in(rq->headers, "Expect");

			if (expect && strncasecmp(expect, "100-continue", 12) == 0 &&
			    !write_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25))
				break;
			if (!read_body(fd, rq, pending, &npending))
				break;
			answer(rq, rp, nth);
		}
		pthread_mutex_lock(&g_lock);
		g_last = *rq;
		memcpy(g_last_body, rq->body, rq->body_kept);
		g_last_body[rq->body_kept] = '\0';
		g_last.body = g_last_body;
		pthread_mutex_unlock(&g_lock);
		if (!send_reply(fd, rp))
			break;
	}
	close(fd);
	free(pending);
	free(rq->body);
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

static struct dt_client *client_for(long request_timeout_ms, long stall_ms)
{
	char url[64];
	struct dt_config cfg = {0};
	struct dt_error err;
	struct dt_client *c;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api", g_port);
	cfg.api_url = url;
	cfg.api_key = "test-key-123";
	cfg.request_timeout_ms = request_timeout_ms;
	cfg.connect_timeout_ms = 1000;
	cfg.transfer_stall_ms = stall_ms;
	c = dt_client_new(&cfg, &err);
	if (!c) {
		fprintf(stderr, "dt_client_new: %s\n", err.message);
		exit(2);
	}
	return c;
}

static struct dt_toolbox *toolbox_for(struct dt_client *c)
{
	char url[64];
	struct dt_error err;
	struct dt_toolbox *tb;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/toolbox/", g_port);
	tb = dt_toolbox_new(c, "sb1", url, &err);
	if (!tb) {
		fprintf(stderr, "dt_toolbox_new: %s\n", err.message);
		exit(2);
	}
	return tb;
}

static void last_request(struct req *out)
{
	pthread_mutex_lock(&g_lock);
	*out = g_last;
	pthread_mutex_unlock(&g_lock);
}

static void line_of(int nth, char *out, size_t size)
{
	pthread_mutex_lock(&g_lock);
	snprintf(out, size, "%s", g_lines[nth]);
	pthread_mutex_unlock(&g_lock);
}

/* A kB figure from /proc/self/status ("VmRSS", "VmHWM"). */
static long status_kb(const char *key)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0 && line[strlen(key)] == ':')
			kb = strtol(line + strlen(key) + 1, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

/* Resets the peak RSS (VmHWM) to the current RSS (Linux clear_refs 5). */
static void reset_peak_rss(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);

	if (fd >= 0) {
		if (write(fd, "5", 1) != 1)
			perror("clear_refs");
		close(fd);
	}
}

static int temp_file(char *path, size_t size)
{
	int fd;

	snprintf(path, size, "/tmp/dt-files-test-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		exit(2);
	}
	return fd;
}

static uint64_t hash_pattern(int64_t from, int64_t len)
{
	unsigned char chunk[65536];
	uint64_t h = FNV_INIT;

	for (int64_t done = 0; done < len;) {
		size_t n =
		    len - done < (int64_t)sizeof(chunk) ? (size_t)(len - done) : sizeof(chunk);

		for (size_t i = 0; i < n; i++)
			chunk[i] = pat(from + done + (int64_t)i);
		h = fnv_add(h, chunk, n);
		done += (int64_t)n;
	}
	return h;
}

static uint64_t hash_fd(int fd, int64_t *len)
{
	unsigned char chunk[65536];
	uint64_t h = FNV_INIT;
	off_t off = 0;
	ssize_t n;

	while ((n = pread(fd, chunk, sizeof(chunk), off)) > 0) {
		h = fnv_add(h, chunk, (size_t)n);
		off += n;
	}
	*len = off;
	return h;
}

/* ---- parsers on their own ---- */

static int parse_list_text(const char *json, struct dt_file_list *l, struct dt_error *err)
{
	char *copy = strdup(json);
	int rc = dt_file_list_parse(copy, strlen(copy), "list", l, err);

	free(copy);
	return rc;
}

static void test_fileinfo_parsing(void)
{
	struct dt_file_list l;
	struct dt_error err;
	struct timespec ts;
	bool dir;
	mode_t m;

	CHECK(parse_list_text(
		  "[{\"name\":\"a.txt\",\"path\":\"/home/a.txt\",\"size\":12,\"isDir\":false,"
		  "\"mode\":\"-rw-r--r--\",\"permissions\":\"0640\",\"owner\":\"1000\","
		  "\"group\":\"1001\",\"modTime\":\"2020-01-01 00:00:00 +0000 UTC\","
		  "\"modifiedAt\":\"2026-06-23T15:33:38.123456789Z\"},"
		  "{\"name\":\"src\",\"size\":4096,\"isDir\":true,\"mode\":\"drwxr-xr-x\","
		  "\"permissions\":\"0755\",\"owner\":\"0\",\"group\":\"0\","
		  "\"modTime\":\"2026-06-23 15:33:38.5 +0200 CEST m=+0.001\"},"
		  "{\"name\":\"bare\"}]",
		  &l, &err) == 0,
	      "listing: %s", err.message);
	CHECK(l.count == 3 && l.dropped == 0 && !l.truncated, "count %zu", l.count);
	if (l.count == 3) {
		CHECK(strcmp(l.items[0].name, "a.txt") == 0 &&
			  strcmp(l.items[0].path, "/home/a.txt") == 0 && l.items[0].size == 12 &&
			  !l.items[0].is_dir,
		      "file fields");
		CHECK(l.items[0].mode == (S_IFREG | 0640), "permissions win: %o", l.items[0].mode);
		CHECK(strcmp(l.items[0].owner, "1000") == 0 &&
			  strcmp(l.items[0].group, "1001") == 0,
		      "owner/group");
		CHECK(l.items[0].mtime.tv_sec == 1782228818 &&
			  l.items[0].mtime.tv_nsec == 123456789,
		      "modifiedAt first: %lld.%09ld", (long long)l.items[0].mtime.tv_sec,
		      l.items[0].mtime.tv_nsec);
		CHECK(l.items[1].is_dir && l.items[1].mode == (S_IFDIR | 0755), "dir mode %o",
		      l.items[1].mode);
		CHECK(l.items[1].mtime.tv_sec == 1782228818 - 7200 &&
			  l.items[1].mtime.tv_nsec == 500000000,
		      "modTime fallback with zone: %lld.%09ld", (long long)l.items[1].mtime.tv_sec,
		      l.items[1].mtime.tv_nsec);
		CHECK(l.items[2].mode == (S_IFREG | 0644) && l.items[2].mtime.tv_sec == 0 &&
			  strcmp(l.items[2].path, "") == 0 && strcmp(l.items[2].owner, "") == 0,
		      "bare entry defaults");
	}
	dt_file_list_clear(&l);

	/* Hostile entries: dropped or clamped, never trusted. */
	CHECK(parse_list_text("[{\"name\":\"\"},{\"size\":1},7,null,{\"name\":\"a\\u0000/../etc\"},"
			      "{\"name\":\"ok\",\"path\":\"/x\\u0000y\"},"
			      "{\"name\":\"neg\",\"size\":-5},{\"name\":\"huge\",\"size\":1e300},"
			      "{\"name\":\"str\",\"size\":\"12\"},{\"name\":\"\\\\u0000 is text\"},"
			      "{\"name\":\"weird\",\"mode\":\"xyz\",\"permissions\":\"0999\"}]",
			      &l, &err) == 0,
	      "hostile listing: %s", err.message);
	CHECK(l.count == 5 && l.dropped == 6, "kept %zu dropped %zu", l.count, l.dropped);
	if (l.count == 5) {
		CHECK(strcmp(l.items[0].name, "neg") == 0 && l.items[0].size == 0, "negative size");
		CHECK(l.items[1].size == INT64_MAX, "huge size clamps: %" PRId64, l.items[1].size);
		CHECK(l.items[2].size == 0, "string size");
		CHECK(strcmp(l.items[3].name, "\\u0000 is text") == 0,
		      "an escaped backslash is not a NUL: %s", l.items[3].name);
		CHECK(l.items[4].mode == (S_IFREG | 0644), "garbage mode: %o", l.items[4].mode);
	}
	dt_file_list_clear(&l);

	CHECK(parse_list_text("null", &l, &err) == 0 && l.count == 0, "Go's empty slice");
	CHECK(parse_list_text("{\"name\":\"x\"}", &l, &err) == -EIO, "object, not a list");
	CHECK(parse_list_text("[{\"name\":\"x\"", &l, &err) == -EIO, "cut JSON");
	{
		char raw[] = "[{\"name\":\"a\0b\"}]";

		CHECK(dt_file_list_parse(raw, sizeof(raw) - 1, "list", &l, &err) == -EIO,
		      "a raw NUL byte");
	}

	/* More than DT_MAX_LISTING entries: the first ones are kept. */
	{
		struct buf b = BUF_INIT;

		buf_append_str(&b, "[");
		for (int i = 0; i < DT_MAX_LISTING + 5; i++)
			buf_printf(&b, "%s{\"name\":\"f%d\"}", i ? "," : "", i);
		buf_append_str(&b, "]");
		CHECK(dt_file_list_parse(b.data, b.len, "list", &l, &err) == 0, "big: %s",
		      err.message);
		CHECK(l.count == DT_MAX_LISTING && l.truncated && l.count &&
			  strcmp(l.items[l.count - 1].name, "f99999") == 0,
		      "capped listing: %zu", l.count);
		dt_file_list_clear(&l);
		/* A token bomb is refused before cJSON builds millions of nodes. */
		buf_reset(&b);
		buf_append_str(&b, "[");
		for (int i = 0; i < 4 * 1000 * 1000; i++)
			buf_append_str(&b, i ? ",{}" : "{}");
		buf_append_str(&b, "]");
		CHECK(dt_file_list_parse(b.data, b.len, "list", &l, &err) == -EIO, "token bomb");
		buf_free(&b);
	}

	/* Modes and times by themselves. */
	dir = false;
	m = dt_file_mode("ugtrwxr-x---", NULL, &dir);
	CHECK(m == (S_IFREG | 07750), "setuid/setgid/sticky letters: %o", m);
	dir = false;
	m = dt_file_mode("Lrwxrwxrwx", NULL, &dir);
	CHECK(m == (S_IFLNK | 0777), "symlink: %o", m);
	dir = false;
	m = dt_file_mode("dtrwxrwxrwx", "0755", &dir);
	CHECK(dir && m == (S_IFDIR | 01755), "sticky dir, permissions win for rwx: %o", m);
	dir = true;
	m = dt_file_mode(NULL, NULL, &dir);
	CHECK(m == (S_IFDIR | 0755), "bare dir: %o", m);
	CHECK(dt_parse_rfc3339("2026-06-23T15:33:38+02:00", &ts) == 0 &&
		  ts.tv_sec == 1782228818 - 7200 && ts.tv_nsec == 0,
	      "offset");
	CHECK(dt_parse_rfc3339("1969-12-31T23:59:59.999999999999Z", &ts) == 0 && ts.tv_sec == -1 &&
		  ts.tv_nsec == 999999999,
	      "before the epoch, digits past ns");
	CHECK(dt_parse_rfc3339("2026-02-30T00:00:00Z", &ts) == -EINVAL, "no Feb 30");
	CHECK(dt_parse_rfc3339("2026-06-23T15:33:38", &ts) == -EINVAL, "no zone");
	CHECK(dt_parse_rfc3339("2026-06-23T15:33:38Zjunk", &ts) == -EINVAL, "trailing junk");
	CHECK(dt_parse_go_time("0001-01-01 00:00:00 +0000 UTC", &ts) == 0 &&
		  ts.tv_sec == -62135596800LL,
	      "Go zero time");
}

/* ---- multipart ---- */

struct collected {
	int n;
	char name[4][32];
	char filename[4][128];
	char data[4][256];
	size_t len[4];
	bool truncated[4];
};

static int collect(void *arg, const struct dt_multipart_part *p)
{
	struct collected *c = arg;

	if (c->n < 4) {
		snprintf(c->name[c->n], sizeof(c->name[0]), "%s", p->name);
		snprintf(c->filename[c->n], sizeof(c->filename[0]), "%s",
			 p->filename ? p->filename : "(none)");
		c->len[c->n] = p->len;
		memcpy(c->data[c->n], p->data, p->len < 255 ? p->len : 255);
		c->truncated[c->n] = p->truncated;
	}
	c->n++;
	return 0;
}

static int count_parts(void *arg, const struct dt_multipart_part *p)
{
	(*(int *)arg)++;
	return 0;
}

#define CT "multipart/form-data; boundary=DAYTONA-FILE-BOUNDARY"

static const char normal_body[] =
    "--DAYTONA-FILE-BOUNDARY\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"/a/b c\"; "
    "filename*=utf-8''%2Fa%2Fb%20c\r\n"
    "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    "hello\r\n"
    "--DAYTONA-FILE-BOUNDARY\r\n"
    "Content-Disposition: form-data; name=\"error\"; filename=\"/nope\"\r\n"
    "Content-Type: application/json\r\n\r\n"
    "{\"statusCode\":404,\"code\":\"FILE_NOT_FOUND\",\"message\":\"no such file\"}\r\n"
    "--DAYTONA-FILE-BOUNDARY--\r\n";

static void test_multipart(void)
{
	struct collected c = {0};
	char boundary[64];
	int rc, parts;

	rc = dt_multipart_parse(CT, normal_body, sizeof(normal_body) - 1, collect, &c);
	CHECK(rc == 0 && c.n == 2, "normal: rc %d, %d parts", rc, c.n);
	CHECK(strcmp(c.name[0], "file") == 0 && strcmp(c.filename[0], "/a/b c") == 0 &&
		  c.len[0] == 5 && memcmp(c.data[0], "hello", 5) == 0 && !c.truncated[0],
	      "file part: %s %s %zu", c.name[0], c.filename[0], c.len[0]);
	CHECK(strcmp(c.name[1], "error") == 0 && strcmp(c.filename[1], "/nope") == 0 &&
		  strstr(c.data[1], "FILE_NOT_FOUND"),
	      "error part: %s %s", c.name[1], c.data[1]);

	/* The boundary from a quoted parameter, a preamble, and data that only looks like one. */
	{
		static const char body[] =
		    "preamble\r\n--b\"q\r\n"
		    "Content-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n"
		    "1\r\n--b\"qX not a delimiter\r\n--b\"\r\n"
		    "--b\"q--";
		struct collected d = {0};

		CHECK(dt_multipart_boundary("Multipart/Form-Data; charset=x; BOUNDARY=\"b\\\"q\"",
					    boundary, sizeof(boundary)) == 0 &&
			  strcmp(boundary, "b\"q") == 0,
		      "quoted boundary: %s", boundary);
		rc = dt_multipart_parse("multipart/form-data; boundary=\"b\\\"q\"", body,
					sizeof(body) - 1, collect, &d);
		CHECK(rc == 0 && d.n == 1 && d.len[0] == 31 &&
			  memcmp(d.data[0], "1\r\n--b\"qX not a delimiter\r\n--b\"", 31) == 0,
		      "look-alike delimiter: rc %d n %d len %zu", rc, d.n, d.len[0]);
	}

	/* Content-Length carries binary data that contains the delimiter itself. */
	{
		static const char body[] = "--B\r\nContent-Disposition: form-data; name=\"file\"; "
					   "filename=\"f\"\r\nContent-Length: 9\r\n\r\n"
					   "a\r\n--B\r\nb\r\n--B--";
		struct collected d = {0};

		rc = dt_multipart_parse("multipart/form-data; boundary=B", body, sizeof(body) - 1,
					collect, &d);
		CHECK(rc == 0 && d.n == 1 && d.len[0] == 9, "by Content-Length: rc %d n %d len %zu",
		      rc, d.n, d.len[0]);
	}

	/* Cut short inside a file (the daemon's answer to a failed read): truncated, EBADMSG. */
	{
		struct collected d = {0};
		size_t cut = (size_t)(strstr(normal_body, "hello") - normal_body) + 3;

		rc = dt_multipart_parse(CT, normal_body, cut, collect, &d);
		CHECK(rc == -EBADMSG && d.n == 1 && d.truncated[0] && d.len[0] == 3,
		      "cut inside data: rc %d n %d", rc, d.n);
	}
	/* A missing close delimiter: the complete parts arrive, and the cut is reported. */
	{
		size_t cut =
		    (size_t)(strstr(normal_body, "--DAYTONA-FILE-BOUNDARY--") - normal_body) + 23;
		struct collected d = {0};

		rc = dt_multipart_parse(CT, normal_body, cut, collect, &d);
		CHECK(rc == -EBADMSG && d.n == 2 && !d.truncated[0] && !d.truncated[1],
		      "no close marker: rc %d n %d", rc, d.n);
	}
	/* Every cut of the body, through boundaries and headers: no crash, never a false success.
	 */
	for (size_t cut = 0; cut < sizeof(normal_body) - 1; cut++) {
		size_t complete =
		    (size_t)(strstr(normal_body, "--DAYTONA-FILE-BOUNDARY--") - normal_body) + 25;

		parts = 0;
		rc = dt_multipart_parse(CT, normal_body, cut, count_parts, &parts);
		if (cut >= complete)
			CHECK(rc == 0 && parts == 2, "cut at %zu: rc %d parts %d", cut, rc, parts);
		else
			CHECK(rc != 0, "cut at %zu reads as complete", cut);
	}

	/* Garbage. */
	parts = 0;
	CHECK(dt_multipart_parse("application/json", normal_body, sizeof(normal_body) - 1,
				 count_parts, &parts) == -EINVAL,
	      "not multipart");
	CHECK(dt_multipart_parse("multipart/form-data", "x", 1, count_parts, &parts) == -EINVAL,
	      "no boundary");
	CHECK(dt_multipart_parse("multipart/form-data; boundary=", "x", 1, count_parts, &parts) ==
		  -EINVAL,
	      "empty boundary");
	CHECK(dt_multipart_parse(CT, "no delimiter at all", 19, count_parts, &parts) == -EBADMSG,
	      "no delimiter");
	CHECK(dt_multipart_parse(CT, "--DAYTONA-FILE-BOUNDARY\r\nno end of headers", 42,
				 count_parts, &parts) == -EBADMSG &&
		  parts == 0,
	      "headers never end");
	CHECK(dt_multipart_parse(CT, "--DAYTONA-FILE-BOUNDARYjunk", 27, count_parts, &parts) ==
		  -EBADMSG,
	      "junk after the first delimiter");
	{
		unsigned char noise[4096];
		uint64_t x = 88172645463325252ULL;

		/* Random bytes, with and without real delimiters sprinkled in. */
		for (int round = 0; round < 2000; round++) {
			size_t n = (size_t)(x % sizeof(noise));

			for (size_t i = 0; i < n; i++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				noise[i] = (unsigned char)x;
				if (round % 2 && x % 97 == 0 && i + 27 < n) {
					memcpy(noise + i, "\r\n--DAYTONA-FILE-BOUNDARY\r\n", 27);
					i += 26;
				}
			}
			parts = 0;
			dt_multipart_parse(CT, (const char *)noise, n, count_parts, &parts);
		}
	}
	/* A filename* with a NUL or another charset is ignored for the plain filename. */
	{
		static const char body[] =
		    "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"plain\"; "
		    "filename*=utf-8''a%00b\r\n\r\nx\r\n--B\r\n"
		    "Content-Disposition: form-data; name=\"file\"; filename*=latin1''zz\r\n\r\n"
		    "y\r\n--B--";
		struct collected d = {0};

		rc = dt_multipart_parse("multipart/form-data; boundary=B", body, sizeof(body) - 1,
					collect, &d);
		CHECK(rc == 0 && d.n == 2 && strcmp(d.filename[0], "plain") == 0 &&
			  strcmp(d.filename[1], "(none)") == 0,
		      "filename*: %s %s", d.filename[0], d.filename[1]);
	}
}

/* ---- over HTTP ---- */

static void a_listing(const struct req *rq, struct reply *rp, int nth)
{
	if (strncmp(rq->target, "/api/sandbox/sb1", 16) == 0) {
		snprintf(rp->body, sizeof(rp->body),
			 "{\"id\":\"sb1\",\"name\":\"demo\",\"state\":\"started\",\"env\":{},"
			 "\"toolboxProxyUrl\":\"http://127.0.0.1:%d/tb2\"}",
			 g_port);
		return;
	}
	if (strstr(rq->target, "/files/info")) {
		if (strstr(rq->target, "missing")) {
			rp->status = 404;
			snprintf(rp->body, sizeof(rp->body),
				 "{\"statusCode\":404,\"code\":\"FILE_NOT_FOUND\","
				 "\"message\":\"file not found\"}");
			return;
		}
		snprintf(rp->body, sizeof(rp->body),
			 "{\"name\":\"a b\",\"size\":3,\"isDir\":false,\"permissions\":\"0600\","
			 "\"modifiedAt\":\"2026-01-01T00:00:00.5Z\"}");
		return;
	}
	if (strstr(rq->target, "/version")) {
		snprintf(rp->body, sizeof(rp->body), "{\"version\":\"v0.1\"}");
		return;
	}
	if (strstr(rq->target, "-dir")) {
		snprintf(rp->body, sizeof(rp->body), "{\"dir\":\"/home/daytona\"}");
		return;
	}
	snprintf(rp->body, sizeof(rp->body),
		 "[{\"name\":\"x\",\"size\":1,\"isDir\":false},{\"name\":\"\"},"
		 "{\"name\":\"d\",\"isDir\":true,\"mode\":\"drwx------\"}]");
}

static void test_toolbox_and_listing(void)
{
	struct dt_client *c = client_for(5000, 30000);
	struct dt_toolbox *tb = toolbox_for(c), *tb2;
	struct dt_file_list l;
	struct dt_file_info fi;
	struct dt_error err;
	struct req rq;
	char line[512], *text = NULL;

	scenario(NULL, a_listing);
	CHECK(dt_fs_list(tb, "/home/daytona/a b", &l, &err) == 0, "list: %s", err.message);
	line_of(0, line, sizeof(line));
	CHECK(strcmp(line, "GET /toolbox/sb1/files?path=%2Fhome%2Fdaytona%2Fa%20b") == 0,
	      "list request: %s", line);
	last_request(&rq);
	CHECK(strcasestr(rq.headers, "\r\nAuthorization: Bearer test-key-123\r\n") &&
		  strcasestr(rq.headers, "\r\nX-Daytona-SDK-Version: 0.218.0\r\n"),
	      "toolbox headers: %s", rq.headers);
	CHECK(l.count == 2 && l.dropped == 1 && strcmp(l.items[1].name, "d") == 0 &&
		  l.items[1].mode == (S_IFDIR | 0700),
	      "listing parsed: %zu", l.count);
	dt_file_list_clear(&l);

	CHECK(dt_fs_info(tb, "/a b", &fi, &err) == 0 && fi.size == 3 &&
		  fi.mode == (S_IFREG | 0600) && fi.mtime.tv_nsec == 500000000,
	      "info: %s", err.message);
	dt_file_info_clear(&fi);
	CHECK(dt_fs_info(tb, "/missing", &fi, &err) == -ENOENT && err.http_status == 404 &&
		  strcmp(err.message, "stat /missing: file not found") == 0,
	      "info 404: %d %s", err.err, err.message);
	CHECK(dt_fs_list(tb, "", &l, &err) == -EINVAL, "empty path");

	CHECK(dt_toolbox_version(tb, &text, &err) == 0 && strcmp(text, "v0.1") == 0, "version");
	free(text);
	CHECK(dt_toolbox_home_dir(tb, &text, &err) == 0 && strcmp(text, "/home/daytona") == 0,
	      "home dir");
	free(text);

	/* Without a URL the handle asks the API; a refresh takes a new one. */
	scenario(NULL, a_listing);
	tb2 = dt_toolbox_new(c, "sb1", NULL, &err);
	CHECK(tb2 != NULL, "toolbox from the API: %s", err.message);
	if (tb2) {
		CHECK(dt_fs_list(tb2, "/", &l, &err) == 0, "list 2");
		dt_file_list_clear(&l);
		line_of(1, line, sizeof(line));
		CHECK(strcmp(line, "GET /tb2/sb1/files?path=%2F") == 0, "asked base: %s", line);
		dt_toolbox_free(tb2);
	}
	{
		struct dt_sandbox s = {0};
		char url[64];

		snprintf(url, sizeof(url), "http://127.0.0.1:%d/tb3", g_port);
		s.id = (char *)"sb1";
		s.toolbox_proxy_url = url;
		CHECK(dt_toolbox_refresh(tb, &s, &err) == 0, "refresh: %s", err.message);
		scenario(NULL, a_listing);
		CHECK(dt_fs_list(tb, "/", &l, &err) == 0, "list 3");
		dt_file_list_clear(&l);
		line_of(0, line, sizeof(line));
		CHECK(strcmp(line, "GET /tb3/sb1/files?path=%2F") == 0, "refreshed base: %s", line);
		s.toolbox_proxy_url = (char *)"ftp://x/tb";
		CHECK(dt_toolbox_refresh(tb, &s, &err) == -EINVAL, "ftp toolbox URL");
		s.toolbox_proxy_url = (char *)"http://u:p@x/tb";
		CHECK(dt_toolbox_refresh(tb, &s, &err) == -EINVAL && !strstr(err.message, "u:p"),
		      "credentials in the toolbox URL: %s", err.message);
		s.id = (char *)"other";
		CHECK(dt_toolbox_refresh(tb, &s, &err) == -EINVAL, "another sandbox");
	}
	dt_toolbox_free(tb);
	dt_client_free(c);
}

static void a_status_by_path(const struct req *rq, struct reply *rp, int nth)
{
	static const struct {
		const char *needle;
		int status;
	} table[] = {{"exists", 409}, {"dir", 400}, {"ro", 403}, {"gone", 404}};

	if (strstr(rq->target, "stopped")) {
		rp->status = 409;
		snprintf(rp->body, sizeof(rp->body),
			 "{\"statusCode\":409,\"message\":\"Sandbox sb1 is not started: "
			 "stopped\"}");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		if (strstr(rq->target, table[i].needle)) {
			rp->status = table[i].status;
			snprintf(rp->body, sizeof(rp->body),
				 "{\"statusCode\":%d,\"message\":\"status %d\"}", table[i].status,
				 table[i].status);
			return;
		}
	}
	if (strstr(rq->target, "/files/search"))
		snprintf(rp->body, sizeof(rp->body), "{\"files\":[\"/a/x.c\",\"/b/y.c\"]}");
	else if (strstr(rq->target, "/files/find"))
		snprintf(rp->body, sizeof(rp->body),
			 "[{\"file\":\"/a/x.c\",\"line\":3,\"content\":\"int x;\"}]");
	else if (strstr(rq->target, "/files/replace"))
		snprintf(rp->body, sizeof(rp->body),
			 "[{\"file\":\"/a/x.c\",\"success\":true},"
			 "{\"file\":\"/b\",\"success\":false,\"error\":\"denied\"}]");
	else if (strstr(rq->target, "/files/folder"))
		rp->status = 201;
	else if (strcmp(rq->method, "DELETE") == 0)
		rp->status = 204;
}

static void test_file_ops(void)
{
	struct dt_client *c = client_for(5000, 30000);
	struct dt_toolbox *tb = toolbox_for(c);
	struct dt_fs_match_list ml;
	struct dt_string_list sl;
	struct dt_fs_replace_list rl;
	struct dt_error err;
	struct req rq;
	char line[512];
	const char *files[] = {"/a/x.c", "/b"};

	scenario(NULL, a_status_by_path);
	CHECK(dt_fs_mkdir(tb, "/w/new", 0755, &err) == 0, "mkdir: %s", err.message);
	line_of(0, line, sizeof(line));
	CHECK(strcmp(line, "POST /toolbox/sb1/files/folder?path=%2Fw%2Fnew&mode=0755") == 0,
	      "mkdir request: %s", line);
	CHECK(dt_fs_delete(tb, "/w/new", true, &err) == 0, "delete: %s", err.message);
	line_of(1, line, sizeof(line));
	CHECK(strcmp(line, "DELETE /toolbox/sb1/files?path=%2Fw%2Fnew&recursive=true") == 0,
	      "delete request: %s", line);
	CHECK(dt_fs_delete(tb, "/w/file", false, &err) == 0, "delete file");
	line_of(2, line, sizeof(line));
	CHECK(strcmp(line, "DELETE /toolbox/sb1/files?path=%2Fw%2Ffile") == 0, "plain delete: %s",
	      line);
	CHECK(dt_fs_move(tb, "/a", "/b c", &err) == 0, "move");
	line_of(3, line, sizeof(line));
	CHECK(strcmp(line, "POST /toolbox/sb1/files/move?source=%2Fa&destination=%2Fb%20c") == 0,
	      "move request: %s", line);
	last_request(&rq);
	CHECK(strcasestr(rq.headers, "\r\nContent-Length: 0\r\n") &&
		  !strcasestr(rq.headers, "Content-Type"),
	      "an empty POST: %s", rq.headers);
	CHECK(dt_fs_set_permissions(tb, "/a", 0640, "1000", NULL, &err) == 0, "chmod");
	line_of(4, line, sizeof(line));
	CHECK(strcmp(line, "POST /toolbox/sb1/files/permissions?path=%2Fa&mode=0640&owner=1000") ==
		  0,
	      "permissions request: %s", line);

	CHECK(dt_fs_move(tb, "/a", "/exists", &err) == -EEXIST, "409: %d", err.err);
	CHECK(dt_fs_delete(tb, "/dir", false, &err) == -EINVAL, "400: %d", err.err);
	CHECK(dt_fs_mkdir(tb, "/ro/x", 0700, &err) == -EACCES, "403: %d", err.err);
	CHECK(dt_fs_delete(tb, "/gone", false, &err) == -ENOENT, "404: %d", err.err);
	CHECK(dt_fs_move(tb, "/stopped", "/x", &err) == -EHOSTDOWN && err.err == EHOSTDOWN &&
		  strstr(err.message, "not started"),
	      "a stopped sandbox: %d %s", err.err, err.message);

	CHECK(dt_fs_find(tb, "/a", "int", &ml, &err) == 0 && ml.count == 1 &&
		  ml.items[0].line == 3 && strcmp(ml.items[0].content, "int x;") == 0,
	      "find: %s", err.message);
	dt_fs_match_list_clear(&ml);
	CHECK(dt_fs_search(tb, "/", "*.c", &sl, &err) == 0 && sl.count == 2 &&
		  strcmp(sl.items[1], "/b/y.c") == 0,
	      "search: %s", err.message);
	last_request(&rq);
	CHECK(strcmp(rq.target, "/toolbox/sb1/files/search?path=%2F&pattern=%2A.c") == 0,
	      "search request: %s", rq.target);
	dt_string_list_clear(&sl);
	CHECK(dt_fs_replace(tb, files, 2, "x", "y", &rl, &err) == 0 && rl.count == 2 &&
		  rl.items[0].success && !rl.items[1].success &&
		  strcmp(rl.items[1].error, "denied") == 0,
	      "replace: %s", err.message);
	last_request(&rq);
	CHECK(strcmp((char *)rq.body, "{\"files\":[\"/a/x.c\",\"/b\"],\"pattern\":\"x\","
				      "\"newValue\":\"y\"}") == 0,
	      "replace body: %.*s", (int)rq.body_kept, rq.body);
	dt_fs_replace_list_clear(&rl);
	dt_toolbox_free(tb);
	dt_client_free(c);
}

/* A file of FILE_SIZE bytes of pat() behind /files/download, with a Range mode. */
static int64_t g_file_size;
static enum { RANGE_HONOURED, RANGE_IGNORED, RANGE_WRONG_START } g_range_mode;

static void a_download(const struct req *rq, struct reply *rp, int nth)
{
	const char *range = header_in(rq->headers, "Range");
	long long a, b;

	if (strstr(rq->target, "missing")) {
		rp->status = 404;
		snprintf(rp->body, sizeof(rp->body), "{\"message\":\"file not found\"}");
		return;
	}
	snprintf(rp->headers, sizeof(rp->headers), "Content-Type: application/octet-stream\r\n");
	if (!range || g_range_mode == RANGE_IGNORED ||
	    sscanf(range, "bytes=%lld-%lld", &a, &b) != 2) {
		rp->pattern_len = g_file_size;
		return;
	}
	if (a >= g_file_size) {
		rp->status = 416;
		snprintf(rp->headers, sizeof(rp->headers), "Content-Range: bytes */%" PRId64 "\r\n",
			 g_file_size);
		return;
	}
	if (b >= g_file_size)
		b = g_file_size - 1;
	if (g_range_mode == RANGE_WRONG_START)
		a++;
	rp->status = 206;
	snprintf(rp->headers, sizeof(rp->headers), "Content-Range: bytes %lld-%lld/%" PRId64 "\r\n",
		 a, b, g_file_size);
	rp->pattern_from = a;
	rp->pattern_len = b - a + 1;
}

static bool matches_pattern(const unsigned char *p, size_t n, int64_t from)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pat(from + (int64_t)i))
			return false;
	return true;
}

static void test_ranges(void)
{
	struct dt_client *c = client_for(5000, 30000);
	struct dt_toolbox *tb = toolbox_for(c);
	struct dt_range_result res;
	struct dt_error err;
	unsigned char buf[4096];
	char path[64], line[512];
	struct req rq;
	int fd;
	struct stat st;

	g_file_size = MIB;
	g_range_mode = RANGE_HONOURED;
	scenario(NULL, a_download);
	CHECK(dt_fs_read_range(tb, "/f", 1000, 100, buf, &res, &err) == 0, "206: %s", err.message);
	last_request(&rq);
	CHECK(strcasestr(rq.headers, "\r\nRange: bytes=1000-1099\r\n") != NULL, "Range header: %s",
	      rq.headers);
	CHECK(res.status == DT_RANGE_PARTIAL && res.bytes == 100 && res.file_size == MIB &&
		  matches_pattern(buf, 100, 1000),
	      "206 result: %d %" PRId64 " %" PRId64, res.status, res.bytes, res.file_size);

	/* The last bytes: a short 206. */
	CHECK(dt_fs_read_range(tb, "/f", MIB - 10, sizeof(buf), buf, &res, &err) == 0 &&
		  res.status == DT_RANGE_PARTIAL && res.bytes == 10 &&
		  matches_pattern(buf, 10, MIB - 10),
	      "short 206: %" PRId64, res.bytes);
	/* Past the end: 416 is EOF. */
	CHECK(dt_fs_read_range(tb, "/f", MIB, 100, buf, &res, &err) == 0 &&
		  res.status == DT_RANGE_EOF && res.bytes == 0 && res.file_size == MIB,
	      "416: %d %s", res.status, err.message);
	CHECK(dt_fs_read_range(tb, "/f", -1, 100, buf, &res, &err) == -EINVAL, "negative offset");

	/* A server that ignores Range: the slice is cut from the stream, which stops early. */
	g_range_mode = RANGE_IGNORED;
	CHECK(dt_fs_read_range(tb, "/f", 300000, 4096, buf, &res, &err) == 0, "200: %s",
	      err.message);
	CHECK(res.status == DT_RANGE_WHOLE && res.bytes == 4096 && res.file_size == MIB &&
		  matches_pattern(buf, 4096, 300000),
	      "200 slice: %d %" PRId64, res.status, res.bytes);

	/* Into an fd: a sparse mirror at the file's own offsets. */
	g_range_mode = RANGE_HONOURED;
	fd = temp_file(path, sizeof(path));
	CHECK(dt_fs_download_range_fd(tb, "/f", 500000, 70000, fd, &res, &err) == 0 &&
		  res.status == DT_RANGE_PARTIAL && res.bytes == 70000,
	      "206 into fd: %s", err.message);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 570000, "mirror size %lld",
	      (long long)st.st_size);
	{
		unsigned char *m = malloc(70000);

		CHECK(pread(fd, m, 70000, 500000) == 70000 && matches_pattern(m, 70000, 500000),
		      "mirror bytes");
		free(m);
	}
	g_range_mode = RANGE_IGNORED;
	CHECK(dt_fs_download_range_fd(tb, "/f", 500000, 70000, fd, &res, &err) == 0 &&
		  res.status == DT_RANGE_WHOLE && res.bytes == MIB,
	      "200 into fd: %d %" PRId64, res.status, res.bytes);
	{
		int64_t len;
		uint64_t h = hash_fd(fd, &len);

		CHECK(len == MIB && h == hash_pattern(0, MIB), "whole file mirrored: %" PRId64,
		      len);
	}
	close(fd);
	unlink(path);

	g_range_mode = RANGE_WRONG_START;
	CHECK(dt_fs_read_range(tb, "/f", 1000, 100, buf, &res, &err) == -EIO &&
		  strstr(err.message, "another range"),
	      "a 206 for another range: %d %s", err.err, err.message);

	/* An error answer never reaches the fd. */
	fd = temp_file(path, sizeof(path));
	CHECK(dt_fs_download_fd(tb, "/missing", fd, NULL, &err) == -ENOENT, "download 404");
	CHECK(fstat(fd, &st) == 0 && st.st_size == 0, "404 body written to the fd: %lld",
	      (long long)st.st_size);
	line_of(g_requests - 1, line, sizeof(line));
	CHECK(strcmp(line, "GET /toolbox/sb1/files/download?path=%2Fmissing") == 0, "path: %s",
	      line);
	close(fd);
	unlink(path);
	dt_toolbox_free(tb);
	dt_client_free(c);
}

static void test_big_download(void)
{
	struct dt_client *c = client_for(5000, 30000);
	struct dt_toolbox *tb = toolbox_for(c);
	struct dt_error err;
	char path[64];
	int64_t size = 0, len;
	long rss, peak;
	int fd = temp_file(path, sizeof(path)), pipefd[2];

	g_file_size = 20 * MIB + 123;
	g_range_mode = RANGE_HONOURED;
	scenario(NULL, a_download);
	reset_peak_rss();
	rss = status_kb("VmRSS");
	CHECK(dt_fs_download_fd(tb, "/big", fd, &size, &err) == 0, "download: %s", err.message);
	peak = status_kb("VmHWM");
	CHECK(size == g_file_size, "size %" PRId64, size);
	CHECK(hash_fd(fd, &len) == hash_pattern(0, g_file_size) && len == g_file_size,
	      "content of the 20 MiB download");
	CHECK(peak - rss < MAX_GROWTH_KB, "memory grew by %ld KiB for a 20 MiB download",
	      peak - rss);
	close(fd);
	unlink(path);

	/* Into a pipe: plain writes, in order. */
	g_file_size = 100000;
	if (pipe(pipefd) == 0) {
		unsigned char *got = malloc(200000);
		ssize_t n, total = 0;

		/* Nobody reads while the download runs: the pipe must hold it all. */
		CHECK(fcntl(pipefd[1], F_SETPIPE_SZ, 256 * 1024) >= 200000, "pipe size");

		CHECK(dt_fs_download_fd(tb, "/small", pipefd[1], &size, &err) == 0 &&
			  size == 100000,
		      "pipe: %s", err.message);
		close(pipefd[1]);
		while ((n = read(pipefd[0], got + total, 200000 - (size_t)total)) > 0)
			total += n;
		CHECK(total == 100000 && matches_pattern(got, 100000, 0), "pipe content");
		close(pipefd[0]);
		free(got);
	}
	dt_toolbox_free(tb);
	dt_client_free(c);
}

static void a_slow(const struct req *rq, struct reply *rp, int nth)
{
	/* 16 chunks of 64 KiB, 100 ms apart: 1.6 s, far past the 500 ms request deadline. */
	rp->pattern_len = 16 * 65536;
	rp->chunk_delay_ms = 100;
}

static void a_stall(const struct req *rq, struct reply *rp, int nth)
{
	rp->pattern_len = MIB;
	rp->stall_after = 1000;
}

static bool cancel_at(void *arg)
{
	return now_mono_ms() >= *(int64_t *)arg;
}

static void test_timeouts(void)
{
	struct dt_client *c = client_for(500, 1000);
	struct dt_toolbox *tb = toolbox_for(c);
	struct dt_error err;
	char path[64];
	int64_t size, t0, took, at;
	int fd = temp_file(path, sizeof(path));

	scenario(NULL, a_slow);
	t0 = now_mono_ms();
	CHECK(dt_fs_download_fd(tb, "/slow", fd, &size, &err) == 0 && size == 16 * 65536,
	      "a slow but moving transfer must not hit the request deadline: %s", err.message);
	CHECK(now_mono_ms() - t0 >= 1400, "it took %lld ms", (long long)(now_mono_ms() - t0));

	scenario(NULL, a_stall);
	t0 = now_mono_ms();
	CHECK(dt_fs_download_fd(tb, "/stall", fd, &size, &err) == -ETIMEDOUT && err.transport,
	      "stalled transfer: %d %s", err.err, err.message);
	took = now_mono_ms() - t0;
	CHECK(took >= 900 && took < 4500, "stall detected after %lld ms", (long long)took);
	CHECK(strstr(err.message, "stalled") != NULL, "message: %s", err.message);

	/* Cancellation interrupts a stalled transfer within about 100 ms. */
	scenario(NULL, a_stall);
	{
		struct dt_client *c2 = client_for(500, 60000);
		struct dt_toolbox *tb2 = toolbox_for(c2);

		at = now_mono_ms() + 300;
		dt_set_cancel_hook(cancel_at, &at);
		CHECK(dt_fs_download_fd(tb2, "/stall", fd, &size, &err) == -EINTR, "cancel: %d %s",
		      err.err, err.message);
		took = now_mono_ms() - at;
		CHECK(took < 250, "cancel took %lld ms", (long long)took);
		dt_set_cancel_hook(NULL, NULL);
		dt_toolbox_free(tb2);
		dt_client_free(c2);
	}
	close(fd);
	unlink(path);
	dt_toolbox_free(tb);
	dt_client_free(c);
}

/* ---- uploads ---- */

static bool refuse_v2(const struct req *rq, struct reply *rp)
{
	if (!strstr(rq->target, "/files/upload-v2"))
		return false;
	rp->status = 404;
	snprintf(rp->body, sizeof(rp->body), "404 page not found");
	return true;
}

static void a_upload(const struct req *rq, struct reply *rp, int nth)
{
	if (strstr(rq->target, "/files/upload-v2"))
		snprintf(rp->body, sizeof(rp->body),
			 "{\"name\":\"x\",\"path\":\"/x\",\"type\":\"file\"}");
	else if (memmem(rq->body, rq->body_kept, "/denied/", 8)) {
		rp->status = 400;
		snprintf(rp->body, sizeof(rp->body),
			 "{\"errors\":[{\"path\":\"/denied/x\",\"error\":\"permission denied\"}],"
			 "\"files\":[]}");
	} else
		snprintf(rp->body, sizeof(rp->body), "{\"files\":[{\"path\":\"/x\",\"bytes\":1}]}");
}

static int fill_pattern_file(int64_t size, char *path, size_t path_size)
{
	unsigned char chunk[65536];
	int fd = temp_file(path, path_size);

	for (int64_t done = 0; done < size;) {
		size_t n =
		    size - done < (int64_t)sizeof(chunk) ? (size_t)(size - done) : sizeof(chunk);

		for (size_t i = 0; i < n; i++)
			chunk[i] = pat(done + (int64_t)i);
		if (write(fd, chunk, n) != (ssize_t)n) {
			perror("write");
			exit(2);
		}
		done += (int64_t)n;
	}
	return fd;
}

static void tb2_cancel_check(struct dt_client *c, int fd, int64_t at)
{
	struct dt_toolbox *tb = toolbox_for(c);
	struct dt_error err;

	scenario(NULL, a_upload);
	g_slow_read_ms = 50;
	dt_set_cancel_hook(cancel_at, &at);
	CHECK(dt_fs_upload_fd(tb, "/tmp/slow", fd, -1, &err) == -EINTR, "cancelled upload: %d %s",
	      err.err, err.message);
	dt_set_cancel_hook(NULL, NULL);
	g_slow_read_ms = 0;
	dt_toolbox_free(tb);
}

static void test_uploads(void)
{
	struct dt_client *c = client_for(5000, 30000);
	struct dt_toolbox *tb = toolbox_for(c);
	struct dt_error err;
	struct req rq;
	char path[64], line[512];
	int64_t big = 20 * MIB + 7;
	long rss, peak;
	int fd = fill_pattern_file(big, path, sizeof(path));

	/*
	 * A JSON POST first, so the pooled handle the upload reuses has
	 * carried an in-memory body (freed since) before.
	 */
	scenario(NULL, a_upload);
	{
		struct dt_fs_replace_list rl;
		const char *files[] = {"/a"};

		dt_fs_replace(tb, files, 1, "x", "y", &rl, &err);
		dt_fs_replace_list_clear(&rl);
	}
	/* upload-v2, raw body, streamed from the fd. */
	scenario(NULL, a_upload);
	lseek(fd, 12345, SEEK_SET); /* the fd's own offset plays no part */
	reset_peak_rss();
	rss = status_kb("VmRSS");
	CHECK(dt_fs_upload_fd(tb, "/tmp/big.bin", fd, -1, &err) == 0, "upload: %s", err.message);
	peak = status_kb("VmHWM");
	last_request(&rq);
	line_of(0, line, sizeof(line));
	CHECK(strcmp(line, "POST /toolbox/sb1/files/upload-v2?path=%2Ftmp%2Fbig.bin") == 0,
	      "upload request: %s", line);
	CHECK(rq.content_length == big && rq.body_total == big &&
		  rq.body_hash == hash_pattern(0, big),
	      "the peer got %" PRId64 " of %" PRId64 " bytes", rq.body_total, big);
	CHECK(strcasestr(rq.headers, "\r\nContent-Type: application/octet-stream\r\n") &&
		  strcasestr(rq.headers, "\r\nExpect: 100-continue\r\n"),
	      "upload headers: %s", rq.headers);
	CHECK(rq.body_reads > 20, "the body came in %d reads", rq.body_reads);
	CHECK(peak - rss < MAX_GROWTH_KB, "memory grew by %ld KiB for a 20 MiB upload", peak - rss);
	CHECK(dt_toolbox_upload_mode(tb) == 1, "upload-v2 remembered");
	CHECK(lseek(fd, 0, SEEK_CUR) == 12345, "the fd's offset moved");

	/* A part of the file: the first @size bytes. */
	CHECK(dt_fs_upload_fd(tb, "/tmp/part", fd, 1000, &err) == 0, "partial upload");
	last_request(&rq);
	CHECK(rq.body_total == 1000 && rq.body_hash == hash_pattern(0, 1000), "first 1000 bytes");
	/* A size larger than the file: it "shrank", EIO, nothing claimed done. */
	CHECK(dt_fs_upload_fd(tb, "/tmp/more", fd, big + 10, &err) == -EIO &&
		  strstr(err.message, "shrank"),
	      "short file: %d %s", err.err, err.message);
	/* An empty file. */
	CHECK(dt_fs_upload_fd(tb, "/tmp/empty", fd, 0, &err) == 0, "empty upload: %s", err.message);
	last_request(&rq);
	CHECK(rq.content_length == 0 && rq.body_total == 0, "empty body");
	dt_toolbox_free(tb);

	/* A daemon without upload-v2: 404, then bulk-upload, remembered. */
	tb = toolbox_for(c);
	scenario(refuse_v2, a_upload);
	CHECK(dt_fs_upload_fd(tb, "/w/dir/x.bin", fd, 300000, &err) == 0, "fallback: %s",
	      err.message);
	{
		char l0[512], l1[512];

		line_of(0, l0, sizeof(l0));
		line_of(1, l1, sizeof(l1));
		CHECK(strcmp(l0, "POST /toolbox/sb1/files/upload-v2?path=%2Fw%2Fdir%2Fx.bin") ==
			      0 &&
			  strcmp(l1, "POST /toolbox/sb1/files/bulk-upload") == 0,
		      "fallback requests: %s, %s", l0, l1);
	}
	last_request(&rq);
	{
		const char *b = (const char *)rq.body;
		const char *ppath = memmem(b, rq.body_kept, "name=\"files[0].path\"", 20);
		const char *pfile =
		    memmem(b, rq.body_kept, "name=\"files[0].file\"; filename=\"x.bin\"", 38);
		const char *data =
		    pfile ? memmem(pfile, rq.body_kept - (size_t)(pfile - b), "\r\n\r\n", 4) : NULL;

		CHECK(rq.content_length > 300000 &&
			  strcasestr(rq.headers, "Content-Type: multipart/form-data; boundary="),
		      "multipart with a length: %s", rq.headers);
		CHECK(ppath && pfile && ppath < pfile, "path part before file part");
		CHECK(ppath && memmem(ppath, 200, "\r\n\r\n/w/dir/x.bin\r\n", 18),
		      "path part value");
		CHECK(data && (size_t)(data + 4 - b) + 300000 <= rq.body_kept &&
			  matches_pattern((const unsigned char *)data + 4, 300000, 0),
		      "file bytes in the part");
	}
	CHECK(dt_toolbox_upload_mode(tb) == -1, "bulk-upload remembered");
	scenario(refuse_v2, a_upload);
	CHECK(dt_fs_upload_fd(tb, "/w/y", fd, 10, &err) == 0 && g_requests == 1,
	      "straight to bulk");
	line_of(0, line, sizeof(line));
	CHECK(strcmp(line, "POST /toolbox/sb1/files/bulk-upload") == 0, "no more v2: %s", line);
	CHECK(dt_fs_upload_fd(tb, "/denied/x", fd, 10, &err) == -EINVAL &&
		  strcmp(err.message, "upload /denied/x: permission denied") == 0,
	      "bulk-upload error: %s", err.message);
	dt_toolbox_free(tb);

	/* Cancellation stops an upload the server reads slowly, within about 100 ms. */
	{
		int64_t at = now_mono_ms() + 300, took;

		tb2_cancel_check(c, fd, at);
		took = now_mono_ms() - at;
		CHECK(took < 250, "cancelling an upload took %lld ms", (long long)took);
	}

	/* A known upload-v2 daemon answering 404 is not a reason to fall back. */
	tb = toolbox_for(c);
	dt_toolbox_set_upload_mode(tb, 1);
	scenario(refuse_v2, a_upload);
	CHECK(dt_fs_upload_fd(tb, "/x", fd, 10, &err) == -ENOENT && g_requests == 1,
	      "404 with upload-v2 known: %d, %d requests", err.err, (int)g_requests);
	dt_toolbox_free(tb);

	close(fd);
	unlink(path);
	dt_client_free(c);
}

/* ---- bulk download ---- */

static void a_bulk(const struct req *rq, struct reply *rp, int nth)
{
	static const char body[] =
	    "--DAYTONA-FILE-BOUNDARY\r\n"
	    "Content-Disposition: form-data; name=\"file\"; filename=\"/a\"\r\n"
	    "Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nAAA\r\n"
	    "--DAYTONA-FILE-BOUNDARY\r\n"
	    "Content-Disposition: form-data; name=\"error\"; filename=\"/missing\"\r\n"
	    "Content-Type: application/json\r\n\r\n"
	    "{\"statusCode\":404,\"code\":\"FILE_NOT_FOUND\",\"message\":\"not found\"}\r\n"
	    "--DAYTONA-FILE-BOUNDARY\r\n"
	    "Content-Disposition: form-data; name=\"file\"; filename=\"/cut\"\r\n"
	    "Content-Length: 100\r\n\r\npartial";

	snprintf(rp->headers, sizeof(rp->headers),
		 "Content-Type: multipart/form-data; boundary=DAYTONA-FILE-BOUNDARY\r\n");
	memcpy(rp->body, body, sizeof(body) - 1);
	rp->body_len = sizeof(body) - 1;
}

struct bulk_seen {
	int calls;
	char data[4][16];
	int err[4];
};

static int bulk_cb(void *arg, size_t index, const char *path, const void *data, size_t len,
		   const struct dt_error *file_err)
{
	struct bulk_seen *s = arg;

	if (index < 4) {
		snprintf(s->data[index], sizeof(s->data[0]), "%.*s", (int)(len < 15 ? len : 15),
			 data ? (const char *)data : "");
		s->err[index] = file_err ? file_err->err : 0;
	}
	s->calls++;
	return 0;
}

static void test_bulk_download(void)
{
	struct dt_client *c = client_for(5000, 30000);
	struct dt_toolbox *tb = toolbox_for(c);
	const char *paths[] = {"/a", "/missing", "/cut", "/never"};
	struct bulk_seen seen = {0};
	struct dt_error err;
	struct req rq;

	scenario(NULL, a_bulk);
	CHECK(dt_fs_bulk_download(tb, paths, 4, bulk_cb, &seen, &err) == 0, "bulk: %s",
	      err.message);
	last_request(&rq);
	CHECK(strcmp((char *)rq.body, "{\"paths\":[\"/a\",\"/missing\",\"/cut\",\"/never\"]}") == 0,
	      "bulk body: %.*s", (int)rq.body_kept, rq.body);
	CHECK(seen.calls == 4, "calls %d", seen.calls);
	CHECK(strcmp(seen.data[0], "AAA") == 0 && seen.err[0] == 0, "file part");
	CHECK(seen.err[1] == ENOENT, "error part: %d", seen.err[1]);
	CHECK(seen.err[2] == EIO, "cut part: %d", seen.err[2]);
	CHECK(seen.err[3] == EIO, "no part: %d", seen.err[3]);
	dt_toolbox_free(tb);
	dt_client_free(c);
}

int main(void)
{
	pthread_t acceptor;

	signal(SIGPIPE, SIG_IGN);
	g_last_body = malloc(KEPT_BODY + 1);
	g_listen_fd = listen_on_loopback(&g_port);
	pthread_create(&acceptor, NULL, accept_loop, NULL);

	test_fileinfo_parsing();
	test_multipart();
	test_toolbox_and_listing();
	test_file_ops();
	test_ranges();
	test_big_download();
	test_timeouts();
	test_uploads();
	test_bulk_download();

	g_stop = true;
	pthread_join(acceptor, NULL);
	close(g_listen_fd);
	usleep(250000);
	free(g_last_body);
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("all toolbox file checks passed\n");
	return 0;
}
