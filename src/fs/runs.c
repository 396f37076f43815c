/*
 * runs/ (runs.h): sessions as directories, commands run by writes, their
 * output and exit code followed by a thread per watched command.
 *
 * Inodes: RUNS_TAG | object index << 4 | node. An object is a sandbox's
 * runs/ directory, a session or a command, named by (sandbox id, session,
 * command id); numbers are never reused while the mount lives.
 *
 * A follower polls GET .../command/{cid} and then the log snapshot past
 * what it already has (every 25 ms while output comes, backing off to
 * 250 ms, and slower for big logs, which the snapshot sends whole), writes
 * the new bytes to an unlinked spool file and wakes the waiting readers.
 * The status is read before the log: once it shows an exit code, the log
 * read after it is complete.
 */
#include "runs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "buf.h"
#include "cache.h"
#include "core.h"
#include "dt_process.h"
#include "log.h"
#include "util.h"

#define NODE_BITS 4
#define NODE_MASK ((1ULL << NODE_BITS) - 1)
#define INDEX_MAX ((1ULL << (61 - NODE_BITS)) - 1)

enum { RN_DIR = 0, RN_COMMAND, RN_CODE, RN_OUTPUT, RN_EXIT, RN_STDIN, RN_COMMANDS };
enum robj_kind { RO_ROOT = 1, RO_SESSION, RO_CMD };

#define SESSION_NAME_MAX 128
#define CMD_ID_MAX 128
#define HASH_BUCKETS 4096
/* Commands of a session whose output stays spooled (the latest ones used). */
#define RING 8
/* A listing of sessions or of a session's commands is trusted this long. */
#define LIST_TTL_MS 1000
/* Follower cadence. */
#define POLL_FIRST_MS 25
#define POLL_MAX_MS 250
/* ...and while nobody has the command's output or exit open. */
#define POLL_IDLE_MS 2000
/* A program written to code is kept in memory until close: at most this much. */
#define CODE_MAX (16u << 20)
/* Transport failures in a row before a follower gives up (quaverd gone). */
#define TRANSPORT_TRIES 2

struct robj {
	enum robj_kind kind;
	uint64_t index;
	char sb_id[OBJ_ID_MAX];
	char session[SESSION_NAME_MAX + 1];
	char cmd[CMD_ID_MAX];
	struct robj *hnext;
};

struct rtb {
	struct dt_toolbox *tb;
	struct dt_client *client;
	int refs;
	bool stale;
};

struct rcmd;

struct rsess {
	struct rsb *sb;
	char name[SESSION_NAME_MAX + 1];
	struct rcmd *latest; /* the last command run here (a reference) */
	struct rcmd *ring[RING];
	size_t ring_next;
	struct rsess *next;
};

struct rsb {
	char id[OBJ_ID_MAX];
	struct rtb *tb;
	struct rsess *sessions;
	struct rsb *next;
};

struct rcmd {
	struct runs *r;
	struct rsb *sb;
	char session[SESSION_NAME_MAX + 1];
	char id[CMD_ID_MAX];
	int refs;    /* users plus the follower's */
	int users;   /* handles, the ring, latest: when none is left the follower stops */
	int handles; /* open output and exit nodes: without any, the follower polls slowly */
	bool kicked; /* a reader came: poll now */
	pthread_cond_t kick;
	int spool_fd;
	int64_t size; /* bytes spooled */
	bool done;    /* exited (exit_code) or failed (fail) */
	int exit_code;
	int fail; /* an errno once following failed */
	char fail_msg[512];
	bool stop;
	bool following;
};

struct runs {
	struct qfs *fs;
	char spool_dir[PATH_MAX];
	pthread_mutex_t lock;
	pthread_cond_t followers_done;
	int followers;
	bool closing;
	runs_wake_fn wake;
	void *wake_arg;
	struct robj **objs; /* by index - 1 */
	size_t nobjs, cap;
	struct robj *hash[HASH_BUCKETS];
	struct rsb *sandboxes;
};

struct runs_handle {
	uint64_t ino;
	int node;
	struct robj obj; /* a copy: objects never change */
	struct rcmd *cmd; /* output, exit: the command followed */
	struct buf code;  /* code: the program written so far */
	char exit_text[16];
};

static int fail(struct dt_error *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct dt_error *err, int errnum, const char *fmt, ...)
{
	va_list ap;

	memset(err, 0, sizeof(*err));
	err->err = errnum;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -errnum;
}

/* ---- objects and inode numbers ------------------------------------------ */

static uint64_t key_hash(enum robj_kind kind, const char *a, const char *b, const char *c)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)kind;
	const char *parts[3] = {a, b, c};

	for (int i = 0; i < 3; i++) {
		for (const char *p = parts[i]; p && *p; p++)
			h = (h ^ (unsigned char)*p) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;
	}
	return h;
}

/* The object (made when new); NULL on ENOMEM. Called with the lock held. */
static struct robj *obj_get(struct runs *r, enum robj_kind kind, const char *sb_id,
			    const char *session, const char *cmd)
{
	uint64_t h = key_hash(kind, sb_id, session, cmd) % HASH_BUCKETS;
	struct robj *o;

	session = session ? session : "";
	cmd = cmd ? cmd : "";
	for (o = r->hash[h]; o; o = o->hnext)
		if (o->kind == kind && !strcmp(o->sb_id, sb_id) && !strcmp(o->session, session) &&
		    !strcmp(o->cmd, cmd))
			return o;
	if (r->nobjs >= INDEX_MAX)
		return NULL;
	if (r->nobjs == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct robj **grown = realloc(r->objs, cap * sizeof(*grown));

		if (!grown)
			return NULL;
		r->objs = grown;
		r->cap = cap;
	}
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->kind = kind;
	copy_str(o->sb_id, sizeof(o->sb_id), sb_id);
	copy_str(o->session, sizeof(o->session), session);
	copy_str(o->cmd, sizeof(o->cmd), cmd);
	r->objs[r->nobjs++] = o;
	o->index = r->nobjs;
	o->hnext = r->hash[h];
	r->hash[h] = o;
	return o;
}

static uint64_t ino_of(const struct robj *o, int node)
{
	return RUNS_TAG | o->index << NODE_BITS | (uint64_t)node;
}

