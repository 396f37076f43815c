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
	int max_retries;
	struct curl_slist *headers_plain; /* no body: suppresses curl's form Content-Type */
	struct curl_slist *headers_json;  /* with Content-Type: application/json */
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
static int check_api_url(const char *url, struct dt_error *err)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *user = NULL, *password = NULL;
	int rc = 0;

	if (!u)
		return dt_error_set(err, ENOMEM, 0, "api_url", "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		rc = dt_error_set(err, EINVAL, 0, "api_url", "not a URL: %s", url);
		goto out;
	}
	curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	curl_url_get(u, CURLUPART_USER, &user, 0);
	curl_url_get(u, CURLUPART_PASSWORD, &password, 0);
	if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		rc = dt_error_set(err, EINVAL, 0, "api_url", "only http and https URLs work");
	else if (user || password)
		rc = dt_error_set(err, EINVAL, 0, "api_url",
				  "must not carry credentials; use the key file or environment");
	else if (strchr(url, '?') || strchr(url, '#'))
		rc = dt_error_set(err, EINVAL, 0, "api_url", "must not have a query or fragment");
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
	struct curl_slist *base = NULL;
	bool ok = true;

	for (int pass = 0; pass < 2 && ok; pass++) {
		base = headers_add(NULL, c->auth_header, &ok);
		if (cfg->organization_id && cfg->organization_id[0]) {
			buf_reset(&line);
			if (buf_printf(&line, "X-Daytona-Organization-ID: %s", cfg->organization_id))
				ok = false;
			base = headers_add(base, buf_str(&line), &ok);
		}
		base = headers_add(base, "X-Daytona-Source: " DT_SOURCE, &ok);
		base = headers_add(base, "X-Daytona-SDK-Version: " DT_SDK_VERSION, &ok);
		base = headers_add(base, "Accept: application/json", &ok);
		/* No "Expect: 100-continue" round trip before a body. */
		base = headers_add(base, "Expect:", &ok);
		if (pass == 0) {
			/* An empty-bodied POST gets no form-urlencoded type from curl. */
			base = headers_add(base, "Content-Type:", &ok);
			c->headers_plain = base;
		} else {
			base = headers_add(base, "Content-Type: application/json", &ok);
			c->headers_json = base;
		}
	}
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
	if (check_api_url(cfg->api_url, err))
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
	curl_slist_free_all(c->headers_plain);
	curl_slist_free_all(c->headers_json);
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

/* ---- the connection pool ---- */

static int xferinfo_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	return dt_cancelled() ? 1 : 0;
}

struct sink {
	struct buf *body;
	bool too_large;
};

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct sink *sink = arg;
	size_t n = size * nmemb;

	if (sink->body->len + n > DT_MAX_RESPONSE) {
		sink->too_large = true;
		return 0;
	}
	if (buf_append(sink->body, data, n))
		return 0;
	return n;
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
	rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
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

/* 250 ms x attempt plus up to 50 ms of jitter, so clients do not retry in step. */
static long backoff_ms(int attempt)
{
	unsigned char r = 0;

	random_bytes(&r, 1);
	return 250L * attempt + (long)(r % 51);
}

static void prepare(struct dt_client *c, struct dt_conn *conn, enum dt_method method,
		    const char *url, const char *body, long timeout_ms, struct sink *sink,
		    char *errbuf)
{
	CURL *e = conn->easy;
	long connect_ms = c->connect_timeout_ms < timeout_ms ? c->connect_timeout_ms : timeout_ms;

	errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, body ? c->headers_json : c->headers_plain);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* resets any body of the last request */
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
	switch (method) {
	case DT_GET:
		break;
	case DT_DELETE:
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
		break;
	case DT_POST:
	case DT_PUT:
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(body ? strlen(body) : 0));
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
		if (method == DT_PUT)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
		break;
	}
}

int dt_call(struct dt_client *c, enum dt_method method, const char *path, const char *body,
	    const char *what, struct dt_response *resp, struct dt_error *err)
{
	struct dt_response local = {0, BUF_INIT};
	struct dt_error scratch;
	struct buf url = BUF_INIT, shown = BUF_INIT;
	bool idempotent = method != DT_POST;
	int64_t start = now_mono_ms(), deadline = start + c->request_timeout_ms;
	struct dt_conn *conn = NULL;
	int rc = 0;

	if (!err)
		err = &scratch;
	if (!resp)
		resp = &local;
	memset(resp, 0, sizeof(*resp));
	if (buf_printf(&url, "%s%s", c->api_url, path) ||
	    buf_append(&shown, url.data, strcspn(url.data, "?"))) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	conn = conn_take(c);
	if (!conn) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}

	for (int attempt = 1;; attempt++) {
		char errbuf[CURL_ERROR_SIZE];
		struct sink sink = {&resp->body, false};
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
		prepare(c, conn, method, url.data, body, left > 1 ? (long)left : 1, &sink, errbuf);
		code = conn_run(conn);
		/* The pooled handle must not keep pointers into this stack frame. */
		curl_easy_setopt(conn->easy, CURLOPT_ERRORBUFFER, NULL);
		curl_easy_setopt(conn->easy, CURLOPT_WRITEDATA, NULL);
		if (code == CURLE_OK) {
			curl_easy_getinfo(conn->easy, CURLINFO_RESPONSE_CODE, &resp->status);
			curl_easy_getinfo(conn->easy, CURLINFO_RETRY_AFTER, &retry_after);
		}
		log_debug("%s %s -> %ld%s%s (%lld ms, attempt %d)", method_name(method), path,
			  resp->status, code ? " " : "", code ? curl_easy_strerror(code) : "",
			  (long long)(now_mono_ms() - t0), attempt);

		if (code == CURLE_OK && resp->status >= 200 && resp->status < 300) {
			rc = 0;
			goto out;
		}
		if (code == CURLE_OK)
			dt_error_from_http(err, (int)resp->status, resp->body.data, resp->body.len,
					   what);
		else
			dt_error_from_curl(err, code, errbuf, shown.data, c->request_timeout_ms,
					   sink.too_large, what);
		rc = -err->err;

		/*
		 * 429 means the server refused before doing anything (RFC 6585), so
		 * even a POST may repeat it; a 5xx after a POST may hide work done.
		 */
		retry = attempt <= c->max_retries &&
			((code == CURLE_OK && resp->status == 429) ||
			 (code == CURLE_OK && idempotent && retryable_status(resp->status)) ||
			 connect_failure(code) || (idempotent && transfer_failure(code)));
		if (!retry)
			goto out;
		delay = backoff_ms(attempt);
		if (retry_after > 0 && retry_after * 1000 > delay)
			delay = (long)(retry_after * 1000);
		/* A retry that cannot finish inside the deadline only delays the error. */
		if (now_mono_ms() + delay + 50 >= deadline)
			goto out;
		if (dt_sleep_ms(delay)) {
			rc = dt_error_set(err, EINTR, 0, what, "interrupted");
			goto out;
		}
	}
out:
	if (conn) {
		if (rc == -EINTR) /* an aborted transfer leaves nothing worth keeping */
			conn_free(conn);
		else
			conn_give_back(c, conn);
	}
	buf_free(&url);
	buf_free(&shown);
	if (resp == &local)
		dt_response_free(&local);
	return rc;
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
