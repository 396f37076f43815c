/*
 * quaverd's HTTP layer on libwebsockets 4.1 (the contract is in http.h).
 *
 * Threads. One lws service thread owns every connection: it parses request
 * headers, reads bodies and writes responses. A complete request becomes a
 * job on the work queue; a pool of workers runs ops->handle() on jobs, puts
 * each finished job on the done list and wakes the service thread with
 * lws_cancel_service(). The service thread collects finished jobs in
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED and asks for WRITEABLE on their
 * connection, where the response goes out in chunks.
 *
 * Ownership. A job belongs to the service thread, except from dispatch until
 * it reaches the done list, when only its worker touches req and resp.
 * job->wsi is read and written on the service thread only, so a connection
 * that closes while its job runs just clears it (the job is "orphaned") and
 * the service thread frees the job when the worker hands it back.
 *
 * Quirks of lws 4.1 this file works around, each commented where it happens:
 * POST/PUT/PATCH without Content-Length make lws wait for 100 MB of body;
 * it does not answer "Expect: 100-continue"; it does not read a connection
 * whose request is being handled (so a client close would make poll spin);
 * it keeps no raw copy of the query string; it ends the request line at an
 * encoded CR or LF; it mis-parses pipelined requests that have a body; it
 * caps a send (at its read buffer's size unless told), buffers the rest,
 * and only pretends to complete a transaction while that buffer drains.
 * A request holds an lws header table until its response is out, so at
 * most MAX_HEADER_TABLES requests are in progress at once (more wait for a
 * table). A handler may take as long as it needs (tested with 7 minutes).
 *
 * Websockets. An upgrade never becomes a job: LWS_CALLBACK_HTTP_CONFIRM_UPGRADE
 * builds an http_request and hands it to ws.c, which asks cfg->ws_ops to
 * route it (refusals are answered as HTTP errors); the accepted connection
 * becomes a ws_conn attached to the session data, and lws's websocket
 * callbacks go to ws.c.
 */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "http_internal.h"
#define QUAVERD_WS_INTERNAL
#include "ws.h"
#include "log.h"
#include "util.h"

/* Header block a client may send (request line included); larger: closed. */
#define MAX_HEADER_BYTES 16384
/* Simultaneous connections, the listening socket included. */
#define MAX_CONNECTIONS 1024
/* Header tables: each connection with a request in progress holds one. */
#define MAX_HEADER_TABLES 256
/* The headers of a request must arrive within this many seconds. */
#define HEADER_TIMEOUT_S 30
/* Silence allowed while a body arrives or a response is being taken. */
#define STALL_TIMEOUT_S 30
/* A body must arrive within this, plus one second per BODY_MIN_RATE bytes. */
#define BODY_TIMEOUT_S 30
#define BODY_MIN_RATE (256 * 1024)
/* An idle keep-alive connection is closed after this (longer than clients keep theirs). */
#define KEEPALIVE_IDLE_S 60
/* After refusing a body: how long and how much of it we swallow before closing. */
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1024 * 1024)
/* Bytes written per lws_write, and per WRITEABLE callback. */
#define WRITE_CHUNK (64 * 1024)
/* Bytes lws reads from a socket at once (pt_serv_buf_size). */
#define RECV_CHUNK (256 * 1024)
#define WRITE_BURST (16 * WRITE_CHUNK)
/* How long http_server_stop waits for requests in flight. */
#define STOP_GRACE_MS 30000

enum job_phase {
	JOB_BODY,    /* reading the body */
	JOB_RUNNING, /* queued or in a worker: req and resp belong to the worker */
	JOB_REPLY,   /* writing the response */
	JOB_LINGER,  /* response sent after refusing a body; swallowing what is in flight */
};

struct job {
	struct http_server *srv;
	struct job *next; /* in the work queue or on the done list */
	struct lws *wsi;  /* NULL once the connection is gone (service thread only) */
	enum job_phase phase;
	struct http_request req;
	struct http_response resp;
	struct http_body_policy policy;

	/* body reception */
	uint64_t content_length;
	int spool_fd;
	bool refused;	/* answered without running a handler */
	bool body_done; /* lws saw the whole body (or there is none to see) */
	bool chunked;	/* Transfer-Encoding: chunked, decoded here */
	struct http_chunked chunk;
	uint64_t discarded;
	int64_t linger_deadline_ms;

	/* response */
	bool close_after; /* Connection: close, then close */
	bool head;	  /* HEAD: headers only */
	bool headers_sent;
	bool dispatched;
	uint64_t to_send; /* body bytes still to write */
	uint64_t sent;
};

/* lws per-session data: the job of the transaction in progress, or the websocket. */
struct conn {
	struct job *job;
	struct ws_conn *ws;
};

struct http_server {
	char *listen_addr;
	char *spool_dir;
	const struct http_handler_ops *ops;
	void *ctx;
	int port;

	struct lws_context *lws;
	struct lws_vhost *vhost;
	pthread_t service_thread;
	bool service_started;
	atomic_bool stop_service;
	atomic_bool draining;
	atomic_int inflight; /* dispatched jobs not yet freed */

	pthread_t *workers;
	int nworkers;
	pthread_mutex_t lock;
	pthread_cond_t work_cond;
	struct job *work_head, *work_tail;
	struct job *done_head, *done_tail;
	bool stop_workers;

	unsigned char iobuf[LWS_PRE + WRITE_CHUNK]; /* service thread only */

	/* websockets (service thread only, but for the hub) */
	struct ws_hub *hub;
	struct ws_upgrades *upgrades;
	struct lws_protocols protocols[3];
};

/* Custom (non-lws-token) request headers we copy into http_request. */
static const char *const custom_headers[] = {
    "x-daytona-sdk-version",  "x-daytona-source",	 "x-daytona-organization-id",
    "x-daytona-split-output", "x-daytona-preview-token", "x-request-id",
};

/* ------------------------------------------------------------------------- */
/* Jobs                                                                       */

