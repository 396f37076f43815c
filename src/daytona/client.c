/*
 * The request engine: one dt_client serves every thread.
 *
 * Connections: a small pool of (easy, multi) pairs. A thread takes a pair
 * for one request and gives it back, so the pair's live connection (kept
 * in its multi's cache) is reused by whichever thread comes next. DNS and
 * TLS sessions are shared by one CURLSH with pthread locks. The connection
 * cache itself is deliberately not put in the CURLSH: libcurl 7.88 does not
 * protect a shared connection cache used from several threads (curl known
 * bug 11.11, curl/curl#4915), and a pooled handle gives the same reuse.
 *
 * Each transfer runs through curl_multi_poll in 100 ms slices, so a
 * cancellation (a FUSE interrupt) is seen within 100 ms even while a
 * server sends nothing; the XFERINFO callback checks it too.
 */
#include "dt_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define DT_POOL_MAX_IDLE 16

struct dt_conn {
	CURL *easy;
	CURLM *multi;
	struct dt_conn *next;
};

struct dt_client {
	char *api_url;     /* without a trailing slash */
	char *auth_header; /* "Authorization: Bearer ...": wiped on free */
	char *target;
	char *ca_file;
	long connect_timeout_ms;
	long request_timeout_ms;
	long wait_timeout_ms;
	long transfer_stall_s;
	int max_retries;
	/*
	 * The lines every request carries (auth, source, version, accept). A
	 * request chains its own few lines (Content-Type, Range...) in front of
	 * this list instead of copying it, so the secret exists once in memory.
	 * curl only reads the list, so any number of threads can share it.
	 */
	struct curl_slist *headers_common;
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	struct dt_conn *idle;
	unsigned nidle;
};

static __thread dt_cancel_fn tl_cancel_fn;
static __thread void *tl_cancel_arg;

void dt_set_cancel_hook(dt_cancel_fn fn, void *arg)
{
	tl_cancel_fn = fn;
	tl_cancel_arg = fn ? arg : NULL;
}

bool dt_cancelled(void)
{
	return tl_cancel_fn && tl_cancel_fn(tl_cancel_arg);
}

int dt_sleep_ms(long ms)
{
	int64_t end = now_mono_ms() + ms;

	for (;;) {
		int64_t left = end - now_mono_ms();
		struct timespec ts;

		if (dt_cancelled())
			return -EINTR;
		if (left <= 0)
			return 0;
		if (left > 100)
			left = 100;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left * 1000000L;
		nanosleep(&ts, NULL);
	}
}

/* ---- paths ---- */

int dt_path_segment(struct buf *b, const char *segment)
{
	char *escaped;
	int rc;

	if (!segment || !segment[0] || strcmp(segment, ".") == 0 || strcmp(segment, "..") == 0)
		return -EINVAL;
	/* Since 7.82 the handle argument is unused; NULL avoids needing one here. */
	escaped = curl_easy_escape(NULL, segment, (int)strlen(segment));
	if (!escaped)
		return -ENOMEM;
	rc = buf_printf(b, "/%s", escaped);
	curl_free(escaped);
	return rc;
}

int dt_path_query(struct buf *b, const char *key, const char *value)
{
	char *escaped = curl_easy_escape(NULL, value, (int)strlen(value));
	int rc;

	if (!escaped)
		return -ENOMEM;
	rc = buf_printf(b, "%c%s=%s", b->data && strchr(b->data, '?') ? '&' : '?', key, escaped);
	curl_free(escaped);
	return rc;
}

int dt_path(struct buf *b, ...)
{
	const char *segment;
	va_list ap;
	int rc = 0;

	va_start(ap, b);
	while (rc == 0 && (segment = va_arg(ap, const char *)))
		rc = dt_path_segment(b, segment);
	va_end(ap);
	return rc;
}

/* ---- client ---- */

static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *user)
{
	struct dt_client *c = user;

	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *user)
{
	struct dt_client *c = user;

	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&c->share_locks[data]);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool has_line_break(const char *s)
{
	return s && strpbrk(s, "\r\n");
}

