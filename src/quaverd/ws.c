/*
 * Websocket connections: the bounded outbound queue any thread may fill,
 * and the lws events of an established connection (the contract is in
 * ws.h; server.c routes the upgrade and calls in here).
 *
 * Threads. Producers (workers, the events thread, pty readers) append to a
 * connection's queue under its lock and put the connection on the hub's
 * wake list; lws_cancel_service() then makes the service thread run
 * ws_hub_service(), which asks lws for WRITEABLE on each woken connection.
 * Only the service thread touches a wsi. A connection is reference counted:
 * the layer holds one from the upgrade until on_close returns, producers
 * take their own.
 *
 * Upgrades (the end of this file): server.c parses the upgrade request and
 * hands it to ws_upgrade_confirm, which routes it (ws_ops), answers
 * refusals and works around libwebsockets 4.1's subprotocol matching.
 */
#define QUAVERD_WS_INTERNAL
#include "ws.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "http_internal.h"
#include "log.h"
#include "util.h"

/* Messages written per WRITEABLE callback before yielding to other connections. */
#define WRITE_BURST 16

struct ws_msg {
	struct ws_msg *next;
	bool binary;
	size_t len;
	unsigned char data[]; /* LWS_PRE bytes of headroom, then the payload */
};

struct ws_hub {
	struct lws_context *lws; /* NULL once the server is gone: nothing to wake */
	atomic_int refs;	 /* the server's and one per connection */
	pthread_mutex_t lock;
	struct ws_conn *wake_head; /* connections wanting WRITEABLE */
};

struct ws_conn {
	struct ws_hub *hub;
	atomic_int refs;
	const struct ws_handler *handler;
	void *arg;
	char peer[64];

	pthread_mutex_t lock; /* the queue and the close state */
	struct ws_msg *head, *tail;
	size_t queued;
	bool closing;  /* no more sends; close once the queue is out */
	bool overflow; /* closing for a full queue: drop the queue, 1008 now */
	bool gone;     /* the connection is closed */
	int close_code;
	char close_reason[124];

	/* hub->lock */
	bool woken;
	struct ws_conn *wake_next;

	/* service thread only */
	struct lws *wsi;
	struct buf rx;
	bool rx_too_big;
	bool closed_called;
};

struct ws_hub *ws_hub_new(struct lws_context *lws)
{
	struct ws_hub *hub = calloc(1, sizeof(*hub));

	if (!hub)
		return NULL;
	hub->lws = lws;
	atomic_init(&hub->refs, 1);
	pthread_mutex_init(&hub->lock, NULL);
	return hub;
}

