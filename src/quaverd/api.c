/*
 * quaverd's Daytona API: the entry the HTTP layer calls on its worker
 * threads. It checks the Bearer token, splits the path and hands the
 * request to the module that owns the route (api_sandbox.c for
 * /api/sandbox, api_resources.c for /api/volumes and /api/snapshots).
 * The toolbox under /toolbox belongs to toolbox.c.
 */
#define QUAVERD_API_INTERNAL
#include "api.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "toolbox.h"
#include "util.h"

struct api {
	struct store *store;
	char *token;
	size_t token_len;
	uint64_t max_json_body;
	pthread_mutex_t lock; /* guards public_base, set once after bind */
	char public_base[256];
	char toolbox_base[256]; /* cloud-like mode: the toolbox's own server */
};

struct api *api_new(struct store *store, const struct api_config *cfg)
{
	struct api *api = calloc(1, sizeof(*api));

	if (!api)
		return NULL;
	api->store = store;
	api->token = strdup(cfg->token ? cfg->token : "");
	if (!api->token) {
		free(api);
		return NULL;
	}
	api->token_len = strlen(api->token);
	api->max_json_body = cfg->max_json_body ? cfg->max_json_body : 1048576;
	pthread_mutex_init(&api->lock, NULL);
	return api;
}

void api_set_public_base(struct api *api, const char *base)
{
	char tmp[sizeof(api->public_base)];
	size_t len;

	copy_str(tmp, sizeof(tmp), base);
	len = strlen(tmp);
	while (len > 0 && tmp[len - 1] == '/')
		tmp[--len] = '\0';
	/* Accept the API URL too: the toolbox base is a sibling of /api. */
	if (len >= 4 && !strcmp(tmp + len - 4, "/api"))
		tmp[len - 4] = '\0';
	pthread_mutex_lock(&api->lock);
	copy_str(api->public_base, sizeof(api->public_base), tmp);
	pthread_mutex_unlock(&api->lock);
}

void api_set_toolbox_base(struct api *api, const char *base)
{
	char tmp[sizeof(api->toolbox_base)];
	size_t len;

	copy_str(tmp, sizeof(tmp), base);
	len = strlen(tmp);
	while (len > 0 && tmp[len - 1] == '/')
		tmp[--len] = '\0';
	pthread_mutex_lock(&api->lock);
	copy_str(api->toolbox_base, sizeof(api->toolbox_base), tmp);
	pthread_mutex_unlock(&api->lock);
}

void api_toolbox_url(const struct api_call *c, char *out, size_t size)
{
	snprintf(out, size, "%s/toolbox", c->toolbox_base[0] ? c->toolbox_base : c->base);
}

void api_free(struct api *api)
{
	if (!api)
		return;
	if (api->token) {
		explicit_bzero(api->token, api->token_len);
		free(api->token);
	}
	pthread_mutex_destroy(&api->lock);
	free(api);
}

/* ---- helpers for the route modules ---------------------------------------- */

bool api_method(const struct api_call *c, const char *method)
{
	return !strcmp(c->req->method, method);
}

void api_reply_error(struct api_call *c, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_reply_error(c->resp, c->req, status, "%s", msg);
}

void api_no_route(struct api_call *c)
{
	api_reply_error(c, 404, "Cannot %s %s", c->req->method, c->req->path);
}

void api_store_error(struct api_call *c, int rc, const struct store_err *err)
{
	int status;

	switch (rc) {
	case -EINVAL:
		status = 400;
		break;
	case -ENOENT:
		status = 404;
		break;
	case -EEXIST:
	case -EBUSY:
		status = 409;
		break;
	default:
		status = 500;
		break;
	}
	if (status == 500)
		log_error("%s %s: %s", c->req->method, c->req->path, err->msg);
	api_reply_error(c, status, "%s", err->msg[0] ? err->msg : "Internal server error");
}

void api_reply_empty(struct api_call *c, int status)
{
	c->resp->status = status;
	buf_reset(&c->resp->body);
}

/* ---- auth ----------------------------------------------------------------- */

/* Compares in time that depends only on the lengths, never on where they differ. */
static bool token_equal(const char *given, size_t given_len, const char *want, size_t want_len)
{
	unsigned char diff = given_len != want_len;
	size_t n = want_len;

	for (size_t i = 0; i < n; i++) {
		unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
		diff |= g ^ (unsigned char)want[i];
	}
	return diff == 0 && want_len > 0;
}

static bool authorized(const struct api *api, const struct http_request *req)
{
	const char *h = http_header(req, "authorization");
	const char *tok;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	tok = h + 7;
	while (*tok == ' ')
		tok++;
	return token_equal(tok, strlen(tok), api->token, api->token_len);
}

/* ---- routing -------------------------------------------------------------- */

/* Splits @path (after its prefix) into segments in @scratch; false when too many. */
static bool split_path(struct api_call *c, const char *rest, char *scratch, size_t size)
{
	char *save = NULL, *tok;

	if (!copy_str(scratch, size, rest))
		return false;
	c->nsegs = 0;
	for (tok = strtok_r(scratch, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (c->nsegs == API_MAX_SEGS)
			return false;
		c->segs[c->nsegs++] = tok;
	}
	return true;
}

static void api_handle(void *ctx, const struct http_request *req, struct http_response *resp)
{
	struct api *api = ctx;
	struct api_call c = {.api = api, .store = api->store, .req = req, .resp = resp};
	char scratch[2048];
	const char *path = req->path ? req->path : "";

	pthread_mutex_lock(&api->lock);
	copy_str(c.base, sizeof(c.base), api->public_base);
	copy_str(c.toolbox_base, sizeof(c.toolbox_base), api->toolbox_base);
	pthread_mutex_unlock(&api->lock);
	if (!c.base[0]) {
		api_reply_error(&c, 503, "quaverd is starting; try again in a moment");
		return;
	}
	if (!authorized(api, req)) {
		api_reply_error(&c, 401,
				"Missing or invalid Bearer token in the Authorization header");
		return;
	}
	if (!strncmp(path, "/api/", 5) || !strcmp(path, "/api")) {
		if (!split_path(&c, path + 4, scratch, sizeof(scratch)) || c.nsegs == 0) {
			api_no_route(&c);
			return;
		}
		if (!strcmp(c.segs[0], "sandbox"))
			api_sandbox_route(&c);
		else if (!strcmp(c.segs[0], "volumes"))
			api_volume_route(&c);
		else if (!strcmp(c.segs[0], "snapshots"))
			api_snapshot_route(&c);
		else
			api_no_route(&c);
		return;
	}
	if (!strncmp(path, "/toolbox/", 9)) {
		toolbox_handle(api->store, req, resp, path + 9);
		return;
	}
	api_no_route(&c);
}

static void api_body_policy(void *ctx, const char *method, const char *path,
			    struct http_body_policy *policy)
{
	struct api *api = ctx;

	/* Uploads under /toolbox are large and spooled; everything else is small JSON. */
	if (toolbox_body_policy(method, path, policy))
		return;
	policy->max_bytes = api->max_json_body;
	policy->spool_over = api->max_json_body;
}

static const struct http_handler_ops api_ops = {
	.body_policy = api_body_policy,
	.handle = api_handle,
};

const struct http_handler_ops *api_http_ops(void)
{
	return &api_ops;
}