/* Only http(s), no credentials in the URL: they would end up in fsname and logs. */
int dt_check_url(const char *url, const char *what, struct dt_error *err)
{
	char *scheme = NULL, *user = NULL, *password = NULL;
	CURLU *u;
	int rc = 0;

	if (has_line_break(url))
		return dt_error_set(err, EINVAL, 0, what, "must be one line");
	u = curl_url();
	if (!u)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		rc = dt_error_set(err, EINVAL, 0, what, "not a URL: %s", url);
		goto out;
	}
	curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	curl_url_get(u, CURLUPART_USER, &user, 0);
	curl_url_get(u, CURLUPART_PASSWORD, &password, 0);
	if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		rc = dt_error_set(err, EINVAL, 0, what, "only http and https URLs work");
	else if (user || password)
		rc = dt_error_set(err, EINVAL, 0, what,
				  "must not carry credentials; use the key file or environment");
	else if (strchr(url, '?') || strchr(url, '#'))
		rc = dt_error_set(err, EINVAL, 0, what, "must not have a query or fragment");
out:
	curl_free(scheme);
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(u);
	return rc;
}

static struct curl_slist *headers_add(struct curl_slist *list, const char *line, bool *ok)
{
	struct curl_slist *next;

	if (!*ok)
		return list;
	next = curl_slist_append(list, line);
	if (!next) {
		*ok = false;
		return list;
	}
	return next;
}

static int build_headers(struct dt_client *c, const struct dt_config *cfg)
{
	struct buf line = BUF_INIT;
	struct curl_slist *list;
	bool ok = true;

	list = headers_add(NULL, c->auth_header, &ok);
	if (cfg->organization_id && cfg->organization_id[0]) {
		if (buf_printf(&line, "X-Daytona-Organization-ID: %s", cfg->organization_id))
			ok = false;
		list = headers_add(list, buf_str(&line), &ok);
	}
	list = headers_add(list, "X-Daytona-Source: " DT_SOURCE, &ok);
	list = headers_add(list, "X-Daytona-SDK-Version: " DT_SDK_VERSION, &ok);
	list = headers_add(list, "Accept: application/json", &ok);
	c->headers_common = list;
	buf_free(&line);
	return ok ? 0 : -ENOMEM;
}

struct dt_client *dt_client_new(const struct dt_config *cfg, struct dt_error *err)
{
	struct dt_error scratch;
	struct dt_client *c = NULL;
	struct buf auth = BUF_INIT;
	const char *secret;
	size_t len;

	if (!err)
		err = &scratch;
	memset(err, 0, sizeof(*err));
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK) {
		dt_error_set(err, EIO, 0, "client", "libcurl failed to initialize");
		return NULL;
	}
	if (!cfg || !cfg->api_url || !cfg->api_url[0]) {
		dt_error_set(err, EINVAL, 0, "client", "no API URL");
		return NULL;
	}
	if (dt_check_url(cfg->api_url, "api_url", err))
		return NULL;
	secret = cfg->api_key && cfg->api_key[0] ? cfg->api_key : cfg->jwt;
	if (!secret || !secret[0]) {
		dt_error_set(err, EACCES, 0, "client", "no API key or JWT");
		return NULL;
	}
	if (secret == cfg->jwt && !(cfg->organization_id && cfg->organization_id[0])) {
		dt_error_set(err, EINVAL, 0, "client", "a JWT needs an organization id");
		return NULL;
	}
	if (has_line_break(secret) || has_line_break(cfg->organization_id) ||
	    has_line_break(cfg->target)) {
		dt_error_set(err, EINVAL, 0, "client", "credentials must be one line");
		return NULL;
	}

	c = calloc(1, sizeof(*c));
	if (!c)
		goto nomem;
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	pthread_mutex_init(&c->pool_lock, NULL);

	c->api_url = strdup(cfg->api_url);
	if (!c->api_url)
		goto nomem;
	len = strlen(c->api_url);
	while (len > 0 && c->api_url[len - 1] == '/')
		c->api_url[--len] = '\0';
	if (buf_printf(&auth, "Authorization: Bearer %s", secret))
		goto nomem;
	c->auth_header = buf_steal(&auth);
	if (cfg->target && cfg->target[0] && !(c->target = strdup(cfg->target)))
		goto nomem;
	if (cfg->ca_file && cfg->ca_file[0] && !(c->ca_file = strdup(cfg->ca_file)))
		goto nomem;
	c->connect_timeout_ms =
		cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : DT_DEFAULT_CONNECT_TIMEOUT_MS;
	c->request_timeout_ms =
		cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : DT_DEFAULT_REQUEST_TIMEOUT_MS;
	c->wait_timeout_ms =
		cfg->wait_timeout_ms > 0 ? cfg->wait_timeout_ms : DT_DEFAULT_WAIT_TIMEOUT_MS;
	c->transfer_stall_s = cfg->transfer_stall_ms > 0 ? (cfg->transfer_stall_ms + 999) / 1000
							  : DT_DEFAULT_TRANSFER_STALL_MS / 1000;
	c->max_retries = cfg->max_retries < 0	 ? 0
			 : cfg->max_retries == 0 ? DT_DEFAULT_MAX_RETRIES
						 : cfg->max_retries;
	if (build_headers(c, cfg))
		goto nomem;

	c->share = curl_share_init();
	if (!c->share)
		goto nomem;
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	return c;

