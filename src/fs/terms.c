/*
 * Terminals (terms.h): the terminals this mount knows, their websockets,
 * output rings, waiters and poll handles.
 *
 * Locks. t->lock guards the list and every terminal's state; it is never
 * held across a network call or a callback into ops. A terminal's
 * attach_lock serializes its start and connect (network calls, made
 * without t->lock), so two opens never start it twice.
 *
 * Lifetime. A terminal is referenced by the list and by each handle. It
 * leaves the list at rmdir, when a pty handle closes, or when more than
 * TERMS_KEEP_ENDED ended ones are kept; the last reference disconnects its
 * websocket (no callback runs after that) and frees it.
 */
#include "terms.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "core.h"
#include "dt_pty.h"
#include "dt_ws.h"
#include "files_internal.h"
#include "log.h"
#include "util.h"

struct term {
	struct term *next; /* t->lock */
	struct terms *t;
	int refs; /* t->lock */
	bool listed;
	bool pty_node; /* a pty handle's own: killed at its release */
	char sb_id[OBJ_ID_MAX];
	char sb_name[NODE_NAME_MAX];
	char name[TERMS_NAME_MAX];
	pthread_mutex_t attach_lock;

	/* t->lock */
	bool pending; /* made by mkdir, not started yet */
	int cols, rows;
	struct dt_kv envs[TERMS_ENV_MAX];
	size_t nenvs;
	struct dt_pty_conn *conn;
	bool reconnecting;	    /* closed as a slow consumer: a new connection is on its way */
	struct dt_pty_end lost_end; /* why, in case the new connection fails */
	bool ended;
	int64_t ended_ms;
	bool activity; /* files_sandbox_activity(begin) was said for its shell: its end ends it */
	struct dt_pty_end end;
	char *ring;
	size_t ring_cap, ring_head, ring_len;
	bool flooding;	    /* the last piece of output was a big one */
	bool out_paused;    /* the websocket is paused for a reader behind (TERMS_PAUSE_AT) */
	bool pause_spent;   /* a pause ran out: no other until a reader takes output */
	int64_t pause_end_ms;
	uint64_t dropped;
	struct terms_waiter *waiters;
	struct terms_handle *handles;
};

struct terms_handle {
	struct terms *t;
	struct term *term;	   /* NULL: a read-only pty handle */
	struct terms_handle *next; /* in term->handles, t->lock */
	enum terms_node node;
	int flags;
	void *ph;	  /* t->lock */
	struct buf value; /* size, exit, env: what reads give */
	bool value_made;
};

struct terms {
	struct qfs *fs;
	struct terms_ops ops;
	struct dt_ws_hub *hub;
	pthread_mutex_t lock;
	struct term *list;
	pthread_cond_t reconnected; /* nreconnects went down */
	int nreconnects;	    /* reconnect threads running (lock) */
	bool closing;		    /* terms_free: no new reconnects (lock) */
};

static void term_path(const struct term *tm, char *out, size_t size)
{
	if (tm->pty_node)
		snprintf(out, size, "sandboxes/%s/pty (terminal %s)", tm->sb_name, tm->name);
	else
		snprintf(out, size, "sandboxes/%s/terminals/%s", tm->sb_name, tm->name);
}

bool terms_valid_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n >= TERMS_NAME_MAX)
		return false;
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') ||
	      (name[0] >= '0' && name[0] <= '9')))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* ---- the ring of unread output ---- */

static void ring_grow(struct term *tm, size_t want)
{
	size_t cap = tm->ring_cap ? tm->ring_cap : 64 * 1024;
	char *d;

	while (cap < want && cap < TERMS_RING)
		cap *= 2;
	if (cap > TERMS_RING)
		cap = TERMS_RING;
	if (cap <= tm->ring_cap)
		return;
	d = malloc(cap);
	if (!d)
		return; /* keep the smaller ring: bytes are dropped instead */
	for (size_t i = 0; i < tm->ring_len; i++)
		d[i] = tm->ring[(tm->ring_head + i) % tm->ring_cap];
	free(tm->ring);
	tm->ring = d;
	tm->ring_cap = cap;
	tm->ring_head = 0;
}

/* Under t->lock. Keeps the newest bytes; returns how many older ones were dropped. */
static size_t ring_put(struct term *tm, const char *data, size_t n)
{
	size_t dropped = 0, tail, first;

	if (tm->ring_len + n > tm->ring_cap)
		ring_grow(tm, tm->ring_len + n);
	if (!tm->ring_cap)
		return n;
	if (n >= tm->ring_cap) {
		dropped = tm->ring_len + n - tm->ring_cap;
		data += n - tm->ring_cap;
		n = tm->ring_cap;
		tm->ring_head = 0;
		tm->ring_len = 0;
	} else if (tm->ring_len + n > tm->ring_cap) {
		dropped = tm->ring_len + n - tm->ring_cap;
		tm->ring_head = (tm->ring_head + dropped) % tm->ring_cap;
		tm->ring_len -= dropped;
	}
	tail = (tm->ring_head + tm->ring_len) % tm->ring_cap;
	first = tm->ring_cap - tail < n ? tm->ring_cap - tail : n;
	memcpy(tm->ring + tail, data, first);
	memcpy(tm->ring, data + first, n - first);
	tm->ring_len += n;
	return dropped;
}

static size_t ring_take(struct term *tm, char *out, size_t size)
{
	size_t n = size < tm->ring_len ? size : tm->ring_len, first;

	if (!n)
		return 0;
	first = tm->ring_cap - tm->ring_head < n ? tm->ring_cap - tm->ring_head : n;
	memcpy(out, tm->ring + tm->ring_head, first);
	memcpy(out + first, tm->ring, n - first);
	tm->ring_head = (tm->ring_head + n) % tm->ring_cap;
	tm->ring_len -= n;
	if (!tm->ring_len && tm->ended) {
		/* nothing more will come: give the memory back */
		free(tm->ring);
		tm->ring = NULL;
		tm->ring_cap = tm->ring_head = 0;
	}
	return n;
}

