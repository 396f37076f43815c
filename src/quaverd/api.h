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
void api_free(struct api *api);
/* The ops table to hand to http_server_start, with the api as ctx. */
const struct http_handler_ops *api_http_ops(void);

#endif