nomem:
	buf_free(&auth);
	dt_client_free(c);
	dt_error_set(err, ENOMEM, 0, "client", "out of memory");
	return NULL;
}

static void conn_free(struct dt_conn *conn)
{
	if (!conn)
		return;
	if (conn->multi)
		curl_multi_cleanup(conn->multi);
	if (conn->easy)
		curl_easy_cleanup(conn->easy);
	free(conn);
}

void dt_client_free(struct dt_client *c)
{
	if (!c)
		return;
	while (c->idle) {
		struct dt_conn *next = c->idle->next;

		conn_free(c->idle);
		c->idle = next;
	}
	if (c->share)
		curl_share_cleanup(c->share);
	if (c->headers_common) /* its first line is the Authorization header */
		explicit_bzero(c->headers_common->data, strlen(c->headers_common->data));
	curl_slist_free_all(c->headers_common);
	if (c->auth_header) {
		explicit_bzero(c->auth_header, strlen(c->auth_header));
		free(c->auth_header);
	}
	free(c->api_url);
	free(c->target);
	free(c->ca_file);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	pthread_mutex_destroy(&c->pool_lock);
	free(c);
}

const char *dt_client_api_url(const struct dt_client *c)
{
	return c->api_url;
}

const char *dt_client_target(const struct dt_client *c)
{
	return c->target;
}

long dt_wait_timeout_ms(const struct dt_client *c)
{
	return c->wait_timeout_ms;
}

const struct curl_slist *dt_client_headers(const struct dt_client *c)
{
	return c->headers_common;
}

const char *dt_client_ca_file(const struct dt_client *c)
{
	return c->ca_file;
}

long dt_client_connect_timeout_ms(const struct dt_client *c)
{
	return c->connect_timeout_ms;
}

/* ---- the connection pool ---- */

static int xferinfo_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	return dt_cancelled() ? 1 : 0;
}

/* Options that never change for a pooled handle. */
static int conn_setup(struct dt_client *c, struct dt_conn *conn)
{
	CURL *e = conn->easy;
	CURLcode rc = CURLE_OK;

	rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_SHARE, c->share);
	rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file)
		rc |= curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
	rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "quaverfs/" QUAVER_VERSION);
	rc |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	rc |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)DT_MAX_RESPONSE);
	rc |= curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	rc |= curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	curl_multi_setopt(conn->multi, CURLMOPT_MAXCONNECTS, 4L);
	return rc == CURLE_OK ? 0 : -ENOMEM;
}

static struct dt_conn *conn_take(struct dt_client *c)
{
	struct dt_conn *conn;

	pthread_mutex_lock(&c->pool_lock);
	conn = c->idle;
	if (conn) {
		c->idle = conn->next;
		c->nidle--;
	}
	pthread_mutex_unlock(&c->pool_lock);
	if (conn)
		return conn;

	conn = calloc(1, sizeof(*conn));
	if (!conn)
		return NULL;
	conn->easy = curl_easy_init();
	conn->multi = curl_multi_init();
	if (!conn->easy || !conn->multi || conn_setup(c, conn)) {
		conn_free(conn);
		return NULL;
	}
	return conn;
}

static void conn_give_back(struct dt_client *c, struct dt_conn *conn)
{
	pthread_mutex_lock(&c->pool_lock);
	if (c->nidle < DT_POOL_MAX_IDLE) {
		conn->next = c->idle;
		c->idle = conn;
		c->nidle++;
		conn = NULL;
	}
	pthread_mutex_unlock(&c->pool_lock);
	conn_free(conn);
}