/* The object of @ino, copied; false when unknown. */
static bool obj_of(struct runs *r, uint64_t ino, struct robj *out, int *node)
{
	uint64_t index = (ino & ~(7ULL << 61)) >> NODE_BITS;
	bool ok = false;

	pthread_mutex_lock(&r->lock);
	if (index >= 1 && index <= r->nobjs) {
		*out = *r->objs[index - 1];
		*node = (int)(ino & NODE_MASK);
		ok = true;
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

static int obj_ino(struct runs *r, enum robj_kind kind, const char *sb_id, const char *session,
		   const char *cmd, int node, uint64_t *ino, struct dt_error *err)
{
	struct robj *o;

	pthread_mutex_lock(&r->lock);
	o = obj_get(r, kind, sb_id, session, cmd);
	if (o)
		*ino = ino_of(o, node);
	pthread_mutex_unlock(&r->lock);
	return o ? 0 : fail(err, ENOMEM, "out of memory");
}

/* ---- what the nodes look like ------------------------------------------- */

static const char *const session_names[] = {
    [RN_COMMAND] = "command", [RN_CODE] = "code",   [RN_OUTPUT] = "output",
    [RN_EXIT] = "exit",	      [RN_STDIN] = "stdin", [RN_COMMANDS] = "commands",
};

static bool node_valid(enum robj_kind kind, int node)
{
	switch (kind) {
	case RO_ROOT:
		return node == RN_DIR;
	case RO_SESSION:
		return node >= RN_DIR && node <= RN_COMMANDS;
	case RO_CMD:
		return node == RN_DIR || node == RN_COMMAND || node == RN_OUTPUT || node == RN_EXIT;
	}
	return false;
}

static mode_t node_mode(enum robj_kind kind, int node)
{
	if (node == RN_DIR || node == RN_COMMANDS)
		return S_IFDIR | 0755;
	if (kind == RO_CMD)
		return S_IFREG | 0444;
	switch (node) {
	case RN_COMMAND:
		return S_IFREG | 0644;
	case RN_CODE:
	case RN_STDIN:
		return S_IFREG | 0200;
	default:
		return S_IFREG | 0444;
	}
}

static void fill_attr(struct runs *r, uint64_t ino, mode_t mode, struct stat *st)
{
	int64_t ms = r->fs->mount_wall_ms;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = mode;
	st->st_nlink = S_ISDIR(mode) ? 2 : 1;
	st->st_uid = r->fs->uid;
	st->st_gid = r->fs->gid;
	st->st_blksize = 4096;
	st->st_mtim.tv_sec = ms / 1000;
	st->st_mtim.tv_nsec = (ms % 1000) * 1000000;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

static void entry_of(struct runs *r, const struct robj *o, int node, struct runs_entry *e)
{
	e->ino = ino_of(o, node);
	fill_attr(r, e->ino, node_mode(o->kind, node), &e->attr);
}

static const char *sandbox_name(struct runs *r, const char *sb_id, char *out, size_t size)
{
	struct cobj *o = cache_peek(r->fs->cache, OBJ_SANDBOX, sb_id);

	copy_str(out, size, o ? cobj_name(o) : sb_id);
	cobj_put(o);
	return out;
}

void runs_node_path(struct runs *r, uint64_t ino, const char *name, char *out, size_t size)
{
	char sb_name[NODE_NAME_MAX];
	struct robj o;
	int node;
	int n;

	if (!obj_of(r, ino, &o, &node)) {
		snprintf(out, size, "runs/%s", name ? name : "");
		return;
	}
	sandbox_name(r, o.sb_id, sb_name, sizeof(sb_name));
	n = snprintf(out, size, "sandboxes/%s/runs", sb_name);
	if (o.kind != RO_ROOT && n >= 0 && (size_t)n < size)
		n += snprintf(out + n, size - (size_t)n, "/%s", o.session);
	if (o.kind == RO_CMD && n >= 0 && (size_t)n < size)
		n += snprintf(out + n, size - (size_t)n, "/commands/%s", o.cmd);
	if (node != RN_DIR && n >= 0 && (size_t)n < size)
		n += snprintf(out + n, size - (size_t)n, "/%s", session_names[node]);
	if (name && n >= 0 && (size_t)n < size)
		snprintf(out + n, size - (size_t)n, "/%s", name);
}

bool runs_sandbox_of(struct runs *r, uint64_t ino, char *id, size_t size)
{
	struct robj o;
	int node;

	if (!obj_of(r, ino, &o, &node))
		return false;
	copy_str(id, size, o.sb_id);
	return true;
}

/* ---- sandboxes and their toolbox ---------------------------------------- */

static struct rsb *sb_get(struct runs *r, const char *id)
{
	struct rsb *sb;

	pthread_mutex_lock(&r->lock);
	for (sb = r->sandboxes; sb; sb = sb->next)
		if (!strcmp(sb->id, id))
			break;
	if (!sb && (sb = calloc(1, sizeof(*sb)))) {
		copy_str(sb->id, sizeof(sb->id), id);
		sb->next = r->sandboxes;
		r->sandboxes = sb;
	}
	pthread_mutex_unlock(&r->lock);
	return sb;
}

static void rtb_put(struct runs *r, struct rtb *t)
{
	bool last;

	if (!t)
		return;
	pthread_mutex_lock(&r->lock);
	last = --t->refs == 0;
	pthread_mutex_unlock(&r->lock);
	if (last) {
		dt_toolbox_free(t->tb);
		free(t);
	}
}

static int not_started(struct dt_error *err, const struct cobj *o)
{
	const char *state = cobj_state(o), *name = cobj_name(o);

	if (!strcmp(state, "stopped") || !strcmp(state, "archived"))
		return fail(err, EHOSTDOWN, "sandbox %s is %s; echo start > sandboxes/%s/state",
			    name, state, name);
	return fail(err, EHOSTDOWN, "sandbox %s is %s, not started", name, state);
}

/* The sandbox's toolbox, once it is started; *@lang (may be NULL): its code language. */
static int sb_toolbox(struct runs *r, struct rsb *sb, struct rtb **out, char *lang,
		      size_t lang_size, struct dt_error *err)
{
	struct dt_client *client = backend_client(r->fs->bk);
	struct cobj *o = NULL;
	struct rtb *t = NULL, *old = NULL;
	int ret;

	*out = NULL;
	ret = cache_refresh(r->fs->cache, OBJ_SANDBOX, sb->id, false, &o, err);
	if (ret == -ENOENT)
		return fail(err, ENOENT, "the sandbox is gone");
	if (ret < 0)
		return ret;
	if (strcmp(cobj_state(o), "started") != 0) {
		ret = not_started(err, o);
		cobj_put(o);
		return ret;
	}
	if (lang) {
		copy_str(lang, lang_size, "python");
		for (size_t i = 0; i < o->sb.nlabels; i++)
			if (!strcmp(o->sb.labels[i].key, "code-toolbox-language") &&
			    o->sb.labels[i].value[0])
				copy_str(lang, lang_size, o->sb.labels[i].value);
	}
	pthread_mutex_lock(&r->lock);
	if (sb->tb && sb->tb->client == client && !sb->tb->stale) {
		t = sb->tb;
		t->refs++;
	}
	pthread_mutex_unlock(&r->lock);
	if (t) {
		cobj_put(o);
		*out = t;
		return 0;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		cobj_put(o);
		return fail(err, ENOMEM, "out of memory");
	}
	t->tb = dt_toolbox_for_sandbox(client, &o->sb, err);
	cobj_put(o);
	if (!t->tb) {
		free(t);
		return -(err->err ? err->err : EIO);
	}
	t->client = client;
	t->refs = 2; /* the sandbox's and the caller's */
	pthread_mutex_lock(&r->lock);
	old = sb->tb;
	sb->tb = t;
	pthread_mutex_unlock(&r->lock);
	rtb_put(r, old);
	*out = t;
	return 0;
}

/*
 * After a toolbox call: true when quaverd moved (call again, once). A 409 or
 * 5xx from a sandbox that stopped meanwhile becomes EHOSTDOWN with the reason.
 */
static bool call_done(struct runs *r, struct rsb *sb, struct rtb *t, int *ret,
		      struct dt_error *err)
{
	struct dt_error again = {0};
	struct cobj *o = NULL;

	if (backend_after(r->fs->bk, t->client, *ret, err)) {
		pthread_mutex_lock(&r->lock);
		t->stale = true;
		pthread_mutex_unlock(&r->lock);
		cache_mark_stale(r->fs->cache, OBJ_SANDBOX, sb->id);
		return true;
	}
	if (*ret >= 0 || (err->http_status != 409 && err->http_status < 500))
		return false;
	cache_mark_stale(r->fs->cache, OBJ_SANDBOX, sb->id);
	if (cache_refresh(r->fs->cache, OBJ_SANDBOX, sb->id, false, &o, &again) == 0 &&
	    strcmp(cobj_state(o), "started") != 0)
		*ret = not_started(err, o);
	cobj_put(o);
	return false;
}

/* Runs @expr with `t` the sandbox's toolbox; once more when quaverd moved. */
#define RTB_CALL(r, sb, lang, lang_size, errp, t, expr)                                            \
	({                                                                                         \
		int rc_;                                                                           \
		for (int try_ = 0;; try_++) {                                                      \
			struct rtb *t = NULL;                                                      \
			bool again_;                                                               \
			rc_ = sb_toolbox((r), (sb), &t, (lang), (lang_size), (errp));               \
			if (rc_ < 0)                                                               \
				break;                                                             \
			rc_ = (expr);                                                              \
			again_ = call_done((r), (sb), t, &rc_, (errp));                            \
			rtb_put((r), t);                                                           \
			if (!again_ || try_)                                                       \
				break;                                                             \
		}                                                                                  \
		rc_;                                                                               \
	})
#define TB_CALL(r, sb, errp, t, expr) RTB_CALL(r, sb, NULL, 0, errp, t, expr)

/* ---- sessions and commands ---------------------------------------------- */

static struct rsess *sess_find(struct rsb *sb, const char *name)
{
	for (struct rsess *s = sb->sessions; s; s = s->next)
		if (!strcmp(s->name, name))
			return s;
	return NULL;
}

/* The session record (made when new). Called with the lock held; NULL on ENOMEM. */
static struct rsess *sess_get(struct rsb *sb, const char *name)
{
	struct rsess *s = sess_find(sb, name);

	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->sb = sb;
	copy_str(s->name, sizeof(s->name), name);
	s->next = sb->sessions;
	sb->sessions = s;
	return s;
}

/* Drops a reference; the last one closes the spool. Called with the lock held. */
static void cmd_unref_locked(struct rcmd *c)
{
	if (--c->refs > 0)
		return;
	if (c->spool_fd >= 0)
		close(c->spool_fd);
	pthread_cond_destroy(&c->kick);
	free(c);
}

/* A user is gone; with none left the follower stops. Called with the lock held. */
static void cmd_unuse_locked(struct rcmd *c)
{
	if (--c->users == 0) {
		c->stop = true;
		pthread_cond_signal(&c->kick);
	}
	cmd_unref_locked(c);
}

static void cmd_unuse(struct runs *r, struct rcmd *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&r->lock);
	cmd_unuse_locked(c);
	pthread_mutex_unlock(&r->lock);
}

static void wake(struct runs *r, struct rcmd *c)
{
	runs_wake_fn fn;
	void *arg;

	pthread_mutex_lock(&r->lock);
	fn = r->wake;
	arg = r->wake_arg;
	pthread_mutex_unlock(&r->lock);
	if (fn)
		fn(arg, c);
}

static bool follow_cancelled(void *arg)
{
	struct rcmd *c = arg;
	bool stop;

	pthread_mutex_lock(&c->r->lock);
	stop = c->stop || c->r->closing;
	pthread_mutex_unlock(&c->r->lock);
	return stop;
}

struct spool_sink {
	struct rcmd *c;
	int64_t at;	    /* where the next byte goes */
	int64_t announced; /* readers were woken up to here */
	int error;
};

static int spool_data(void *arg, const char *data, size_t len)
{
	struct spool_sink *s = arg;
	struct rcmd *c = s->c;

	while (len) {
		ssize_t n = pwrite(c->spool_fd, data, len, s->at);

		if (n < 0) {
			s->error = errno;
			return -EIO;
		}
		data += n;
		len -= (size_t)n;
		s->at += n;
	}
	pthread_mutex_lock(&c->r->lock);
	c->size = s->at;
	pthread_mutex_unlock(&c->r->lock);
	/* Readers wait for the first bytes at once, then in slices. */
	if (s->announced == 0 || s->at - s->announced >= 64 * 1024) {
		s->announced = s->at;
		wake(c->r, c);
	}
	return 0;
}

static void cmd_finish(struct rcmd *c, bool exited, int code, int errnum,
		       const struct dt_error *err)
{
	struct runs *r = c->r;
	bool changed = false;

	pthread_mutex_lock(&r->lock);
	if (!c->done) {
		changed = true;
		c->done = true;
		if (exited) {
			c->exit_code = code;
		} else {
			c->fail = errnum;
			snprintf(c->fail_msg, sizeof(c->fail_msg), "%s",
				 err && err->message[0] ? err->message : strerror(errnum));
		}
	}
	pthread_mutex_unlock(&r->lock);
	/* Readers get the failure (and the error nodes with it); the log says it once. */
	if (changed && !exited && errnum != EINTR)
		log_info("runs: command %s of session %s: %s", c->id, c->session, c->fail_msg);
	wake(r, c);
}

/* How long to wait before the next poll: soon while output comes, longer for big logs. */
static long next_delay(long delay, bool grew, int64_t size)
{
	long floor_ms = POLL_FIRST_MS + (long)(size / (32 << 20) * 250);

	if (grew)
		return floor_ms > 1000 ? 1000 : floor_ms;
	delay = delay + delay / 2;
	if (delay < floor_ms)
		delay = floor_ms;
	return delay > POLL_MAX_MS && floor_ms <= POLL_MAX_MS ? POLL_MAX_MS
	       : delay > 1000				       ? 1000
							       : delay;
}

/* Waits @delay ms (POLL_IDLE_MS while no reader is there), less when a reader comes or it stops. */
static void follow_sleep(struct rcmd *c, long delay)
{
	struct runs *r = c->r;
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	pthread_mutex_lock(&r->lock);
	if (c->handles == 0 && delay < POLL_IDLE_MS)
		delay = POLL_IDLE_MS;
	until.tv_sec += delay / 1000;
	until.tv_nsec += (delay % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!c->kicked && !c->stop && !r->closing)
		if (pthread_cond_timedwait(&c->kick, &r->lock, &until) == ETIMEDOUT)
			break;
	c->kicked = false;
	pthread_mutex_unlock(&r->lock);
}

static void *follow_main(void *arg)
{
	struct rcmd *c = arg;
	struct runs *r = c->r;
	struct spool_sink sink = {.c = c};
	long delay = POLL_FIRST_MS;
	int transport_failures = 0;

	backend_set_cancel(follow_cancelled, c);
	for (;;) {
		struct dt_session_command st = {0};
		struct dt_error err = {0};
		int64_t before = sink.at, total = 0;
		bool exited;
		int ret;

		if (follow_cancelled(c)) {
			cmd_finish(c, false, 0, EINTR, NULL);
			break;
		}
		ret = TB_CALL(r, c->sb, &err, t,
			      dt_session_command_get(t->tb, c->session, c->id, &st, &err));
		exited = ret == 0 && st.has_exit;
		if (ret == 0)
			ret = TB_CALL(r, c->sb, &err, t,
				      dt_session_command_logs(t->tb, c->session, c->id, sink.at,
							      spool_data, &sink, &total, &err));
		if (ret == 0 && sink.announced != sink.at) {
			sink.announced = sink.at;
			wake(r, c);
		}
		if (ret < 0) {
			if (follow_cancelled(c)) {
				cmd_finish(c, false, 0, EINTR, NULL);
				break;
			}
			if (err.transport && ++transport_failures < TRANSPORT_TRIES) {
				dt_session_command_clear(&st);
				usleep(200 * 1000);
				continue;
			}
			if (sink.error)
				fail(&err, EIO, "spooling the output: %s", strerror(sink.error));
			else if (ret == -ENOENT)
				fail(&err, EIO, "session %s or its command %s is gone", c->session,
				     c->id);
			cmd_finish(c, false, 0, ret == -ENOENT || sink.error ? EIO : -ret, &err);
			dt_session_command_clear(&st);
			break;
		}
		transport_failures = 0;
		if (exited) {
			cmd_finish(c, true, st.exit_code, 0, NULL);
			dt_session_command_clear(&st);
			break;
		}
		dt_session_command_clear(&st);
		delay = next_delay(delay, sink.at > before, sink.at);
		follow_sleep(c, delay);
	}
	backend_set_cancel(NULL, NULL);
	pthread_mutex_lock(&r->lock);
	c->following = false;
	cmd_unref_locked(c);
	if (--r->followers == 0)
		pthread_cond_broadcast(&r->followers_done);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static int spool_open(struct runs *r)
{
	int fd = open(r->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0) {
		char path[PATH_MAX + 16];

		snprintf(path, sizeof(path), "%s/runs-XXXXXX", r->spool_dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	return fd;
}

/*
 * The record of command @id of session @s, with a user reference for the
 * caller (made, and its follower started, when new). Called without the lock.
 */
static int cmd_get(struct runs *r, struct rsb *sb, const char *session, const char *id,
		   struct rcmd **out, struct dt_error *err)
{
	struct rcmd *c = NULL, *evicted = NULL;
	struct rsess *s;
	pthread_t thread;
	pthread_attr_t attr;

	*out = NULL;
	pthread_mutex_lock(&r->lock);
	s = sess_get(sb, session);
	for (size_t i = 0; s && i < RING; i++)
		if (s->ring[i] && !strcmp(s->ring[i]->id, id) && !s->ring[i]->fail) {
			c = s->ring[i];
			break;
		}
	if (c) {
		c->users++;
		c->refs++;
		pthread_mutex_unlock(&r->lock);
		*out = c;
		return 0;
	}
	if (!s || r->closing) {
		pthread_mutex_unlock(&r->lock);
		return s ? fail(err, EIO, "unmounting") : fail(err, ENOMEM, "out of memory");
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		pthread_mutex_unlock(&r->lock);
		return fail(err, ENOMEM, "out of memory");
	}
	c->r = r;
	c->sb = sb;
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->kick, &ca);
		pthread_condattr_destroy(&ca);
	}
	copy_str(c->session, sizeof(c->session), session);
	copy_str(c->id, sizeof(c->id), id);
	c->spool_fd = spool_open(r);
	if (c->spool_fd < 0) {
		int e = errno;

		pthread_mutex_unlock(&r->lock);
		free(c);
		return fail(err, EIO, "cannot make a spool file in %s: %s", r->spool_dir,
			    strerror(e));
	}
	/* The caller's, the ring's and the follower's. */
	c->users = 2;
	c->refs = 3;
	c->following = true;
	evicted = s->ring[s->ring_next];
	s->ring[s->ring_next] = c;
	s->ring_next = (s->ring_next + 1) % RING;
	if (evicted)
		cmd_unuse_locked(evicted);
	r->followers++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, follow_main, c) != 0) {
		r->followers--;
		c->following = false;
		c->refs--;
		c->done = true;
		c->fail = EAGAIN;
		copy_str(c->fail_msg, sizeof(c->fail_msg), "cannot start a follower thread");
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_unlock(&r->lock);
	*out = c;
	return 0;
}

/* Makes @c the session's latest command. */
static void set_latest(struct runs *r, struct rsb *sb, const char *session, struct rcmd *c)
{
	struct rsess *s;
	struct rcmd *old = NULL;

	pthread_mutex_lock(&r->lock);
	s = sess_get(sb, session);
	if (s) {
		old = s->latest;
		s->latest = c;
		c->users++;
		c->refs++;
	}
	if (old)
		cmd_unuse_locked(old);
	pthread_mutex_unlock(&r->lock);
}

/* The session's latest command, as the server has it (else as this mount knows it). */
static int latest_cmd(struct runs *r, struct rsb *sb, const char *session, struct rcmd **out,
		      struct dt_error *err)
{
	struct dt_session info = {0};
	struct rsess *s;
	int ret;

	*out = NULL;
	ret = TB_CALL(r, sb, err, t, dt_session_get(t->tb, session, &info, err));
	if (ret == 0 && info.ncommands > 0) {
		ret = cmd_get(r, sb, session, info.commands[info.ncommands - 1].id, out, err);
		dt_session_clear(&info);
		return ret;
	}
	dt_session_clear(&info);
	if (ret == -ENOENT)
		return fail(err, ENOENT, "session %s is gone", session);
	pthread_mutex_lock(&r->lock);
	s = sess_find(sb, session);
	if (s && s->latest) {
		*out = s->latest;
		s->latest->users++;
		s->latest->refs++;
		ret = 0;
	}
	pthread_mutex_unlock(&r->lock);
	return ret; /* 0 with no command yet, or the failure when nothing is known */
}

/* ---- the tree ----------------------------------------------------------- */

uint64_t runs_root_ino(struct runs *r, const char *sb_id)
{
	struct dt_error err;
	uint64_t ino = 0;

	obj_ino(r, RO_ROOT, sb_id, NULL, NULL, RN_DIR, &ino, &err);
	return ino;
}

int runs_root_entry(struct runs *r, const char *sb_id, const char *sb_name, struct runs_entry *e,
		    struct dt_error *err)
{
	int ret;

	(void)sb_name;
	ret = obj_ino(r, RO_ROOT, sb_id, NULL, NULL, RN_DIR, &e->ino, err);
	if (ret == 0)
		fill_attr(r, e->ino, S_IFDIR | 0755, &e->attr);
	return ret;
}

static int session_exists(struct runs *r, struct rsb *sb, const char *name, struct dt_session *out,
			  struct dt_error *err)
{
	return TB_CALL(r, sb, err, t, dt_session_get(t->tb, name, out, err));
}

int runs_lookup(struct runs *r, uint64_t parent, const char *name, struct runs_entry *e,
		struct dt_error *err)
{
	struct dt_session info = {0};
	struct robj dir, *o = NULL;
	struct rsb *sb;
	int node, ret = 0;

	if (!obj_of(r, parent, &dir, &node))
		return fail(err, ESTALE, "unknown inode");
	if (dir.kind == RO_ROOT) {
		if (name_is_probe(name) || strlen(name) > SESSION_NAME_MAX)
			return -ENOENT;
		sb = sb_get(r, dir.sb_id);
		if (!sb)
			return fail(err, ENOMEM, "out of memory");
		ret = session_exists(r, sb, name, &info, err);
		dt_session_clear(&info);
		if (ret < 0)
			return ret;
		pthread_mutex_lock(&r->lock);
		o = obj_get(r, RO_SESSION, dir.sb_id, name, NULL);
		pthread_mutex_unlock(&r->lock);
		if (!o)
			return fail(err, ENOMEM, "out of memory");
		entry_of(r, o, RN_DIR, e);
		return 0;
	}
	if (dir.kind == RO_SESSION && node == RN_DIR) {
		for (int n = RN_COMMAND; n <= RN_COMMANDS; n++)
			if (!strcmp(name, session_names[n])) {
				pthread_mutex_lock(&r->lock);
				o = obj_get(r, RO_SESSION, dir.sb_id, dir.session, NULL);
				pthread_mutex_unlock(&r->lock);
				if (!o)
					return fail(err, ENOMEM, "out of memory");
				entry_of(r, o, n, e);
				return 0;
			}
		return -ENOENT;
	}
	if (dir.kind == RO_SESSION && node == RN_COMMANDS) {
		bool found = false;

		if (strlen(name) >= CMD_ID_MAX || name_is_probe(name))
			return -ENOENT;
		sb = sb_get(r, dir.sb_id);
		if (!sb)
			return fail(err, ENOMEM, "out of memory");
		ret = session_exists(r, sb, dir.session, &info, err);
		for (size_t i = 0; ret == 0 && i < info.ncommands; i++)
			found = found || !strcmp(info.commands[i].id, name);
		dt_session_clear(&info);
		if (ret < 0)
			return ret;
		if (!found)
			return -ENOENT;
		pthread_mutex_lock(&r->lock);
		o = obj_get(r, RO_CMD, dir.sb_id, dir.session, name);
		pthread_mutex_unlock(&r->lock);
		if (!o)
			return fail(err, ENOMEM, "out of memory");
		entry_of(r, o, RN_DIR, e);
		return 0;
	}
	if (dir.kind == RO_CMD && node == RN_DIR) {
		static const int kids[] = {RN_COMMAND, RN_OUTPUT, RN_EXIT};

		for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
			if (!strcmp(name, session_names[kids[i]])) {
				pthread_mutex_lock(&r->lock);
				o = obj_get(r, RO_CMD, dir.sb_id, dir.session, dir.cmd);
				pthread_mutex_unlock(&r->lock);
				if (!o)
					return fail(err, ENOMEM, "out of memory");
				entry_of(r, o, kids[i], e);
				return 0;
			}
		return -ENOENT;
	}
	return fail(err, ENOTDIR, "not a directory");
}

bool runs_attr_volatile(uint64_t ino)
{
	int node = (int)(ino & NODE_MASK);

	return node == RN_OUTPUT || node == RN_EXIT;
}

/*
 * The size of an output or exit node: what this mount has of the command
 * it shows now (the session's latest, or commands/ID), so `tail -f`, which
 * watches the size, neither sees a truncation nor misses growth.
 */
static off_t streaming_size(struct runs *r, const struct robj *o, int node)
{
	struct rcmd *c = NULL;
	struct rsess *s = NULL;
	char text[16];
	off_t size = 0;

	pthread_mutex_lock(&r->lock);
	for (struct rsb *sb = r->sandboxes; sb && !s; sb = sb->next)
		if (!strcmp(sb->id, o->sb_id))
			s = sess_find(sb, o->session);
	if (s && o->kind == RO_SESSION)
		c = s->latest;
	for (size_t i = 0; s && o->kind == RO_CMD && i < RING; i++)
		if (s->ring[i] && !strcmp(s->ring[i]->id, o->cmd))
			c = s->ring[i];
	if (c && node == RN_OUTPUT)
		size = c->size;
	if (c && node == RN_EXIT && c->done && !c->fail)
		size = snprintf(text, sizeof(text), "%d\n", c->exit_code);
	pthread_mutex_unlock(&r->lock);
	return size;
}

int runs_getattr(struct runs *r, uint64_t ino, struct stat *st, struct dt_error *err)
{
	struct robj o;
	int node;

	if (!obj_of(r, ino, &o, &node) || !node_valid(o.kind, node))
		return fail(err, ESTALE, "unknown inode");
	fill_attr(r, ino, node_mode(o.kind, node), st);
	if (node == RN_OUTPUT || node == RN_EXIT)
		st->st_size = streaming_size(r, &o, node);
	return 0;
}

static int add_dirent(struct runs_dirent **items, size_t *n, size_t *cap, const char *name,
		      uint64_t ino, mode_t mode)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		struct runs_dirent *grown = realloc(*items, c * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		*items = grown;
		*cap = c;
	}
	copy_str((*items)[*n].name, sizeof((*items)[*n].name), name);
	(*items)[*n].ino = ino;
	(*items)[*n].mode = mode;
	(*n)++;
	return 0;
}

int runs_list(struct runs *r, uint64_t ino, struct runs_dirent **out, size_t *n,
	      uint64_t *parent, struct dt_error *err)
{
	struct runs_dirent *items = NULL;
	struct dt_session_list sessions = {0};
	struct dt_session info = {0};
	struct robj dir, *o;
	size_t count = 0, cap = 0;
	struct rsb *sb;
	int node, ret = 0;

	*out = NULL;
	*n = 0;
	*parent = 0;
	if (!obj_of(r, ino, &dir, &node))
		return fail(err, ESTALE, "unknown inode");
	sb = sb_get(r, dir.sb_id);
	if (!sb)
		return fail(err, ENOMEM, "out of memory");
	if (dir.kind == RO_ROOT) {
		ret = TB_CALL(r, sb, err, t, dt_session_list(t->tb, &sessions, err));
		for (size_t i = 0; ret == 0 && i < sessions.count; i++) {
			const char *name = sessions.items[i].id;

			if (!name_is_file_name(name) || strlen(name) > SESSION_NAME_MAX ||
			    name_is_probe(name))
				continue;
			pthread_mutex_lock(&r->lock);
			o = obj_get(r, RO_SESSION, dir.sb_id, name, NULL);
			pthread_mutex_unlock(&r->lock);
			ret = o ? add_dirent(&items, &count, &cap, name, ino_of(o, RN_DIR),
					     S_IFDIR | 0755)
				: -ENOMEM;
		}
		dt_session_list_clear(&sessions);
	} else if (dir.kind == RO_SESSION && node == RN_DIR) {
		*parent = runs_root_ino(r, dir.sb_id);
		pthread_mutex_lock(&r->lock);
		o = obj_get(r, RO_SESSION, dir.sb_id, dir.session, NULL);
		pthread_mutex_unlock(&r->lock);
		for (int k = RN_COMMAND; o && ret == 0 && k <= RN_COMMANDS; k++)
			ret = add_dirent(&items, &count, &cap, session_names[k], ino_of(o, k),
					 node_mode(RO_SESSION, k));
		if (!o)
			ret = -ENOMEM;
	} else if (dir.kind == RO_SESSION && node == RN_COMMANDS) {
		ret = session_exists(r, sb, dir.session, &info, err);
		pthread_mutex_lock(&r->lock);
		o = obj_get(r, RO_SESSION, dir.sb_id, dir.session, NULL);
		pthread_mutex_unlock(&r->lock);
		if (o)
			*parent = ino_of(o, RN_DIR);
		for (size_t i = 0; ret == 0 && i < info.ncommands; i++) {
			const char *id = info.commands[i].id;

			if (!name_is_file_name(id) || strlen(id) >= CMD_ID_MAX)
				continue;
			pthread_mutex_lock(&r->lock);
			o = obj_get(r, RO_CMD, dir.sb_id, dir.session, id);
			pthread_mutex_unlock(&r->lock);
			ret = o ? add_dirent(&items, &count, &cap, id, ino_of(o, RN_DIR),
					     S_IFDIR | 0755)
				: -ENOMEM;
		}
		dt_session_clear(&info);
	} else if (dir.kind == RO_CMD && node == RN_DIR) {
		static const int kids[] = {RN_COMMAND, RN_OUTPUT, RN_EXIT};

		pthread_mutex_lock(&r->lock);
		o = obj_get(r, RO_SESSION, dir.sb_id, dir.session, NULL);
		if (o)
			*parent = ino_of(o, RN_COMMANDS);
		o = obj_get(r, RO_CMD, dir.sb_id, dir.session, dir.cmd);
		pthread_mutex_unlock(&r->lock);
		for (size_t k = 0; o && ret == 0 && k < sizeof(kids) / sizeof(kids[0]); k++)
			ret = add_dirent(&items, &count, &cap, session_names[kids[k]],
					 ino_of(o, kids[k]), node_mode(RO_CMD, kids[k]));
		if (!o)
			ret = -ENOMEM;
	} else {
		return fail(err, ENOTDIR, "not a directory");
	}
	if (ret == -ENOMEM)
		fail(err, ENOMEM, "out of memory");
	if (ret < 0) {
		free(items);
		return ret;
	}
	*out = items;
	*n = count;
	return 0;
}

/* Session names: what quaverd and Daytona take as a path segment, and a file name. */
static int check_session_name(const char *name, struct dt_error *err)
{
	if (strlen(name) > SESSION_NAME_MAX)
		return fail(err, EINVAL, "a session name has at most %d bytes", SESSION_NAME_MAX);
	if (name_is_probe(name))
		return fail(err, EINVAL, "%s is a name file managers probe; not a session", name);
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			return fail(err, EINVAL, "a session name has no control characters or '\\'");
	return 0;
}

int runs_mkdir(struct runs *r, uint64_t parent, const char *name, struct runs_entry *e,
	       struct dt_error *err)
{
	struct robj dir, *o;
	struct rsb *sb;
	int node, ret;

	if (!obj_of(r, parent, &dir, &node))
		return fail(err, ESTALE, "unknown inode");
	if (dir.kind != RO_ROOT)
		return fail(err, EPERM, "sessions are made in runs/; nothing else is made");
	ret = check_session_name(name, err);
	if (ret < 0)
		return ret;
	sb = sb_get(r, dir.sb_id);
	if (!sb)
		return fail(err, ENOMEM, "out of memory");
	ret = TB_CALL(r, sb, err, t, dt_session_create(t->tb, name, err));
	if (ret == -EEXIST)
		return fail(err, EEXIST, "session %s exists", name);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&r->lock);
	o = obj_get(r, RO_SESSION, dir.sb_id, name, NULL);
	pthread_mutex_unlock(&r->lock);
	if (!o)
		return fail(err, ENOMEM, "out of memory");
	entry_of(r, o, RN_DIR, e);
	return 0;
}

