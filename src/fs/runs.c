/*
 * runs/ (runs.h): sessions as directories, commands run by writes, their
 * output and exit code followed by a thread per watched command
 * (runs_cmd.c). This file: inode numbers, sandboxes and their toolbox, the
 * tree (lookup, listings, mkdir, rmdir) and the context.
 *
 * Inodes: RUNS_TAG | object index << 4 | node. An object is a sandbox's
 * runs/ directory, a session or a command, named by (sandbox id, session,
 * command id); numbers are never reused while the mount lives.
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
#include "cache.h"
#include "log.h"
#include "runs_internal.h"
#include "util.h"

int runs_fail(struct dt_error *err, int errnum, const char *fmt, ...)
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
bool runs_obj_of(struct runs *r, uint64_t ino, struct robj *out, int *node)
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
	return o ? 0 : runs_fail(err, ENOMEM, "out of memory");
}

/* ---- what the nodes look like ------------------------------------------- */

static const char *const session_names[] = {
    [RN_COMMAND] = "command", [RN_CODE] = "code",   [RN_OUTPUT] = "output",
    [RN_EXIT] = "exit",	      [RN_STDIN] = "stdin", [RN_COMMANDS] = "commands",
};

bool runs_node_valid(enum robj_kind kind, int node)
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

mode_t runs_node_mode(enum robj_kind kind, int node)
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
	fill_attr(r, e->ino, runs_node_mode(o->kind, node), &e->attr);
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

	if (!runs_obj_of(r, ino, &o, &node)) {
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

	if (!runs_obj_of(r, ino, &o, &node))
		return false;
	copy_str(id, size, o.sb_id);
	return true;
}

/* ---- sandboxes and their toolbox ---------------------------------------- */

struct rsb *runs_sb_get(struct runs *r, const char *id)
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

void runs_rtb_put(struct runs *r, struct rtb *t)
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
		return runs_fail(err, EHOSTDOWN,
				 "sandbox %s is %s; echo start > sandboxes/%s/state", name, state,
				 name);
	return runs_fail(err, EHOSTDOWN, "sandbox %s is %s, not started", name, state);
}

static void sb_forget(struct runs *r, struct rsb *sb);

/* The sandbox's toolbox, once it is started; *@lang (may be NULL): its code language. */
int runs_sb_toolbox(struct runs *r, struct rsb *sb, struct rtb **out, char *lang, size_t lang_size,
		    struct dt_error *err)
{
	struct dt_client *client = backend_client(r->fs->bk);
	struct cobj *o = NULL;
	struct rtb *t = NULL, *old = NULL;
	int ret;

	*out = NULL;
	ret = cache_refresh(r->fs->cache, OBJ_SANDBOX, sb->id, false, &o, err);
	if (ret == -ENOENT) {
		sb_forget(r, sb);
		return runs_fail(err, ENOENT, "the sandbox is gone");
	}
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
		return runs_fail(err, ENOMEM, "out of memory");
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
	runs_rtb_put(r, old);
	*out = t;
	return 0;
}

/*
 * After a toolbox call: true when quaverd moved (call again, once). A 409 or
 * 5xx from a sandbox that stopped meanwhile becomes EHOSTDOWN with the reason.
 */
bool runs_call_done(struct runs *r, struct rsb *sb, struct rtb *t, int *ret, struct dt_error *err)
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
/* ---- sessions that end ------------------------------------------------- */

enum drop_what { DROP_NAMED, DROP_ALL, DROP_UNLISTED };

static bool drop_this(const struct rsess *s, enum drop_what what, const char *name,
		      int64_t asked_ms, const struct dt_session_list *listed)
{
	if (what == DROP_ALL)
		return true;
	if (what == DROP_NAMED)
		return !strcmp(s->name, name);
	/* A session this mount used after the listing was asked for may be newer than it. */
	if (s->used_ms >= asked_ms)
		return false;
	for (size_t i = 0; i < listed->count; i++)
		if (!strcmp(listed->items[i].id, s->name))
			return false;
	return true;
}