static struct job *job_new(struct http_server *srv, struct lws *wsi)
{
	struct job *job = calloc(1, sizeof(*job));

	if (!job)
		return NULL;
	job->srv = srv;
	job->wsi = wsi;
	job->spool_fd = -1;
	job->phase = JOB_BODY;
	http_response_init(&job->resp);
	return job;
}

static void job_free(struct job *job)
{
	if (!job)
		return;
	if (job->spool_fd >= 0)
		close(job->spool_fd);
	if (job->dispatched)
		atomic_fetch_sub(&job->srv->inflight, 1);
	http_request_clear(&job->req);
	http_response_clear(&job->resp);
	free(job);
}

/* One line per request at debug level; never a header, never a secret parameter. */
static void job_log(const struct job *job, const char *outcome)
{
	struct buf query = BUF_INIT;
	uint64_t bytes;

	if (!log_enabled(LOG_LVL_DEBUG))
		return;
	http_query_for_log(&job->req, &query);
	bytes = job->headers_sent ? job->sent : 0;
	log_debug("%s %s%s %d %" PRIu64 "B %" PRId64 "ms%s%s", job->req.method,
		  job->req.path ? job->req.path : "?", buf_str(&query), job->resp.status, bytes,
		  now_mono_ms() - job->req.received_ms, outcome ? " " : "", outcome ? outcome : "");
	buf_free(&query);
}

/* ------------------------------------------------------------------------- */
/* Workers                                                                    */

static void *worker_main(void *arg)
{
	struct http_server *srv = arg;

	for (;;) {
		struct job *job;

		pthread_mutex_lock(&srv->lock);
		while (!srv->work_head && !srv->stop_workers)
			pthread_cond_wait(&srv->work_cond, &srv->lock);
		job = srv->work_head;
		if (!job) {
			pthread_mutex_unlock(&srv->lock);
			break;
		}
		srv->work_head = job->next;
		if (!srv->work_head)
			srv->work_tail = NULL;
		job->next = NULL;
		pthread_mutex_unlock(&srv->lock);

		srv->ops->handle(srv->ctx, &job->req, &job->resp);
		if (job->resp.status < 100 || job->resp.status > 599) {
			if (job->resp.status != 0)
				log_warn("%s %s: handler answered status %d", job->req.method,
					 job->req.path, job->resp.status);
			http_response_clear(&job->resp);
			http_response_init(&job->resp);
			http_reply_error(&job->resp, &job->req, 500,
					 "The server failed to answer this request.");
		}
		/* The spooled body is the handler's to use or rename, never to keep. */
		if (job->req.body_file) {
			unlink(job->req.body_file);
			free(job->req.body_file);
			job->req.body_file = NULL;
		}

		pthread_mutex_lock(&srv->lock);
		if (srv->done_tail)
			srv->done_tail->next = job;
		else
			srv->done_head = job;
		srv->done_tail = job;
		pthread_mutex_unlock(&srv->lock);
		lws_cancel_service(srv->lws);
	}
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* The service thread: parsing a request                                      */

static const struct {
	enum lws_token_indexes token;
	const char *name;
} method_tokens[] = {
    {WSI_TOKEN_GET_URI, "GET"},		{WSI_TOKEN_POST_URI, "POST"},
    {WSI_TOKEN_PUT_URI, "PUT"},		{WSI_TOKEN_PATCH_URI, "PATCH"},
    {WSI_TOKEN_DELETE_URI, "DELETE"},	{WSI_TOKEN_HEAD_URI, "HEAD"},
    {WSI_TOKEN_OPTIONS_URI, "OPTIONS"}, {WSI_TOKEN_CONNECT, "CONNECT"},
};

/* Tokens that are not request headers: methods, version, the query. */
static bool token_is_header(int t)
{
	for (size_t i = 0; i < ARRAY_SIZE(method_tokens); i++)
		if ((int)method_tokens[i].token == t)
			return false;
	return t != WSI_TOKEN_HTTP && t != WSI_TOKEN_HTTP_URI_ARGS && t != WSI_TOKEN_HTTP1_0;
}

static int copy_token(struct lws *wsi, enum lws_token_indexes t, char **out)
{
	int len = lws_hdr_total_length(wsi, t);
	char *value;

	*out = NULL;
	if (len <= 0)
		return 0;
	value = malloc((size_t)len + 1);
	if (!value)
		return -ENOMEM;
	if (lws_hdr_copy(wsi, value, len + 1, t) < 0) {
		free(value);
		return 0;
	}
	*out = value;
	return 1;
}

static int collect_headers(struct lws *wsi, struct http_request *req)
{
	for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
		const char *name = (const char *)lws_token_to_string((enum lws_token_indexes)t);
		size_t name_len;
		char *value;
		int rc;

		if (!name || !token_is_header(t))
			continue;
		/* h2 pseudo headers (":path") and lws-internal tokens are not headers */
		name_len = strlen(name);
		if (name_len < 2 || name[0] == ':' || name[name_len - 1] != ':')
			continue;
		rc = copy_token(wsi, (enum lws_token_indexes)t, &value);
		if (rc <= 0) {
			if (rc < 0)
				return rc;
			continue;
		}
		if (http_request_add_header(req, name, name_len - 1, value) < 0) {
			free(value);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(custom_headers); i++) {
		char key[64];
		int key_len = snprintf(key, sizeof(key), "%s:", custom_headers[i]);
		int len = lws_hdr_custom_length(wsi, key, key_len);
		char *value;

		if (len < 0)
			continue;
		value = malloc((size_t)len + 1);
		if (!value)
			return -ENOMEM;
		if (lws_hdr_custom_copy(wsi, value, len + 1, key, key_len) < 0) {
			free(value);
			continue;
		}
		if (http_request_add_header(req, custom_headers[i], strlen(custom_headers[i]),
					    value) < 0) {
			free(value);
			return -ENOMEM;
		}
	}
	return 0;
}

/*
 * lws hands the query over as decoded "name=value" fragments (a '=' that was
 * percent-encoded in a name becomes '_', '+' becomes a space) and keeps no
 * raw copy, so raw_query is rebuilt from them, percent-encoded.
 */
static int collect_params(struct lws *wsi, struct http_request *req)
{
	struct buf raw = BUF_INIT;
	int rc = 0;

	for (int idx = 0;; idx++) {
		int len = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, idx);
		struct http_param *grown, *p;
		char *frag, *eq;

		if (len <= 0) {
			if (lws_hdr_copy_fragment(wsi, (char[1]){0}, 1, WSI_TOKEN_HTTP_URI_ARGS,
						  idx) < 0)
				break;
			continue; /* an empty fragment ("a=1&&b=2") */
		}
		frag = malloc((size_t)len + 1);
		if (!frag) {
			rc = -ENOMEM;
			break;
		}
		if (lws_hdr_copy_fragment(wsi, frag, len + 1, WSI_TOKEN_HTTP_URI_ARGS, idx) < 0) {
			free(frag);
			break;
		}
		grown = realloc(req->params, (req->nparams + 1) * sizeof(*req->params));
		if (!grown) {
			free(frag);
			rc = -ENOMEM;
			break;
		}
		req->params = grown;
		p = &req->params[req->nparams];
		eq = strchr(frag, '=');
		if (eq) {
			*eq = '\0';
			p->value = strdup(eq + 1);
		} else {
			p->value = strdup("");
		}
		p->name = frag;
		if (!p->value) {
			free(frag);
			rc = -ENOMEM;
			break;
		}
		req->nparams++;
		if ((raw.len && buf_append_str(&raw, "&") < 0) ||
		    http_query_encode(&raw, p->name) < 0 || buf_append_str(&raw, "=") < 0 ||
		    http_query_encode(&raw, p->value) < 0) {
			rc = -ENOMEM;
			break;
		}
	}
	req->raw_query = buf_steal(&raw);
	if (!req->raw_query)
		rc = -ENOMEM;
	return rc;
}