int runs_rmdir(struct runs *r, uint64_t parent, const char *name, struct dt_error *err)
{
	struct rcmd *ring[RING + 1] = {0};
	struct robj dir;
	struct rsb *sb;
	struct rsess *s, **pp;
	int node, ret;

	if (!obj_of(r, parent, &dir, &node))
		return fail(err, ESTALE, "unknown inode");
	if (dir.kind != RO_ROOT)
		return fail(err, EPERM, "only sessions (runs/S) are removed");
	sb = sb_get(r, dir.sb_id);
	if (!sb)
		return fail(err, ENOMEM, "out of memory");
	ret = TB_CALL(r, sb, err, t, dt_session_delete(t->tb, name, err));
	if (ret == -ENOENT)
		return -ENOENT;
	if (ret < 0)
		return ret;
	/* Its commands stop being followed; readers still waiting are told. */
	pthread_mutex_lock(&r->lock);
	for (pp = &sb->sessions; (s = *pp); pp = &s->next)
		if (!strcmp(s->name, name))
			break;
	if (s) {
		*pp = s->next;
		memcpy(ring, s->ring, sizeof(s->ring));
		ring[RING] = s->latest;
		for (size_t i = 0; i <= RING; i++)
			if (ring[i])
				ring[i]->refs++;
		for (size_t i = 0; i < RING; i++)
			if (s->ring[i])
				cmd_unuse_locked(s->ring[i]);
		if (s->latest)
			cmd_unuse_locked(s->latest);
		free(s);
	}
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i <= RING; i++) {
		struct dt_error gone = {0};

		if (!ring[i])
			continue;
		fail(&gone, EIO, "session %s was removed", name);
		cmd_finish(ring[i], false, 0, EIO, &gone);
		pthread_mutex_lock(&r->lock);
		cmd_unref_locked(ring[i]);
		pthread_mutex_unlock(&r->lock);
	}
	return 0;
}