/* Runs the prepared transfer, polling at most 100 ms at a time for cancellation. */
static CURLcode conn_run(struct dt_conn *conn)
{
	CURLcode result = CURLE_OK;
	bool done = false;

	if (curl_multi_add_handle(conn->multi, conn->easy) != CURLM_OK)
		return CURLE_FAILED_INIT;
	while (!done) {
		int running = 0, left;
		CURLMsg *msg;

		if (curl_multi_perform(conn->multi, &running) != CURLM_OK) {
			result = CURLE_RECV_ERROR;
			break;
		}
		while ((msg = curl_multi_info_read(conn->multi, &left))) {
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == conn->easy) {
				result = msg->data.result;
				done = true;
			}
		}
		if (done)
			break;
		if (!running) {
			result = CURLE_RECV_ERROR;
			break;
		}
		if (dt_cancelled()) {
			result = CURLE_ABORTED_BY_CALLBACK;
			break;
		}
		if (curl_multi_poll(conn->multi, NULL, 0, 100, NULL) != CURLM_OK) {
			result = CURLE_RECV_ERROR;
			break;
		}
	}
	curl_multi_remove_handle(conn->multi, conn->easy);
	return result;
}

/* ---- requests ---- */

static const char *method_name(enum dt_method m)
{
	static const char *const names[] = {"GET", "POST", "PUT", "DELETE"};

	return names[m];
}

static bool retryable_status(long status)
{
	return status == 429 || status == 502 || status == 503 || status == 504;
}

static bool connect_failure(CURLcode code)
{
	return code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST;
}

/* Failures after the request may have reached the server. */
static bool transfer_failure(CURLcode code)
{
	return code == CURLE_GOT_NOTHING || code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR;
}

/*
 * A refused connection is retried once: a server that is down stays down
 * for longer than a backoff, and the user should hear so at once. Throttling
 * (429) and gateway errors (5xx) are what max_retries is for.
 */
#define DT_CONNECT_RETRIES 1

/* 250 ms x attempt plus up to 50 ms of jitter, so clients do not retry in step. */
static long backoff_ms(int attempt)
{
	unsigned char r = 0;

	random_bytes(&r, 1);
	return 250L * attempt + (long)(r % 51);
}

/* A transfer that set options beyond those of a plain JSON call. */
static bool transfer_is_special(const struct dt_transfer *t)
{
	return t->data_fn || t->read_fn || t->mime || t->streaming || (t->headers && t->headers[0]);
}

/*
 * The request's own header lines, chained in front of the client's common
 * ones. *last is the node whose next is the common list, for unchaining.
 */
static struct curl_slist *request_headers(struct dt_client *c, const struct dt_transfer *t,
					  struct curl_slist **last)
{
	struct buf line = BUF_INIT;
	struct curl_slist *list = NULL, *tail;
	bool ok = true;

	if (t->mime) {
		/* curl writes the multipart Content-Type with its boundary. */
	} else if (t->body || t->read_fn) {
		if (buf_printf(&line, "Content-Type: %s",
			       t->content_type ? t->content_type : "application/json"))
			ok = false;
		list = headers_add(list, buf_str(&line), &ok);
	} else {
		/* An empty-bodied POST gets no form-urlencoded type from curl. */
		list = headers_add(list, "Content-Type:", &ok);
	}
	/* No "Expect: 100-continue" round trip before a body, unless asked. */
	if (!t->expect_continue)
		list = headers_add(list, "Expect:", &ok);
	for (size_t i = 0; t->headers && t->headers[i]; i++) {
		if (has_line_break(t->headers[i]))
			ok = false;
		list = headers_add(list, t->headers[i], &ok);
	}
	buf_free(&line);
	if (!ok) {
		curl_slist_free_all(list);
		return NULL;
	}
	for (tail = list; tail->next; tail = tail->next) {
	}
	tail->next = c->headers_common;
	*last = tail;
	return list;
}

static void request_headers_free(struct curl_slist *list, struct curl_slist *last)
{
	if (!list)
		return;
	last->next = NULL;
	curl_slist_free_all(list);
}