static void hub_unref(struct ws_hub *hub)
{
	if (atomic_fetch_sub(&hub->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&hub->lock);
	free(hub);
}

void ws_hub_free(struct ws_hub *hub)
{
	if (!hub)
		return;
	pthread_mutex_lock(&hub->lock);
	while (hub->wake_head) {
		struct ws_conn *conn = hub->wake_head;

		hub->wake_head = conn->wake_next;
		conn->woken = false;
		pthread_mutex_unlock(&hub->lock);
		ws_conn_unref(conn);
		pthread_mutex_lock(&hub->lock);
	}
	/*
	 * A producer thread (a pty reader, a log follower) may still hold a
	 * connection and try to wake us: the hub outlives the context, inert.
	 */
	hub->lws = NULL;
	pthread_mutex_unlock(&hub->lock);
	hub_unref(hub);
}

struct ws_conn *ws_conn_new(struct ws_hub *hub, const struct ws_accept *acc, const char *peer)
{
	struct ws_conn *conn = calloc(1, sizeof(*conn));

	if (!conn)
		return NULL;
	conn->hub = hub;
	atomic_fetch_add(&hub->refs, 1);
	atomic_init(&conn->refs, 1);
	conn->handler = acc->handler;
	conn->arg = acc->arg;
	copy_str(conn->peer, sizeof(conn->peer), peer ? peer : "?");
	pthread_mutex_init(&conn->lock, NULL);
	return conn;
}

void ws_conn_ref(struct ws_conn *conn)
{
	atomic_fetch_add(&conn->refs, 1);
}

static void drop_queue(struct ws_conn *conn)
{
	while (conn->head) {
		struct ws_msg *m = conn->head;

		conn->head = m->next;
		free(m);
	}
	conn->tail = NULL;
	conn->queued = 0;
}

void ws_conn_unref(struct ws_conn *conn)
{
	if (!conn || atomic_fetch_sub(&conn->refs, 1) != 1)
		return;
	drop_queue(conn);
	buf_free(&conn->rx);
	pthread_mutex_destroy(&conn->lock);
	hub_unref(conn->hub);
	free(conn);
}

const char *ws_peer(const struct ws_conn *conn)
{
	return conn->peer;
}

/* Asks the service thread for WRITEABLE on @conn. */
static void wake(struct ws_conn *conn)
{
	struct ws_hub *hub = conn->hub;

	pthread_mutex_lock(&hub->lock);
	if (hub->lws && !conn->woken) {
		conn->woken = true;
		ws_conn_ref(conn);
		conn->wake_next = hub->wake_head;
		hub->wake_head = conn;
		lws_cancel_service(hub->lws);
	}
	pthread_mutex_unlock(&hub->lock);
}

void ws_hub_service(struct ws_hub *hub)
{
	struct ws_conn *list;

	pthread_mutex_lock(&hub->lock);
	list = hub->wake_head;
	hub->wake_head = NULL;
	for (struct ws_conn *c = list; c; c = c->wake_next)
		c->woken = false;
	pthread_mutex_unlock(&hub->lock);

	while (list) {
		struct ws_conn *conn = list;

		list = conn->wake_next;
		if (conn->wsi && !conn->closed_called)
			lws_callback_on_writable(conn->wsi);
		ws_conn_unref(conn);
	}
}

int ws_send(struct ws_conn *conn, bool binary, const void *data, size_t len)
{
	struct ws_msg *m;

	pthread_mutex_lock(&conn->lock);
	if (conn->closing || conn->gone) {
		pthread_mutex_unlock(&conn->lock);
		return -EPIPE;
	}
	if (conn->queued >= WS_QUEUE_MAX) {
		/* the client is not reading: close it rather than buffer without end */
		conn->closing = conn->overflow = true;
		conn->close_code = 1008;
		copy_str(conn->close_reason, sizeof(conn->close_reason), "slow consumer");
		drop_queue(conn);
		pthread_mutex_unlock(&conn->lock);
		log_debug("websocket %s: %d messages unread, closing it", conn->peer, WS_QUEUE_MAX);
		wake(conn);
		return -ENOBUFS;
	}
	m = malloc(sizeof(*m) + LWS_PRE + len);
	if (!m) {
		pthread_mutex_unlock(&conn->lock);
		return -ENOMEM;
	}
	m->next = NULL;
	m->binary = binary;
	m->len = len;
	if (len)
		memcpy(m->data + LWS_PRE, data, len);
	if (conn->tail)
		conn->tail->next = m;
	else
		conn->head = m;
	conn->tail = m;
	conn->queued++;
	pthread_mutex_unlock(&conn->lock);
	wake(conn);
	return 0;
}

int ws_send_text(struct ws_conn *conn, const char *text)
{
	return ws_send(conn, false, text, strlen(text));
}

void ws_close(struct ws_conn *conn, int code, const char *reason)
{
	pthread_mutex_lock(&conn->lock);
	if (conn->closing || conn->gone) {
		pthread_mutex_unlock(&conn->lock);
		return;
	}
	conn->closing = true;
	conn->close_code = code;
	copy_str(conn->close_reason, sizeof(conn->close_reason), reason ? reason : "");
	pthread_mutex_unlock(&conn->lock);
	wake(conn);
}

bool ws_open(struct ws_conn *conn)
{
	bool open;

	pthread_mutex_lock(&conn->lock);
	open = !conn->closing && !conn->gone;
	pthread_mutex_unlock(&conn->lock);
	return open;
}

void ws_conn_established(struct ws_conn *conn, struct lws *wsi)
{
	conn->wsi = wsi;
	if (conn->handler->on_open)
		conn->handler->on_open(conn->arg, conn);
	lws_callback_on_writable(wsi);
}

int ws_conn_receive(struct ws_conn *conn, struct lws *wsi, const void *in, size_t len)
{
	if (lws_is_first_fragment(wsi)) {
		conn->rx.len = 0;
		conn->rx_too_big = false;
	}
	if (conn->rx.len + len > WS_MAX_MESSAGE) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
				 (unsigned char *)"message too big", 15);
		return 1;
	}
	if (len && buf_append(&conn->rx, in, len) < 0)
		return 1;
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
		return 0;
	if (conn->handler->on_message)
		conn->handler->on_message(conn->arg, conn, lws_frame_is_binary(wsi) != 0,
					  conn->rx.data ? conn->rx.data : "", conn->rx.len);
	conn->rx.len = 0;
	return 0;
}