/* ---- nodes -------------------------------------------------------------- */

static const char ts_runner[] =
    "const fs=require(\"fs\"),path=require(\"path\"),Module=require(\"module\");"
    "let ts;try{ts=require(\"typescript\")}catch(e){ts=require(\"/usr/share/nodejs/typescript\")}"
    "const file=path.resolve(process.argv[1]);const src=fs.readFileSync(file,\"utf8\");"
    "const r=ts.transpileModule(src,{fileName:file,reportDiagnostics:true,compilerOptions:{"
    "module:ts.ModuleKind.CommonJS,target:ts.ScriptTarget.ES2020,esModuleInterop:true}});"
    "const bad=(r.diagnostics||[]).filter(d=>d.category===ts.DiagnosticCategory.Error);"
    "if(bad.length){for(const d of bad){let at=\"\";if(d.file&&d.start!==undefined){"
    "const p=d.file.getLineAndCharacterOfPosition(d.start);"
    "at=\"main.ts(\"+(p.line+1)+\",\"+(p.character+1)+\"): \"}"
    "process.stderr.write(at+\"error TS\"+d.code+\": \"+"
    "ts.flattenDiagnosticMessageText(d.messageText,\"\\n\")+\"\\n\")}process.exit(1)}"
    "process.argv.splice(1,1);const m=new Module(file,null);m.filename=file;"
    "m.paths=Module._nodeModulePaths(process.cwd());m._compile(r.outputText,file);";

