/*
 * quaverd's cloud-like mode (cloudlike.c, doc/quaverd.md "Cloud-like
 * mode"): what clients of Daytona cloud must cope with, made local. The
 * toolbox is served by a second HTTP server on its own port (as the
 * cloud's toolbox proxy is another host), the API server stops serving
 * /toolbox, and a seeded share of requests gets 429 (with Retry-After) or
 * 503 before it reaches the API. The lasting transitional states are the
 * store's (store_config.lasting_lifecycle).
 *
 * It wraps the handler and websocket ops main.c would otherwise hand to
 * http_server_start, one wrapper per server, so server.c is unchanged.
 */
#ifndef QUAVERD_CLOUDLIKE_H
#define QUAVERD_CLOUDLIKE_H

#include <stdint.h>

#include "http.h"
#include "ws.h"

struct cloudlike_config {
	double fault_rate;        /* share of requests answered 429/503, 0 to 1 */
	uint64_t fault_seed;      /* the generator's seed: the same seed, the same draws */
	const char *fault_source; /* NULL: every request; else only those whose
				     X-Daytona-Source is this (the client under test) */
	int retry_after_s;        /* the Retry-After of a 429 */
	/* what the wrappers forward to */
	const struct http_handler_ops *inner;
	void *inner_ctx;
	const struct ws_ops *ws_inner;
	void *ws_ctx;
};

enum cloudlike_port { CLOUDLIKE_API, CLOUDLIKE_TOOLBOX };

struct cloudlike;

/* NULL on ENOMEM. The strings are copied. */
struct cloudlike *cloudlike_new(const struct cloudlike_config *cfg);
void cloudlike_free(struct cloudlike *cl);

/*
 * The ops and ctx for one of the two servers: CLOUDLIKE_API serves
 * everything but /toolbox, CLOUDLIKE_TOOLBOX only /toolbox (HTTP and
 * websockets alike).
 */
const struct http_handler_ops *cloudlike_http_ops(void);
const struct ws_ops *cloudlike_ws_ops(void);
void *cloudlike_ctx(struct cloudlike *cl, enum cloudlike_port port);

#endif
