/*
 * quaverd's Daytona API (api*.c): routing, auth, JSON in and out. It sits
 * between the HTTP layer (http.h) and the store (store.h) and is the only
 * place that turns store results into HTTP statuses and messages.
 */
#ifndef QUAVERD_API_H
#define QUAVERD_API_H

#include "http.h"
#include "store.h"

struct api_config {
	const char *token;        /* the Bearer token every request must carry */
	uint64_t max_json_body;   /* bodies of /api requests over this get 413 */
};

struct api;

struct api *api_new(struct store *store, const struct api_config *cfg);
/* Set once the port is bound; until then requests get 503. The string is copied. */
void api_set_public_base(struct api *api, const char *base);
/*
 * Cloud-like mode: the toolbox is served elsewhere ("http://127.0.0.1:PORT"),
 * and toolboxProxyUrl names it (with "/toolbox"). Unset: the public base.
 */
void api_set_toolbox_base(struct api *api, const char *base);
void api_free(struct api *api);
/* The ops table to hand to http_server_start, with the api as ctx. */
const struct http_handler_ops *api_http_ops(void);

/*
 * ---- private to api*.c -----------------------------------------------------
 * Shared by the api's modules; nothing outside api*.c defines
 * QUAVERD_API_INTERNAL.
 */
#ifdef QUAVERD_API_INTERNAL

#include <stdarg.h>

#define API_MAX_SEGS 8

struct api;

/* One request being handled: the route's path segments after "/api/" or "/toolbox/". */
struct api_call {
	struct api *api;
	struct store *store;
	const struct http_request *req;
	struct http_response *resp;
	char base[256];       /* "http://127.0.0.1:PORT", no trailing slash */
	char toolbox_base[256]; /* where the toolbox is served; "" = base */
	char *segs[API_MAX_SEGS];
	size_t nsegs;
};

/* api.c */
bool api_method(const struct api_call *c, const char *method);
/* 404 as Nest answers an unknown route: "Cannot GET /api/x". */
void api_no_route(struct api_call *c);
/* Maps a store result to a status (see store.h) and replies with err's sentence. */
void api_store_error(struct api_call *c, int rc, const struct store_err *err);
void api_reply_error(struct api_call *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void api_reply_empty(struct api_call *c, int status);

/* The DTOs' toolboxProxyUrl: "{toolbox_base or base}/toolbox". */
void api_toolbox_url(const struct api_call *c, char *out, size_t size);

/* api_json.c: request bodies, validation in NestJS's words, DTOs */
struct api_errs {
	struct buf text; /* messages joined with ", " as Nest joins them */
	int count;
};
void errs_add(struct api_errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void errs_free(struct api_errs *e);
/* Replies 400 with the joined messages and returns true when there are any. */
bool errs_reply(struct api_call *c, struct api_errs *e);

/*
 * Parses the body as a JSON object. An empty body is an empty object.
 * Replies 400 itself and returns NULL when the body is not a JSON object.
 */
cJSON *api_body(struct api_call *c);
/* "property foo should not exist" for each member of @obj not in @known (NULL-terminated). */
void check_known(const cJSON *obj, const char *const *known, const char *prefix,
		 struct api_errs *e);
/* Typed optional members: NULL/absent means "not given"; a wrong type adds an error. */
const char *opt_string(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e);
int opt_bool(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e);
bool opt_number(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e,
		double *out);
bool opt_integer(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e,
		 int64_t *out);
const cJSON *opt_object(const cJSON *obj, const char *key, const char *prefix,
			struct api_errs *e);
const cJSON *opt_array(const cJSON *obj, const char *key, const char *prefix,
		       struct api_errs *e);
/* Checks an object of strings (labels or env) against its bounds. */
void check_string_map(const cJSON *map, const char *what, bool env_keys, struct api_errs *e);
/* doc/quaverd.md "Object names". */
bool valid_object_name(const char *s);
void check_object_name(const char *name, const char *what, struct api_errs *e);

/* Query parameters in the same words. */
bool query_int(struct api_call *c, const char *name, int64_t min, int64_t max, int64_t dflt,
	       int64_t *out, struct api_errs *e);
int query_bool(struct api_call *c, const char *name, struct api_errs *e);

cJSON *sandbox_json(const struct api_call *c, const struct store_sandbox_info *s, bool full);
cJSON *volume_json(const struct api_call *c, const struct store_volume_info *v);
cJSON *snapshot_json(const struct api_call *c, const struct store_snapshot_info *s);
/* Replies 200 with a sandbox DTO and frees @info. */
void reply_sandbox(struct api_call *c, struct store_sandbox_info *info);

/* api_sandbox.c, api_resources.c: the routes under /api */
void api_sandbox_route(struct api_call *c);
void api_volume_route(struct api_call *c);
void api_snapshot_route(struct api_call *c);

#endif /* QUAVERD_API_INTERNAL */

#endif
