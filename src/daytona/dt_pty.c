/*
 * PTY sessions through the toolbox (dt_pty.h): REST calls on the request
 * engine of client.c, connections on the websocket client of dt_ws.c.
 */
#include "dt_pty.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt_internal.h"
#include "log.h"
#include "util.h"

#define EXIT_CONTROL_TOKEN "X-Daytona-Pty-Exit-Control"

/* ---- REST ---------------------------------------------------------------- */

/* "/process/pty[/{id}[/@tail]]" */
static int pty_endpoint(struct buf *b, const char *id, const char *tail)
{
	int rc = buf_append_str(b, "/process/pty");

	if (rc == 0 && id)
		rc = dt_path_segment(b, id);
	if (rc == 0 && tail)
		rc = buf_printf(b, "/%s", tail);
	return rc;
}

static int pty_request(struct dt_toolbox *tb, enum dt_method method, const char *id,
		       const char *tail, const char *body, const char *what, cJSON **out,
		       struct dt_error *err)
{
	struct dt_response resp = {0};
	struct buf endpoint = BUF_INIT;
	int rc;

	if (out)
		*out = NULL;
	rc = pty_endpoint(&endpoint, id, tail);
	if (rc) {
		buf_free(&endpoint);
		return rc == -ENOMEM ? dt_error_set(err, ENOMEM, 0, what, "out of memory")
				     : dt_error_set(err, EINVAL, 0, what, "invalid terminal id");
	}
	rc = dt_toolbox_request(tb, method, endpoint.data, NULL, body, what, &resp, err);
	if (rc == 0 && out && resp.body.len)
		rc = dt_parse_json(resp.body.data, resp.body.len, what, out, err);
	dt_response_free(&resp);
	buf_free(&endpoint);
	return rc;
}

void dt_pty_info_clear(struct dt_pty_info *i)
{
	if (!i)
		return;
	free(i->id);
	free(i->cwd);
	free(i->created_at);
	for (size_t k = 0; k < i->nenvs; k++) {
		free(i->envs[k].key);
		free(i->envs[k].value);
	}
	free(i->envs);
	memset(i, 0, sizeof(*i));
}

void dt_pty_list_clear(struct dt_pty_list *l)
{
	if (!l)
		return;
	for (size_t k = 0; k < l->count; k++)
		dt_pty_info_clear(&l->items[k]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

static int json_int(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1e6 ? v->valueint : 0;
}

static int info_from_json(const cJSON *o, struct dt_pty_info *out)
{
	const cJSON *envs, *e;
	const char *s;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(o) || !(s = dt_json_string(o, "id")) || !s[0])
		return -EINVAL;
	out->id = strdup(s);
	s = dt_json_string(o, "cwd");
	out->cwd = strdup(s ? s : "");
	s = dt_json_string(o, "createdAt");
	out->created_at = s ? strdup(s) : NULL;
	out->cols = json_int(o, "cols");
	out->rows = json_int(o, "rows");
	out->active = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "active"));
	out->lazy_start = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "lazyStart"));
	envs = cJSON_GetObjectItemCaseSensitive(o, "envs");
	if (cJSON_IsObject(envs)) {
		cJSON_ArrayForEach(e, envs) n++;
		out->envs = n ? calloc(n, sizeof(*out->envs)) : NULL;
		if (n && !out->envs)
			goto nomem;
		cJSON_ArrayForEach(e, envs)
		{
			if (!e->string || !cJSON_IsString(e))
				continue;
			out->envs[out->nenvs].key = strdup(e->string);
			out->envs[out->nenvs].value = strdup(e->valuestring);
			if (!out->envs[out->nenvs].key || !out->envs[out->nenvs].value) {
				out->nenvs++;
				goto nomem;
			}
			out->nenvs++;
		}
	}
	if (!out->id || !out->cwd)
		goto nomem;
	return 0;
nomem:
	dt_pty_info_clear(out);
	return -ENOMEM;
}