/* ---- changes: waking waiters and pollers ---- */

struct wakeups {
	struct terms_waiter *waiters;
	void *phs[32];
	size_t nphs;
};

/* Under t->lock: takes what must be told of a change of @tm. */
static void collect(struct term *tm, struct wakeups *wk)
{
	wk->waiters = tm->waiters;
	for (struct terms_waiter *w = tm->waiters; w; w = w->next)
		w->queued = false;
	tm->waiters = NULL;
	wk->nphs = 0;
	for (struct terms_handle *h = tm->handles; h; h = h->next) {
		if (h->ph && wk->nphs < sizeof(wk->phs) / sizeof(wk->phs[0])) {
			wk->phs[wk->nphs++] = h->ph;
			h->ph = NULL;
		}
	}
}

/* Without locks. */
static void deliver(struct terms *t, struct wakeups *wk)
{
	struct terms_waiter *w = wk->waiters, *next;

	for (size_t i = 0; i < wk->nphs; i++)
		t->ops.poll_notify(t->ops.arg, wk->phs[i]);
	for (; w; w = next) {
		next = w->next;
		w->next = NULL;
		t->ops.wake(t->ops.arg, w);
	}
}

/*
 * Output is kept at once; readers and pollers are woken by on_batch_end,
 * once per read of the socket: a flood of many messages per read then
 * answers a parked read with all of them instead of the first alone.
 */
static void on_output(void *arg, const void *data, size_t len)
{
	struct term *tm = arg;
	struct terms *t = tm->t;
	uint64_t before;
	size_t dropped;

	pthread_mutex_lock(&t->lock);
	before = tm->dropped;
	tm->flooding = len >= TERMS_FLOOD_PIECE;
	dropped = ring_put(tm, data, len);
	tm->dropped += dropped;
	if (!tm->out_paused && !tm->pause_spent && tm->conn && tm->ring_len >= TERMS_PAUSE_AT) {
		tm->out_paused = true;
		tm->pause_end_ms = now_mono_ms() + TERMS_PAUSE_MS;
		dt_pty_pause_output(tm->conn, true);
	}
	pthread_mutex_unlock(&t->lock);
	if (dropped && before == 0) {
		char path[512];

		term_path(tm, path, sizeof(path));
		log_warn("%s: output not read fast enough; the oldest unread bytes are dropped "
			 "(%d KiB are kept)",
			 path, TERMS_RING / 1024);
	}
}

/* Under t->lock. */
static void output_resume(struct term *tm)
{
	tm->out_paused = false;
	if (tm->conn)
		dt_pty_pause_output(tm->conn, false);
}

static long on_batch_end(void *arg, unsigned flags)
{
	struct term *tm = arg;
	struct wakeups wk;
	long hold = 0;

	pthread_mutex_lock(&tm->t->lock);
	if (tm->out_paused) {
		int64_t left = tm->pause_end_ms - now_mono_ms();

		if (left <= 0) {
			/* the reader is still behind: go on, dropping its oldest bytes */
			output_resume(tm);
			tm->pause_spent = true;
		} else {
			hold = (long)left * 1000; /* to come back when the pause is over */
		}
	}
	/*
	 * A flood (more waiting in the socket, or big pieces): let up to
	 * TERMS_WAKE_BATCH gather, for at most TERMS_HOLD_US. A read pins and
	 * faults in its whole buffer whatever it gets (direct_io): a reader
	 * woken per 32 KiB piece spent more time than quaverfs and quaverd
	 * together. Keystroke echo and the small tail of a flood wake at once.
	 */
	if (!(flags & DT_WS_BATCH_LATE) && ((flags & DT_WS_BATCH_MORE) || tm->flooding) &&
	    tm->ring_len < TERMS_WAKE_BATCH && tm->waiters) {
		pthread_mutex_unlock(&tm->t->lock);
		return hold && hold < TERMS_HOLD_US ? hold : TERMS_HOLD_US;
	}
	collect(tm, &wk);
	pthread_mutex_unlock(&tm->t->lock);
	deliver(tm->t, &wk);
	return hold;
}

static void *reconnect_main(void *arg);

/* Under t->lock: starts a reconnect of @tm (closed 1008); false when it cannot. */
static bool reconnect_locked(struct term *tm, const struct dt_pty_end *end)
{
	struct terms *t = tm->t;
	pthread_attr_t attr;
	pthread_t thread;
	bool ok;

	if (t->closing || tm->reconnecting)
		return false;
	tm->reconnecting = true;
	tm->lost_end = *end;
	tm->refs++;
	t->nreconnects++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ok = pthread_create(&thread, &attr, reconnect_main, tm) == 0;
	pthread_attr_destroy(&attr);
	if (!ok) {
		tm->reconnecting = false;
		tm->refs--;
		t->nreconnects--;
	}
	return ok;
}

/*
 * Under t->lock: whether @tm's shell was noted as running for files/ (what
 * it writes is seen there at once), now no longer; the caller then says so
 * with files_sandbox_activity(false), outside the lock.
 */
static bool activity_end_locked(struct term *tm)
{
	bool had = tm->activity;

	tm->activity = false;
	return had;
}

static void activity_end(struct term *tm)
{
	if (tm->t->fs->files)
		files_sandbox_activity(tm->t->fs->files, tm->sb_id, false);
}