/* What one attempt's callbacks share; it lives on the stack of dt_transfer_run. */
struct attempt {
	struct dt_transfer *t;
	CURL *easy;
	struct buf *body;
	bool too_large;
	enum { SINK_UNDECIDED, SINK_BUFFER, SINK_CALLER } sink;
};

static size_t transfer_write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct attempt *a = arg;
	size_t n = size * nmemb;

	if (a->sink == SINK_UNDECIDED) {
		long status = 0;

		/* Only a success goes to the caller's sink; an error body is for the message. */
		curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
		a->t->answer_status = status;
		a->sink = a->t->data_fn && status >= 200 && status < 300 ? SINK_CALLER
									  : SINK_BUFFER;
	}
	if (a->sink == SINK_CALLER) {
		a->t->delivered += n;
		return a->t->data_fn(a->t, data, n);
	}
	if (a->body->len + n > DT_MAX_RESPONSE) {
		a->too_large = true;
		return 0;
	}
	if (buf_append(a->body, data, n))
		return 0;
	return n;
}

/* Copies the value of header @name from the line @data into @out, if it is that header. */
static void header_value(const char *data, size_t n, const char *name, char *out, size_t size)
{
	size_t name_len = strlen(name), len;

	if (n <= name_len || strncasecmp(data, name, name_len) != 0 || data[name_len] != ':')
		return;
	data += name_len + 1;
	n -= name_len + 1;
	while (n > 0 && (*data == ' ' || *data == '\t')) {
		data++;
		n--;
	}
	while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n' || data[n - 1] == ' '))
		n--;
	len = n < size - 1 ? n : size - 1;
	memcpy(out, data, len);
	out[len] = '\0';
}

static size_t transfer_header_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct attempt *a = arg;
	struct dt_transfer *t = a->t;
	size_t n = size * nmemb;

	/* A status line starts a new answer (after a 100 Continue, say). */
	char length[32] = "";

	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		t->answer_content_range[0] = '\0';
		t->answer_content_type[0] = '\0';
		t->answer_content_length = -1;
		return n;
	}
	header_value(data, n, "Content-Length", length, sizeof(length));
	if (length[0] && parse_int64(length, 0, INT64_MAX, &t->answer_content_length))
		t->answer_content_length = -1;
	header_value(data, n, "Content-Range", t->answer_content_range,
		     sizeof(t->answer_content_range));
	header_value(data, n, "Content-Type", t->answer_content_type,
		     sizeof(t->answer_content_type));
	return n;
}

static void prepare(struct dt_client *c, struct dt_conn *conn, struct dt_transfer *t,
		    const char *url, struct curl_slist *headers, long timeout_ms,
		    struct attempt *a, char *errbuf)
{
	CURL *e = conn->easy;
	long connect_ms = c->connect_timeout_ms;

	if (!t->streaming && timeout_ms < connect_ms)
		connect_ms = timeout_ms;
	errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, transfer_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, transfer_header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	if (t->streaming) {
		/*
		 * A big file takes as long as it takes: no overall deadline, but
		 * a transfer that stays under 1 KiB/s for the stall time fails.
		 */
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)DT_TRANSFER_MIN_RATE);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, c->transfer_stall_s);
	} else {
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	}
	if (t->data_fn) /* the caller's sink decides what it keeps */
		curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)0);
	if (t->expect_continue)
		curl_easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 1000L);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* resets any body of the last request */
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
	switch (t->method) {
	case DT_GET:
		break;
	case DT_DELETE:
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
		break;
	case DT_POST:
	case DT_PUT:
		if (t->mime) {
			curl_easy_setopt(e, CURLOPT_MIMEPOST, t->mime);
		} else if (t->read_fn) {
			/* curl would send a leftover in-memory body instead of reading. */
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
			curl_easy_setopt(e, CURLOPT_POST, 1L);
			curl_easy_setopt(e, CURLOPT_READFUNCTION, t->read_fn);
			curl_easy_setopt(e, CURLOPT_READDATA, t->io_arg);
			/* curl rewinds a body it must send again on a fresh connection. */
			curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, t->seek_fn);
			curl_easy_setopt(e, CURLOPT_SEEKDATA, t->io_arg);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->read_size);
		} else {
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)(t->body ? t->body_len : 0));
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body ? t->body : "");
		}
		if (t->method == DT_PUT)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
		break;
	}
}

