/*
 * The websocket client (dt_ws.h) on libwebsockets 4.1.
 *
 * lws is not thread-safe: every lws call on a connection happens on the
 * hub's service thread. Other threads change a connection's shared state
 * under the hub lock (queue a message, ask for a close, give up a connect,
 * free it) and wake the service thread with lws_cancel_service(); it then
 * looks at every connection (LWS_CALLBACK_EVENT_WAIT_CANCELLED) and does
 * the lws side.
 *
 * Lifetime. A connection is on the hub's list from dt_ws_connect until the
 * service thread unlinks it, which it does only once its wsi is destroyed
 * and its owner has let it go (dt_ws_free, or a failed connect). Memory is
 * freed by the thread that let it go, after the unlink, so the service
 * thread never sees freed memory. LWS_CALLBACK_WSI_DESTROY is the one place
 * a connection ends: on_close runs from there, exactly once.
 */
#include "dt_ws.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <libwebsockets.h>

#include "dt_internal.h"
#include "log.h"
#include "util.h"

/* lws hands frames over in pieces of at most this (a PTY message is up to 32 KiB). */
#define RX_BUFFER 65536
/* lws receives this much per read of the socket (its default, 4 KiB, made a read per 4 KiB). */
#define RECV_BUFFER (256 * 1024)
/* Longer than any deadline of ours, so lws never ends a wait before we do. */
#define LWS_TIMEOUT_S 120
#define REASON_MAX 123

enum ws_state {
	WS_CONNECTING, /* waiting for the service thread to start it */
	WS_HANDSHAKE,  /* wsi exists, no answer yet */
	WS_OPEN,
	WS_CLOSING, /* a close was asked; sends fail */
	WS_GONE,    /* the wsi is destroyed */
};

struct ws_msg {
	struct ws_msg *next;
	bool binary;
	size_t len;
	unsigned char data[]; /* LWS_PRE bytes, then the payload */
};

struct dt_ws_hub {
	struct lws_context *lws;
	pthread_t thread;
	bool thread_started;
	/* holds (on_batch_end): a thread wakes the service loop when the earliest is over */
	pthread_t hold_thread;
	bool hold_thread_started;
	pthread_cond_t hold_cond;  /* hub->lock, on the monotonic clock */
	int64_t hold_wake_us;	   /* hub->lock: when to wake the service loop; 0 never */
	struct dt_ws *held;	   /* service thread only: connections in a hold */
	atomic_bool stop;
	pthread_mutex_t lock; /* the list and every connection's shared state */
	pthread_cond_t cond;  /* a connection's state changed */
	struct dt_ws *conns;
	struct dt_ws *batched; /* service thread only: got messages since their on_batch_end */
	lws_retry_bo_t retry;
	struct lws_protocols protocols[2];
};

struct dt_ws {
	struct dt_ws_hub *hub;
	struct dt_ws *next; /* hub->lock */
	struct dt_client *client;
	const struct dt_ws_handler *handler;
	void *arg;

	/* The target, parsed once. */
	char *address, *path, *host, *offered;
	int port;
	bool tls;

	/* hub->lock */
	enum ws_state state;
	struct lws *wsi;
	struct ws_msg *head, *tail;
	size_t queued;
	bool opened;	 /* the handshake succeeded */
	bool abandoned;	 /* connect gave up: kill it, no on_close */
	bool want_close; /* send a close frame once the queue is out */
	bool kill;	 /* drop it now */
	int close_code;	 /* ours, when we close */
	char close_reason[REASON_MAX + 1];
	bool released;	     /* the owner let it go: unlink once gone */
	bool free_on_unlink; /* released on the service thread: it frees too */
	bool unlinked;
	bool closed_reported; /* on_close ran (or never will) */
	bool rx_paused;	      /* asked by dt_ws_pause_rx */
	bool rx_paused_applied; /* what lws was told */
	int fail_status;      /* a refused upgrade's HTTP status */
	char fail_message[200];
	char protocol[64];

	/* service thread only */
	struct dt_ws *batch_next;
	bool batch_pending;
	struct dt_ws *held_next;
	int64_t hold_until_us; /* a hold asked by on_batch_end; 0 none */
	struct buf rx;
	bool rx_binary;
	bool rx_too_big;
	int peer_code;
	char peer_reason[REASON_MAX + 1];
};