static void on_end(void *arg, const struct dt_pty_end *end)
{
	bool had_activity;
	struct term *tm = arg;
	struct terms *t = tm->t;
	struct wakeups wk;
	char path[512];

	term_path(tm, path, sizeof(path));
	pthread_mutex_lock(&t->lock);
	/*
	 * 1008: the server closed us for not reading fast enough (its queue per
	 * client is bounded). The shell runs on: connect again; what it wrote
	 * meanwhile is lost, as output this ring drops is.
	 */
	if (!end->exited && end->close_code == 1008 && reconnect_locked(tm, end)) {
		pthread_mutex_unlock(&t->lock);
		log_warn("%s: output not read fast enough; the server closed the connection "
			 "(1008), reconnecting; output meanwhile is lost",
			 path);
		return;
	}
	tm->ended = true;
	tm->ended_ms = now_mono_ms();
	tm->end = *end;
	had_activity = activity_end_locked(tm);
	collect(tm, &wk);
	pthread_mutex_unlock(&t->lock);
	/* before readers hear of the end: what the shell wrote is asked for anew */
	if (had_activity)
		activity_end(tm);
	if (end->exited)
		log_info("%s: the shell exited with code %d%s%s", path, end->exit_code,
			 end->exit_reason[0] ? ", " : "", end->exit_reason);
	else
		log_warn("%s: the connection to the terminal was lost (websocket closed %d%s%s)",
			 path, end->close_code, end->message[0] ? ": " : "", end->message);
	if (tm->dropped)
		log_info("%s: %" PRIu64 " bytes of output were dropped unread", path, tm->dropped);
	deliver(t, &wk);
}

/* Room for input again: writers waiting for it go on. */
static void on_drain(void *arg)
{
	struct term *tm = arg;
	struct wakeups wk;

	pthread_mutex_lock(&tm->t->lock);
	collect(tm, &wk);
	pthread_mutex_unlock(&tm->t->lock);
	deliver(tm->t, &wk);
}

static const struct dt_pty_handler pty_handler = {
    .on_output = on_output,
    .on_end = on_end,
    .on_drain = on_drain,
    .on_batch_end = on_batch_end,
};

static void term_put(struct term *tm);