int dt_pty_create(struct dt_toolbox *tb, const struct dt_pty_params *p, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	cJSON *body = cJSON_CreateObject(), *answer = NULL;
	char *text = NULL;
	char what[200];
	int rc;

	snprintf(what, sizeof(what), "create terminal %s", p->id ? p->id : "");
	if (!p->id || !p->id[0]) {
		cJSON_Delete(body);
		return dt_error_set(err, EINVAL, 0, what, "no terminal id");
	}
	if (p->cols < 0 || p->rows < 0 || p->cols > DT_PTY_MAX_DIM || p->rows > DT_PTY_MAX_DIM) {
		cJSON_Delete(body);
		return dt_error_set(err, EINVAL, 0, what, "cols and rows are 1..%d",
				    DT_PTY_MAX_DIM);
	}
	if (!body || !cJSON_AddStringToObject(body, "id", p->id) ||
	    !cJSON_AddNumberToObject(body, "cols", p->cols ? p->cols : 80) ||
	    !cJSON_AddNumberToObject(body, "rows", p->rows ? p->rows : 24) ||
	    (p->cwd && p->cwd[0] && !cJSON_AddStringToObject(body, "cwd", p->cwd)) ||
	    (p->lazy_start && !cJSON_AddBoolToObject(body, "lazyStart", true)))
		goto nomem;
	if (p->nenvs) {
		cJSON *envs = dt_kv_to_json(p->envs, p->nenvs);

		if (!envs)
			goto nomem;
		cJSON_AddItemToObject(body, "envs", envs);
	}
	text = cJSON_PrintUnformatted(body);
	if (!text)
		goto nomem;
	rc = pty_request(tb, DT_POST, NULL, NULL, text, what, &answer, err);
	/* the answer's body ({"sessionId"}) is the id we chose */
	cJSON_Delete(answer);
	/* the body may hold secrets (an API key in envs): wipe it */
	explicit_bzero(text, strlen(text));
	free(text);
	cJSON_Delete(body);
	return rc;
nomem:
	cJSON_Delete(body);
	return dt_error_set(err, ENOMEM, 0, what, "out of memory");
}

int dt_pty_list(struct dt_toolbox *tb, struct dt_pty_list *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	cJSON *answer = NULL, *item;
	const cJSON *arr;
	size_t n = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = pty_request(tb, DT_GET, NULL, NULL, NULL, "list terminals", &answer, err);
	if (rc)
		return rc;
	arr = cJSON_IsArray(answer) ? answer : cJSON_GetObjectItemCaseSensitive(answer, "sessions");
	if (!cJSON_IsArray(arr)) {
		cJSON_Delete(answer);
		return dt_error_set(err, EIO, 200, "list terminals", "the answer has no sessions");
	}
	n = (size_t)cJSON_GetArraySize(arr);
	if (n > DT_MAX_ITEMS)
		n = DT_MAX_ITEMS;
	out->items = n ? calloc(n, sizeof(*out->items)) : NULL;
	if (n && !out->items) {
		cJSON_Delete(answer);
		return dt_error_set(err, ENOMEM, 0, "list terminals", "out of memory");
	}
	cJSON_ArrayForEach(item, arr)
	{
		if (out->count >= n)
			break;
		rc = info_from_json(item, &out->items[out->count]);
		if (rc == -ENOMEM) {
			dt_pty_list_clear(out);
			cJSON_Delete(answer);
			return dt_error_set(err, ENOMEM, 0, "list terminals", "out of memory");
		}
		if (rc == 0)
			out->count++;
	}
	cJSON_Delete(answer);
	return 0;
}

int dt_pty_get(struct dt_toolbox *tb, const char *id, struct dt_pty_info *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	cJSON *answer = NULL;
	char what[200];
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "terminal %s", id ? id : "");
	rc = pty_request(tb, DT_GET, id, NULL, NULL, what, &answer, err);
	if (rc == 0 && info_from_json(answer, out))
		rc = dt_error_set(err, EIO, 200, what, "the answer is not a terminal");
	cJSON_Delete(answer);
	return rc;
}

int dt_pty_resize(struct dt_toolbox *tb, const char *id, int cols, int rows,
		  struct dt_pty_info *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	cJSON *answer = NULL;
	char what[200], body[64];
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "resize terminal %s", id ? id : "");
	if (cols < 1 || rows < 1 || cols > DT_PTY_MAX_DIM || rows > DT_PTY_MAX_DIM)
		return dt_error_set(err, EINVAL, 0, what, "cols and rows are 1..%d",
				    DT_PTY_MAX_DIM);
	snprintf(body, sizeof(body), "{\"cols\":%d,\"rows\":%d}", cols, rows);
	rc = pty_request(tb, DT_POST, id, "resize", body, what, out ? &answer : NULL, err);
	if (rc == -EIO && err->http_status == 410) {
		err->err = ESRCH;
		rc = -ESRCH;
	}
	if (rc == 0 && out && answer && info_from_json(answer, out))
		memset(out, 0, sizeof(*out));
	cJSON_Delete(answer);
	return rc;
}