static void peer_name(struct lws *wsi, char *out, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	int fd = (int)lws_get_socket_fd(wsi);

	snprintf(out, size, "?");
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, size, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		if (strncmp(host, "::ffff:", 7) == 0 && strchr(host, '.'))
			snprintf(out, size, "%s:%u", host + 7, ntohs(in6->sin6_port));
		else
			snprintf(out, size, "[%s]:%u", host, ntohs(in6->sin6_port));
	}
}

/* Content-Length as the client sent it: 1 present, 0 absent, -1 malformed. */
static int content_length(struct lws *wsi, uint64_t *out)
{
	char text[32];
	int len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
	int64_t value;

	*out = 0;
	if (len <= 0)
		return 0;
	if (len >= (int)sizeof(text) ||
	    lws_hdr_copy(wsi, text, sizeof(text), WSI_TOKEN_HTTP_CONTENT_LENGTH) < 0)
		return -1;
	for (const char *p = text; *p; p++)
		if (!isdigit((unsigned char)*p))
			return -1; /* also "5,5": two Content-Length headers */
	if (parse_int64(text, 0, INT64_MAX, &value) < 0)
		return -1;
	*out = (uint64_t)value;
	return 1;
}

/* ------------------------------------------------------------------------- */
/* The service thread: moving a job along                                    */

static void reply_now(struct job *job)
{
	job->phase = JOB_REPLY;
	/* lws ignores POLLOUT on a connection whose input is switched off */
	lws_rx_flow_control(job->wsi, 1);
	lws_callback_on_writable(job->wsi);
}

/*
 * Answers without running a handler and closes the connection afterwards:
 * used when the body is refused (it may still be on its way) or the request
 * cannot be parsed.
 */