static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void lws_log_emit(int level, const char *line)
{
	char text[512];
	size_t n;

	copy_str(text, sizeof(text), line);
	n = strlen(text);
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		text[--n] = '\0';
	/* Our own code logs the failures that matter, with their context. */
	log_debug("lws %s: %s", (level & LLL_ERR) ? "error" : "warning", text);
}

static void log_setup(void)
{
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
}

/* ---- the service thread --------------------------------------------------- */

static void msg_free_all(struct dt_ws *ws)
{
	while (ws->head) {
		struct ws_msg *m = ws->head;

		ws->head = m->next;
		free(m);
	}
	ws->tail = NULL;
	ws->queued = 0;
}

static void ws_free_memory(struct dt_ws *ws)
{
	msg_free_all(ws);
	buf_free(&ws->rx);
	free(ws->address);
	free(ws->path);
	free(ws->host);
	free(ws->offered);
	free(ws);
}

/* Header lines of the REST client ("Name: value") as lws wants them. */
static int append_headers(struct dt_ws *ws, unsigned char **p, unsigned char *end)
{
	const struct curl_slist *l;

	for (l = dt_client_headers(ws->client); l; l = l->next) {
		const char *line = l->data, *colon = strchr(line, ':');
		char name[64];
		const char *value;
		size_t nlen;

		if (!colon || colon == line)
			continue;
		nlen = (size_t)(colon - line);
		if (nlen + 2 > sizeof(name))
			continue;
		for (size_t i = 0; i < nlen; i++)
			name[i] =
			    (char)((line[i] >= 'A' && line[i] <= 'Z') ? line[i] + 32 : line[i]);
		name[nlen] = ':';
		name[nlen + 1] = '\0';
		/* lws sends its own Accept-less upgrade; a JSON Accept means nothing here. */
		if (!strcmp(name, "accept:"))
			continue;
		value = colon + 1;
		while (*value == ' ')
			value++;
		if (lws_add_http_header_by_name(ws->wsi, (const unsigned char *)name,
						(const unsigned char *)value, (int)strlen(value), p,
						end))
			return -1;
	}
	return 0;
}

static void start_connect(struct dt_ws_hub *hub, struct dt_ws *ws)
{
	struct lws_client_connect_info ci;
	struct lws *wsi = NULL;

	memset(&ci, 0, sizeof(ci));
	ci.context = hub->lws;
	ci.address = ws->address;
	ci.port = ws->port;
	ci.path = ws->path;
	ci.host = ws->host;
	ci.origin = ws->host;
	ci.protocol = ws->offered && ws->offered[0] ? ws->offered : NULL;
	ci.local_protocol_name = hub->protocols[0].name;
	ci.ssl_connection = ws->tls ? LCCSCF_USE_SSL : 0;
	ci.ietf_version_or_minus_one = -1;
	ci.opaque_user_data = ws;
	ci.retry_and_idle_policy = &hub->retry;
	ci.pwsi = &wsi;

	pthread_mutex_lock(&hub->lock);
	ws->state = WS_HANDSHAKE;
	pthread_mutex_unlock(&hub->lock);
	/* Callbacks (even WSI_DESTROY) may run inside this call. */
	if (!lws_client_connect_via_info(&ci)) {
		pthread_mutex_lock(&hub->lock);
		if (ws->state == WS_HANDSHAKE) {
			ws->state = WS_GONE;
			ws->closed_reported = true;
			if (!ws->fail_message[0])
				copy_str(ws->fail_message, sizeof(ws->fail_message),
					 "the connection could not be started");
		}
		ws->wsi = NULL;
		pthread_cond_broadcast(&hub->cond);
		pthread_mutex_unlock(&hub->lock);
	}
}