int dt_pty_kill(struct dt_toolbox *tb, const char *id, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	char what[200];

	snprintf(what, sizeof(what), "kill terminal %s", id ? id : "");
	return pty_request(tb, DT_DELETE, id, NULL, NULL, what, NULL, err);
}

/* ---- the connection ------------------------------------------------------- */

struct dt_pty_conn {
	struct dt_ws *ws;
	const struct dt_pty_handler *h;
	void *arg;
	atomic_bool detached; /* no more user callbacks */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool connected, ended; /* lock */
	struct dt_pty_end end; /* filled by the service thread before ended */
	char error[200];
};

/* {"exitCode":N[,"exitReason":"..."]}: true with the values when it is one. */
static bool parse_exit(const cJSON *o, int *code, char *reason, size_t size)
{
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "exitCode");
	const char *r = dt_json_string(o, "exitReason");

	if (!cJSON_IsNumber(c) || c->valuedouble < -1e9 || c->valuedouble > 1e9)
		return false;
	*code = c->valueint;
	copy_str(reason, size, r ? r : "");
	return true;
}

static void pty_on_message(void *arg, struct dt_ws *ws, bool binary, const void *data, size_t len)
{
	struct dt_pty_conn *pc = arg;
	cJSON *o;
	const char *type, *status;

	(void)ws;
	if (!binary && len && ((const char *)data)[0] == '{' &&
	    (o = cJSON_ParseWithLength(data, len)) != NULL) {
		type = dt_json_string(o, "type");
		status = dt_json_string(o, "status");
		if (type && !strcmp(type, "control")) {
			if (status && !strcmp(status, "connected")) {
				pthread_mutex_lock(&pc->lock);
				pc->connected = true;
				pthread_cond_broadcast(&pc->cond);
				pthread_mutex_unlock(&pc->lock);
			} else if (status && !strcmp(status, "exited")) {
				pc->end.exited =
				    parse_exit(o, &pc->end.exit_code, pc->end.exit_reason,
					       sizeof(pc->end.exit_reason));
			} else if (status && !strcmp(status, "error")) {
				const char *e = dt_json_string(o, "error");

				copy_str(pc->error, sizeof(pc->error), e ? e : "terminal error");
			}
			cJSON_Delete(o);
			return;
		}
		cJSON_Delete(o);
	}
	if (len && !atomic_load(&pc->detached))
		pc->h->on_output(pc->arg, data, len);
}

static void pty_on_close(void *arg, struct dt_ws *ws, int code, const char *reason)
{
	struct dt_pty_conn *pc = arg;
	struct dt_pty_end *end = &pc->end;
	cJSON *o;

	(void)ws;
	end->close_code = code;
	if (!end->exited && reason && reason[0] == '{' && (o = cJSON_Parse(reason)) != NULL) {
		end->exited =
		    parse_exit(o, &end->exit_code, end->exit_reason, sizeof(end->exit_reason));
		cJSON_Delete(o);
	}
	if (!end->exited && code == 1000) {
		/* a clean close without a parsable reason: the SDK takes it as exit 0 */
		end->exited = true;
		end->exit_code = 0;
	}
	copy_str(end->message, sizeof(end->message), pc->error[0] ? pc->error : reason);
	pthread_mutex_lock(&pc->lock);
	pc->ended = true;
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
	/* last touch of @pc: the handler may free it (dt_pty_disconnect) */
	if (!atomic_load(&pc->detached))
		pc->h->on_end(pc->arg, end);
}

static void pty_on_drain(void *arg, struct dt_ws *ws)
{
	struct dt_pty_conn *pc = arg;

	(void)ws;
	if (pc->h->on_drain && !atomic_load(&pc->detached))
		pc->h->on_drain(pc->arg);
}