static void *reconnect_main(void *arg)
{
	struct term *tm = arg;
	struct terms *t = tm->t;
	struct dt_pty_conn *old, *conn = NULL;
	struct dt_error err = {0};
	struct wakeups wk;
	char path[512];
	bool had_activity = false;
	int ret;

	term_path(tm, path, sizeof(path));
	pthread_mutex_lock(&tm->attach_lock);
	pthread_mutex_lock(&t->lock);
	old = tm->conn;
	tm->conn = NULL;
	pthread_mutex_unlock(&t->lock);
	dt_pty_disconnect(old);
	ret = TB_CALL(t->fs->files, tm->sb_id, &err, tb,
		      dt_pty_connect(t->hub, tb->tb, tm->name, &pty_handler, tm, 0, &conn, &err));
	pthread_mutex_lock(&t->lock);
	tm->reconnecting = false;
	if (ret == 0 && !tm->ended) {
		tm->conn = conn;
		tm->out_paused = false; /* a new connection is not paused */
		conn = NULL;
	} else if (!tm->ended) {
		tm->ended = true;
		tm->ended_ms = now_mono_ms();
		tm->end = tm->lost_end;
		had_activity = activity_end_locked(tm);
	}
	collect(tm, &wk);
	pthread_mutex_unlock(&t->lock);
	pthread_mutex_unlock(&tm->attach_lock);
	if (had_activity)
		activity_end(tm);
	dt_pty_disconnect(conn); /* connected after an rmdir: not wanted */
	if (ret < 0)
		log_warn("%s: the connection to the terminal was lost and not regained: %s", path,
			 err.message);
	deliver(t, &wk);
	term_put(tm);
	pthread_mutex_lock(&t->lock);
	t->nreconnects--;
	pthread_cond_broadcast(&t->reconnected);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* ---- the list ---- */

static struct term *term_new(struct terms *t, const char *sb_id, const char *sb_name,
			     const char *name)
{
	struct term *tm = calloc(1, sizeof(*tm));

	if (!tm)
		return NULL;
	tm->t = t;
	tm->refs = 1;
	tm->cols = 80;
	tm->rows = 24;
	copy_str(tm->sb_id, sizeof(tm->sb_id), sb_id);
	copy_str(tm->sb_name, sizeof(tm->sb_name), sb_name ? sb_name : sb_id);
	copy_str(tm->name, sizeof(tm->name), name);
	pthread_mutex_init(&tm->attach_lock, NULL);
	return tm;
}

static void envs_clear(struct term *tm)
{
	for (size_t i = 0; i < tm->nenvs; i++) {
		if (tm->envs[i].value) {
			explicit_bzero(tm->envs[i].value, strlen(tm->envs[i].value));
			free(tm->envs[i].value);
		}
		free(tm->envs[i].key);
	}
	tm->nenvs = 0;
}

/* Drops a reference; the last one disconnects and frees. Without t->lock. */
static void term_put(struct term *tm)
{
	struct terms *t = tm->t;
	bool last;

	pthread_mutex_lock(&t->lock);
	last = --tm->refs == 0;
	pthread_mutex_unlock(&t->lock);
	if (!last)
		return;
	dt_pty_disconnect(tm->conn);
	envs_clear(tm);
	free(tm->ring);
	pthread_mutex_destroy(&tm->attach_lock);
	free(tm);
}

/* Under t->lock. */
static struct term *find_locked(struct terms *t, const char *sb_id, const char *name)
{
	for (struct term *tm = t->list; tm; tm = tm->next)
		if (!strcmp(tm->sb_id, sb_id) && !strcmp(tm->name, name))
			return tm;
	return NULL;
}

/* Under t->lock: takes @tm off the list (the caller drops the list's reference). */
static void unlist_locked(struct terms *t, struct term *tm)
{
	for (struct term **pp = &t->list; *pp; pp = &(*pp)->next) {
		if (*pp == tm) {
			*pp = tm->next;
			tm->next = NULL;
			tm->listed = false;
			return;
		}
	}
}

/* Under t->lock: the oldest ended terminal beyond the keep limit, unlisted; or NULL. */
static struct term *trim_locked(struct terms *t)
{
	struct term *oldest = NULL;
	size_t n = 0;

	for (struct term *tm = t->list; tm; tm = tm->next) {
		if (!tm->ended || tm->pty_node)
			continue;
		n++;
		if (!oldest || tm->ended_ms < oldest->ended_ms)
			oldest = tm;
	}
	if (n <= TERMS_KEEP_ENDED || !oldest)
		return NULL;
	unlist_locked(t, oldest);
	return oldest;
}

/* Adds @tm (with its list reference) unless the name is taken: then -EEXIST. */
static int list_add(struct terms *t, struct term *tm)
{
	struct term *old;

	pthread_mutex_lock(&t->lock);
	if (find_locked(t, tm->sb_id, tm->name)) {
		pthread_mutex_unlock(&t->lock);
		return -EEXIST;
	}
	tm->next = t->list;
	t->list = tm;
	tm->listed = true;
	old = trim_locked(t);
	pthread_mutex_unlock(&t->lock);
	if (old)
		term_put(old);
	return 0;
}

/* ---- the toolbox ---- */

static int fail(struct dt_error *err, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct dt_error *err, int e, const char *fmt, ...)
{
	va_list ap;

	err->err = e;
	err->http_status = 0;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -e;
}

#define ATTACH_TRIES 3

/* A server's passing trouble (503, 502, 429...), worth another try. */
static bool retryable(int ret, const struct dt_error *err)
{
	return ret == -EAGAIN || (ret == -EIO && err->http_status >= 500);
}

/* Sleeps @ms; true when the caller was interrupted meanwhile. */
static bool sleep_or_cancel(int ms)
{
	for (int slept = 0; slept < ms; slept += 20) {
		struct timespec ts = {0, 20 * 1000000L};

		if (core_cancelled())
			return true;
		nanosleep(&ts, NULL);
	}
	return core_cancelled();
}

/* Starts a pending terminal on the backend and connects to it. */
static int term_attach(struct terms *t, struct term *tm, struct dt_error *err)
{
	struct files *f = t->fs->files;
	struct dt_pty_params p = {0};
	struct dt_pty_conn *conn = NULL;
	struct dt_kv envs[TERMS_ENV_MAX];
	bool pending, attached, ended;
	int ret = 0;

	pthread_mutex_lock(&tm->attach_lock);
	pthread_mutex_lock(&t->lock);
	attached = tm->conn || tm->ended;
	pending = tm->pending;
	p.id = tm->name;
	p.cols = tm->cols;
	p.rows = tm->rows;
	p.nenvs = tm->nenvs;
	memcpy(envs, tm->envs, sizeof(envs));
	p.envs = envs;
	/*
	 * The shell starts at our connect: output is sent only to clients
	 * attached, so a shell started at the create would print its first
	 * prompt to nobody.
	 */
	p.lazy_start = true;
	pthread_mutex_unlock(&t->lock);
	if (attached)
		goto out;
	/* env values stay owned by @tm: only this thread (attach_lock) replaces them */
	if (pending) {
		/*
		 * A POST is not retried by the client (it may have been done):
		 * after a 5xx, ask again, and a 409 then means the first one was.
		 */
		for (int try = 0; try < ATTACH_TRIES; try++) {
			ret = TB_CALL(f, tm->sb_id, err, tb, dt_pty_create(tb->tb, &p, err));
			if (ret == -EEXIST && try > 0)
				ret = 0;
			if (!retryable(ret, err))
				break;
			if (sleep_or_cancel(100 << try))
				break;
		}
		if (ret < 0)
			goto out;
		pthread_mutex_lock(&t->lock);
		tm->pending = false;
		envs_clear(tm);
		pthread_mutex_unlock(&t->lock);
	}
	/*
	 * The shell starts at the connect: from now on files/ does not trust
	 * what it learnt of this sandbox before (fs-layout.md, files/ Consistency).
	 */
	files_sandbox_activity(f, tm->sb_id, true);
	for (int try = 0; try < ATTACH_TRIES; try++) {
		ret = TB_CALL(
		    f, tm->sb_id, err, tb,
		    dt_pty_connect(t->hub, tb->tb, tm->name, &pty_handler, tm, 0, &conn, err));
		if (!retryable(ret, err) || sleep_or_cancel(100 << try))
			break;
	}
	if (ret < 0) {
		files_sandbox_activity(f, tm->sb_id, false);
		goto out;
	}
	pthread_mutex_lock(&t->lock);
	tm->conn = conn;
	tm->out_paused = false;
	ended = tm->ended; /* it may have ended already, before on_end knew of the activity */
	tm->activity = !ended;
	pthread_mutex_unlock(&t->lock);
	if (ended)
		files_sandbox_activity(f, tm->sb_id, false);
out:
	pthread_mutex_unlock(&tm->attach_lock);
	return ret;
}

/* ---- terminals/ ---- */

int terms_new(struct qfs *fs, const struct terms_ops *ops, struct terms **out, struct dt_error *err)
{
	struct terms *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t)
		return fail(err, ENOMEM, "out of memory");
	t->fs = fs;
	t->ops = *ops;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->reconnected, NULL);
	t->hub = dt_ws_hub_new(backend_client(fs->bk), err);
	if (!t->hub) {
		pthread_mutex_destroy(&t->lock);
		free(t);
		return -(err->err ? err->err : EIO);
	}
	*out = t;
	return 0;
}