/* Drops every pointer into the caller's frame; a special transfer also loses its options. */
static void unprepare(struct dt_client *c, struct dt_conn *conn, bool special)
{
	CURL *e = conn->easy;

	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
	/* The body belongs to the caller; the next request sets its method anew. */
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, NULL);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
	if (!special)
		return;
	/* Keeps the live connection (it is in the multi's cache) and the share. */
	curl_easy_reset(e);
	if (conn_setup(c, conn))
		log_warn("could not restore a pooled HTTP handle");
}

/* Transport failures of a streamed transfer, in its own words. */
static int streaming_error(struct dt_client *c, struct dt_conn *conn, struct dt_error *err,
			   CURLcode code, const char *shown, const char *what)
{
	curl_off_t pretransfer_us = 0;

	/* Zero until connected (a reused connection counts as connected at once). */
	curl_easy_getinfo(conn->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
	if (pretransfer_us == 0)
		dt_error_set(err, ETIMEDOUT, 0, what, "cannot connect to %s within %ld ms", shown,
			     c->connect_timeout_ms);
	else
		dt_error_set(err, ETIMEDOUT, 0, what,
			     "transfer with %s stalled (under %d bytes/s for %ld s)", shown,
			     DT_TRANSFER_MIN_RATE, c->transfer_stall_s);
	err->transport = true;
	return -ETIMEDOUT;
}

int dt_transfer_run(struct dt_client *c, struct dt_transfer *t, struct dt_response *resp,
		    struct dt_error *err)
{
	struct dt_response local = {0, BUF_INIT};
	struct dt_error scratch;
	struct buf url = BUF_INIT, shown = BUF_INIT;
	struct curl_slist *headers = NULL, *last = NULL;
	bool idempotent = t->method != DT_POST, special = transfer_is_special(t);
	int64_t deadline = t->streaming ? INT64_MAX : now_mono_ms() + c->request_timeout_ms;
	const char *what = t->what ? t->what : "request";
	struct dt_conn *conn = NULL;
	int rc = 0;

	if (!err)
		err = &scratch;
	if (!resp)
		resp = &local;
	memset(resp, 0, sizeof(*resp));
	if ((t->url ? buf_append_str(&url, t->url)
		    : buf_printf(&url, "%s%s", c->api_url, t->path ? t->path : "")) ||
	    buf_append(&shown, url.data, strcspn(url.data, "?"))) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	headers = request_headers(c, t, &last);
	conn = headers ? conn_take(c) : NULL;
	if (!conn) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}

	for (int attempt = 1;; attempt++) {
		char errbuf[CURL_ERROR_SIZE];
		struct attempt a = {t, conn->easy, &resp->body, false, SINK_UNDECIDED};
		int64_t t0 = now_mono_ms(), left = deadline - t0;
		curl_off_t retry_after = 0;
		CURLcode code;
		long delay;
		bool retry;

		if (dt_cancelled()) {
			rc = dt_error_set(err, EINTR, 0, what, "interrupted");
			goto out;
		}
		buf_reset(&resp->body);
		resp->status = 0;
		t->delivered = 0;
		t->stopped = false;
		t->sink_errno = 0;
		t->answer_status = 0;
		t->answer_content_length = -1;
		t->answer_content_range[0] = '\0';
		t->answer_content_type[0] = '\0';
		prepare(c, conn, t, url.data, headers, left > 1 ? (long)left : 1, &a, errbuf);
		code = conn_run(conn);
		if (code == CURLE_OK || code == CURLE_WRITE_ERROR)
			curl_easy_getinfo(conn->easy, CURLINFO_RESPONSE_CODE, &resp->status);
		if (code == CURLE_OK)
			curl_easy_getinfo(conn->easy, CURLINFO_RETRY_AFTER, &retry_after);
		/* A sink that has all it wants ends the transfer early: that is a success. */
		if (code == CURLE_WRITE_ERROR && a.sink == SINK_CALLER && t->stopped)
			code = CURLE_OK;
		log_debug("%s %s -> %ld%s%s (%lld ms, attempt %d)", method_name(t->method),
			  shown.data, resp->status, code ? " " : "",
			  code ? curl_easy_strerror(code) : "", (long long)(now_mono_ms() - t0),
			  attempt);

		if (code == CURLE_OK && resp->status >= 200 && resp->status < 300) {
			rc = 0;
			goto out;
		}
		if (code == CURLE_WRITE_ERROR && t->sink_errno) {
			rc = dt_error_set(err, t->sink_errno, 0, what, "%s",
					  t->sink_message[0] ? t->sink_message
							     : strerror(t->sink_errno));
			goto out;
		}
		if (code == CURLE_ABORTED_BY_CALLBACK && t->sink_errno) { /* a reader failed */
			rc = dt_error_set(err, t->sink_errno, 0, what, "%s",
					  t->sink_message[0] ? t->sink_message
							     : strerror(t->sink_errno));
			goto out;
		}
		if (code == CURLE_OK)
			dt_error_from_http(err, (int)resp->status, resp->body.data, resp->body.len,
					   what);
		else if (t->streaming && code == CURLE_OPERATION_TIMEDOUT)
			streaming_error(c, conn, err, code, shown.data, what);
		else
			dt_error_from_curl(err, code, errbuf, shown.data, c->request_timeout_ms,
					   a.too_large, what);
		rc = -err->err;

		/*
		 * 429 means the server refused before doing anything (RFC 6585), so
		 * even a POST may repeat it; a 5xx after a POST may hide work done.
		 */
		retry = attempt <= c->max_retries &&
			((code == CURLE_OK && resp->status == 429) ||
			 (code == CURLE_OK && idempotent && retryable_status(resp->status)) ||
			 (connect_failure(code) && attempt <= DT_CONNECT_RETRIES) ||
			 (idempotent && transfer_failure(code)));
		if (!retry)
			goto out;
		delay = backoff_ms(attempt);
		if (retry_after > 0 && retry_after * 1000 > delay)
			delay = (long)(retry_after * 1000);
		/* A retry that cannot finish inside the deadline only delays the error. */
		if (now_mono_ms() + delay + 50 >= deadline)
			goto out;
		/* A streamed body or sink must be able to start over. */
		if ((t->read_fn || t->data_fn || t->mime) && !(t->restart_fn && t->restart_fn(t)))
			goto out;
		if (dt_sleep_ms(delay)) {
			rc = dt_error_set(err, EINTR, 0, what, "interrupted");
			goto out;
		}
		/* The pooled handle must not keep pointers into this frame between tries. */
		unprepare(c, conn, false);
	}
out:
	if (conn) {
		unprepare(c, conn, special);
		if (rc == -EINTR) /* an aborted transfer leaves nothing worth keeping */
			conn_free(conn);
		else
			conn_give_back(c, conn);
	}
	request_headers_free(headers, last);
	buf_free(&url);
	buf_free(&shown);
	if (resp == &local)
		dt_response_free(&local);
	return rc;
}

