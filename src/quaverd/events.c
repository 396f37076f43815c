/*
 * Websocket routes and socket.io state events (events.h).
 *
 * The socket.io protocol is spoken only as far as the Daytona SDK needs it
 * (socket.io-client 4, Engine.IO 4, websocket transport only): the open
 * packet on connect, CONNECT with the token in the packet ("40{"token":..}")
 * answered "40{"sid":..}" or refused "44{"message":..}", a ping ("2") every
 * 25 s, and events as "42[name,payload]" to every connected client.
 *
 * Threads. The store calls store_hook under its lock: it only queues the
 * change. The events thread builds each event's DTO (taking the store lock
 * itself), sends it to every client through ws_send (never blocks: a client
 * that does not read is closed by ws.c), and sends the pings. Client
 * messages arrive on the lws service thread.
 */
#define QUAVERD_API_INTERNAL
#include "events.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "log.h"
#include "pty.h"
#include "ws_logs.h"
#include "util.h"

#define PING_INTERVAL_MS 25000
#define PING_TIMEOUT_MS 20000
/* Changes waiting for the events thread; more are dropped (and logged). */
#define MAX_PENDING_EVENTS 4096

struct change {
	struct change *next;
	enum store_event_kind kind;
	char id[STORE_ID_LEN + 1];
	char old_state[32], new_state[32];
};

struct sio_client {
	struct sio_client *next;
	struct events *ev;
	struct ws_conn *conn;
	bool connected; /* the socket.io CONNECT was accepted */
	bool listed;
};

struct events {
	struct store *store;
	char *token;
	size_t token_len;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	char base[256];
	struct change *head, *tail;
	size_t pending;
	struct sio_client *clients;
	bool stopping;
	pthread_t thread;
	bool thread_started;
	unsigned long next_sid;
};

/* ---- helpers --------------------------------------------------------------- */

/* Compares in time that depends only on the lengths, never on where they differ. */
static bool token_equal(const char *given, size_t given_len, const char *want, size_t want_len)
{
	unsigned char diff = given_len != want_len;

	for (size_t i = 0; i < want_len; i++) {
		unsigned char g = i < given_len ? (unsigned char)given[i] : 0;

		diff |= g ^ (unsigned char)want[i];
	}
	return diff == 0 && want_len > 0;
}

static bool bearer_ok(const struct events *ev, const struct http_request *req)
{
	const char *h = http_header(req, "authorization");
	const char *tok;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	for (tok = h + 7; *tok == ' '; tok++)
		;
	return token_equal(tok, strlen(tok), ev->token, ev->token_len);
}

static void make_sid(struct events *ev, char *out, size_t size)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&ev->lock);
	ev->next_sid++;
	snprintf(out, size, "q%lx%lx%lx", (unsigned long)ts.tv_sec, (unsigned long)ts.tv_nsec,
		 ev->next_sid);
	pthread_mutex_unlock(&ev->lock);
}

/* ---- the store hook and the events thread ---------------------------------- */

static void store_hook(void *ctx, enum store_event_kind kind, const char *id, const char *old_state,
		       const char *new_state)
{
	struct events *ev = ctx;
	struct change *ch;

	pthread_mutex_lock(&ev->lock);
	if (ev->stopping || !ev->clients) {
		/* nobody listens: nothing to build */
		pthread_mutex_unlock(&ev->lock);
		return;
	}
	if (ev->pending >= MAX_PENDING_EVENTS) {
		pthread_mutex_unlock(&ev->lock);
		log_warn("state event for %s dropped: %d events pending", id, MAX_PENDING_EVENTS);
		return;
	}
	ch = calloc(1, sizeof(*ch));
	if (ch) {
		ch->kind = kind;
		copy_str(ch->id, sizeof(ch->id), id);
		copy_str(ch->old_state, sizeof(ch->old_state), old_state);
		copy_str(ch->new_state, sizeof(ch->new_state), new_state);
		if (ev->tail)
			ev->tail->next = ch;
		else
			ev->head = ch;
		ev->tail = ch;
		ev->pending++;
		pthread_cond_signal(&ev->cond);
	}
	pthread_mutex_unlock(&ev->lock);
}