static int base64(struct buf *b, const unsigned char *data, size_t len)
{
	static const char digits[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	int rc = buf_reserve(b, (len + 2) / 3 * 4 + 1);

	for (size_t i = 0; rc == 0 && i < len; i += 3) {
		unsigned v = (unsigned)data[i] << 16;
		char q[4];

		if (i + 1 < len)
			v |= (unsigned)data[i + 1] << 8;
		if (i + 2 < len)
			v |= data[i + 2];
		q[0] = digits[v >> 18 & 63];
		q[1] = digits[v >> 12 & 63];
		q[2] = i + 1 < len ? digits[v >> 6 & 63] : '=';
		q[3] = i + 2 < len ? digits[v & 63] : '=';
		rc = buf_append(b, q, 4);
	}
	return rc;
}

/*
 * The session command that runs @code in @lang: the program goes to a
 * temporary file (its stdin stays the command's, so stdin feeds it), in a
 * subshell that removes the file whatever happens and whose status is the
 * program's. TypeScript: ts-node when the sandbox has it (as Daytona),
 * else node with the TypeScript compiler's transpiler.
 */
static int code_command(const char *lang, const struct buf *code, struct buf *out,
			struct dt_error *err)
{
	int rc;

	if (strcmp(lang, "python") && strcmp(lang, "javascript") && strcmp(lang, "typescript"))
		return fail(err, EINVAL,
			    "the sandbox's language %s (label code-toolbox-language) is not "
			    "python, javascript or typescript",
			    lang);
	rc = buf_append_str(out, "(f=$(mktemp /tmp/quaverfs-code.XXXXXX) || exit; "
				 "trap 'rm -f \"$f\"' EXIT; printf '%s' '");
	rc = rc ? rc : base64(out, (const unsigned char *)code->data, code->len);
	rc = rc ? rc : buf_append_str(out, "' | base64 -d > \"$f\" && ");
	if (!rc && !strcmp(lang, "python"))
		rc = buf_append_str(out, "python3 -u \"$f\")");
	else if (!rc && !strcmp(lang, "javascript"))
		rc = buf_append_str(out, "node \"$f\")");
	else if (!rc)
		rc = buf_printf(out,
				"mv \"$f\" \"$f.ts\" && f=\"$f.ts\" && if command -v ts-node "
				">/dev/null 2>&1; then ts-node -T -O '{\"module\":\"CommonJS\"}' "
				"\"$f\"; else node -e '%s' \"$f\"; fi)",
				ts_runner);
	return rc ? fail(err, ENOMEM, "out of memory") : 0;
}

/* Runs @line in session @o as the new latest command. */
static int run_line(struct runs *r, const struct robj *o, const char *line, bool is_code,
		    const struct buf *code, struct dt_error *err)
{
	struct dt_session_exec_result res = {0};
	struct buf composed = BUF_INIT;
	struct rcmd *c = NULL;
	char lang[64] = "python";
	struct rsb *sb = sb_get(r, o->sb_id);
	int ret;

	if (!sb)
		return fail(err, ENOMEM, "out of memory");
	if (is_code) {
		struct rtb *t = NULL;

		ret = sb_toolbox(r, sb, &t, lang, sizeof(lang), err);
		rtb_put(r, t);
		if (ret == 0)
			ret = code_command(lang, code, &composed, err);
		if (ret < 0)
			goto out;
		line = composed.data;
	}
	ret = TB_CALL(r, sb, err, t, dt_session_exec(t->tb, o->session, line, true, &res, err));
	if (ret == -ENOENT)
		ret = fail(err, ENOENT, "session %s is gone", o->session);
	if (ret < 0)
		goto out;
	ret = cmd_get(r, sb, o->session, res.cmd_id, &c, err);
	if (ret == 0) {
		set_latest(r, sb, o->session, c);
		cmd_unuse(r, c);
	}
out:
	dt_session_exec_result_clear(&res);
	buf_free(&composed);
	return ret;
}

int runs_open(struct runs *r, uint64_t ino, int flags, struct runs_handle **out,
	      bool *streaming, struct dt_error *err)
{
	struct runs_handle *h;
	struct rsb *sb;
	int node, ret = 0, acc = flags & O_ACCMODE;

	*out = NULL;
	*streaming = false;
	h = calloc(1, sizeof(*h));
	if (!h)
		return fail(err, ENOMEM, "out of memory");
	h->ino = ino;
	if (!obj_of(r, ino, &h->obj, &node) || !node_valid(h->obj.kind, node)) {
		free(h);
		return fail(err, ESTALE, "unknown inode");
	}
	h->node = node;
	if (node == RN_DIR || node == RN_COMMANDS) {
		free(h);
		return -EISDIR;
	}
	if (acc != O_RDONLY && !(node_mode(h->obj.kind, node) & 0200)) {
		free(h);
		return fail(err, EACCES, "read-only");
	}
	sb = sb_get(r, h->obj.sb_id);
	if (!sb) {
		free(h);
		return fail(err, ENOMEM, "out of memory");
	}
	if (node == RN_OUTPUT || node == RN_EXIT) {
		*streaming = true;
		if (h->obj.kind == RO_CMD)
			ret = cmd_get(r, sb, h->obj.session, h->obj.cmd, &h->cmd, err);
		else
			ret = latest_cmd(r, sb, h->obj.session, &h->cmd, err);
	}
	if (ret < 0) {
		free(h);
		return ret;
	}
	if (h->cmd) {
		/* A reader: the follower polls at full pace from now on. */
		pthread_mutex_lock(&r->lock);
		h->cmd->handles++;
		h->cmd->kicked = true;
		pthread_cond_signal(&h->cmd->kick);
		pthread_mutex_unlock(&r->lock);
	}
	*out = h;
	return 0;
}

const void *runs_handle_key(const struct runs_handle *h)
{
	return h->cmd;
}

uint64_t runs_handle_ino(const struct runs_handle *h)
{
	return h->ino;
}

/* The text of a command (the command node): from the server. */
static int command_text(struct runs *r, struct runs_handle *h, struct buf *text,
			struct dt_error *err)
{
	struct dt_session info = {0};
	struct rsb *sb = sb_get(r, h->obj.sb_id);
	int ret;

	if (!sb)
		return fail(err, ENOMEM, "out of memory");
	ret = session_exists(r, sb, h->obj.session, &info, err);
	if (ret == 0 && info.ncommands > 0) {
		const struct dt_session_command *c = &info.commands[info.ncommands - 1];

		for (size_t i = 0; h->obj.kind == RO_CMD && i < info.ncommands; i++)
			if (!strcmp(info.commands[i].id, h->obj.cmd))
				c = &info.commands[i];
		if (buf_printf(text, "%s\n", c->command))
			ret = fail(err, ENOMEM, "out of memory");
	} else if (ret == 0) {
		ret = buf_append_str(text, "\n") ? fail(err, ENOMEM, "out of memory") : 0;
	}
	dt_session_clear(&info);
	return ret;
}

static void slice(const char *text, size_t len, int64_t off, size_t size, char *buf, size_t *got)
{
	*got = 0;
	if (off < 0 || (uint64_t)off >= len)
		return;
	*got = len - (size_t)off < size ? len - (size_t)off : size;
	memcpy(buf, text + off, *got);
}

int runs_read(struct runs *r, struct runs_handle *h, char *buf, size_t size, int64_t off,
	      size_t *got, struct dt_error *err)
{
	struct rcmd *c = h->cmd;
	int64_t avail;
	ssize_t n;

	*got = 0;
	if (h->node == RN_CODE || h->node == RN_STDIN)
		return 0;
	if (h->node == RN_COMMAND) {
		struct buf text = BUF_INIT;
		int ret = command_text(r, h, &text, err);

		if (ret == 0)
			slice(text.data, text.len, off, size, buf, got);
		buf_free(&text);
		return ret;
	}
	if (!c) /* no command run in this session yet */
		return 0;
	pthread_mutex_lock(&r->lock);
	if (h->node == RN_EXIT) {
		if (!c->done) {
			pthread_mutex_unlock(&r->lock);
			return -EAGAIN;
		}
		if (c->fail) {
			int e = c->fail;

			fail(err, e == EINTR ? EIO : e, "%s", c->fail_msg);
			pthread_mutex_unlock(&r->lock);
			return -err->err;
		}
		snprintf(h->exit_text, sizeof(h->exit_text), "%d\n", c->exit_code);
		pthread_mutex_unlock(&r->lock);
		slice(h->exit_text, strlen(h->exit_text), off, size, buf, got);
		return 0;
	}
	avail = c->size - off;
	if (avail <= 0) {
		int e = c->fail;
		bool done = c->done;

		if (done && e)
			fail(err, e == EINTR ? EIO : e, "%s", c->fail_msg);
		pthread_mutex_unlock(&r->lock);
		if (!done)
			return -EAGAIN;
		return e ? -err->err : 0;
	}
	pthread_mutex_unlock(&r->lock);
	if ((int64_t)size > avail)
		size = (size_t)avail;
	n = pread(c->spool_fd, buf, size, off);
	if (n < 0)
		return fail(err, EIO, "reading the spooled output: %s", strerror(errno));
	*got = (size_t)n;
	return 0;
}

bool runs_ready(struct runs *r, struct runs_handle *h, int64_t off)
{
	bool ready = true;

	if (!h->cmd)
		return true;
	pthread_mutex_lock(&r->lock);
	if (h->node == RN_EXIT)
		ready = h->cmd->done;
	else if (h->node == RN_OUTPUT)
		ready = h->cmd->done || h->cmd->size > off;
	pthread_mutex_unlock(&r->lock);
	return ready;
}

int runs_write(struct runs *r, struct runs_handle *h, const char *data, size_t len,
	       struct dt_error *err)
{
	if (h->obj.kind != RO_SESSION)
		return fail(err, EACCES, "read-only");
	if (h->node == RN_CODE) {
		if (h->code.len + len > CODE_MAX)
			return fail(err, EFBIG, "a program has at most %u bytes", CODE_MAX);
		return buf_append(&h->code, data, len) ? fail(err, ENOMEM, "out of memory") : 0;
	}
	if (memchr(data, '\0', len))
		return fail(err, EINVAL, "a NUL byte cannot be sent");
	if (h->node == RN_COMMAND) {
		char *line = strndup(data, len);
		size_t n;
		int ret;

		if (!line)
			return fail(err, ENOMEM, "out of memory");
		n = strlen(line);
		if (n && line[n - 1] == '\n')
			line[--n] = '\0';
		if (!line[strspn(line, " \t\r\n")])
			ret = fail(err, EINVAL, "an empty command");
		else
			ret = run_line(r, &h->obj, line, false, NULL, err);
		free(line);
		return ret;
	}
	if (h->node == RN_STDIN) {
		struct rsb *sb = sb_get(r, h->obj.sb_id);
		struct rcmd *c = NULL;
		int ret;

		if (!sb)
			return fail(err, ENOMEM, "out of memory");
		ret = latest_cmd(r, sb, h->obj.session, &c, err);
		if (ret == 0 && !c)
			ret = fail(err, EPIPE, "no command runs in session %s", h->obj.session);
		if (ret == 0)
			ret = TB_CALL(r, sb, err, t,
				      dt_session_input(t->tb, h->obj.session, c->id, data, len,
						       err));
		if (ret == -EPIPE)
			ret = fail(err, EPIPE, "the latest command of session %s has finished",
				   h->obj.session);
		cmd_unuse(r, c);
		return ret;
	}
	return fail(err, EACCES, "read-only");
}

int runs_flush(struct runs *r, struct runs_handle *h, struct dt_error *err)
{
	int ret;

	if (h->node != RN_CODE || h->code.len == 0)
		return 0;
	ret = run_line(r, &h->obj, NULL, true, &h->code, err);
	buf_reset(&h->code);
	return ret;
}

void runs_release(struct runs *r, struct runs_handle *h)
{
	if (!h)
		return;
	if (h->cmd) {
		pthread_mutex_lock(&r->lock);
		h->cmd->handles--;
		pthread_mutex_unlock(&r->lock);
	}
	cmd_unuse(r, h->cmd);
	buf_free(&h->code);
	free(h);
}

/* ---- the context -------------------------------------------------------- */

int runs_new(struct qfs *fs, const char *spool_dir, struct runs **out)
{
	struct runs *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->fs = fs;
	copy_str(r->spool_dir, sizeof(r->spool_dir), spool_dir && spool_dir[0] ? spool_dir : "/tmp");
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->followers_done, NULL);
	*out = r;
	return 0;
}