static void refuse(struct job *job, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(struct job *job, int status, const char *fmt, ...)
{
	va_list ap;

	http_response_clear(&job->resp);
	http_response_init(&job->resp);
	va_start(ap, fmt);
	http_reply_error_v(&job->resp, job->req.path, status, fmt, ap);
	va_end(ap);
	job->refused = true;
	job->close_after = true;
	if (job->spool_fd >= 0) {
		close(job->spool_fd);
		job->spool_fd = -1;
	}
	reply_now(job);
}

static void dispatch(struct http_server *srv, struct job *job)
{
	if (job->spool_fd >= 0) {
		close(job->spool_fd);
		job->spool_fd = -1;
	}
	job->phase = JOB_RUNNING;
	job->dispatched = true;
	atomic_fetch_add(&srv->inflight, 1);
	/*
	 * While a handler runs, lws does not read this connection, but poll
	 * would keep reporting a client's close (or a pipelined request): stop
	 * watching for input until the response is ready (a reset still shows
	 * as POLLHUP/POLLERR and closes it). The handler may take long: no
	 * timeout meanwhile.
	 */
	lws_rx_flow_control(job->wsi, 0);
	lws_set_timeout(job->wsi, NO_PENDING_TIMEOUT, 0);

	pthread_mutex_lock(&srv->lock);
	if (srv->work_tail)
		srv->work_tail->next = job;
	else
		srv->work_head = job;
	srv->work_tail = job;
	pthread_cond_signal(&srv->work_cond);
	pthread_mutex_unlock(&srv->lock);
}

/* Picks up the jobs the workers finished. */
static void collect_done(struct http_server *srv)
{
	struct job *done;

	if (atomic_load(&srv->stop_service))
		return; /* the context is going away; free_server frees them */
	pthread_mutex_lock(&srv->lock);
	done = srv->done_head;
	srv->done_head = srv->done_tail = NULL;
	pthread_mutex_unlock(&srv->lock);

	while (done) {
		struct job *job = done;

		done = job->next;
		job->next = NULL;
		if (!job->wsi) {
			job_log(job, "(client gone)");
			job_free(job);
			continue;
		}
		reply_now(job);
	}
}

/* The connection is going away: free its job, or orphan it if a worker has it. */
static void conn_detach(struct conn *conn)
{
	struct job *job = conn ? conn->job : NULL;

	if (!job)
		return;
	conn->job = NULL;
	job->wsi = NULL;
	if (job->phase == JOB_RUNNING)
		return; /* collect_done frees it */
	if (job->phase != JOB_LINGER)
		job_log(job, "(connection closed)");
	job_free(job);
}

static void send_continue(struct lws *wsi)
{
	static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
	unsigned char buf[LWS_PRE + sizeof(line)];

	/* lws 4.1 leaves "Expect: 100-continue" unanswered; curl would wait 1 s. */
	memcpy(buf + LWS_PRE, line, sizeof(line) - 1);
	if (lws_write(wsi, buf + LWS_PRE, sizeof(line) - 1, LWS_WRITE_HTTP_HEADERS) < 0)
		log_debug("could not send 100 Continue");
}

static int open_spool(struct http_server *srv, struct job *job)
{
	char path[4096];
	int fd;

	if (snprintf(path, sizeof(path), "%s/body-XXXXXX", srv->spool_dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0600) < 0 || !(job->req.body_file = strdup(path))) {
		int rc = errno ? -errno : -ENOMEM;

		close(fd);
		unlink(path);
		return rc;
	}
	job->spool_fd = fd;
	return 0;
}

static bool method_may_have_body(const char *method)
{
	return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	       strcmp(method, "PATCH") == 0;
}

/*
 * lws 4.1 decodes %0D and %0A in the request target and then takes them for
 * the end of the request line: "DELETE /sandbox/victim%0Ajunk" would reach
 * the handler as "DELETE /sandbox/victim", and the rest of the line is read
 * as headers. Such a request has lost its "HTTP/1.x" version, which a whole
 * request line always has.
 */
static bool request_line_whole(struct lws *wsi)
{
	char version[16];

	if (lws_hdr_copy(wsi, version, sizeof(version), WSI_TOKEN_HTTP) <= 0)
		return false;
	return strcmp(version, "HTTP/1.1") == 0 || strcmp(version, "HTTP/1.0") == 0;
}

/* LWS_CALLBACK_HTTP: the headers are complete. Returns nonzero to close. */
static int on_request(struct http_server *srv, struct lws *wsi, struct conn *conn, const char *uri,
		      size_t uri_len)
{
	struct job *job;
	int has_length;
	char te[16];

	if (conn->job) {
		/* lws reuses the session data; a leftover job means a broken sequence */
		log_warn("request on a connection that is still busy");
		return 1;
	}
	job = job_new(srv, wsi);
	if (!job)
		return 1;
	conn->job = job;
	job->req.received_ms = now_mono_ms();
	for (size_t i = 0; i < ARRAY_SIZE(method_tokens); i++)
		if (lws_hdr_total_length(wsi, method_tokens[i].token) > 0)
			copy_str(job->req.method, sizeof(job->req.method), method_tokens[i].name);
	job->head = strcmp(job->req.method, "HEAD") == 0;
	job->req.path = strndup(uri, uri_len);
	peer_name(wsi, job->req.peer, sizeof(job->req.peer));
	if (!job->req.path || collect_params(wsi, &job->req) < 0 ||
	    collect_headers(wsi, &job->req) < 0) {
		refuse(job, 500, "The server is out of memory.");
		return 0;
	}

	if (atomic_load(&srv->draining)) {
		refuse(job, 503, "quaverd is shutting down.");
		return 0;
	}
	if (!request_line_whole(wsi)) {
		refuse(job, 400,
		       "The request line is malformed: a path or query may not contain an "
		       "encoded CR or LF.");
		return 0;
	}
	if (!job->req.method[0] || strcmp(job->req.method, "CONNECT") == 0) {
		refuse(job, 405, "This method is not supported.");
		return 0;
	}

	has_length = content_length(wsi, &job->content_length);
	if (has_length < 0) {
		refuse(job, 400, "The Content-Length header is malformed.");
		return 0;
	}
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
		if (lws_hdr_copy(wsi, te, sizeof(te), WSI_TOKEN_HTTP_TRANSFER_ENCODING) <= 0 ||
		    strcasecmp(te, "chunked") != 0) {
			refuse(job, 501, "Only the chunked transfer coding is supported.");
			return 0;
		}
		if (has_length) {
			refuse(job, 400, "Send Content-Length or Transfer-Encoding, not both.");
			return 0;
		}
		/*
		 * lws 4.1 hands us the raw chunked coding, and only for these
		 * methods (for which it expects up to 100 MB without a length).
		 */
		if (!method_may_have_body(job->req.method)) {
			refuse(job, 411, "Send the request body with a Content-Length.");
			return 0;
		}
		job->chunked = true;
		job->close_after = true; /* lws will keep reading the rest as body */
	}

	job->policy.max_bytes = 1024 * 1024;
	job->policy.spool_over = UINT64_MAX;
	if (srv->ops->body_policy)
		srv->ops->body_policy(srv->ctx, job->req.method, job->req.path, &job->policy);
	if (job->content_length > job->policy.max_bytes) {
		refuse(job, 413, "The request body is %" PRIu64 " bytes; the limit is %" PRIu64 ".",
		       job->content_length, job->policy.max_bytes);
		return 0;
	}

	if (job->content_length == 0 && !job->chunked) {
		if (!has_length && method_may_have_body(job->req.method)) {
			/*
			 * No length means no body, but lws 4.1 then waits for
			 * 100 MB of one: answer and close rather than read the
			 * next request as a body.
			 */
			job->close_after = true;
		} else if (has_length && strcmp(job->req.method, "POST") == 0) {
			/* lws follows with an empty HTTP_BODY and BODY_COMPLETION */
			return 0;
		}
		dispatch(srv, job);
		return 0;
	}

	if (job->chunked) {
		/* size unknown: memory first, keep_body moves it to a file if it grows */
	} else if (job->content_length > job->policy.spool_over) {
		int rc = open_spool(srv, job);

		if (rc < 0) {
			log_error("cannot spool a request body in %s: %s", srv->spool_dir,
				  strerror(-rc));
			refuse(job, 500, "The server cannot store the request body.");
			return 0;
		}
	} else if (buf_reserve(&job->req.body, (size_t)job->content_length) < 0) {
		refuse(job, 500, "The server is out of memory.");
		return 0;
	}
	lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, STALL_TIMEOUT_S);
	{
		char expect[32];

		if (lws_hdr_copy(wsi, expect, sizeof(expect), WSI_TOKEN_HTTP_EXPECT) > 0 &&
		    strcasecmp(expect, "100-continue") == 0)
			send_continue(wsi);
	}
	return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* LWS_CALLBACK_HTTP_BODY. Returns nonzero to close. */