/* The DTO of the changed object as the API shows it, its state the new one. */
static cJSON *change_dto(struct events *ev, const struct change *ch, const char **key,
			 const char **name)
{
	struct api_call c;
	struct store_err err;
	cJSON *dto = NULL;

	memset(&c, 0, sizeof(c));
	c.store = ev->store;
	pthread_mutex_lock(&ev->lock);
	copy_str(c.base, sizeof(c.base), ev->base);
	pthread_mutex_unlock(&ev->lock);

	switch (ch->kind) {
	case STORE_EVENT_SANDBOX: {
		struct store_sandbox_info info;

		*key = "sandbox";
		*name = "sandbox.state.updated";
		if (store_sandbox_get(ev->store, ch->id, &info, &err) == 0) {
			dto = sandbox_json(&c, &info, true);
			store_sandbox_info_free(&info);
		}
		break;
	}
	case STORE_EVENT_VOLUME: {
		struct store_volume_info info;

		*key = "volume";
		*name = "volume.state.updated";
		if (store_volume_get(ev->store, ch->id, &info, &err) == 0)
			dto = volume_json(&c, &info);
		break;
	}
	case STORE_EVENT_SNAPSHOT: {
		struct store_snapshot_info info;

		*key = "snapshot";
		*name = "snapshot.state.updated";
		if (store_snapshot_get(ev->store, ch->id, &info, &err) == 0)
			dto = snapshot_json(&c, &info);
		break;
	}
	}
	if (!dto) {
		/* gone meanwhile (deleted): the id is what the SDK routes by */
		dto = cJSON_CreateObject();
		if (dto)
			cJSON_AddStringToObject(dto, "id", ch->id);
	}
	if (dto) {
		/* a later change has its own event: this one reports its own state */
		cJSON_DeleteItemFromObjectCaseSensitive(dto, "state");
		cJSON_AddStringToObject(dto, "state", ch->new_state);
	}
	return dto;
}

static void broadcast(struct events *ev, const char *packet)
{
	struct ws_conn *conns[64];
	size_t n;
	struct sio_client *from = NULL;

	/* in batches, so no send happens under ev->lock */
	for (;;) {
		bool started = from == NULL;

		n = 0;
		pthread_mutex_lock(&ev->lock);
		for (struct sio_client *cl = ev->clients; cl && n < ARRAY_SIZE(conns);
		     cl = cl->next) {
			if (!started) {
				started = cl == from;
				continue;
			}
			if (!packet || cl->connected) {
				ws_conn_ref(cl->conn);
				conns[n++] = cl->conn;
			}
			from = cl;
		}
		pthread_mutex_unlock(&ev->lock);
		for (size_t i = 0; i < n; i++) {
			ws_send_text(conns[i], packet ? packet : "2");
			ws_conn_unref(conns[i]);
		}
		if (n < ARRAY_SIZE(conns))
			break;
	}
}

static void send_change(struct events *ev, const struct change *ch)
{
	const char *key = "sandbox", *name = "sandbox.state.updated";
	cJSON *dto = change_dto(ev, ch, &key, &name);
	cJSON *arr = cJSON_CreateArray(), *payload = cJSON_CreateObject();
	struct buf packet = BUF_INIT;
	char *text = NULL;

	if (!dto || !arr || !payload) {
		cJSON_Delete(dto);
		goto out;
	}
	cJSON_AddItemToObject(payload, key, dto);
	cJSON_AddStringToObject(payload, "oldState", ch->old_state);
	cJSON_AddStringToObject(payload, "newState", ch->new_state);
	cJSON_AddItemToArray(arr, cJSON_CreateString(name));
	cJSON_AddItemToArray(arr, payload);
	payload = NULL;
	text = cJSON_PrintUnformatted(arr);
	if (text && buf_printf(&packet, "42%s", text) == 0)
		broadcast(ev, packet.data);
out:
	cJSON_Delete(payload);
	cJSON_Delete(arr);
	free(text);
	buf_free(&packet);
}

static void *events_main(void *arg)
{
	struct events *ev = arg;
	int64_t next_ping = now_mono_ms() + PING_INTERVAL_MS;

	pthread_mutex_lock(&ev->lock);
	while (!ev->stopping) {
		struct change *ch = ev->head;

		if (ch) {
			ev->head = ch->next;
			if (!ev->head)
				ev->tail = NULL;
			ev->pending--;
			pthread_mutex_unlock(&ev->lock);
			send_change(ev, ch);
			free(ch);
			pthread_mutex_lock(&ev->lock);
			continue;
		}
		if (now_mono_ms() >= next_ping) {
			pthread_mutex_unlock(&ev->lock);
			broadcast(ev, NULL); /* Engine.IO ping, to every client */
			next_ping = now_mono_ms() + PING_INTERVAL_MS;
			pthread_mutex_lock(&ev->lock);
			continue;
		}
		{
			struct timespec ts;
			int64_t wait_ms = next_ping - now_mono_ms();

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += wait_ms / 1000;
			ts.tv_nsec += (wait_ms % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&ev->cond, &ev->lock, &ts);
		}
	}
	pthread_mutex_unlock(&ev->lock);
	return NULL;
}

