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
 */
#define QUAVERD_WS_INTERNAL
#include "ws.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
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