/* Whether the client may still be sending a body we did not read. */
static bool body_incoming(const struct job *job)
{
	if (job->body_done)
		return false;
	return job->chunked ? !job->chunk.done : job->req.body_len < job->content_length;
}

/*
 * A body must arrive within BODY_TIMEOUT_S plus a second per BODY_MIN_RATE
 * bytes (announced, or received so far when chunked); lws separately closes
 * a connection that stalls for STALL_TIMEOUT_S.
 */
static bool body_too_slow(const struct job *job)
{
	uint64_t size = job->chunked ? job->req.body_len : job->content_length;

	return now_mono_ms() >
	       job->req.received_ms + (BODY_TIMEOUT_S + (int64_t)(size / BODY_MIN_RATE)) * 1000;
}

/* Keeps a piece of body, in memory or in the spool file. 0, or <0 once refused. */
static int keep_body(void *arg, const void *data, size_t len)
{
	struct job *job = arg;
	int rc;

	if (job->req.body_len + len > job->policy.max_bytes) {
		refuse(job, 413, "The request body is over the limit of %" PRIu64 " bytes.",
		       job->policy.max_bytes);
		return -EFBIG;
	}
	if (job->spool_fd < 0 && job->req.body_len + len > job->policy.spool_over) {
		/* a chunked body outgrew memory: move what we have to the file */
		rc = open_spool(job->srv, job);
		if (rc == 0)
			rc = write_all(job->spool_fd, job->req.body.data, job->req.body.len);
		if (rc < 0)
			goto spool_failed;
		buf_free(&job->req.body);
	}
	if (job->spool_fd >= 0) {
		rc = write_all(job->spool_fd, data, len);
		if (rc < 0)
			goto spool_failed;
	} else if (buf_append(&job->req.body, data, len) < 0) {
		refuse(job, 500, "The server is out of memory.");
		return -ENOMEM;
	}
	job->req.body_len += len;
	return 0;

spool_failed:
	log_error("cannot spool a request body in %s: %s", job->srv->spool_dir, strerror(-rc));
	if (rc == -ENOSPC || rc == -EDQUOT)
		refuse(job, 507, "There is no space left to store the request body.");
	else
		refuse(job, 500, "The server cannot store the request body.");
	return rc;
}

/* LWS_CALLBACK_HTTP_BODY. Returns nonzero to close. */
static int on_body(struct job *job, const void *data, size_t len)
{
	if (!job)
		return 0;
	if (job->phase == JOB_LINGER) {
		job->discarded += len;
		return job->discarded > LINGER_MAX_BYTES || now_mono_ms() > job->linger_deadline_ms;
	}
	if (job->phase != JOB_BODY) {
		job->discarded += len; /* refused, or a stray body lws kept delivering */
		return job->discarded > LINGER_MAX_BYTES;
	}
	if (len == 0)
		return 0;
	if (body_too_slow(job)) {
		log_debug("%s %s: body too slow, closing", job->req.method, job->req.path);
		return 1;
	}
	if (!job->chunked) {
		if (job->req.body_len + len > job->content_length)
			return 1;	   /* cannot happen: lws counts Content-Length */
		keep_body(job, data, len); /* on failure it has refused the request */
		return 0;
	}
	if (http_chunked_feed(&job->chunk, data, len, keep_body, job) == -EINVAL) {
		refuse(job, 400, "The chunked request body is malformed.");
		return 0;
	}
	/*
	 * Anything after the last chunk would be a pipelined request; lws
	 * still counts it as body, so the connection closes after the answer.
	 */
	if (job->phase == JOB_BODY && job->chunk.done)
		dispatch(job->srv, job);
	return 0;
}

/* ------------------------------------------------------------------------- */
/* The service thread: writing a response                                    */

static int write_headers(struct lws *wsi, struct job *job)
{
	struct http_response *resp = &job->resp;
	bool no_body = resp->status == 204 || resp->status == 304 ||
		       (resp->status >= 100 && resp->status < 200);
	size_t size = 1024 + strlen(resp->content_type);
	unsigned char *block, *start, *p, *end;
	char status_line[64];
	uint64_t length;
	int rc = -1, n;

	for (size_t i = 0; i < resp->nextra; i++)
		size += strlen(resp->extra[i].name) + strlen(resp->extra[i].value) + 8;
	block = malloc(LWS_PRE + size);
	if (!block)
		return -1;
	start = p = block + LWS_PRE;
	end = start + size;

	length = resp->file_fd >= 0 ? (uint64_t)resp->file_len : resp->body.len;
	if (no_body)
		length = 0;
	/* Our own status line: lws 4.1 knows few reason phrases ("204 " is bare). */
	n = snprintf(status_line, sizeof(status_line), "HTTP/1.1 %d %s", resp->status,
		     http_reason(resp->status));
	if (lws_add_http_header_by_name(wsi, NULL, (const unsigned char *)status_line, n, &p,
					end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_SERVER,
					 (const unsigned char *)"quaverd", 7, &p, end))
		goto out;
	if (!no_body) {
		if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
						 (const unsigned char *)resp->content_type,
						 (int)strlen(resp->content_type), &p, end) ||
		    lws_add_http_header_content_length(wsi, length, &p, end))
			goto out;
	}
	for (size_t i = 0; i < resp->nextra; i++) {
		char name[256];
		const char *value = resp->extra[i].value;

		if (snprintf(name, sizeof(name), "%s:", resp->extra[i].name) >= (int)sizeof(name))
			continue;
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
						(const unsigned char *)value, (int)strlen(value),
						&p, end))
			goto out;
	}
	if (job->close_after &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close",
					 5, &p, end))
		goto out;
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		goto out;
	job->headers_sent = true;
	job->to_send = job->head ? 0 : length;
	rc = 0;
