/*
 * Websockets in quaverd (ws.c, with the lws glue in server.c).
 *
 * An upgrade request is routed before the handshake: the HTTP layer builds
 * an http_request (path, query, headers) and asks ws_ops->upgrade, on the
 * lws service thread, whether to accept it. Refused upgrades get an ordinary
 * HTTP error answer. An accepted one gets a struct ws_conn that any thread
 * may send on; what the client sends arrives in handler callbacks on the
 * service thread.
 *
 * Each connection has a bounded outbound queue (WS_QUEUE_MAX messages): a
 * client that does not read is closed with 1008 "slow consumer" instead of
 * making quaverd buffer without limit or blocking its producers.
 */
#ifndef QUAVERD_WS_H
#define QUAVERD_WS_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

#define WS_QUEUE_MAX 256
/* Largest message a client may send; larger: closed with 1009. */
#define WS_MAX_MESSAGE (1024 * 1024)

struct ws_conn;

struct ws_handler {
	/* Service thread, once the handshake is out. */
	void (*on_open)(void *arg, struct ws_conn *conn);
	/* Service thread: one whole message. Must not block. */
	void (*on_message)(void *arg, struct ws_conn *conn, bool binary, const void *data,
			   size_t len);
	/*
	 * Service thread: the connection is gone (or never opened). Called
	 * exactly once per accepted upgrade; sends fail from here on. The
	 * handler drops what it holds for this connection (arg included).
	 */
	void (*on_close)(void *arg, struct ws_conn *conn);
};

struct ws_accept {
	const struct ws_handler *handler;
	void *arg;
	/* the offered subprotocol to echo; "" to echo the first one offered */
	char protocol[64];
};

struct ws_ops {
	/*
	 * Service thread, before the handshake; must be quick. @offered are
	 * the Sec-WebSocket-Protocol tokens. Return 0 to accept (fill @acc),
	 * or an HTTP status (401, 404, 409...) with a sentence in @msg.
	 */
	int (*upgrade)(void *ctx, const struct http_request *req, const char *const *offered,
		       size_t noffered, struct ws_accept *acc, char *msg, size_t msg_size);
};

/* References: the layer holds one until on_close returns; take one to send later. */
void ws_conn_ref(struct ws_conn *conn);
void ws_conn_unref(struct ws_conn *conn);

/*
 * Queues a message (copied). Any thread. 0; -EPIPE once the connection is
 * closing or gone; -ENOBUFS when the queue was full: the client is then
 * being closed with 1008 "slow consumer".
 */
int ws_send(struct ws_conn *conn, bool binary, const void *data, size_t len);
int ws_send_text(struct ws_conn *conn, const char *text);
/*
 * Closes with @code and @reason (at most 123 bytes) once the messages
 * already queued are out. Any thread; the first close wins.
 */
void ws_close(struct ws_conn *conn, int code, const char *reason);
/* Whether the connection is still open (not closing). */
bool ws_open(struct ws_conn *conn);
/* The peer, "127.0.0.1:5555", for logs. */
const char *ws_peer(const struct ws_conn *conn);

/* ---- for server.c only ---------------------------------------------------- */
#ifdef QUAVERD_WS_INTERNAL

#include <libwebsockets.h>

struct ws_hub;

struct ws_hub *ws_hub_new(struct lws_context *lws);
void ws_hub_free(struct ws_hub *hub);
/* A connection for an accepted upgrade (not yet bound to a wsi). */
struct ws_conn *ws_conn_new(struct ws_hub *hub, const struct ws_accept *acc, const char *peer);
/* The handshake is done: bind @wsi and call on_open. */
void ws_conn_established(struct ws_conn *conn, struct lws *wsi);
/* lws callbacks for an established connection; nonzero closes. */
int ws_conn_receive(struct ws_conn *conn, struct lws *wsi, const void *in, size_t len);
int ws_conn_writeable(struct ws_conn *conn, struct lws *wsi);
/* The connection is gone: on_close, then the layer's reference is dropped. */
void ws_conn_closed(struct ws_conn *conn);
/* Service thread, on LWS_CALLBACK_EVENT_WAIT_CANCELLED: asks WRITEABLE for woken connections. */
void ws_hub_service(struct ws_hub *hub);

/*
 * The upgrades of one server in progress (service thread only). lws 4.1
 * answers a subprotocol only when a protocol of that exact name exists, and
 * Daytona's tokens carry values: the server's catch-all protocol is named
 * ws_upgrades_protocol_name(), which ws_upgrade_confirm sets to the token
 * it echoes just before lws matches (synchronously, on the same thread).
 */
struct ws_upgrades;

/* @ops NULL: every upgrade is refused (404). */
struct ws_upgrades *ws_upgrades_new(const struct ws_ops *ops, void *ctx);
void ws_upgrades_free(struct ws_upgrades *u);
/* The name buffer of the catch-all protocol (stable for the life of @u). */
const char *ws_upgrades_protocol_name(struct ws_upgrades *u);
/*
 * LWS_CALLBACK_HTTP_CONFIRM_UPGRADE with the request server.c parsed and
 * the raw Sec-WebSocket-Protocol list (NULL when none; split in place). A
 * nonzero @status refuses with @why. Returns 0 to go on with the upgrade,
 * 1 when refused with an HTTP answer, -1 to hang up (also after handing
 * the socket off to a new connection).
 */
int ws_upgrade_confirm(struct ws_upgrades *u, struct ws_hub *hub, struct lws *wsi,
		       const struct http_request *req, char *list, int status, const char *why);
/* LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: the connection accepted for @wsi, or NULL. */
struct ws_conn *ws_upgrade_attach(struct ws_upgrades *u, struct lws *wsi);
/* Service thread, outside any callback of a handed-off connection: lws adopts them again. */
void ws_upgrades_service(struct ws_upgrades *u, struct lws_vhost *vhost);

#endif

#endif