/* What the other threads asked for: connects, writes, closes, kills, unlinks. */
static void service_requests(struct dt_ws_hub *hub)
{
	struct dt_ws **pp, *ws;

	pthread_mutex_lock(&hub->lock);
	pp = &hub->conns;
	while ((ws = *pp)) {
		if (ws->state == WS_GONE && ws->released) {
			bool do_free = ws->free_on_unlink;

			*pp = ws->next;
			ws->unlinked = true;
			pthread_cond_broadcast(&hub->cond);
			if (do_free)
				ws_free_memory(ws);
			continue;
		}
		pp = &ws->next;
		if (ws->state == WS_CONNECTING) {
			if (ws->abandoned) {
				ws->state = WS_GONE;
				ws->closed_reported = true;
				pthread_cond_broadcast(&hub->cond);
				continue;
			}
			pthread_mutex_unlock(&hub->lock);
			start_connect(hub, ws);
			pthread_mutex_lock(&hub->lock);
			continue;
		}
		if (!ws->wsi)
			continue;
		if (ws->kill || ws->abandoned) {
			/* lws closes it on its next turn; WSI_DESTROY follows */
			lws_set_timeout(ws->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
			ws->kill = false;
			continue;
		}
		if (ws->state >= WS_OPEN && (ws->head || ws->want_close))
			lws_callback_on_writable(ws->wsi);
		if (ws->state >= WS_OPEN && ws->rx_paused != ws->rx_paused_applied) {
			ws->rx_paused_applied = ws->rx_paused;
			lws_rx_flow_control(ws->wsi, !ws->rx_paused);
		}
	}
	pthread_mutex_unlock(&hub->lock);
}

/* A message was handed over: @ws is owed an on_batch_end at the end of this turn. */
static void batch_note(struct dt_ws_hub *hub, struct dt_ws *ws)
{
	if (ws->batch_pending || !ws->handler->on_batch_end)
		return;
	ws->batch_pending = true;
	ws->batch_next = hub->batched;
	hub->batched = ws;
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Takes @ws out of the holds. */
static void hold_unlink(struct dt_ws_hub *hub, struct dt_ws *ws)
{
	for (struct dt_ws **pp = &hub->held; *pp; pp = &(*pp)->held_next) {
		if (*pp == ws) {
			*pp = ws->held_next;
			break;
		}
	}
	ws->held_next = NULL;
	ws->hold_until_us = 0;
}

/* Tells the hold thread when the earliest hold is over. */
static void hold_rearm(struct dt_ws_hub *hub)
{
	int64_t earliest = 0;

	for (struct dt_ws *ws = hub->held; ws; ws = ws->held_next)
		if (!earliest || ws->hold_until_us < earliest)
			earliest = ws->hold_until_us;
	pthread_mutex_lock(&hub->lock);
	if (earliest && (!hub->hold_wake_us || earliest < hub->hold_wake_us)) {
		hub->hold_wake_us = earliest;
		pthread_cond_signal(&hub->hold_cond);
	}
	pthread_mutex_unlock(&hub->lock);
}

/* What on_batch_end answered: start a hold (a running one is not extended), or end it. */
static void hold_apply(struct dt_ws_hub *hub, struct dt_ws *ws, long hold)
{
	if (hold > 0 && !ws->hold_until_us && hub->hold_thread_started) {
		ws->hold_until_us = mono_us() + hold;
		ws->held_next = hub->held;
		hub->held = ws;
		hold_rearm(hub);
	} else if (hold <= 0 && ws->hold_until_us) {
		hold_unlink(hub, ws);
	}
}

/* After each service turn: the holds that are over end (on_batch_end LATE). */
static void holds_expire(struct dt_ws_hub *hub)
{
	int64_t now;
	struct dt_ws **pp;
	bool any = false;

	if (!hub->held)
		return;
	now = mono_us();
	pp = &hub->held;
	while (*pp) {
		struct dt_ws *ws = *pp;

		if (ws->hold_until_us > now) {
			pp = &ws->held_next;
			continue;
		}
		*pp = ws->held_next;
		ws->held_next = NULL;
		ws->hold_until_us = 0;
		hold_apply(hub, ws, ws->handler->on_batch_end(ws->arg, ws, DT_WS_BATCH_LATE));
		any = true;
		pp = &hub->held; /* the handler ran: walk again from the start */
	}
	if (any || hub->held)
		hold_rearm(hub);
}

static void *hold_main(void *arg)
{
	struct dt_ws_hub *hub = arg;

	pthread_mutex_lock(&hub->lock);
	while (!atomic_load(&hub->stop)) {
		struct timespec ts;
		int64_t now = mono_us();

		if (!hub->hold_wake_us) {
			pthread_cond_wait(&hub->hold_cond, &hub->lock);
			continue;
		}
		if (now >= hub->hold_wake_us) {
			hub->hold_wake_us = 0;
			pthread_mutex_unlock(&hub->lock);
			lws_cancel_service(hub->lws);
			pthread_mutex_lock(&hub->lock);
			continue;
		}
		ts.tv_sec = hub->hold_wake_us / 1000000;
		ts.tv_nsec = (hub->hold_wake_us % 1000000) * 1000;
		pthread_cond_timedwait(&hub->hold_cond, &hub->lock, &ts);
	}
	pthread_mutex_unlock(&hub->lock);
	return NULL;
}

/* End of a service turn: every connection that got messages hears it once. */
static void batch_flush(struct dt_ws_hub *hub)
{
	while (hub->batched) {
		struct dt_ws *ws = hub->batched;

		int waiting = 0;
		long hold;

		hub->batched = ws->batch_next;
		ws->batch_next = NULL;
		ws->batch_pending = false;
		/* ws->wsi is only changed on this thread */
		if (!ws->wsi || ioctl(lws_get_socket_fd(ws->wsi), FIONREAD, &waiting) < 0)
			waiting = 0;
		hold = ws->handler->on_batch_end(ws->arg, ws, waiting > 0 ? DT_WS_BATCH_MORE : 0);
		hold_apply(hub, ws, hold);
	}
}

/* Takes @ws off the batch list, telling it first (its on_close is about to run). */
static void batch_forget(struct dt_ws_hub *hub, struct dt_ws *ws)
{
	if (ws->hold_until_us) {
		hold_unlink(hub, ws);
		if (!ws->batch_pending) {
			ws->handler->on_batch_end(ws->arg, ws, DT_WS_BATCH_LATE);
			return;
		}
	}
	if (!ws->batch_pending)
		return;
	for (struct dt_ws **pp = &hub->batched; *pp; pp = &(*pp)->batch_next) {
		if (*pp == ws) {
			*pp = ws->batch_next;
			break;
		}
	}
	ws->batch_next = NULL;
	ws->batch_pending = false;
	ws->handler->on_batch_end(ws->arg, ws, DT_WS_BATCH_LATE);
}

/* The wsi is gone: report the close once, then let the owner have it. */
static void connection_destroyed(struct dt_ws_hub *hub, struct dt_ws *ws)
{
	bool report;
	int code;
	const char *reason;

	batch_forget(hub, ws);

	pthread_mutex_lock(&hub->lock);
	ws->wsi = NULL;
	report = ws->opened && !ws->abandoned && !ws->closed_reported;
	if (ws->state < WS_OPEN && !ws->fail_message[0])
		copy_str(ws->fail_message, sizeof(ws->fail_message),
			 "the connection closed during the handshake");
	ws->state = WS_GONE;
	msg_free_all(ws);
	pthread_mutex_unlock(&hub->lock);

	if (report) {
		code = ws->peer_code	? ws->peer_code
		       : ws->close_code ? ws->close_code
					: DT_WS_CLOSE_ABNORMAL;
		reason = ws->peer_code ? ws->peer_reason : ws->close_code ? ws->close_reason : "";
		ws->handler->on_close(ws->arg, ws, code, reason);
	}
	pthread_mutex_lock(&hub->lock);
	ws->closed_reported = true;
	pthread_cond_broadcast(&hub->cond);
	pthread_mutex_unlock(&hub->lock);
	/* unlinked (and maybe freed) on the next turn */
	if (!atomic_load(&hub->stop))
		lws_cancel_service(hub->lws);
}

static int on_receive(struct dt_ws *ws, struct lws *wsi, const void *in, size_t len)
{
	bool whole = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);

	if (lws_is_first_fragment(wsi)) {
		buf_reset(&ws->rx);
		ws->rx_binary = lws_frame_is_binary(wsi) != 0;
		/* a message in one piece (a PTY's output chunk): hand it over without a copy */
		if (whole) {
			ws->handler->on_message(ws->arg, ws, ws->rx_binary, in ? in : "", len);
			batch_note(ws->hub, ws);
			return 0;
		}
	}
	if (ws->rx.len + len > DT_WS_MAX_MESSAGE) {
		pthread_mutex_lock(&ws->hub->lock);
		ws->close_code = DT_WS_CLOSE_TOO_BIG;
		copy_str(ws->close_reason, sizeof(ws->close_reason), "message too big");
		ws->state = WS_CLOSING;
		pthread_mutex_unlock(&ws->hub->lock);
		log_warn("websocket %s%s: a message over %d bytes, closing it", ws->host, ws->path,
			 DT_WS_MAX_MESSAGE);
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
				 (unsigned char *)"message too big", 15);
		return -1;
	}
	if (len && buf_append(&ws->rx, in, len)) {
		log_warn("websocket %s%s: out of memory", ws->host, ws->path);
		return -1;
	}
	if (whole) {
		ws->handler->on_message(ws->arg, ws, ws->rx_binary, ws->rx.data ? ws->rx.data : "",
					ws->rx.len);
		buf_reset(&ws->rx);
		batch_note(ws->hub, ws);
	}
	return 0;
}