/*
 * Forgets sessions of @sb (which: @what, with @name or the sessions still
 * @listed): their commands stop being followed, readers still waiting get
 * @errnum, and the spools close once no reader holds them. Without the lock.
 */
static void sessions_end(struct runs *r, struct rsb *sb, enum drop_what what, const char *name,
			 int64_t asked_ms, const struct dt_session_list *listed, int errnum,
			 const char *why)
{
	struct rsess *gone = NULL, *s, **pp;

	pthread_mutex_lock(&r->lock);
	for (pp = &sb->sessions; (s = *pp);) {
		if (!drop_this(s, what, name, asked_ms, listed)) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		s->next = gone;
		gone = s;
	}
	pthread_mutex_unlock(&r->lock);
	while ((s = gone)) {
		struct rcmd *cmds[RING + 1] = {0};

		gone = s->next;
		pthread_mutex_lock(&r->lock);
		memcpy(cmds, s->ring, sizeof(s->ring));
		cmds[RING] = s->latest;
		for (size_t i = 0; i <= RING; i++)
			if (cmds[i]) {
				cmds[i]->refs++;
				runs_cmd_unuse_locked(cmds[i]);
			}
		pthread_mutex_unlock(&r->lock);
		for (size_t i = 0; i <= RING; i++) {
			struct dt_error err = {0};

			if (!cmds[i])
				continue;
			runs_fail(&err, errnum, "session %s %s", s->name, why);
			runs_cmd_finish(cmds[i], false, 0, errnum, &err);
			pthread_mutex_lock(&r->lock);
			runs_cmd_unref_locked(cmds[i]);
			pthread_mutex_unlock(&r->lock);
		}
		free(s);
	}
}

/* The sandbox is gone: its sessions, their spools and its toolbox go (the record stays). */
static void sb_forget(struct runs *r, struct rsb *sb)
{
	struct rtb *t;

	pthread_mutex_lock(&r->lock);
	t = sb->tb;
	sb->tb = NULL;
	pthread_mutex_unlock(&r->lock);
	runs_rtb_put(r, t);
	sessions_end(r, sb, DROP_ALL, NULL, 0, NULL, EIO, "is gone with its sandbox");
}

/*
 * The sandboxes this mount keeps something of and the cache no longer has
 * (removed here or elsewhere, or missing from a listing) are forgotten.
 * Records are never freed (pointers to them are held without the lock).
 */
static void sweep_gone(struct runs *r)
{
	struct rsb **held = NULL;
	size_t n = 0, cap = 0;

	pthread_mutex_lock(&r->lock);
	for (struct rsb *sb = r->sandboxes; sb; sb = sb->next) {
		if (!sb->sessions && !sb->tb)
			continue;
		if (n == cap) {
			size_t c = cap ? cap * 2 : 16;
			struct rsb **grown = realloc(held, c * sizeof(*grown));

			if (!grown)
				break;
			held = grown;
			cap = c;
		}
		held[n++] = sb;
	}
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		struct cobj *o = cache_peek(r->fs->cache, OBJ_SANDBOX, held[i]->id);
		struct dt_error err = {0};

		/* Not in the cache: the backend says whether it is gone (else it is cached again). */
		if (!o && cache_refresh(r->fs->cache, OBJ_SANDBOX, held[i]->id, false, &o, &err) ==
			      -ENOENT) {
			log_debug("runs: sandbox %s is gone: its sessions are forgotten",
				  held[i]->id);
			sb_forget(r, held[i]);
		}
		cobj_put(o);
	}
	free(held);
}