int ws_conn_writeable(struct ws_conn *conn, struct lws *wsi)
{
	for (int burst = 0;; burst++) {
		struct ws_msg *m;
		bool more;

		if (lws_send_pipe_choked(wsi)) {
			lws_callback_on_writable(wsi);
			return 0;
		}
		pthread_mutex_lock(&conn->lock);
		if (conn->overflow || (conn->closing && !conn->head)) {
			int code = conn->close_code;
			char reason[sizeof(conn->close_reason)];

			copy_str(reason, sizeof(reason), conn->close_reason);
			drop_queue(conn);
			pthread_mutex_unlock(&conn->lock);
			lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason,
					 strlen(reason));
			return 1;
		}
		m = conn->head;
		if (m) {
			conn->head = m->next;
			if (!conn->head)
				conn->tail = NULL;
			conn->queued--;
		}
		more = conn->head || conn->closing;
		pthread_mutex_unlock(&conn->lock);
		if (!m)
			return 0;
		if (lws_write(wsi, m->data + LWS_PRE, m->len,
			      m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)m->len) {
			free(m);
			return 1;
		}
		free(m);
		if (!more)
			return 0;
		if (burst >= WRITE_BURST) {
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
}

void ws_conn_closed(struct ws_conn *conn)
{
	if (conn->closed_called)
		return;
	conn->closed_called = true;
	pthread_mutex_lock(&conn->lock);
	conn->gone = true;
	drop_queue(conn);
	pthread_mutex_unlock(&conn->lock);
	conn->wsi = NULL;
	if (conn->handler->on_close)
		conn->handler->on_close(conn->arg, conn);
	ws_conn_unref(conn);
}

/* ---- upgrades (the lws glue in server.c hands them here) -------------------------- */

/* What lws 4.1 can take of a Sec-WebSocket-Protocol list (lws_process_ws_upgrade). */
#define LWS_PROTOCOL_LIST_MAX 126
#define LWS_PROTOCOL_TOKEN_MAX 63

/*
 * An accepted upgrade whose Sec-WebSocket-Protocol list lws 4.1 would
 * refuse (see ws_upgrade_confirm): its socket, taken from lws, and what to
 * serve on it once it comes back with a request lws can handle.
 */
struct ws_handoff {
	struct ws_handoff *next;
	int fd;		/* ours until lws adopts it */
	int adopted_fd; /* the socket lws adopted, for its second upgrade */
	struct ws_accept acc;
	char peer[64];
	struct buf request; /* the request lws is given with the socket */
	bool taken;	    /* its second upgrade used it */
};

struct ws_upgrades {
	const struct ws_ops *ops; /* NULL: every upgrade is refused */
	void *ctx;
	struct lws *pending_wsi; /* accepted in CONFIRM_UPGRADE, not yet established */
	struct ws_conn *pending;
	char protocol_name[64];	     /* the name of the catch-all protocol, set per upgrade */
	struct ws_handoff *handoffs; /* upgrades waiting to be adopted again */
	struct ws_handoff *adopting; /* the one being adopted right now */
};

struct ws_upgrades *ws_upgrades_new(const struct ws_ops *ops, void *ctx)
{
	struct ws_upgrades *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->ops = ops;
	u->ctx = ctx;
	copy_str(u->protocol_name, sizeof(u->protocol_name), "quaverd-none");
	return u;
}

const char *ws_upgrades_protocol_name(struct ws_upgrades *u)
{
	return u->protocol_name;
}

static void handoff_free(struct ws_handoff *h)
{
	if (!h)
		return;
	if (!h->taken && h->acc.handler && h->acc.handler->on_close)
		h->acc.handler->on_close(h->acc.arg, NULL);
	if (h->fd >= 0)
		close(h->fd);
	buf_free(&h->request);
	free(h);
}

void ws_upgrades_free(struct ws_upgrades *u)
{
	if (!u)
		return;
	if (u->pending)
		ws_conn_closed(u->pending);
	while (u->handoffs) {
		struct ws_handoff *h = u->handoffs;

		u->handoffs = h->next;
		handoff_free(h);
	}
	free(u);
}

/* Answers a refused upgrade with an ordinary HTTP error; the client then closes. */
static void refuse_upgrade(struct lws *wsi, const struct http_request *req, int status,
			   const char *msg)
{
	struct http_response resp;
	struct buf out = BUF_INIT;

	http_response_init(&resp);
	http_reply_error(&resp, req, status, "%s", msg[0] ? msg : "The upgrade was refused.");
	if (buf_reserve(&out, LWS_PRE + 256 + resp.body.len) == 0) {
		out.len = LWS_PRE;
		if (buf_printf(&out,
			       "HTTP/1.1 %d %s\r\nServer: quaverd\r\nContent-Type: %s\r\n"
			       "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			       resp.status, http_reason(resp.status), resp.content_type,
			       resp.body.len) == 0 &&
		    buf_append(&out, resp.body.data, resp.body.len) == 0 &&
		    lws_write(wsi, (unsigned char *)out.data + LWS_PRE, out.len - LWS_PRE,
			      LWS_WRITE_HTTP_HEADERS) < 0)
			log_debug("could not send the refusal of a websocket upgrade");
	}
	log_debug("GET %s (websocket) %d", req->path ? req->path : "?", resp.status);
	buf_free(&out);
	http_response_clear(&resp);
}

/* Splits a Sec-WebSocket-Protocol list in place; returns how many tokens. */
static size_t split_protocols(char *list, const char **out, size_t max)
{
	size_t n = 0;

	for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && n < max;
	     tok = strtok_r(NULL, ",", &save)) {
		char *end;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*tok)
			out[n++] = tok;
	}
	return n;
}