static int on_writeable(struct dt_ws *ws, struct lws *wsi)
{
	struct dt_ws_hub *hub = ws->hub;
	bool drained = false;

	for (;;) {
		struct ws_msg *m;
		int n;

		pthread_mutex_lock(&hub->lock);
		m = ws->head;
		if (!m) {
			bool closing = ws->want_close;
			int code = ws->close_code;
			char reason[REASON_MAX + 1];

			copy_str(reason, sizeof(reason), ws->close_reason);
			pthread_mutex_unlock(&hub->lock);
			if (closing) {
				lws_close_reason(wsi, (enum lws_close_status)code,
						 (unsigned char *)reason, strlen(reason));
				return -1;
			}
			break;
		}
		ws->head = m->next;
		if (!ws->head)
			ws->tail = NULL;
		ws->queued -= m->len;
		drained = !ws->head;
		pthread_mutex_unlock(&hub->lock);
		n = lws_write(wsi, m->data + LWS_PRE, m->len,
			      m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
		free(m);
		if (n < 0)
			return -1;
		if (lws_send_pipe_choked(wsi)) {
			lws_callback_on_writable(wsi);
			break;
		}
	}
	if (drained && ws->handler->on_drain)
		ws->handler->on_drain(ws->arg, ws);
	return 0;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		       size_t len)
{
	struct dt_ws_hub *hub = lws_context_user(lws_get_context(wsi));
	struct dt_ws *ws = wsi ? lws_get_opaque_user_data(wsi) : NULL;

	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		service_requests(hub);
		return 0;
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		if (!ws)
			return 0;
		pthread_mutex_lock(&hub->lock);
		ws->wsi = wsi;
		pthread_mutex_unlock(&hub->lock);
		return append_headers(ws, (unsigned char **)in, *(unsigned char **)in + len);
	case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
		if (ws &&
		    lws_hdr_copy(wsi, ws->protocol, sizeof(ws->protocol), WSI_TOKEN_PROTOCOL) < 0)
			ws->protocol[0] = '\0';
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (!ws)
			return -1;
		pthread_mutex_lock(&hub->lock);
		ws->wsi = wsi;
		ws->opened = true;
		if (ws->state == WS_HANDSHAKE)
			ws->state = WS_OPEN;
		if (ws->head || ws->want_close || ws->abandoned)
			lws_callback_on_writable(wsi);
		pthread_cond_broadcast(&hub->cond);
		pthread_mutex_unlock(&hub->lock);
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (!ws)
			return 0;
		pthread_mutex_lock(&hub->lock);
		ws->fail_status = (int)lws_http_client_http_response(wsi);
		snprintf(ws->fail_message, sizeof(ws->fail_message), "%s",
			 in ? (const char *)in : "connection failed");
		pthread_mutex_unlock(&hub->lock);
		/* the end of this connection, whether or not WSI_DESTROY follows */
		lws_set_opaque_user_data(wsi, NULL);
		connection_destroyed(hub, ws);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return ws ? on_receive(ws, wsi, in, len) : -1;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (!ws)
			return -1;
		pthread_mutex_lock(&hub->lock);
		if (ws->abandoned) {
			pthread_mutex_unlock(&hub->lock);
			return -1;
		}
		pthread_mutex_unlock(&hub->lock);
		return on_writeable(ws, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (ws && len >= 2) {
			const unsigned char *b = in;
			size_t rlen = len - 2 > REASON_MAX ? REASON_MAX : len - 2;

			ws->peer_code = (b[0] << 8) | b[1];
			memcpy(ws->peer_reason, b + 2, rlen);
			ws->peer_reason[rlen] = '\0';
		} else if (ws) {
			ws->peer_code = 1005; /* a close without a status */
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		if (ws) {
			lws_set_opaque_user_data(wsi, NULL);
			connection_destroyed(hub, ws);
		}
		return 0;
	default:
		return 0;
	}
}

static void *service_main(void *arg)
{
	struct dt_ws_hub *hub = arg;

	while (!atomic_load(&hub->stop)) {
		int n = lws_service(hub->lws, 0);

		batch_flush(hub);
		holds_expire(hub);
		if (n < 0)
			break;
	}
	return NULL;
}

/* ---- the API ------------------------------------------------------------ */

struct dt_ws_hub *dt_ws_hub_new(struct dt_client *c, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct lws_context_creation_info info;
	struct dt_ws_hub *hub;

	pthread_once(&log_once, log_setup);
	hub = calloc(1, sizeof(*hub));
	if (!hub) {
		dt_error_set(err, ENOMEM, 0, "websocket", "out of memory");
		return NULL;
	}
	pthread_mutex_init(&hub->lock, NULL);
	pthread_cond_init(&hub->cond, NULL);
	{
		pthread_condattr_t attr;

		pthread_condattr_init(&attr);
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		pthread_cond_init(&hub->hold_cond, &attr);
		pthread_condattr_destroy(&attr);
	}
	atomic_init(&hub->stop, false);
	hub->retry.secs_since_valid_ping = DT_WS_PING_S;
	hub->retry.secs_since_valid_hangup = DT_WS_HANGUP_S;
	hub->protocols[0] = (struct lws_protocols){"dt-ws", ws_callback, 0, RX_BUFFER, 0, NULL, 0};

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = hub->protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.client_ssl_ca_filepath = c ? dt_client_ca_file(c) : NULL;
	info.user = hub;
	info.retry_and_idle_policy = &hub->retry;
	/* lws receives into this buffer: its 4 KiB default made a recv per 4 KiB of a flood */
	info.pt_serv_buf_size = RECV_BUFFER;
	/*
	 * Our own deadlines (dt_ws_connect's, the pings) end every wait; lws's
	 * 5 s default would cut a slow handshake first and turn fs-layout.md's
	 * ETIMEDOUT into a "closed during the handshake" EIO.
	 */
	info.timeout_secs = LWS_TIMEOUT_S;
	info.connect_timeout_secs = LWS_TIMEOUT_S;
	hub->lws = lws_create_context(&info);
	if (!hub->lws) {
		dt_error_set(err, EIO, 0, "websocket", "libwebsockets failed to start");
		goto fail;
	}
	if (pthread_create(&hub->hold_thread, NULL, hold_main, hub)) {
		dt_error_set(err, EAGAIN, 0, "websocket", "no thread for the websocket holds");
		goto fail;
	}
	hub->hold_thread_started = true;
	if (pthread_create(&hub->thread, NULL, service_main, hub)) {
		dt_error_set(err, EAGAIN, 0, "websocket", "no thread for the websocket service");
		goto fail;
	}
	hub->thread_started = true;
	return hub;
fail:
	if (hub->hold_thread_started) {
		pthread_mutex_lock(&hub->lock);
		atomic_store(&hub->stop, true);
		pthread_cond_signal(&hub->hold_cond);
		pthread_mutex_unlock(&hub->lock);
		pthread_join(hub->hold_thread, NULL);
	}
	if (hub->lws)
		lws_context_destroy(hub->lws);
	pthread_mutex_destroy(&hub->lock);
	pthread_cond_destroy(&hub->cond);
	pthread_cond_destroy(&hub->hold_cond);
	free(hub);
	return NULL;
}

void dt_ws_hub_free(struct dt_ws_hub *hub)
{
	if (!hub)
		return;
	if (hub->thread_started) {
		atomic_store(&hub->stop, true);
		lws_cancel_service(hub->lws);
		pthread_join(hub->thread, NULL);
	}
	if (hub->hold_thread_started) {
		pthread_mutex_lock(&hub->lock);
		atomic_store(&hub->stop, true);
		pthread_cond_signal(&hub->hold_cond);
		pthread_mutex_unlock(&hub->lock);
		pthread_join(hub->hold_thread, NULL);
	}
	/* Destroys what is left: WSI_DESTROY (on_close) runs on this thread. */
	lws_context_destroy(hub->lws);
	while (hub->conns) {
		struct dt_ws *ws = hub->conns;

		hub->conns = ws->next;
		if (ws->released)
			ws_free_memory(ws);
		/* not released: its owner still holds it; the memory is theirs to free */
		else
			ws->unlinked = true;
	}
	pthread_mutex_destroy(&hub->lock);
	pthread_cond_destroy(&hub->cond);
	pthread_cond_destroy(&hub->hold_cond);
	free(hub);
}

/* Splits @url into the connection's target. */
static int parse_target(struct dt_ws *ws, const char *url, struct dt_error *err)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL;
	struct buf b = BUF_INIT;
	int rc = 0;

	if (!u)
		return dt_error_set(err, ENOMEM, 0, "websocket", "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0)) {
		rc = dt_error_set(err, EINVAL, 0, "websocket", "not a URL");
		goto out;
	}
	if (!strcmp(scheme, "https") || !strcmp(scheme, "wss")) {
		ws->tls = true;
		ws->port = 443;
	} else if (!strcmp(scheme, "http") || !strcmp(scheme, "ws")) {
		ws->port = 80;
	} else {
		rc = dt_error_set(err, EINVAL, 0, "websocket", "the URL is not http(s) or ws(s)");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port)
		ws->port = atoi(port);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	if (buf_printf(&b, "%s%s%s", path && path[0] ? path : "/", query ? "?" : "",
		       query ? query : "")) {
		rc = dt_error_set(err, ENOMEM, 0, "websocket", "out of memory");
		goto out;
	}
	ws->path = buf_steal(&b);
	/* an IPv6 literal comes back in brackets: the address wants it bare */
	if (host[0] == '[') {
		size_t n = strlen(host);

		ws->address = strndup(host + 1, n >= 2 ? n - 2 : 0);
	} else {
		ws->address = strdup(host);
	}
	if (port)
		rc = buf_printf(&b, "%s:%s", host, port);
	else
		rc = buf_append_str(&b, host);
	ws->host = rc ? NULL : buf_steal(&b);
	if (!ws->address || !ws->host)
		rc = dt_error_set(err, ENOMEM, 0, "websocket", "out of memory");
out:
	buf_free(&b);
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	return rc;
}

/* Lets @ws go and waits until the service thread has unlinked it; then frees it. */
static void release_and_free(struct dt_ws *ws)
{
	struct dt_ws_hub *hub = ws->hub;

	pthread_mutex_lock(&hub->lock);
	ws->released = true;
	pthread_mutex_unlock(&hub->lock);
	lws_cancel_service(hub->lws);
	pthread_mutex_lock(&hub->lock);
	while (!ws->unlinked) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&hub->cond, &hub->lock, &ts);
		if (!ws->unlinked)
			lws_cancel_service(hub->lws);
	}
	pthread_mutex_unlock(&hub->lock);
	ws_free_memory(ws);
}