void terms_free(struct terms *t)
{
	struct term *tm;

	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->closing = true;
	while (t->nreconnects > 0)
		pthread_cond_wait(&t->reconnected, &t->lock);
	pthread_mutex_unlock(&t->lock);
	for (;;) {
		struct dt_error err = {0};

		pthread_mutex_lock(&t->lock);
		tm = t->list;
		if (tm)
			unlist_locked(t, tm);
		pthread_mutex_unlock(&t->lock);
		if (!tm)
			break;
		/* a pty handle's shell ends with the handle, and the mount ends them all */
		if (tm->pty_node && !tm->ended)
			TB_CALL(t->fs->files, tm->sb_id, &err, tb,
				dt_pty_kill(tb->tb, tm->name, &err));
		/* handles still open keep their reference; the websocket goes now */
		dt_pty_disconnect(tm->conn);
		tm->conn = NULL;
		term_put(tm);
	}
	dt_ws_hub_free(t->hub);
	pthread_cond_destroy(&t->reconnected);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void terms_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static bool names_has(char **names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return true;
	return false;
}

int terms_list(struct terms *t, const char *sb_id, char ***names, size_t *n, struct dt_error *err)
{
	struct dt_pty_list l = {0};
	char **out = NULL;
	size_t count = 0, cap;
	int ret;

	*names = NULL;
	*n = 0;
	ret = TB_CALL(t->fs->files, sb_id, err, tb, dt_pty_list(tb->tb, &l, err));
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&t->lock);
	cap = l.count;
	for (struct term *tm = t->list; tm; tm = tm->next)
		cap++;
	out = calloc(cap ? cap : 1, sizeof(*out));
	for (size_t i = 0; out && i < l.count; i++) {
		if (!name_is_file_name(l.items[i].id) || names_has(out, count, l.items[i].id))
			continue;
		if (!(out[count] = strdup(l.items[i].id)))
			break;
		count++;
	}
	for (struct term *tm = t->list; out && tm; tm = tm->next) {
		if (strcmp(tm->sb_id, sb_id) || names_has(out, count, tm->name))
			continue;
		if (!(out[count] = strdup(tm->name)))
			break;
		count++;
	}
	pthread_mutex_unlock(&t->lock);
	dt_pty_list_clear(&l);
	if (!out)
		return fail(err, ENOMEM, "out of memory");
	*names = out;
	*n = count;
	return 0;
}

int terms_exists(struct terms *t, const char *sb_id, const char *name, struct dt_error *err)
{
	struct dt_pty_info info = {0};
	bool local;
	int ret;

	pthread_mutex_lock(&t->lock);
	local = find_locked(t, sb_id, name) != NULL;
	pthread_mutex_unlock(&t->lock);
	if (local)
		return 0;
	if (!name_is_file_name(name))
		return -ENOENT;
	ret = TB_CALL(t->fs->files, sb_id, err, tb, dt_pty_get(tb->tb, name, &info, err));
	dt_pty_info_clear(&info);
	return ret;
}

int terms_mkdir(struct terms *t, const char *sb_id, const char *sb_name, const char *name,
		struct dt_error *err)
{
	struct term *tm;
	int ret;

	if (!terms_valid_name(name))
		return fail(err, EINVAL,
			    "a terminal name is 1-127 of [A-Za-z0-9._-], starting with a letter "
			    "or digit");
	ret = terms_exists(t, sb_id, name, err);
	if (ret == 0)
		return fail(err, EEXIST, "terminal %s exists", name);
	if (ret != -ENOENT)
		return ret;
	tm = term_new(t, sb_id, sb_name, name);
	if (!tm)
		return fail(err, ENOMEM, "out of memory");
	tm->pending = true;
	if (list_add(t, tm) < 0) {
		term_put(tm);
		return fail(err, EEXIST, "terminal %s exists", name);
	}
	return 0;
}

int terms_rmdir(struct terms *t, const char *sb_id, const char *name, struct dt_error *err)
{
	struct term *tm;
	bool remote;
	int ret = 0;

	pthread_mutex_lock(&t->lock);
	tm = find_locked(t, sb_id, name);
	if (tm)
		unlist_locked(t, tm);
	remote = !tm || (!tm->pending && !tm->ended);
	pthread_mutex_unlock(&t->lock);
	if (remote)
		ret = TB_CALL(t->fs->files, sb_id, err, tb, dt_pty_kill(tb->tb, name, err));
	if (tm) {
		/* a shell that was not ours to wait for: its readers get EOF at once */
		struct wakeups wk;
		bool had_activity;

		pthread_mutex_lock(&t->lock);
		if (!tm->ended) {
			tm->ended = true;
			tm->end.exited = true;
			tm->end.exit_code = 137;
			copy_str(tm->end.exit_reason, sizeof(tm->end.exit_reason), "SIGKILL");
		}
		had_activity = activity_end_locked(tm);
		collect(tm, &wk);
		pthread_mutex_unlock(&t->lock);
		if (had_activity)
			activity_end(tm);
		deliver(t, &wk);
		term_put(tm);
		if (ret == -ENOENT)
			ret = 0; /* it had ended already */
	}
	return ret;
}

/* ---- handles ---- */

/*
 * A terminal learnt from the backend (for a size or env handle, or an
 * attach that failed) and never attached leaves the list with its last
 * handle: the backend's listing speaks for it, and it may end elsewhere.
 */
static void unlist_if_idle(struct terms *t, struct term *tm)
{
	bool drop = false;

	pthread_mutex_lock(&t->lock);
	if (tm->listed && !tm->handles && !tm->pty_node && !tm->pending && !tm->conn &&
	    !tm->ended && !tm->reconnecting) {
		unlist_locked(t, tm);
		drop = true;
	}
	pthread_mutex_unlock(&t->lock);
	if (drop)
		term_put(tm); /* the list's */
}

enum terms_node terms_handle_node(const struct terms_handle *h)
{
	return h->node;
}

const char *terms_handle_name(const struct terms_handle *h)
{
	return h->term ? h->term->name : "";
}