/*
 * Whether lws would refuse the offered list before it reaches @echo: it
 * reads the list into 128 bytes and gives up on the first token over 63
 * characters (the SDK's X-Daytona-Pty-Envs~ token carries the envs, and
 * comes first).
 */
static bool lws_refuses_protocols(struct lws *wsi, const char *const *offered, size_t noffered,
				  const char *echo)
{
	if (lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) > LWS_PROTOCOL_LIST_MAX)
		return true;
	for (size_t i = 0; i < noffered; i++) {
		if (strlen(offered[i]) > LWS_PROTOCOL_TOKEN_MAX)
			return true;
		if (!strcmp(offered[i], echo))
			break;
	}
	return false;
}

/*
 * lws 4.1 cannot be made to skip its own protocol matching, so an upgrade
 * it would refuse (routed and accepted already) is handed back to it as a
 * new connection: the socket is moved to a new descriptor (the old one now
 * names a dead socketpair end, which lws closes as it hangs up), and once
 * this callback has returned, lws adopts the socket with a request that
 * offers only the token we echo (ws_upgrades_service). That request's
 * upgrade finds the handoff by its socket and serves what was accepted
 * here. The client sees one handshake: its own key, our echo.
 *
 * 0 when handed off (the caller hangs up on @wsi), -1 when it could not be.
 */
static int handoff(struct ws_upgrades *u, struct lws *wsi, const struct ws_accept *acc,
		   const char *echo, const char *peer)
{
	struct ws_handoff *h = calloc(1, sizeof(*h));
	int fd = (int)lws_get_socket_fd(wsi), pair[2] = {-1, -1};
	int key_len = lws_hdr_total_length(wsi, WSI_TOKEN_KEY);
	char key[128];

	if (!h)
		return -1;
	h->fd = -1;
	h->acc = *acc;
	copy_str(h->acc.protocol, sizeof(h->acc.protocol), echo);
	copy_str(h->peer, sizeof(h->peer), peer);
	errno = EINVAL;
	if (fd < 0 || key_len <= 0 || key_len >= (int)sizeof(key) ||
	    lws_hdr_copy(wsi, key, sizeof(key), WSI_TOKEN_KEY) <= 0 ||
	    buf_printf(&h->request,
		       "GET /quaverd-websocket-handoff HTTP/1.1\r\nHost: quaverd\r\n"
		       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		       "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n"
		       "Sec-WebSocket-Protocol: %s\r\n\r\n",
		       key, echo) < 0)
		goto fail;
	h->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (h->fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair))
		goto fail;
	if (dup3(pair[0], fd, O_CLOEXEC) < 0)
		goto fail;
	close(pair[0]);
	close(pair[1]);
	h->next = u->handoffs;
	u->handoffs = h;
	lws_cancel_service(lws_get_context(wsi)); /* ws_upgrades_service, outside this callback */
	return 0;