static void wake_and_wait(struct dt_ws_hub *hub, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)ms * 1000000L;
	while (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&hub->cond, &hub->lock, &ts);
}

int dt_ws_connect(struct dt_ws_hub *hub, struct dt_client *c, const struct dt_ws_params *p,
		  struct dt_ws **out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct dt_ws *ws;
	struct buf offered = BUF_INIT;
	long timeout =
	    p->connect_timeout_ms > 0 ? p->connect_timeout_ms : dt_client_connect_timeout_ms(c);
	int64_t deadline = now_mono_ms() + timeout;
	int rc = 0;

	*out = NULL;
	memset(err, 0, sizeof(*err));
	if (!hub || !c || !p || !p->url || !p->handler || !p->handler->on_message ||
	    !p->handler->on_close)
		return dt_error_set(err, EINVAL, 0, "websocket", "bad parameters");
	ws = calloc(1, sizeof(*ws));
	if (!ws)
		return dt_error_set(err, ENOMEM, 0, "websocket", "out of memory");
	ws->hub = hub;
	ws->client = c;
	ws->handler = p->handler;
	ws->arg = p->arg;
	rc = parse_target(ws, p->url, err);
	for (size_t i = 0; rc == 0 && p->protocols && p->protocols[i]; i++)
		if (buf_printf(&offered, "%s%s", i ? ", " : "", p->protocols[i]))
			rc = dt_error_set(err, ENOMEM, 0, "websocket", "out of memory");
	if (rc) {
		buf_free(&offered);
		ws_free_memory(ws);
		return rc;
	}
	ws->offered = offered.data ? buf_steal(&offered) : NULL;

	pthread_mutex_lock(&hub->lock);
	ws->state = WS_CONNECTING;
	ws->next = hub->conns;
	hub->conns = ws;
	pthread_mutex_unlock(&hub->lock);
	lws_cancel_service(hub->lws);

	pthread_mutex_lock(&hub->lock);
	while (ws->state < WS_OPEN) {
		if (dt_cancelled()) {
			rc = dt_error_set(err, EINTR, 0, "websocket", "interrupted");
			break;
		}
		if (now_mono_ms() >= deadline) {
			rc = dt_error_set(err, ETIMEDOUT, 0, "websocket",
					  "no websocket handshake from %s within %ld ms", ws->host,
					  timeout);
			err->transport = true;
			break;
		}
		wake_and_wait(hub, 100);
	}
	if (rc == 0 && ws->state == WS_GONE && !ws->opened) {
		if (ws->fail_status >= 300) {
			char what[160];

			snprintf(what, sizeof(what), "websocket %s", ws->path);
			dt_error_from_http(err, ws->fail_status, NULL, 0, what);
			rc = -err->err;
		} else {
			rc = dt_error_set(err, EIO, 0, "websocket", "%s: %s", ws->host,
					  ws->fail_message);
			err->transport = true;
		}
	}
	if (rc) {
		ws->abandoned = true;
		pthread_mutex_unlock(&hub->lock);
		release_and_free(ws);
		return rc;
	}
	pthread_mutex_unlock(&hub->lock);
	*out = ws;
	return 0;
}