/* The terminal @name known here, or learnt from the backend (a reference for the caller). */
static int term_get(struct terms *t, const char *sb_id, const char *sb_name, const char *name,
		    struct term **out, struct dt_error *err)
{
	struct dt_pty_info info = {0};
	struct term *tm;
	int ret;

	for (int round = 0; round < 2; round++) {
		pthread_mutex_lock(&t->lock);
		tm = find_locked(t, sb_id, name);
		if (tm)
			tm->refs++;
		pthread_mutex_unlock(&t->lock);
		if (tm) {
			*out = tm;
			return 0;
		}
		if (round)
			break;
		ret = TB_CALL(t->fs->files, sb_id, err, tb, dt_pty_get(tb->tb, name, &info, err));
		if (ret < 0)
			return ret;
		tm = term_new(t, sb_id, sb_name, name);
		if (!tm) {
			dt_pty_info_clear(&info);
			return fail(err, ENOMEM, "out of memory");
		}
		if (info.cols > 0 && info.rows > 0) {
			tm->cols = info.cols;
			tm->rows = info.rows;
		}
		dt_pty_info_clear(&info);
		if (list_add(t, tm) < 0)
			term_put(tm); /* another thread added it meanwhile: use theirs */
	}
	return fail(err, ENOENT, "terminal %s is gone", name);
}

/* A new terminal for a pty handle: "pty-TID", "pty-TID-2", ... */
static int pty_new(struct terms *t, const char *sb_id, const char *sb_name, uint32_t tid,
		   struct term **out, struct dt_error *err)
{
	struct term *tm;
	char name[TERMS_NAME_MAX];
	bool created;
	int ret = -EEXIST;

	for (int n = 1; n <= 16 && ret == -EEXIST; n++) {
		if (n == 1)
			snprintf(name, sizeof(name), "pty-%" PRIu32, tid);
		else
			snprintf(name, sizeof(name), "pty-%" PRIu32 "-%d", tid, n);
		tm = term_new(t, sb_id, sb_name, name);
		if (!tm)
			return fail(err, ENOMEM, "out of memory");
		tm->pty_node = true;
		tm->pending = true;
		if (list_add(t, tm) < 0) {
			term_put(tm);
			continue;
		}
		ret = term_attach(t, tm, err);
		if (ret == 0) {
			pthread_mutex_lock(&t->lock);
			tm->refs++;
			pthread_mutex_unlock(&t->lock);
			*out = tm;
			return 0;
		}
		pthread_mutex_lock(&t->lock);
		unlist_locked(t, tm);
		created = !tm->pending;
		pthread_mutex_unlock(&t->lock);
		if (created) {
			/* made but not connected (interrupted, no answer): no shell may stay behind
			 */
			struct dt_error kill_err = {0};

			core_set_cancel(NULL, NULL); /* the caller's call ends here anyway */
			TB_CALL(t->fs->files, sb_id, &kill_err, tb,
				dt_pty_kill(tb->tb, tm->name, &kill_err));
		}
		term_put(tm);
	}
	return ret;
}

int terms_open(struct terms *t, const char *sb_id, const char *sb_name, const char *name,
	       enum terms_node node, int flags, uint32_t tid, struct terms_handle **out,
	       struct dt_error *err)
{
	struct terms_handle *h;
	struct term *tm = NULL;
	int ret = 0;

	*out = NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return fail(err, ENOMEM, "out of memory");
	h->t = t;
	h->node = node;
	h->flags = flags;
	if (node == TN_PTY) {
		/* a read-only open must neither start a terminal nor block: cat, grep, file
		 * managers */
		if ((flags & O_ACCMODE) != O_RDONLY)
			ret = pty_new(t, sb_id, sb_name, tid, &tm, err);
	} else {
		ret = term_get(t, sb_id, sb_name, name, &tm, err);
		if (ret == 0 && (node == TN_DATA || node == TN_EXIT))
			ret = term_attach(t, tm, err);
	}
	if (ret < 0) {
		if (tm) {
			if (node != TN_PTY)
				unlist_if_idle(t, tm);
			term_put(tm);
		}
		free(h);
		return ret;
	}
	h->term = tm;
	if (tm) {
		pthread_mutex_lock(&t->lock);
		h->next = tm->handles;
		tm->handles = h;
		pthread_mutex_unlock(&t->lock);
	}
	*out = h;
	return 0;
}

void terms_release(struct terms_handle *h)
{
	struct term *tm = h->term;
	struct terms *t;
	void *ph = NULL;
	bool kill_it = false;

	if (!tm) {
		buf_free(&h->value);
		free(h);
		return;
	}
	t = tm->t;
	pthread_mutex_lock(&t->lock);
	for (struct terms_handle **pp = &tm->handles; *pp; pp = &(*pp)->next) {
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	}
	ph = h->ph;
	h->ph = NULL;
	if (h->node == TN_PTY && tm->listed) {
		unlist_locked(t, tm);
		kill_it = true;
	}
	pthread_mutex_unlock(&t->lock);
	if (ph)
		t->ops.poll_free(t->ops.arg, ph);
	if (kill_it) {
		struct dt_error err = {0};
		char path[512];
		bool ended;
		int ret = 0;

		pthread_mutex_lock(&t->lock);
		ended = tm->ended;
		pthread_mutex_unlock(&t->lock);
		if (!ended)
			ret = TB_CALL(t->fs->files, tm->sb_id, &err, tb,
				      dt_pty_kill(tb->tb, tm->name, &err));
		term_path(tm, path, sizeof(path));
		if (ret < 0 && ret != -ENOENT)
			log_warn("%s: the shell could not be killed at close: %s", path,
				 err.message);
		else if (!ended)
			log_info("%s: closed; the shell was killed", path);
		term_put(tm); /* the list's */
	}
	unlist_if_idle(t, tm);
	term_put(tm); /* the handle's */
	buf_free(&h->value);
	free(h);
}