static void *sweeper_main(void *arg)
{
	struct runs *r = arg;

	pthread_mutex_lock(&r->lock);
	while (!r->closing) {
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += SWEEP_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->sweep_wake, &r->lock, &until);
		if (r->closing)
			break;
		pthread_mutex_unlock(&r->lock);
		sweep_gone(r);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
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

int runs_session_exists(struct runs *r, struct rsb *sb, const char *name, struct dt_session *out,
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

	if (!runs_obj_of(r, parent, &dir, &node))
		return runs_fail(err, ESTALE, "unknown inode");
	if (dir.kind == RO_ROOT) {
		if (name_is_probe(name) || strlen(name) > SESSION_NAME_MAX)
			return -ENOENT;
		sb = runs_sb_get(r, dir.sb_id);
		if (!sb)
			return runs_fail(err, ENOMEM, "out of memory");
		ret = runs_session_exists(r, sb, name, &info, err);
		dt_session_clear(&info);
		/* A sandbox that is not started has no sessions (stop ends them). */
		if (ret == -EHOSTDOWN)
			return -ENOENT;
		if (ret < 0)
			return ret;
		pthread_mutex_lock(&r->lock);
		o = obj_get(r, RO_SESSION, dir.sb_id, name, NULL);
		pthread_mutex_unlock(&r->lock);
		if (!o)
			return runs_fail(err, ENOMEM, "out of memory");
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
					return runs_fail(err, ENOMEM, "out of memory");
				entry_of(r, o, n, e);
				return 0;
			}
		return -ENOENT;
	}
	if (dir.kind == RO_SESSION && node == RN_COMMANDS) {
		bool found = false;

		if (strlen(name) >= CMD_ID_MAX || name_is_probe(name))
			return -ENOENT;
		sb = runs_sb_get(r, dir.sb_id);
		if (!sb)
			return runs_fail(err, ENOMEM, "out of memory");
		ret = runs_session_exists(r, sb, dir.session, &info, err);
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
			return runs_fail(err, ENOMEM, "out of memory");
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
					return runs_fail(err, ENOMEM, "out of memory");
				entry_of(r, o, kids[i], e);
				return 0;
			}
		return -ENOENT;
	}
	return runs_fail(err, ENOTDIR, "not a directory");
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
			s = runs_sess_find(sb, o->session);
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

	if (!runs_obj_of(r, ino, &o, &node) || !runs_node_valid(o.kind, node))
		return runs_fail(err, ESTALE, "unknown inode");
	fill_attr(r, ino, runs_node_mode(o.kind, node), st);
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

int runs_list(struct runs *r, uint64_t ino, struct runs_dirent **out, size_t *n, uint64_t *parent,
	      struct dt_error *err)
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
	if (!runs_obj_of(r, ino, &dir, &node))
		return runs_fail(err, ESTALE, "unknown inode");
	sb = runs_sb_get(r, dir.sb_id);
	if (!sb)
		return runs_fail(err, ENOMEM, "out of memory");
	if (dir.kind == RO_ROOT) {
		int64_t asked_ms = now_mono_ms();

		ret = TB_CALL(r, sb, err, t, dt_session_list(t->tb, &sessions, err));
		/*
		 * Not started: no sessions (stop ends them), nothing to say (walks and
		 * file managers go on). A listing conflicts with nothing: a 409 is a
		 * sandbox going down. What is not listed any more is forgotten.
		 */
		if (ret == -EHOSTDOWN || (ret < 0 && err->http_status == 409)) {
			sessions_end(r, sb, DROP_ALL, NULL, 0, NULL, EHOSTDOWN,
				     "ended: the sandbox is not started");
			ret = 0;
		} else if (ret == 0) {
			sessions_end(r, sb, DROP_UNLISTED, NULL, asked_ms, &sessions, EIO,
				     "is gone");
		}
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
					 runs_node_mode(RO_SESSION, k));
		if (!o)
			ret = -ENOMEM;
	} else if (dir.kind == RO_SESSION && node == RN_COMMANDS) {
		ret = runs_session_exists(r, sb, dir.session, &info, err);
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
					 ino_of(o, kids[k]), runs_node_mode(RO_CMD, kids[k]));
		if (!o)
			ret = -ENOMEM;
	} else {
		return runs_fail(err, ENOTDIR, "not a directory");
	}
	if (ret == -ENOMEM)
		runs_fail(err, ENOMEM, "out of memory");
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
		return runs_fail(err, EINVAL, "a session name has at most %d bytes",
				 SESSION_NAME_MAX);
	if (name_is_probe(name))
		return runs_fail(err, EINVAL, "%s is a name file managers probe; not a session",
				 name);
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			return runs_fail(err, EINVAL,
					 "a session name has no control characters or '\\'");
	return 0;
}

