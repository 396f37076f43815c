/*
 * A small websocket client for the toolbox websockets (PTY connect, session
 * log follow; daytona-api.md sections 7.3 and 7.4), on libwebsockets.
 *
 * A hub is one lws context with its own service thread (and a small thread
 * that ends on_batch_end's holds); any number of connections share it. Each connection is opened against a toolbox URL
 * (http://, https://, ws:// or wss://) with the header lines the REST
 * client sends (Authorization, X-Daytona-SDK-Version, ...), so the proxy and
 * quaverd accept it as they accept the REST calls. TLS verifies the peer
 * (the client's CA file, else the system store), never less.
 *
 * Threads. The handler's callbacks run on the hub's service thread and must
 * not block: copy what arrives and return. dt_ws_send, dt_ws_close and
 * dt_ws_free may be called from any thread (sends are queued and the
 * service thread is woken with lws_cancel_service). A connection whose peer
 * goes silent is pinged after DT_WS_PING_S seconds and dropped (code 1006)
 * when nothing answers for DT_WS_HANGUP_S.
 *
 * Usage:
 *   hub = dt_ws_hub_new(client, &err);
 *   dt_ws_connect(hub, client, &params, &ws, &err);   // blocks until open
 *   dt_ws_send(ws, true, bytes, n);                    // any thread
 *   ... handler->on_message / on_close on the service thread ...
 *   dt_ws_free(ws);                                    // closes, waits, frees
 *   dt_ws_hub_free(hub);
 */
#ifndef QUAVER_DT_WS_H
#define QUAVER_DT_WS_H

#include <stdbool.h>
#include <stddef.h>

#include "daytona.h"

#define DT_WS_BATCH_MORE 1u
#define DT_WS_BATCH_LATE 2u

/* Whole messages larger than this are refused (received: closed with 1009). */
#define DT_WS_MAX_MESSAGE (1024 * 1024)
#define DT_WS_PING_S 15
#define DT_WS_HANGUP_S 30
/* Close codes reported by on_close besides the peer's own. */
#define DT_WS_CLOSE_ABNORMAL 1006 /* the connection dropped without a close frame */
#define DT_WS_CLOSE_TOO_BIG 1009

struct dt_ws_hub;
struct dt_ws;

struct dt_ws_handler {
	/* One whole message. Service thread; must not block. */
	void (*on_message)(void *arg, struct dt_ws *ws, bool binary, const void *data, size_t len);
	/*
	 * The connection is gone: called exactly once for every connection
	 * dt_ws_connect opened, after its last message. @code is the peer's
	 * close code (1000, 1011...), or DT_WS_CLOSE_ABNORMAL when it dropped
	 * (quaverd killed, network gone, no pong), or the code we closed with;
	 * @reason the close frame's text ("" when none). Sends fail from here
	 * on. dt_ws_free may be called from here (the free then happens after
	 * the callback returns).
	 */
	void (*on_close)(void *arg, struct dt_ws *ws, int code, const char *reason);
	/* Optional: the send queue went empty (a writer waiting for room may go on). */
	void (*on_drain)(void *arg, struct dt_ws *ws);
	/*
	 * Optional: the messages of one read from the socket have all been
	 * handed to on_message (a flood comes as many per read), so a handler
	 * may batch what it does per message (wake a reader once, not per
	 * message). @flags: DT_WS_BATCH_MORE, bytes are already waiting in the
	 * socket (another batch follows at once); DT_WS_BATCH_LATE, the hold
	 * asked for earlier is over. Returns 0, or a hold: microseconds after
	 * which it is called again with DT_WS_BATCH_LATE unless a batch comes
	 * first (a hold already running is not extended). Also called (LATE)
	 * before on_close when messages came since the last call or a hold
	 * runs. Service thread; must not block.
	 */
	long (*on_batch_end)(void *arg, struct dt_ws *ws, unsigned flags);
};

/* The TLS trust of @c (its CA file) is the hub's; connections may use any client. */
struct dt_ws_hub *dt_ws_hub_new(struct dt_client *c, struct dt_error *err);
/* Drops every connection still open (their on_close runs), stops the thread, frees. */
void dt_ws_hub_free(struct dt_ws_hub *hub);

struct dt_ws_params {
	const char *url;	      /* absolute, already encoded, query included */
	const char *const *protocols; /* subprotocols offered, NULL-terminated; NULL: none */
	const struct dt_ws_handler *handler;
	void *arg;
	long connect_timeout_ms; /* the handshake's deadline; 0: the client's connect timeout */
};

/*
 * Opens a connection with the headers of @c and waits until the handshake
 * is done. 0 with *@out set; or -errno with @err filled: a refused upgrade
 * is mapped as a REST answer (404 ENOENT, 401/403 EACCES, 409 EEXIST, 400
 * EINVAL, 5xx EIO; its status in err->http_status), no answer (refused,
 * reset, TLS) EIO with err->transport, past the deadline ETIMEDOUT, the
 * calling thread's cancellation hook (dt_set_cancel_hook) EINTR. Messages
 * may reach the handler before this returns.
 */
int dt_ws_connect(struct dt_ws_hub *hub, struct dt_client *c, const struct dt_ws_params *p,
		  struct dt_ws **out, struct dt_error *err);

/* The subprotocol the server chose ("" when none). */
const char *dt_ws_protocol(const struct dt_ws *ws);

/*
 * Queues one message (copied). Any thread. 0; -EPIPE once the connection is
 * closing or gone; -EMSGSIZE over DT_WS_MAX_MESSAGE; -ENOMEM.
 */
int dt_ws_send(struct dt_ws *ws, bool binary, const void *data, size_t len);
/*
 * Stops (true) or resumes taking bytes from the socket: the peer's sends
 * then wait (TCP flow control) and on_message stops after what was already
 * read. Any thread; applied on the service thread's next turn. A pause
 * long enough makes the peer give up (a server closes a slow consumer).
 */
void dt_ws_pause_rx(struct dt_ws *ws, bool pause);
/* Bytes queued and not yet handed to the socket (for a caller that bounds its writes). */
size_t dt_ws_queued(struct dt_ws *ws);
/* Whether the connection is open (not closing, not gone). */
bool dt_ws_is_open(struct dt_ws *ws);

/*
 * Starts a clean close (@code, @reason of at most 123 bytes) once what is
 * queued is out. Any thread; the first close wins. on_close follows when the
 * peer answers, or after DT_WS_CLOSE_WAIT_MS in any case.
 */
#define DT_WS_CLOSE_WAIT_MS 2000
void dt_ws_close(struct dt_ws *ws, int code, const char *reason);

/*
 * Closes @ws (1000) if it is open, waits until it is gone (its on_close
 * has run) and frees it. Any thread, including @ws's own on_close.
 */
void dt_ws_free(struct dt_ws *ws);

#endif