fail:
	log_warn("cannot hand a websocket upgrade over to a new connection: %s", strerror(errno));
	if (pair[0] >= 0) {
		close(pair[0]);
		close(pair[1]);
	}
	h->taken = true; /* the caller still owns acc */
	handoff_free(h);
	return -1;
}

void ws_upgrades_service(struct ws_upgrades *u, struct lws_vhost *vhost)
{
	while (u->handoffs) {
		struct ws_handoff *h = u->handoffs;
		struct lws *wsi;
		int fd = h->fd;

		u->handoffs = h->next;
		u->adopting = h;
		/* lws owns the descriptor from here, also when adopting fails */
		h->fd = -1;
		h->adopted_fd = fd;
		wsi = lws_adopt_socket_vhost_readbuf(vhost, fd, h->request.data, h->request.len);
		u->adopting = NULL;
		if (!h->taken)
			log_debug("websocket %s: the handed-off upgrade was not served (%s)",
				  h->peer, wsi ? "deferred by lws" : "adoption failed");
		handoff_free(h);
	}
}

/* The upgrade of an adopted handoff: serve what was accepted for it. 0, or -1 to hang up. */
static int take_handoff(struct ws_upgrades *u, struct ws_hub *hub, struct lws *wsi)
{
	struct ws_handoff *h = u->adopting;

	u->adopting = NULL;
	h->taken = true;
	copy_str(u->protocol_name, sizeof(u->protocol_name), h->acc.protocol);
	u->pending = ws_conn_new(hub, &h->acc, h->peer);
	if (!u->pending) {
		if (h->acc.handler->on_close)
			h->acc.handler->on_close(h->acc.arg, NULL);
		return -1;
	}
	u->pending_wsi = wsi;
	return 0;
}

int ws_upgrade_confirm(struct ws_upgrades *u, struct ws_hub *hub, struct lws *wsi,
		       const struct http_request *req, char *list, int status, const char *why)
{
	struct ws_accept acc;
	const char *offered[16];
	size_t noffered = 0;
	char msg[256] = "";

	memset(&acc, 0, sizeof(acc));
	if (u->pending) {
		/* an earlier upgrade that never reached FILTER_PROTOCOL_CONNECTION */
		ws_conn_closed(u->pending);
		u->pending = NULL;
		u->pending_wsi = NULL;
	}
	if (u->adopting && (int)lws_get_socket_fd(wsi) == u->adopting->adopted_fd)
		return take_handoff(u, hub, wsi);
	if (status) {
		copy_str(msg, sizeof(msg), why);
	} else if (!u->ops) {
		status = 404;
		snprintf(msg, sizeof(msg), "No websocket is served at %s.", req->path);
	} else {
		if (list)
			noffered = split_protocols(list, offered, ARRAY_SIZE(offered));
		status = u->ops->upgrade(u->ctx, req, offered, noffered, &acc, msg, sizeof(msg));
	}
	if (status) {
		refuse_upgrade(wsi, req, status, msg);
		return 1;
	}
	if (noffered) {
		const char *echo = acc.protocol[0] ? acc.protocol : offered[0];

		if (strlen(echo) >= sizeof(u->protocol_name)) {
			if (acc.handler->on_close)
				acc.handler->on_close(acc.arg, NULL);
			refuse_upgrade(
			    wsi, req, 400,
			    "Offer a subprotocol quaverd can echo (at most 63 characters).");
			return 1;
		}
		if (lws_refuses_protocols(wsi, offered, noffered, echo)) {
			if (handoff(u, wsi, &acc, echo, req->peer) < 0) {
				if (acc.handler->on_close)
					acc.handler->on_close(acc.arg, NULL);
			} else {
				log_debug("GET %s (websocket) handed off to echo %s", req->path,
					  echo);
			}
			return -1;
		}
		copy_str(u->protocol_name, sizeof(u->protocol_name), echo);
	}
	u->pending = ws_conn_new(hub, &acc, req->peer);
	if (!u->pending) {
		if (acc.handler->on_close)
			acc.handler->on_close(acc.arg, NULL);
		return -1;
	}
	u->pending_wsi = wsi;
	log_debug("GET %s (websocket) 101%s%s", req->path, noffered ? " " : "",
		  noffered ? u->protocol_name : "");
	return 0;
}

struct ws_conn *ws_upgrade_attach(struct ws_upgrades *u, struct lws *wsi)
{
	struct ws_conn *conn = u->pending;

	if (!conn || u->pending_wsi != wsi)
		return NULL;
	u->pending = NULL;
	u->pending_wsi = NULL;
	return conn;
}