static long pty_on_batch_end(void *arg, struct dt_ws *ws, unsigned flags)
{
	struct dt_pty_conn *pc = arg;

	(void)ws;
	if (pc->h->on_batch_end && !atomic_load(&pc->detached))
		return pc->h->on_batch_end(pc->arg, flags);
	return 0;
}

static const struct dt_ws_handler pty_ws_handler = {
    .on_message = pty_on_message,
    .on_close = pty_on_close,
    .on_drain = pty_on_drain,
    .on_batch_end = pty_on_batch_end,
};

static void conn_free(struct dt_pty_conn *pc)
{
	pthread_mutex_destroy(&pc->lock);
	pthread_cond_destroy(&pc->cond);
	free(pc);
}

int dt_pty_connect(struct dt_ws_hub *hub, struct dt_toolbox *tb, const char *id,
		   const struct dt_pty_handler *h, void *arg, long timeout_ms,
		   struct dt_pty_conn **out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	static const char *const protocols[] = {EXIT_CONTROL_TOKEN, NULL};
	struct buf endpoint = BUF_INIT, url = BUF_INIT;
	struct dt_ws_params wp = {0};
	struct dt_pty_conn *pc;
	char what[200];
	int64_t deadline;
	int rc;

	*out = NULL;
	snprintf(what, sizeof(what), "connect terminal %s", id ? id : "");
	if (timeout_ms <= 0)
		timeout_ms = DT_PTY_CONNECT_TIMEOUT_MS;
	deadline = now_mono_ms() + timeout_ms;
	if (!id || !id[0] || pty_endpoint(&endpoint, id, "connect")) {
		buf_free(&endpoint);
		return dt_error_set(err, EINVAL, 0, what, "invalid terminal id");
	}
	rc = dt_toolbox_url(tb, &url, endpoint.data, NULL, what, err);
	buf_free(&endpoint);
	if (rc) {
		buf_free(&url);
		return rc;
	}
	pc = calloc(1, sizeof(*pc));
	if (!pc) {
		buf_free(&url);
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	}
	pc->h = h;
	pc->arg = arg;
	atomic_init(&pc->detached, false);
	pthread_mutex_init(&pc->lock, NULL);
	pthread_cond_init(&pc->cond, NULL);
	wp.url = url.data;
	wp.protocols = protocols;
	wp.handler = &pty_ws_handler;
	wp.arg = pc;
	wp.connect_timeout_ms = timeout_ms;
	rc = dt_ws_connect(hub, dt_toolbox_client(tb), &wp, &pc->ws, err);
	buf_free(&url);
	if (rc) {
		/* dt_ws_connect names the path; say which terminal instead */
		char msg[sizeof(err->message)];

		copy_str(msg, sizeof(msg), err->message);
		snprintf(err->message, sizeof(err->message), "%.150s: %.300s", what, msg);
		conn_free(pc);
		return rc;
	}
	pthread_mutex_lock(&pc->lock);
	while (!pc->connected && !pc->ended) {
		struct timespec ts;

		if (dt_cancelled()) {
			rc = dt_error_set(err, EINTR, 0, what, "interrupted");
			break;
		}
		if (now_mono_ms() >= deadline) {
			rc = dt_error_set(err, ETIMEDOUT, 0, what,
					  "no \"connected\" frame within %ld ms", timeout_ms);
			break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&pc->cond, &pc->lock, &ts);
	}
	pthread_mutex_unlock(&pc->lock);
	if (rc) {
		dt_pty_disconnect(pc);
		return rc;
	}
	*out = pc;
	return 0;
}

int dt_pty_send(struct dt_pty_conn *pc, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		size_t n = len > DT_PTY_SEND_CHUNK ? DT_PTY_SEND_CHUNK : len;
		int rc = dt_ws_send(pc->ws, true, p, n);

		if (rc)
			return rc;
		p += n;
		len -= n;
	}
	return 0;
}

void dt_pty_pause_output(struct dt_pty_conn *pc, bool pause)
{
	dt_ws_pause_rx(pc->ws, pause);
}

size_t dt_pty_queued(struct dt_pty_conn *pc)
{
	return dt_ws_queued(pc->ws);
}

void dt_pty_disconnect(struct dt_pty_conn *pc)
{
	if (!pc)
		return;
	atomic_store(&pc->detached, true);
	dt_ws_free(pc->ws);
	conn_free(pc);
}
