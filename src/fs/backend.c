/* The client holder and its recovery from a quaverd that moved. */
#include "backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "local.h"
#include "log.h"
#include "util.h"

#define REMOTE_MAX_RETRIES 4

static __thread bool (*cancel_fn)(void *arg);
static __thread void *cancel_arg;
static __thread int64_t deadline_ms; /* 0: none */

bool backend_interrupted(void)
{
	return cancel_fn && cancel_fn(cancel_arg);
}

bool backend_past_deadline(void)
{
	return deadline_ms && now_mono_ms() >= deadline_ms;
}

bool backend_cancelled(void)
{
	return backend_interrupted() || backend_past_deadline();
}

static bool cancel_hook(void *arg)
{
	(void)arg;
	return backend_cancelled();
}

static void install_hook(void)
{
	dt_set_cancel_hook(cancel_fn || deadline_ms ? cancel_hook : NULL, NULL);
}

void backend_set_cancel(bool (*fn)(void *arg), void *arg)
{
	cancel_fn = fn;
	cancel_arg = arg;
	install_hook();
}

void backend_set_deadline(int64_t at_ms)
{
	deadline_ms = at_ms;
	install_hook();
}

struct backend {
	pthread_mutex_t lock;
	struct dt_config cfg; /* strings below are ours */
	char *api_key, *jwt, *organization_id, *target, *ca_file, *state_dir;
	char *url; /* the url of @client */
	struct dt_client *client;
	/* Replaced clients and their urls: a thread may still be using one. */
	struct dt_client **old;
	char **old_urls;
	size_t nold;
	bool reachable;
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int backend_new(const struct backend_config *cfg, struct backend **out, struct dt_error *err)
{
	struct backend *b = calloc(1, sizeof(*b));

	*out = NULL;
	if (!b)
		goto nomem;
	pthread_mutex_init(&b->lock, NULL);
	b->url = strdup(cfg->api_url);
	b->api_key = dup_or_null(cfg->api_key);
	b->jwt = dup_or_null(cfg->jwt);
	b->organization_id = dup_or_null(cfg->organization_id);
	b->target = dup_or_null(cfg->target);
	b->ca_file = dup_or_null(cfg->ca_file);
	b->state_dir = dup_or_null(cfg->state_dir);
	if (!b->url)
		goto nomem;
	b->cfg.api_url = b->url;
	b->cfg.api_key = b->api_key;
	b->cfg.jwt = b->jwt;
	b->cfg.organization_id = b->organization_id;
	b->cfg.target = b->target;
	b->cfg.ca_file = b->ca_file;
	b->cfg.connect_timeout_ms = 5000;
	b->cfg.request_timeout_ms = 30000;
	b->cfg.wait_timeout_ms = cfg->wait_timeout_ms;
	/*
	 * Fail fast: a refused connection to the local quaverd will not be
	 * accepted 250 ms later. A remote service (Daytona cloud) throttles
	 * (429) and has gateways that answer 502/503/504 for a moment: up to
	 * 4 retries, 250 ms x attempt plus jitter (or its Retry-After), always
	 * inside the request's deadline (client.c).
	 */
	b->cfg.max_retries = b->state_dir ? -1 : REMOTE_MAX_RETRIES;
	b->client = dt_client_new(&b->cfg, err);
	if (!b->client) {
		backend_free(b);
		return -(err->err ? err->err : EINVAL);
	}
	b->reachable = true;
	*out = b;
	return 0;
nomem:
	backend_free(b);
	err->err = ENOMEM;
	err->http_status = 0;
	snprintf(err->message, sizeof(err->message), "out of memory");
	return -ENOMEM;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void backend_free(struct backend *b)
{
	if (!b)
		return;
	if (b->client)
		dt_client_free(b->client);
	for (size_t i = 0; i < b->nold; i++) {
		dt_client_free(b->old[i]);
		free(b->old_urls[i]);
	}
	free(b->old);
	free(b->old_urls);
	free(b->url);
	free_secret(b->api_key);
	free_secret(b->jwt);
	free(b->organization_id);
	free(b->target);
	free(b->ca_file);
	free(b->state_dir);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

struct dt_client *backend_client(struct backend *b)
{
	struct dt_client *c;

	pthread_mutex_lock(&b->lock);
	c = b->client;
	pthread_mutex_unlock(&b->lock);
	return c;
}

/* Under the lock: a client for quaverd's new url. False when nothing changed. */
static bool switch_url_locked(struct backend *b)
{
	struct dt_client **old;
	char **old_urls;
	struct dt_client *fresh;
	struct dt_error err;
	char *url = NULL;
	const char *prev_url = b->cfg.api_url;

	if (local_read_url(b->state_dir, &url) < 0)
		return false;
	if (strcmp(url, b->url) == 0) {
		free(url);
		return false;
	}
	old = realloc(b->old, (b->nold + 1) * sizeof(*old));
	if (old)
		b->old = old;
	old_urls = realloc(b->old_urls, (b->nold + 1) * sizeof(*old_urls));
	if (old_urls)
		b->old_urls = old_urls;
	if (!old || !old_urls) {
		free(url);
		return false;
	}
	b->cfg.api_url = url;
	fresh = dt_client_new(&b->cfg, &err);
	if (!fresh) {
		b->cfg.api_url = prev_url;
		log_warn("cannot make a client for %s: %s", url, err.message);
		free(url);
		return false;
	}
	log_info("quaverd moved from %s to %s", b->url, url);
	b->old[b->nold] = b->client;
	b->old_urls[b->nold] = b->url;
	b->nold++;
	b->client = fresh;
	b->url = url;
	return true;
}

bool backend_after(struct backend *b, struct dt_client *used, int ret, const struct dt_error *err)
{
	bool retry = false;

	pthread_mutex_lock(&b->lock);
	if (ret == 0 || !dt_error_is_transport(err)) {
		if (ret == 0 || err->http_status != 0)
			b->reachable = true;
	} else {
		b->reachable = false;
		if (b->state_dir) {
			/* Another thread may have switched already. */
			retry = used != b->client || switch_url_locked(b);
		}
	}
	pthread_mutex_unlock(&b->lock);
	return retry;
}

bool backend_reachable(struct backend *b)
{
	bool r;

	pthread_mutex_lock(&b->lock);
	r = b->reachable;
	pthread_mutex_unlock(&b->lock);
	return r;
}

bool backend_is_local(const struct backend *b)
{
	return b->state_dir != NULL;
}

void backend_url(struct backend *b, char *out, size_t size)
{
	pthread_mutex_lock(&b->lock);
	copy_str(out, size, dt_client_api_url(b->client));
	pthread_mutex_unlock(&b->lock);
}

int backend_create_in_target(struct backend *b, const char *target,
			     const struct dt_create_params *p, struct dt_sandbox *out,
			     struct dt_error *err)
{
	struct dt_config cfg;
	struct dt_client *c;
	char *url;
	int ret;

	pthread_mutex_lock(&b->lock);
	url = strdup(b->url);
	cfg = b->cfg;
	pthread_mutex_unlock(&b->lock);
	if (!url) {
		err->err = ENOMEM;
		err->http_status = 0;
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -ENOMEM;
	}
	cfg.api_url = url;
	cfg.target = target;
	c = dt_client_new(&cfg, err);
	if (!c) {
		free(url);
		return -(err->err ? err->err : EINVAL);
	}
	ret = dt_sandbox_create(c, p, out, err);
	backend_after(b, c, ret, err);
	dt_client_free(c);
	free(url);
	return ret;
}