/* ---- reading and writing ---- */

/* Under t->lock. */
static void wait_on(struct term *tm, struct terms_waiter *w)
{
	if (!w || w->queued)
		return;
	w->queued = true;
	w->next = tm->waiters;
	tm->waiters = w;
}

bool terms_cancel(struct terms_handle *h, struct terms_waiter *w)
{
	struct term *tm = h->term;
	bool was = false;

	if (!tm)
		return false;
	pthread_mutex_lock(&tm->t->lock);
	for (struct terms_waiter **pp = &tm->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			w->next = NULL;
			w->queued = false;
			was = true;
			break;
		}
	}
	pthread_mutex_unlock(&tm->t->lock);
	return was;
}

static int read_value(struct terms_handle *h, char *buf, size_t size, int64_t off, size_t *got)
{
	size_t n;

	if (off < 0 || (size_t)off >= h->value.len) {
		*got = 0;
		return 0;
	}
	n = h->value.len - (size_t)off;
	if (n > size)
		n = size;
	memcpy(buf, h->value.data + off, n);
	*got = n;
	return 0;
}

/* The value of size, exit or env as a read shows it now. */
static int make_value(struct terms_handle *h, struct terms_waiter *w, struct dt_error *err)
{
	struct term *tm = h->term;
	struct terms *t = tm->t;
	struct dt_pty_info info = {0};
	bool ask;
	int ret = 0;

	buf_reset(&h->value);
	switch (h->node) {
	case TN_EXIT:
		pthread_mutex_lock(&t->lock);
		if (!tm->ended) {
			wait_on(tm, w);
			pthread_mutex_unlock(&t->lock);
			return -EAGAIN;
		}
		if (tm->end.exited)
			ret = buf_printf(&h->value, "%d\n", tm->end.exit_code) ? -ENOMEM : 0;
		else
			ret = fail(err, EIO,
				   "the connection to the terminal was lost before its exit");
		pthread_mutex_unlock(&t->lock);
		return ret;
	case TN_SIZE:
		pthread_mutex_lock(&t->lock);
		ask = !tm->pending && !tm->ended;
		pthread_mutex_unlock(&t->lock);
		/* another client may have resized it: ask the backend while it runs */
		if (ask &&
		    TB_CALL(t->fs->files, tm->sb_id, err, tb,
			    dt_pty_get(tb->tb, tm->name, &info, err)) == 0 &&
		    info.cols > 0 && info.rows > 0) {
			pthread_mutex_lock(&t->lock);
			tm->cols = info.cols;
			tm->rows = info.rows;
			pthread_mutex_unlock(&t->lock);
		}
		dt_pty_info_clear(&info);
		pthread_mutex_lock(&t->lock);
		ret = buf_printf(&h->value, "%d %d\n", tm->cols, tm->rows) ? -ENOMEM : 0;
		pthread_mutex_unlock(&t->lock);
		return ret;
	case TN_ENV:
		/* the names only: values may be secrets (an API key) */
		pthread_mutex_lock(&t->lock);
		for (size_t i = 0; i < tm->nenvs && ret == 0; i++)
			ret = buf_printf(&h->value, "%s\n", tm->envs[i].key) ? -ENOMEM : 0;
		pthread_mutex_unlock(&t->lock);
		return ret;
	default:
		return -EINVAL;
	}
}

int terms_read(struct terms_handle *h, char *buf, size_t size, int64_t off, size_t *got,
	       struct terms_waiter *w, struct dt_error *err)
{
	struct term *tm = h->term;
	struct terms *t;
	int ret;

	*got = 0;
	if (!tm)
		return 0; /* a read-only pty handle: EOF */
	t = tm->t;
	if (h->node != TN_DATA && h->node != TN_PTY) {
		if (off == 0 || !h->value_made) {
			ret = make_value(h, w, err);
			if (ret < 0)
				return ret == -ENOMEM ? fail(err, ENOMEM, "out of memory") : ret;
			h->value_made = true;
		}
		return read_value(h, buf, size, off, got);
	}
	pthread_mutex_lock(&t->lock);
	*got = ring_take(tm, buf, size);
	if (*got) {
		tm->pause_spent = false;
		if (tm->out_paused && tm->ring_len <= TERMS_RESUME_AT)
			output_resume(tm);
	}
	if (*got || (tm->ended && tm->end.exited)) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	if (tm->ended) {
		pthread_mutex_unlock(&t->lock);
		return fail(err, EIO, "the connection to the terminal was lost (closed %d%s%s)",
			    tm->end.close_code, tm->end.message[0] ? ": " : "", tm->end.message);
	}
	wait_on(tm, w);
	pthread_mutex_unlock(&t->lock);
	return -EAGAIN;
}

/* "cols rows" (or "colsxrows"), each 1..1000. */
static int parse_size(const char *buf, size_t len, int *cols, int *rows)
{
	char text[64], *end;
	long c, r;

	if (len >= sizeof(text))
		return -EINVAL;
	memcpy(text, buf, len);
	text[len] = '\0';
	errno = 0;
	c = strtol(text, &end, 10);
	if (end == text || (*end != ' ' && *end != 'x' && *end != '\t'))
		return -EINVAL;
	while (*end == ' ' || *end == 'x' || *end == '\t')
		end++;
	r = strtol(end, &end, 10);
	while (*end == ' ' || *end == '\n' || *end == '\t')
		end++;
	if (*end || errno || c < 1 || r < 1 || c > DT_PTY_MAX_DIM || r > DT_PTY_MAX_DIM)
		return -EINVAL;
	*cols = (int)c;
	*rows = (int)r;
	return 0;
}