void runs_set_wake(struct runs *r, runs_wake_fn fn, void *arg)
{
	pthread_mutex_lock(&r->lock);
	r->wake = fn;
	r->wake_arg = arg;
	pthread_mutex_unlock(&r->lock);
}

void runs_free(struct runs *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->closing = true;
	r->wake = NULL;
	for (struct rsb *sb = r->sandboxes; sb; sb = sb->next)
		for (struct rsess *s = sb->sessions; s; s = s->next)
			for (size_t i = 0; i <= RING; i++) {
				struct rcmd *c = i < RING ? s->ring[i] : s->latest;

				if (c)
					pthread_cond_signal(&c->kick);
			}
	while (r->followers > 0)
		pthread_cond_wait(&r->followers_done, &r->lock);
	for (struct rsb *sb = r->sandboxes, *next; sb; sb = next) {
		next = sb->next;
		for (struct rsess *s = sb->sessions, *sn; s; s = sn) {
			sn = s->next;
			for (size_t i = 0; i < RING; i++)
				if (s->ring[i])
					cmd_unuse_locked(s->ring[i]);
			if (s->latest)
				cmd_unuse_locked(s->latest);
			free(s);
		}
		if (sb->tb && --sb->tb->refs == 0) {
			dt_toolbox_free(sb->tb->tb);
			free(sb->tb);
		}
		free(sb);
	}
	for (size_t i = 0; i < r->nobjs; i++)
		free(r->objs[i]);
	free(r->objs);
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->followers_done);
	free(r);
}
