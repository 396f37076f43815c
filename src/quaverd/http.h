/*
 * quaverd's HTTP layer (server.c): libwebsockets accepts connections and
 * parses requests on its service thread, hands each complete request to a
 * worker pool, and writes the response the worker produced. Handlers are
 * plain blocking functions; they know nothing of libwebsockets.
 */
#ifndef QUAVERD_HTTP_H
#define QUAVERD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "buf.h"

struct http_param {
	char *name;  /* percent-decoded */
	char *value; /* percent-decoded; "" for a bare name */
};

struct http_header {
	char *name; /* lower case */
	char *value;
};

struct http_request {
	char method[8];       /* "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS" */
	char *path;           /* percent-decoded path without the query, e.g. "/api/sandbox/x" */
	char *raw_query;      /* as received, without '?', "" when none */
	struct http_param *params;
	size_t nparams;
	struct http_header *headers; /* every header the client sent, names lower case */
	size_t nheaders;
	struct buf body;      /* the body when it is small enough to keep in memory */
	char *body_file;      /* else the path of a 0600 temp file holding it (NULL when in memory) */
	uint64_t body_len;    /* bytes received in either case */
	char peer[64];        /* "127.0.0.1:54321" */
	int64_t received_ms;  /* monotonic */
};

/* First value of query parameter @name, or NULL. */
const char *http_param(const struct http_request *req, const char *name);
/* Every value of a repeated parameter (states=a&states=b); returns how many, at most @max. */
size_t http_param_all(const struct http_request *req, const char *name, const char **out,
		      size_t max);
/* Header by case-insensitive name, or NULL. */
const char *http_header(const struct http_request *req, const char *name);

struct http_response {
	int status;              /* 0 means "not answered": the layer sends 500 */
	char content_type[96];   /* default "application/json" */
	struct buf body;         /* sent when file_fd < 0 */
	int file_fd;             /* >= 0: stream @file_len bytes from @file_off, then close it */
	off_t file_off;
	off_t file_len;
	struct http_header extra[8]; /* extra response headers (owned strings) */
	size_t nextra;
};

/* Sets status, content type and a JSON body; takes ownership of @json. */
void http_reply_json(struct http_response *resp, int status, cJSON *json);
/*
 * A Daytona-shaped error body {statusCode, error, message, path, timestamp}:
 * the message is what the SDK shows a user, so make it a sentence.
 */
void http_reply_error(struct http_response *resp, const struct http_request *req, int status,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Adds a response header; both strings are copied. 0 or -ENOSPC. */
int http_add_header(struct http_response *resp, const char *name, const char *value);
/* The reason phrase of a status ("Not Found"). */
const char *http_reason(int status);

/*
 * What the layer asks before reading a body. Return the largest body the
 * route accepts (larger: 413 without reading it) and whether a body over
 * @spool_over bytes goes to a temp file instead of memory.
 */
struct http_body_policy {
	uint64_t max_bytes;
	uint64_t spool_over;
};

struct http_handler_ops {
	void (*body_policy)(void *ctx, const char *method, const char *path,
			    struct http_body_policy *policy);
	/* Runs on a worker thread; many run at once. */
	void (*handle)(void *ctx, const struct http_request *req, struct http_response *resp);
};

struct ws_ops;

struct http_server_config {
	const char *listen_addr; /* "127.0.0.1" */
	int port;                /* 0: ephemeral */
	int workers;             /* worker threads, default 16 */
	const char *spool_dir;   /* where large bodies are spooled */
	const struct http_handler_ops *ops;
	void *ctx;
	/* websocket upgrades (ws.h); NULL: every upgrade is refused */
	const struct ws_ops *ws_ops;
	void *ws_ctx;
};

struct http_server;

/* Binds and starts serving on its own threads. NULL with *err set (-errno) on failure. */
struct http_server *http_server_start(const struct http_server_config *cfg, int *err);
/* The port actually bound. */
int http_server_port(const struct http_server *srv);
/* Stops accepting, lets running handlers finish, frees everything. */
void http_server_stop(struct http_server *srv);

#endif