out:
	free(block);
	return rc;
}

/* Fills @out with the next piece of the body. Returns its length or -1. */
static ssize_t next_piece(struct job *job, unsigned char *out, size_t want)
{
	struct http_response *resp = &job->resp;

	if (resp->file_fd < 0) {
		memcpy(out, resp->body.data + job->sent, want);
		return (ssize_t)want;
	}
	for (;;) {
		ssize_t n = pread(resp->file_fd, out, want, resp->file_off + (off_t)job->sent);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* the file shrank under us: the promised length cannot be kept */
			log_warn("%s %s: response file ended early (%s)", job->req.method,
				 job->req.path, n < 0 ? strerror(errno) : "short file");
			return -1;
		}
		return n;
	}
}

/*
 * Whether lws holds a header table for @wsi. There is no direct way to ask:
 * lws_hdr_custom_copy clears the destination only when a table is attached.
 */
static bool headers_attached(struct lws *wsi)
{
	char probe = 'x';

	(void)lws_hdr_custom_copy(wsi, &probe, 1, "x:", 2);
	return probe == '\0';
}

/* The response is out: next request, or close. Returns nonzero to close. */
static int finish(struct lws *wsi, struct conn *conn, struct job *job)
{
	job_log(job, NULL);
	conn->job = NULL;
	if (job->refused && body_incoming(job)) {
		/*
		 * The client may still be sending the body we refused: closing
		 * now would reset the connection and could destroy our answer
		 * in its receive buffer. Say we are done writing, then swallow
		 * what arrives for a moment (bounded) before closing.
		 */
		if (shutdown((int)lws_get_socket_fd(wsi), SHUT_WR) == 0) {
			job->phase = JOB_LINGER;
			job->linger_deadline_ms = now_mono_ms() + LINGER_MS;
			conn->job = job;
			lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LINGER_MS / 1000);
			return 0;
		}
		job_free(job);
		return 1;
	}
	if (job->close_after) {
		job_free(job);
		return 1;
	}
	job_free(job);
	lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
	if (lws_http_transaction_completed(wsi))
		return 1;
	/* (conn is stale from here: lws gave the connection fresh session data) */
	if (headers_attached(wsi)) {
		/*
		 * lws kept the header table because the client already sent
		 * the next request (pipelining). lws 4.1 mis-parses a
		 * pipelined request that has a body (it hands the request's
		 * own header bytes over as its body, then loops), so close:
		 * a pipelining client must retry the rest on a new connection.
		 */
		log_debug("closing a connection with pipelined requests");
		return 1;
	}
	return 0;
}

/* LWS_CALLBACK_HTTP_WRITEABLE. Returns nonzero to close. */
static int on_writeable(struct http_server *srv, struct lws *wsi, struct conn *conn)
{
	struct job *job = conn->job;
	size_t burst = 0;

	if (!job || job->phase != JOB_REPLY)
		return 0;
	if (!job->headers_sent) {
		if (job->resp.file_fd >= 0 && (job->resp.file_off < 0 || job->resp.file_len < 0)) {
			http_response_clear(&job->resp);
			http_response_init(&job->resp);
			http_reply_error(&job->resp, &job->req, 500,
					 "The server failed to answer this request.");
		}
		if (write_headers(wsi, job) < 0)
			return 1;
	}
	while (job->to_send > 0) {
		size_t want = job->to_send < WRITE_CHUNK ? (size_t)job->to_send : WRITE_CHUNK;
		ssize_t got;

		if (burst >= WRITE_BURST || lws_send_pipe_choked(wsi)) {
			lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, STALL_TIMEOUT_S);
			lws_callback_on_writable(wsi);
			return 0;
		}
		got = next_piece(job, srv->iobuf + LWS_PRE, want);
		if (got < 0)
			return 1;
		if (lws_write(wsi, srv->iobuf + LWS_PRE, (size_t)got,
			      (uint64_t)got == job->to_send ? LWS_WRITE_HTTP_FINAL
							    : LWS_WRITE_HTTP) < 0)
			return 1;
		job->sent += (uint64_t)got;
		job->to_send -= (uint64_t)got;
		burst += (size_t)got;
	}
	if (lws_send_pipe_choked(wsi)) {
		/*
		 * What the socket did not take is buffered inside lws, which
		 * then only pretends to complete the transaction (it defers it
		 * and keeps the header table, which finish() would take for a
		 * pipelined request). Finish once lws has drained it: lws asks
		 * for WRITEABLE again when its buffer is empty.
		 */
		lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, STALL_TIMEOUT_S);
		lws_callback_on_writable(wsi);
		return 0;
	}
	return finish(wsi, conn, job);
}

/* ------------------------------------------------------------------------- */
/* Websocket upgrades (routed and answered in ws.c)                           */

/*
 * LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: the request is parsed and the handshake
 * not yet sent. Returns 0 to go on with the upgrade, 1 when refused with an
 * HTTP answer, -1 to hang up.
 */