/* ---- socket.io clients (service thread) ------------------------------------- */

static void sio_open(void *arg, struct ws_conn *conn)
{
	struct sio_client *cl = arg;
	struct events *ev = cl->ev;
	char sid[64], open[256];

	ws_conn_ref(conn);
	pthread_mutex_lock(&ev->lock);
	cl->conn = conn;
	cl->next = ev->clients;
	ev->clients = cl;
	pthread_mutex_unlock(&ev->lock);
	make_sid(cl->ev, sid, sizeof(sid));
	snprintf(open, sizeof(open),
		 "0{\"sid\":\"%s\",\"upgrades\":[],\"pingInterval\":%d,\"pingTimeout\":%d,"
		 "\"maxPayload\":1000000}",
		 sid, PING_INTERVAL_MS, PING_TIMEOUT_MS);
	ws_send_text(conn, open);
}

/* "40", "40{...}" or "40/nsp,{...}": the token of the CONNECT packet, or NULL. */
static char *connect_token(const char *data, size_t len)
{
	const char *p = data + 2, *end = data + len;
	cJSON *json, *tok;
	char *out = NULL;

	if (p < end && *p == '/') {
		while (p < end && *p != ',')
			p++;
		if (p < end)
			p++;
	}
	if (p >= end)
		return NULL;
	json = cJSON_ParseWithLength(p, (size_t)(end - p));
	tok = cJSON_GetObjectItemCaseSensitive(json, "token");
	if (cJSON_IsString(tok))
		out = strdup(tok->valuestring);
	cJSON_Delete(json);
	return out;
}

static void sio_message(void *arg, struct ws_conn *conn, bool binary, const void *data, size_t len)
{
	struct sio_client *cl = arg;
	struct events *ev = cl->ev;
	const char *text = data;

	if (binary || len == 0)
		return;
	if (text[0] == '2') {
		ws_send(conn, false, "3", 1); /* a client ping (Engine.IO 3 style) */
		return;
	}
	if (text[0] == '1' || (len >= 2 && text[0] == '4' && text[1] == '1')) {
		ws_close(conn, 1000, "");
		return;
	}
	if (len >= 2 && text[0] == '4' && text[1] == '0') {
		char *token = connect_token(text, len);
		bool ok = token && token_equal(token, strlen(token), ev->token, ev->token_len);
		char reply[128], sid[64];

		if (token) {
			explicit_bzero(token, strlen(token));
			free(token);
		}
		if (!ok) {
			ws_send_text(conn,
				     "44{\"message\":\"Invalid or missing token: the socket.io "
				     "CONNECT must carry the quaverd token.\"}");
			return;
		}
		make_sid(ev, sid, sizeof(sid));
		snprintf(reply, sizeof(reply), "40{\"sid\":\"%s\"}", sid);
		pthread_mutex_lock(&ev->lock);
		cl->connected = true;
		pthread_mutex_unlock(&ev->lock);
		ws_send_text(conn, reply);
	}
	/* "3" (pong) and anything else: nothing to do */
}

static void sio_close(void *arg, struct ws_conn *conn)
{
	struct sio_client *cl = arg;
	struct events *ev;

	(void)conn;
	if (!cl)
		return;
	ev = cl->ev;
	pthread_mutex_lock(&ev->lock);
	for (struct sio_client **pp = &ev->clients; *pp; pp = &(*pp)->next) {
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	}
	pthread_mutex_unlock(&ev->lock);
	if (cl->conn)
		ws_conn_unref(cl->conn);
	free(cl);
}

static const struct ws_handler sio_handler = {
    .on_open = sio_open,
    .on_message = sio_message,
    .on_close = sio_close,
};

/* ---- routing ----------------------------------------------------------------- */

/* "{sandbox}/process/session/{sid}/command/{cid}/logs": the follow websocket. */
static int logs_upgrade(struct events *ev, const struct http_request *req, const char *rest,
			struct ws_accept *acc, char *msg, size_t msg_size)
{
	char copy[1024], *segs[7], *save = NULL;
	struct store_sandbox_info info;
	struct store_err err;
	size_t n = 0;
	int rc;

