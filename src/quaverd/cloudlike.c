/*
 * Cloud-like mode: two servers' worth of routing and the injected faults.
 * See cloudlike.h and doc/quaverd.md "Cloud-like mode".
 */
#include "cloudlike.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct cloudlike_side {
	struct cloudlike *cl;
	enum cloudlike_port port;
};

struct cloudlike {
	struct cloudlike_config cfg;
	char *fault_source;
	pthread_mutex_t lock; /* guards rng */
	uint64_t rng;
	struct cloudlike_side api, toolbox;
};

struct cloudlike *cloudlike_new(const struct cloudlike_config *cfg)
{
	struct cloudlike *cl = calloc(1, sizeof(*cl));

	if (!cl)
		return NULL;
	cl->cfg = *cfg;
	if (cfg->fault_source && cfg->fault_source[0]) {
		cl->fault_source = strdup(cfg->fault_source);
		if (!cl->fault_source) {
			free(cl);
			return NULL;
		}
	}
	cl->cfg.fault_source = cl->fault_source;
	cl->rng = cfg->fault_seed;
	pthread_mutex_init(&cl->lock, NULL);
	cl->api = (struct cloudlike_side){cl, CLOUDLIKE_API};
	cl->toolbox = (struct cloudlike_side){cl, CLOUDLIKE_TOOLBOX};
	return cl;
}

void cloudlike_free(struct cloudlike *cl)
{
	if (!cl)
		return;
	pthread_mutex_destroy(&cl->lock);
	free(cl->fault_source);
	free(cl);
}

void *cloudlike_ctx(struct cloudlike *cl, enum cloudlike_port port)
{
	return port == CLOUDLIKE_API ? (void *)&cl->api : (void *)&cl->toolbox;
}

/* splitmix64: small, seedable, and good enough to pick which requests fail. */
static double next_unit(struct cloudlike *cl)
{
	uint64_t z;

	pthread_mutex_lock(&cl->lock);
	cl->rng += 0x9e3779b97f4a7c15ULL;
	z = cl->rng;
	pthread_mutex_unlock(&cl->lock);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) / (double)(1ULL << 53);
}

static bool is_toolbox_path(const char *path)
{
	return path && !strncmp(path, "/toolbox/", 9);
}

/* Whether @path belongs on this side: the API server never serves /toolbox. */
static bool served_here(const struct cloudlike_side *side, const char *path)
{
	return (side->port == CLOUDLIKE_TOOLBOX) == is_toolbox_path(path);
}

/*
 * Methods a client may repeat after a 503 without doing the work twice.
 * The 503 of a POST could hide a change made (no client could tell), so
 * a POST only ever gets the 429 the cloud's throttler answers before it
 * does anything.
 */
static bool idempotent(const char *method)
{
	return !strcmp(method, "GET") || !strcmp(method, "HEAD") || !strcmp(method, "PUT") ||
	       !strcmp(method, "DELETE");
}

/* Answers a fault instead of the request when one is due; true then. */
static bool inject_fault(struct cloudlike *cl, const struct http_request *req,
			 struct http_response *resp)
{
	const char *source;
	char retry_after[16];

	if (cl->cfg.fault_rate <= 0)
		return false;
	if (cl->cfg.fault_source) {
		source = http_header(req, "x-daytona-source");
		if (!source || strcmp(source, cl->cfg.fault_source) != 0)
			return false;
	}
	if (next_unit(cl) >= cl->cfg.fault_rate)
		return false;
	if (idempotent(req->method) && next_unit(cl) < 0.5) {
		http_reply_error(resp, req, 503, "Service Unavailable");
		log_debug("cloud-like: injected 503 for %s %s", req->method, req->path);
		return true;
	}
	http_reply_error(resp, req, 429, "ThrottlerException: Too Many Requests");
	snprintf(retry_after, sizeof(retry_after), "%d", cl->cfg.retry_after_s);
	http_add_header(resp, "Retry-After", retry_after);
	log_debug("cloud-like: injected 429 for %s %s", req->method, req->path);
	return true;
}

static void cloudlike_body_policy(void *ctx, const char *method, const char *path,
				  struct http_body_policy *policy)
{
	struct cloudlike_side *side = ctx;
	struct cloudlike *cl = side->cl;

	cl->cfg.inner->body_policy(cl->cfg.inner_ctx, method, path, policy);
}

static void cloudlike_handle(void *ctx, const struct http_request *req, struct http_response *resp)
{
	struct cloudlike_side *side = ctx;
	struct cloudlike *cl = side->cl;

	if (!served_here(side, req->path)) {
		/* As a Nest API answers a route it does not have. */
		http_reply_error(resp, req, 404, "Cannot %s %s", req->method,
				 req->path ? req->path : "");
		return;
	}
	if (inject_fault(cl, req, resp))
		return;
	cl->cfg.inner->handle(cl->cfg.inner_ctx, req, resp);
}

static const struct http_handler_ops http_ops = {
	.body_policy = cloudlike_body_policy,
	.handle = cloudlike_handle,
};

const struct http_handler_ops *cloudlike_http_ops(void)
{
	return &http_ops;
}

static int cloudlike_upgrade(void *ctx, const struct http_request *req, const char *const *offered,
			     size_t noffered, struct ws_accept *acc, char *msg, size_t msg_size)
{
	struct cloudlike_side *side = ctx;
	struct cloudlike *cl = side->cl;

	if (!served_here(side, req->path)) {
		snprintf(msg, msg_size, "Cannot GET %s", req->path ? req->path : "");
		return 404;
	}
	return cl->cfg.ws_inner->upgrade(cl->cfg.ws_ctx, req, offered, noffered, acc, msg,
					 msg_size);
}

static const struct ws_ops ws_ops = {.upgrade = cloudlike_upgrade};

const struct ws_ops *cloudlike_ws_ops(void)
{
	return &ws_ops;
}