static int ws_confirm_upgrade(struct http_server *srv, struct lws *wsi)
{
	struct http_request req;
	const char *why = "";
	char *list = NULL;
	int status = 0, rc;

	memset(&req, 0, sizeof(req));
	copy_str(req.method, sizeof(req.method), "GET");
	req.received_ms = now_mono_ms();
	peer_name(wsi, req.peer, sizeof(req.peer));
	if (copy_token(wsi, WSI_TOKEN_GET_URI, &req.path) <= 0 || collect_params(wsi, &req) < 0 ||
	    collect_headers(wsi, &req) < 0 || copy_token(wsi, WSI_TOKEN_PROTOCOL, &list) < 0) {
		status = req.path ? 500 : 400;
		why = "The upgrade request cannot be read.";
	} else if (atomic_load(&srv->draining)) {
		status = 503;
		why = "quaverd is shutting down.";
	}
	rc = ws_upgrade_confirm(srv->upgrades, srv->hub, wsi, &req, list, status, why);
	free(list);
	http_request_clear(&req);
	return rc;
}

/* LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: the ws session data exists; attach the connection. */
static int ws_filter(struct http_server *srv, struct lws *wsi, struct conn *conn)
{
	struct ws_conn *ws = conn ? ws_upgrade_attach(srv->upgrades, wsi) : NULL;

	if (!ws)
		return 1;
	conn->job = NULL;
	conn->ws = ws;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* The lws protocol callback                                                 */

/* The callback proper: nonzero asks lws to close the connection. */
static int handle_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			   size_t len)
{
	struct http_server *srv = lws_context_user(lws_get_context(wsi));
	struct conn *conn = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return on_request(srv, wsi, conn, in, len);

	case LWS_CALLBACK_HTTP_BODY:
		return on_body(conn ? conn->job : NULL, in, len);

	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		/*
		 * lws repeats BODY_COMPLETION whenever it reads more after the
		 * body (the next request of a pipelining client, while we
		 * answer this one): only the first one counts.
		 */
		if (!conn || !conn->job || conn->job->body_done)
			return 0;
		conn->job->body_done = true;
		if (conn->job->phase == JOB_LINGER)
			return 1; /* the refused body is all in: close now */
		if (conn->job->phase == JOB_BODY && conn->job->chunked)
			/* lws stops at 100 MB of chunked coding; the last chunk never came */
			refuse(
			    conn->job, 413,
			    "A chunked request body may be at most 100 MB; send a Content-Length.");
		else if (conn->job->phase == JOB_BODY)
			dispatch(srv, conn->job);
		return 0;

	case LWS_CALLBACK_HTTP_WRITEABLE:
		return conn ? on_writeable(srv, wsi, conn) : 0;

	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (!atomic_load(&srv->stop_service))
			ws_upgrades_service(srv->upgrades, srv->vhost);
		collect_done(srv);
		if (srv->hub && !atomic_load(&srv->stop_service))
			ws_hub_service(srv->hub);
		return 0;

	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return ws_filter(srv, wsi, conn);

	case LWS_CALLBACK_ESTABLISHED:
		if (!conn || !conn->ws)
			return 1;
		ws_conn_established(conn->ws, wsi);
		return 0;

	case LWS_CALLBACK_RECEIVE:
		return conn && conn->ws ? ws_conn_receive(conn->ws, wsi, in, len) : 1;

	case LWS_CALLBACK_SERVER_WRITEABLE:
		return conn && conn->ws ? ws_conn_writeable(conn->ws, wsi) : 0;

	case LWS_CALLBACK_CLOSED:
		if (conn && conn->ws) {
			struct ws_conn *ws = conn->ws;

			conn->ws = NULL;
			ws_conn_closed(ws);
		}
		return 0;

	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
	case LWS_CALLBACK_CLOSED_HTTP:
		conn_detach(conn);
		return 0;

	default:
		break;
	}
	return 0;
}

static int callback_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			 size_t len)
{
	if (reason == LWS_CALLBACK_HTTP_CONFIRM_UPGRADE) {
		/* here >0 means "answered with an HTTP status", <0 "hang up" */
		struct http_server *srv = lws_context_user(lws_get_context(wsi));

		return ws_confirm_upgrade(srv, wsi);
	}
	/* Some callers in lws close only on a negative return (WRITEABLE), others on any nonzero.
	 */
	return handle_callback(wsi, reason, user, in, len) ? -1 : 0;
}

static void lws_log_emit(int level, const char *line)
{
	char text[512];
	size_t n;

	copy_str(text, sizeof(text), line);
	n = strlen(text);
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		text[--n] = '\0';
	/*
	 * What lws complains about is a client's doing nearly always (headers
	 * too large, a refused websocket upgrade such as the SDK's background
	 * socket.io): worth a debug line, not a warning. quaverd's own code
	 * logs the failures that are the server's.
	 */
	log_debug("lws %s: %s", (level & LLL_ERR) ? "error" : "warning", text);
}