int runs_mkdir(struct runs *r, uint64_t parent, const char *name, struct runs_entry *e,
	       struct dt_error *err)
{
	struct robj dir, *o;
	struct rsb *sb;
	int node, ret;

	if (!runs_obj_of(r, parent, &dir, &node))
		return runs_fail(err, ESTALE, "unknown inode");
	if (dir.kind != RO_ROOT)
		return runs_fail(err, EPERM, "sessions are made in runs/; nothing else is made");
	ret = check_session_name(name, err);
	if (ret < 0)
		return ret;
	sb = runs_sb_get(r, dir.sb_id);
	if (!sb)
		return runs_fail(err, ENOMEM, "out of memory");
	ret = TB_CALL(r, sb, err, t, dt_session_create(t->tb, name, err));
	if (ret == -EEXIST)
		return runs_fail(err, EEXIST, "session %s exists", name);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&r->lock);
	o = obj_get(r, RO_SESSION, dir.sb_id, name, NULL);
	pthread_mutex_unlock(&r->lock);
	if (!o)
		return runs_fail(err, ENOMEM, "out of memory");
	entry_of(r, o, RN_DIR, e);
	return 0;
}

int runs_rmdir(struct runs *r, uint64_t parent, const char *name, struct dt_error *err)
{
	struct robj dir;
	struct rsb *sb;
	int node, ret;

	if (!runs_obj_of(r, parent, &dir, &node))
		return runs_fail(err, ESTALE, "unknown inode");
	if (dir.kind != RO_ROOT)
		return runs_fail(err, EPERM, "only sessions (runs/S) are removed");
	sb = runs_sb_get(r, dir.sb_id);
	if (!sb)
		return runs_fail(err, ENOMEM, "out of memory");
	ret = TB_CALL(r, sb, err, t, dt_session_delete(t->tb, name, err));
	if (ret == -ENOENT)
		return -ENOENT;
	if (ret < 0)
		return ret;
	/* Its commands stop being followed; readers still waiting are told. */
	sessions_end(r, sb, DROP_NAMED, name, 0, NULL, EIO, "was removed");
	return 0;
}
/* ---- the context -------------------------------------------------------- */

int runs_new(struct qfs *fs, const char *spool_dir, struct runs **out)
{
	struct runs *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->fs = fs;
	copy_str(r->spool_dir, sizeof(r->spool_dir),
		 spool_dir && spool_dir[0] ? spool_dir : "/tmp");
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->followers_done, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&r->sweep_wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	/* Without it the records of removed sandboxes stay (and their spools open). */
	r->sweeper_started = pthread_create(&r->sweeper, NULL, sweeper_main, r) == 0;
	if (!r->sweeper_started)
		log_warn("runs/: no sweeper thread: sessions of removed sandboxes stay");
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
	pthread_cond_signal(&r->sweep_wake);
	pthread_mutex_unlock(&r->lock);
	if (r->sweeper_started)
		pthread_join(r->sweeper, NULL);
	pthread_mutex_lock(&r->lock);
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
					runs_cmd_unuse_locked(s->ring[i]);
			if (s->latest)
				runs_cmd_unuse_locked(s->latest);
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
	pthread_cond_destroy(&r->sweep_wake);
	free(r);
}