static bool env_name_ok(const char *s, size_t n)
{
	if (!n || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* "K=V" lines: set K (an empty V sets it empty); "K" alone unsets. Under t->lock. */
static int set_envs_locked(struct term *tm, const char *buf, size_t len, struct dt_error *err)
{
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
		const char *eq = memchr(p, '=', (size_t)(eol - p));
		size_t klen = (size_t)((eq ? eq : eol) - p), i;

		if (eol == p) {
			p = eol + 1;
			continue;
		}
		if (!env_name_ok(p, klen))
			return fail(err, EINVAL, "not an environment variable name: %.*s",
				    (int)(klen > 64 ? 64 : klen), p);
		for (i = 0; i < tm->nenvs; i++)
			if (strlen(tm->envs[i].key) == klen && !memcmp(tm->envs[i].key, p, klen))
				break;
		if (i < tm->nenvs) {
			explicit_bzero(tm->envs[i].value, strlen(tm->envs[i].value));
			free(tm->envs[i].value);
			free(tm->envs[i].key);
			tm->envs[i] = tm->envs[--tm->nenvs];
		}
		if (eq) {
			if (tm->nenvs >= TERMS_ENV_MAX)
				return fail(err, ENOSPC, "at most %d variables", TERMS_ENV_MAX);
			tm->envs[tm->nenvs].key = strndup(p, klen);
			tm->envs[tm->nenvs].value = strndup(eq + 1, (size_t)(eol - eq - 1));
			if (!tm->envs[tm->nenvs].key || !tm->envs[tm->nenvs].value) {
				free(tm->envs[tm->nenvs].key);
				free(tm->envs[tm->nenvs].value);
				return fail(err, ENOMEM, "out of memory");
			}
			tm->nenvs++;
		}
		p = eol + 1;
	}
	return 0;
}

int terms_write(struct terms_handle *h, const char *buf, size_t len, struct terms_waiter *w,
		struct dt_error *err)
{
	struct term *tm = h->term;
	struct terms *t;
	int cols, rows, ret;
	bool pending;

	if (!tm)
		return fail(err, EBADF, "not open for writing");
	t = tm->t;
	switch (h->node) {
	case TN_DATA:
	case TN_PTY:
		pthread_mutex_lock(&t->lock);
		if (tm->reconnecting && !tm->ended) {
			wait_on(tm, w);
			pthread_mutex_unlock(&t->lock);
			return -EAGAIN;
		}
		if (tm->ended || !tm->conn) {
			pthread_mutex_unlock(&t->lock);
			return fail(err, EIO, "the shell has ended");
		}
		if (dt_pty_queued(tm->conn) > TERMS_INPUT_MAX) {
			wait_on(tm, w);
			pthread_mutex_unlock(&t->lock);
			return -EAGAIN;
		}
		ret = dt_pty_send(tm->conn, buf, len);
		pthread_mutex_unlock(&t->lock);
		if (ret == -EPIPE)
			return fail(err, EIO, "the shell has ended");
		return ret < 0 ? fail(err, -ret, "cannot send: %s", strerror(-ret)) : 0;
	case TN_SIZE:
		if (parse_size(buf, len, &cols, &rows))
			return fail(err, EINVAL, "write \"COLS ROWS\", each 1..%d", DT_PTY_MAX_DIM);
		pthread_mutex_lock(&t->lock);
		pending = tm->pending;
		if (pending) {
			tm->cols = cols;
			tm->rows = rows;
		}
		pthread_mutex_unlock(&t->lock);
		if (pending)
			return 0;
		/* a resize may be repeated: a passing 5xx gets another try */
		for (int try = 0; try < ATTACH_TRIES; try++) {
			ret = TB_CALL(t->fs->files, tm->sb_id, err, tb,
				      dt_pty_resize(tb->tb, tm->name, cols, rows, NULL, err));
			if (!retryable(ret, err) || sleep_or_cancel(100 << try))
				break;
		}
		if (ret == -ESRCH)
			return fail(err, EIO, "the shell has ended");
		if (ret == 0) {
			pthread_mutex_lock(&t->lock);
			tm->cols = cols;
			tm->rows = rows;
			pthread_mutex_unlock(&t->lock);
		}
		return ret;
	case TN_ENV:
		pthread_mutex_lock(&tm->attach_lock);
		pthread_mutex_lock(&t->lock);
		if (!tm->pending)
			ret = fail(err, EBUSY,
				   "the shell has started: its environment was fixed then (set env "
				   "after mkdir, before the first open of data)");
		else
			ret = set_envs_locked(tm, buf, len, err);
		pthread_mutex_unlock(&t->lock);
		pthread_mutex_unlock(&tm->attach_lock);
		return ret;
	default:
		return fail(err, EACCES, "read-only");
	}
}

unsigned terms_poll(struct terms_handle *h, void *ph)
{
	struct term *tm = h->term;
	struct terms *t;
	unsigned ev = 0;
	void *old = NULL;

	if (!tm) {
		if (ph)
			h->t->ops.poll_free(h->t->ops.arg, ph);
		return POLLIN | POLLRDNORM | POLLHUP;
	}
	t = tm->t;
	pthread_mutex_lock(&t->lock);
	switch (h->node) {
	case TN_DATA:
	case TN_PTY:
		if (tm->ring_len || tm->ended)
			ev |= POLLIN | POLLRDNORM;
		if (tm->ended && !tm->ring_len)
			ev |= POLLHUP;
		if (!tm->ended && tm->conn && dt_pty_queued(tm->conn) <= TERMS_INPUT_MAX)
			ev |= POLLOUT | POLLWRNORM;
		break;
	case TN_EXIT:
		if (tm->ended)
			ev |= POLLIN | POLLRDNORM;
		break;
	default:
		ev = POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM;
		break;
	}
	if (ph) {
		old = h->ph;
		h->ph = ph;
	}
	pthread_mutex_unlock(&t->lock);
	if (old)
		t->ops.poll_free(t->ops.arg, old);
	return ev;
}