static void *service_main(void *arg)
{
	struct http_server *srv = arg;

	while (!atomic_load(&srv->stop_service)) {
		if (lws_service(srv->lws, 0) < 0) {
			log_error("the HTTP service loop failed; no more requests are served");
			break;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* Start and stop                                                             */

/*
 * lws defers binding to an address that is not (yet) configured instead of
 * failing; find out now, with a plain bind, so quaverd can say so.
 */
static int check_bindable(const char *addr, int port, bool *ipv6)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1, rc = 0;

	memset(&ss, 0, sizeof(ss));
	*ipv6 = false;
	if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
		sl = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
		sl = sizeof(struct sockaddr_in6);
		*ipv6 = true;
	} else {
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static void stop_workers(struct http_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->stop_workers = true;
	pthread_cond_broadcast(&srv->work_cond);
	pthread_mutex_unlock(&srv->lock);
	for (int i = 0; i < srv->nworkers; i++)
		pthread_join(srv->workers[i], NULL);
	srv->nworkers = 0;
}

static void free_server(struct http_server *srv)
{
	struct job *rest;

	/* first, so no producer thread pokes a context being destroyed */
	ws_hub_free(srv->hub);
	srv->hub = NULL;
	if (srv->lws)
		lws_context_destroy(srv->lws); /* closes connections: jobs get orphaned or freed */
	srv->lws = NULL;
	ws_upgrades_free(srv->upgrades);
	srv->upgrades = NULL;
	/* jobs the workers finished but nobody collected: all orphaned now */
	rest = srv->done_head;
	while (rest) {
		struct job *next = rest->next;

		job_free(rest);
		rest = next;
	}
	rest = srv->work_head;
	while (rest) {
		struct job *next = rest->next;

		job_free(rest);
		rest = next;
	}
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->work_cond);
	free(srv->workers);
	free(srv->listen_addr);
	free(srv->spool_dir);
	free(srv);
}

struct http_server *http_server_start(const struct http_server_config *cfg, int *err)
{
	struct lws_context_creation_info info;
	struct http_server *srv;
	bool ipv6;
	int rc;

	*err = 0;
	if (!cfg->ops || !cfg->ops->handle || cfg->port < 0 || cfg->port > 65535) {
		*err = -EINVAL;
		return NULL;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		*err = -ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->work_cond, NULL);
	srv->ops = cfg->ops;
	srv->ctx = cfg->ctx;
	srv->upgrades = ws_upgrades_new(cfg->ws_ops, cfg->ws_ctx);
	if (!srv->upgrades) {
		pthread_mutex_destroy(&srv->lock);
		pthread_cond_destroy(&srv->work_cond);
		free(srv);
		*err = -ENOMEM;
		return NULL;
	}
	/*
	 * protocols[0] serves HTTP and the websockets that offer no
	 * subprotocol; protocols[1] is the catch-all for those that do, named
	 * per upgrade after the token we echo (ws.h, ws_upgrades). tx_packet_size:
	 * lws sends at most this per write and keeps the rest in a buffer of
	 * its own (finish() waits for it): a send as large as our WRITE_CHUNK.
	 */
	srv->protocols[0] = (struct lws_protocols){.name = "http",
						   .callback = callback_http,
						   .per_session_data_size = sizeof(struct conn),
						   .tx_packet_size = WRITE_CHUNK};
	srv->protocols[1] = (struct lws_protocols){.name = ws_upgrades_protocol_name(srv->upgrades),
						   .callback = callback_http,
						   .per_session_data_size = sizeof(struct conn),
						   .tx_packet_size = WRITE_CHUNK};
	srv->listen_addr = strdup(cfg->listen_addr ? cfg->listen_addr : "127.0.0.1");
	srv->spool_dir = strdup(cfg->spool_dir ? cfg->spool_dir : "/tmp");
	srv->nworkers = 0;
	if (!srv->listen_addr || !srv->spool_dir) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = check_bindable(srv->listen_addr, cfg->port, &ipv6);
	if (rc < 0)
		goto fail;

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	if (!ipv6)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	info.user = srv;
	info.server_string = "quaverd";
	info.max_http_header_data = MAX_HEADER_BYTES;
	info.max_http_header_pool = MAX_HEADER_TABLES;
	info.fd_limit_per_thread = MAX_CONNECTIONS;
	info.timeout_secs = STALL_TIMEOUT_S;
	info.timeout_secs_ah_idle = HEADER_TIMEOUT_S;
	info.keepalive_timeout = KEEPALIVE_IDLE_S;
	info.count_threads = 1;
	/* lws reads the socket into this buffer: its 4 KiB default made an upload of 128 MiB
	 * 32768 recv and as many spool writes. */
	info.pt_serv_buf_size = RECV_CHUNK;
	srv->lws = lws_create_context(&info);
	if (!srv->lws) {
		rc = -ENOMEM;
		goto fail;
	}
	srv->hub = ws_hub_new(srv->lws);
	if (!srv->hub) {
		rc = -ENOMEM;
		goto fail;
	}
	info.port = cfg->port;
	info.iface = srv->listen_addr;
	info.protocols = srv->protocols;
	info.vhost_name = "quaverd";
	srv->vhost = lws_create_vhost(srv->lws, &info);
	if (!srv->vhost) {
		rc = -EADDRINUSE;
		goto fail;
	}
	srv->port = lws_get_vhost_listen_port(srv->vhost);
	if (srv->port <= 0) {
		rc = -EADDRNOTAVAIL;
		goto fail;
	}

	srv->workers = calloc((size_t)(cfg->workers > 0 ? cfg->workers : 16), sizeof(pthread_t));
	if (!srv->workers) {
		rc = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < (cfg->workers > 0 ? cfg->workers : 16); i++) {
		rc = -pthread_create(&srv->workers[i], NULL, worker_main, srv);
		if (rc < 0)
			goto fail;
		srv->nworkers++;
	}
	rc = -pthread_create(&srv->service_thread, NULL, service_main, srv);
	if (rc < 0)
		goto fail;
	srv->service_started = true;
	return srv;

fail:
	stop_workers(srv);
	free_server(srv);
	*err = rc;
	return NULL;
}

int http_server_port(const struct http_server *srv)
{
	return srv->port;
}

void http_server_stop(struct http_server *srv)
{
	int64_t deadline = now_mono_ms() + STOP_GRACE_MS;

	if (!srv)
		return;
	/* New requests get 503 from here on; those in flight finish and are answered. */
	atomic_store(&srv->draining, true);
	while (atomic_load(&srv->inflight) > 0 && now_mono_ms() < deadline)
		usleep(10 * 1000);
	if (atomic_load(&srv->inflight) > 0)
		log_warn("stopping with %d requests still in flight", atomic_load(&srv->inflight));

	atomic_store(&srv->stop_service, true);
	lws_cancel_service(srv->lws);
	if (srv->service_started)
		pthread_join(srv->service_thread, NULL);
	/* Workers finish what they hold before the context (which they wake) goes. */
	stop_workers(srv);
	free_server(srv);
}