int dt_call(struct dt_client *c, enum dt_method method, const char *path, const char *body,
	    const char *what, struct dt_response *resp, struct dt_error *err)
{
	struct dt_transfer t = {0};

	t.method = method;
	t.path = path;
	t.what = what;
	t.body = body;
	t.body_len = body ? strlen(body) : 0;
	return dt_transfer_run(c, &t, resp, err);
}

void dt_response_free(struct dt_response *resp)
{
	if (!resp)
		return;
	buf_free(&resp->body);
	resp->status = 0;
}

int dt_parse_json(const char *text, size_t len, const char *what, cJSON **out,
		  struct dt_error *err)
{
	*out = NULL;
	if (len > DT_MAX_RESPONSE)
		return dt_error_set(err, EIO, 0, what, "answer larger than %u MiB",
				    DT_MAX_RESPONSE >> 20);
	*out = cJSON_ParseWithLength(text, len);
	if (!*out)
		return dt_error_set(err, EIO, 0, what, "the server's answer is not valid JSON");
	return 0;
}

int dt_call_json(struct dt_client *c, enum dt_method method, const char *path, const char *body,
		 const char *what, cJSON **out, struct dt_error *err)
{
	struct dt_response resp;
	int rc;

	*out = NULL;
	rc = dt_call(c, method, path, body, what, &resp, err);
	if (rc == 0 && resp.body.len > 0)
		rc = dt_parse_json(resp.body.data, resp.body.len, what, out, err);
	dt_response_free(&resp);
	return rc;
}