const char *dt_ws_protocol(const struct dt_ws *ws)
{
	return ws->protocol;
}

int dt_ws_send(struct dt_ws *ws, bool binary, const void *data, size_t len)
{
	struct ws_msg *m;

	if (len > DT_WS_MAX_MESSAGE)
		return -EMSGSIZE;
	m = malloc(sizeof(*m) + LWS_PRE + len);
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->binary = binary;
	m->len = len;
	if (len)
		memcpy(m->data + LWS_PRE, data, len);
	pthread_mutex_lock(&ws->hub->lock);
	if (ws->state != WS_OPEN) {
		pthread_mutex_unlock(&ws->hub->lock);
		free(m);
		return -EPIPE;
	}
	if (ws->tail)
		ws->tail->next = m;
	else
		ws->head = m;
	ws->tail = m;
	ws->queued += len;
	pthread_mutex_unlock(&ws->hub->lock);
	lws_cancel_service(ws->hub->lws);
	return 0;
}

void dt_ws_pause_rx(struct dt_ws *ws, bool pause)
{
	pthread_mutex_lock(&ws->hub->lock);
	ws->rx_paused = pause;
	pthread_mutex_unlock(&ws->hub->lock);
	lws_cancel_service(ws->hub->lws);
}

size_t dt_ws_queued(struct dt_ws *ws)
{
	size_t n;

	pthread_mutex_lock(&ws->hub->lock);
	n = ws->queued;
	pthread_mutex_unlock(&ws->hub->lock);
	return n;
}