	copy_str(copy, sizeof(copy), rest);
	for (char *t = strtok_r(copy, "/", &save); t && n < ARRAY_SIZE(segs);
	     t = strtok_r(NULL, "/", &save))
		segs[n++] = t;
	if (n != 7 || strcmp(segs[1], "process") || strcmp(segs[2], "session") ||
	    strcmp(segs[4], "command") || strcmp(segs[6], "logs")) {
		snprintf(msg, msg_size, "Cannot GET %s", req->path);
		return 404;
	}
	rc = store_sandbox_get(ev->store, segs[0], &info, &err);
	if (rc == 0 && strcmp(info.id, segs[0])) {
		store_sandbox_info_free(&info);
		rc = -ENOENT;
	}
	if (rc < 0) {
		snprintf(msg, msg_size, "Sandbox with ID %s not found", segs[0]);
		return rc == -ENOENT ? 404 : 500;
	}
	rc = strcmp(info.state, "started");
	if (rc)
		snprintf(msg, msg_size, "Sandbox %s is not started (state: %s)", segs[0],
			 info.state);
	store_sandbox_info_free(&info);
	if (rc)
		return 409;
	store_touch(ev->store, segs[0]);
	return ws_logs_upgrade(ev->store, segs[0], segs[3], segs[5], acc, msg, msg_size);
}

static int events_upgrade(void *ctx, const struct http_request *req, const char *const *offered,
			  size_t noffered, struct ws_accept *acc, char *msg, size_t msg_size)
{
	struct events *ev = ctx;
	const char *path = req->path;

	if (!strcmp(path, "/api/socket.io/") || !strcmp(path, "/api/socket.io") ||
	    !strcmp(path, "/socket.io/")) {
		const char *eio = http_param(req, "EIO");
		const char *transport = http_param(req, "transport");
		struct sio_client *cl;

		if (!eio || strcmp(eio, "4") || !transport || strcmp(transport, "websocket")) {
			snprintf(msg, msg_size,
				 "Only Engine.IO 4 over the websocket transport is served "
				 "(EIO=4&transport=websocket).");
			return 400;
		}
		cl = calloc(1, sizeof(*cl));
		if (!cl) {
			snprintf(msg, msg_size, "The server is out of memory.");
			return 500;
		}
		cl->ev = ev;
		acc->handler = &sio_handler;
		acc->arg = cl;
		return 0;
	}
	if (!bearer_ok(ev, req)) {
		snprintf(msg, msg_size,
			 "Missing or invalid Bearer token in the Authorization header");
		return 401;
	}
	if (!strncmp(path, "/toolbox/", 9) && strstr(path, "/process/session/"))
		return logs_upgrade(ev, req, path + 9, acc, msg, msg_size);
	if (!strncmp(path, "/toolbox/", 9))
		return pty_ws_upgrade(ev->store, req, path + 9, offered, noffered, acc, msg,
				      msg_size);
	snprintf(msg, msg_size, "Cannot GET %s", path);
	return 404;
}

static const struct ws_ops ops = {.upgrade = events_upgrade};

const struct ws_ops *events_ws_ops(void)
{
	return &ops;
}

/* ---- life cycle ---------------------------------------------------------------- */

struct events *events_new(struct store *st, const char *token)
{
	struct events *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return NULL;
	ev->store = st;
	ev->token = strdup(token ? token : "");
	if (!ev->token) {
		free(ev);
		return NULL;
	}
	ev->token_len = strlen(ev->token);
	pthread_mutex_init(&ev->lock, NULL);
	pthread_cond_init(&ev->cond, NULL);
	if (pthread_create(&ev->thread, NULL, events_main, ev) != 0) {
		events_free(ev);
		return NULL;
	}
	ev->thread_started = true;
	if (store_add_event_hook(st, store_hook, ev) < 0)
		log_warn("no room for the state event hook: socket.io clients get no events");
	return ev;
}

void events_set_public_base(struct events *ev, const char *base)
{
	size_t len;

	pthread_mutex_lock(&ev->lock);
	copy_str(ev->base, sizeof(ev->base), base);
	len = strlen(ev->base);
	while (len > 0 && ev->base[len - 1] == '/')
		ev->base[--len] = '\0';
	if (len >= 4 && !strcmp(ev->base + len - 4, "/api"))
		ev->base[len - 4] = '\0';
	pthread_mutex_unlock(&ev->lock);
}

void events_stop(struct events *ev)
{
	if (!ev)
		return;
	pthread_mutex_lock(&ev->lock);
	ev->stopping = true;
	pthread_cond_broadcast(&ev->cond);
	pthread_mutex_unlock(&ev->lock);
	if (ev->thread_started) {
		pthread_join(ev->thread, NULL);
		ev->thread_started = false;
	}
}

void events_free(struct events *ev)
{
	if (!ev)
		return;
	events_stop(ev);
	while (ev->head) {
		struct change *ch = ev->head;

		ev->head = ch->next;
		free(ch);
	}
	/* clients are gone with the server (sio_close unlinked each) */
	pthread_mutex_destroy(&ev->lock);
	pthread_cond_destroy(&ev->cond);
	explicit_bzero(ev->token, ev->token_len);
	free(ev->token);
	free(ev);
}