bool dt_ws_is_open(struct dt_ws *ws)
{
	bool open;

	pthread_mutex_lock(&ws->hub->lock);
	open = ws->state == WS_OPEN;
	pthread_mutex_unlock(&ws->hub->lock);
	return open;
}

/* Under the hub lock. */
static void ask_close(struct dt_ws *ws, int code, const char *reason)
{
	if (ws->state != WS_OPEN)
		return;
	ws->state = WS_CLOSING;
	ws->want_close = true;
	ws->close_code = code;
	copy_str(ws->close_reason, sizeof(ws->close_reason), reason ? reason : "");
}

void dt_ws_close(struct dt_ws *ws, int code, const char *reason)
{
	pthread_mutex_lock(&ws->hub->lock);
	ask_close(ws, code, reason);
	pthread_mutex_unlock(&ws->hub->lock);
	lws_cancel_service(ws->hub->lws);
}

void dt_ws_free(struct dt_ws *ws)
{
	struct dt_ws_hub *hub;
	int64_t kill_at;

	if (!ws)
		return;
	hub = ws->hub;
	if (hub->thread_started && pthread_equal(pthread_self(), hub->thread)) {
		/* a callback of the service thread: unlinked and freed on its next turn */
		pthread_mutex_lock(&hub->lock);
		ask_close(ws, 1000, "");
		ws->kill = ws->state != WS_GONE && !ws->want_close;
		ws->released = true;
		ws->free_on_unlink = true;
		pthread_mutex_unlock(&hub->lock);
		lws_cancel_service(hub->lws);
		return;
	}
	kill_at = now_mono_ms() + DT_WS_CLOSE_WAIT_MS;
	pthread_mutex_lock(&hub->lock);
	ask_close(ws, 1000, "");
	lws_cancel_service(hub->lws);
	while (!ws->closed_reported && !ws->unlinked) {
		if (now_mono_ms() >= kill_at && ws->state != WS_GONE) {
			ws->kill = true;
			kill_at = now_mono_ms() + 1000;
			lws_cancel_service(hub->lws);
		}
		wake_and_wait(hub, 100);
	}
	pthread_mutex_unlock(&hub->lock);
	if (ws->unlinked) /* the hub went first */
		return;
	release_and_free(ws);
}
