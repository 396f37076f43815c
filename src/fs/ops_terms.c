/*
 * The FUSE side of the pty node and terminals/ (terms.h is the core).
 *
 * Inodes. Every node of the range (ops_terms.h) is a record of this file:
 * the pty node and terminals/ of each sandbox (kept for the mount's life,
 * so readdir can name them without a lookup), each terminals/T and its
 * nodes (dropped when the kernel forgets them).
 *
 * Waiting. A read of data, pty or exit with nothing to give, and a write
 * of data or pty while the input queue is full, never hold a worker thread:
 * the request is parked (a record on the parked list, its waiter queued in
 * the core) and the worker returns. It is answered by whoever takes it off
 * the list, under park_lock: the core's wake (output, the end, room for
 * input; on the websocket's service thread), or the interrupt callback
 * (EINTR at once). park_lock is never held across a network call.
 */
#include "ops_terms.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ops_internal.h"
#include "terms.h"
#include "util.h"

enum tkind { TK_PTY, TK_TERMINALS, TK_TERM_DIR, TK_NODE };

struct tino {
	uint64_t ino;
	enum tkind kind;
	enum terms_node node; /* TK_NODE */
	uint64_t nlookup;
	char sb_id[OBJ_ID_MAX];
	char sb_name[NODE_NAME_MAX];
	char term[TERMS_NAME_MAX]; /* TK_TERM_DIR, TK_NODE */
};

static const struct {
	const char *name;
	enum terms_node node;
	mode_t mode;
} term_nodes[] = {
    {"data", TN_DATA, S_IFREG | 0644},
    {"size", TN_SIZE, S_IFREG | 0644},
    {"exit", TN_EXIT, S_IFREG | 0444},
    {"env", TN_ENV, S_IFREG | 0644},
};
#define NTERM_NODES (sizeof(term_nodes) / sizeof(term_nodes[0]))

struct parked {
	struct terms_waiter w;
	struct parked *next;
	fuse_req_t req;
	struct terms_handle *h;
	bool is_write;
	int64_t off;
	size_t size; /* of buf: what is read, or written */
	char *buf;
};

static pthread_mutex_t ino_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tino **inos;
static size_t ninos, cap_inos;
static uint64_t next_ino = 1;

static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static struct parked *parked_list;
static atomic_bool shutting_down;

static struct qfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- inodes ---- */

/* Under ino_lock. */
static struct tino *ino_find(uint64_t ino)
{
	for (size_t i = 0; i < ninos; i++)
		if (inos[i]->ino == ino)
			return inos[i];
	return NULL;
}

/* Under ino_lock: the record of a node, made when new (NULL: out of memory). */
static struct tino *ino_get(enum tkind kind, enum terms_node node, const char *sb_id,
			    const char *sb_name, const char *term)
{
	struct tino *ti;

	for (size_t i = 0; i < ninos; i++) {
		ti = inos[i];
		if (ti->kind == kind && ti->node == node && !strcmp(ti->sb_id, sb_id) &&
		    !strcmp(ti->term, term ? term : ""))
			return ti;
	}
	if (ninos == cap_inos) {
		size_t cap = cap_inos ? cap_inos * 2 : 64;
		struct tino **grown = realloc(inos, cap * sizeof(*inos));

		if (!grown)
			return NULL;
		inos = grown;
		cap_inos = cap;
	}
	ti = calloc(1, sizeof(*ti));
	if (!ti)
		return NULL;
	ti->ino = TERMS_INO_TAG | next_ino++;
	ti->kind = kind;
	ti->node = node;
	copy_str(ti->sb_id, sizeof(ti->sb_id), sb_id);
	copy_str(ti->sb_name, sizeof(ti->sb_name), sb_name ? sb_name : sb_id);
	copy_str(ti->term, sizeof(ti->term), term ? term : "");
	inos[ninos++] = ti;
	return ti;
}

/* A copy of the record of @ino; false when unknown. */
static bool ino_copy(uint64_t ino, struct tino *out)
{
	struct tino *ti;

	pthread_mutex_lock(&ino_lock);
	ti = ino_find(ino);
	if (ti)
		*out = *ti;
	pthread_mutex_unlock(&ino_lock);
	return ti != NULL;
}

static mode_t kind_mode(const struct tino *ti)
{
	switch (ti->kind) {
	case TK_PTY:
		return S_IFREG | 0644;
	case TK_NODE:
		for (size_t i = 0; i < NTERM_NODES; i++)
			if (term_nodes[i].node == ti->node)
				return term_nodes[i].mode;
		return S_IFREG | 0444;
	default:
		return S_IFDIR | 0755;
	}
}

static void fill_attr(struct qfs *fs, const struct tino *ti, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ti->ino;
	st->st_mode = kind_mode(ti);
	st->st_nlink = S_ISDIR(st->st_mode) ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	st->st_mtim.tv_sec = fs->mount_wall_ms / 1000;
	st->st_mtim.tv_nsec = (fs->mount_wall_ms % 1000) * 1000000L;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

/* Fills @e for a node, counting a lookup. */
static int make_entry(struct qfs *fs, enum tkind kind, enum terms_node node, const char *sb_id,
		      const char *sb_name, const char *term, struct fuse_entry_param *e)
{
	struct tino *ti, copy;

	memset(e, 0, sizeof(*e));
	pthread_mutex_lock(&ino_lock);
	ti = ino_get(kind, node, sb_id, sb_name, term);
	if (ti) {
		ti->nlookup++;
		copy = *ti;
	}
	pthread_mutex_unlock(&ino_lock);
	if (!ti)
		return -ENOMEM;
	e->ino = copy.ino;
	fill_attr(fs, &copy, &e->attr);
	e->attr_timeout = ATTR_TIMEOUT;
	e->entry_timeout = ENTRY_TIMEOUT;
	return 0;
}

static void node_path_of(const struct tino *ti, const char *name, char *out, size_t size)
{
	switch (ti->kind) {
	case TK_PTY:
		snprintf(out, size, "sandboxes/%s/pty", ti->sb_name);
		break;
	case TK_TERMINALS:
		snprintf(out, size, "sandboxes/%s/terminals%s%s", ti->sb_name, name ? "/" : "",
			 name ? name : "");
		break;
	case TK_TERM_DIR:
		snprintf(out, size, "sandboxes/%s/terminals/%s%s%s", ti->sb_name, ti->term,
			 name ? "/" : "", name ? name : "");
		break;
	case TK_NODE:
		snprintf(out, size, "sandboxes/%s/terminals/%s/%s", ti->sb_name, ti->term,
			 term_nodes[ti->node - TN_DATA].name);
		break;
	}
}

/* Answers that are part of normal use; anything else is recorded where users look. */
static bool ordinary(int errnum)
{
	switch (errnum) {
	case ENOENT:
	case EEXIST:
	case EINVAL:
	case EPERM:
	case EACCES:
	case EINTR:
	case EAGAIN:
	case EBUSY:
	case ENOTDIR:
	case EISDIR:
		return true;
	default:
		return false;
	}
}

static void reply_failure(fuse_req_t req, const struct tino *ti, const char *name, int ret,
			  const struct dt_error *err)
{
	if (!ordinary(-ret)) {
		struct core_changes ch = {0};
		char path[1024];

		node_path_of(ti, name, path, sizeof(path));
		core_record_failure(fs_of(req), path, ti->sb_id, err, &ch);
		apply_changes(fs_of(req), &ch);
	}
	fuse_reply_err(req, -ret);
}

/* ---- parked requests ---- */

/* Under park_lock. */
static void park_unlink(struct parked *p)
{
	for (struct parked **pp = &parked_list; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

static void parked_free(struct parked *p)
{
	free(p->buf);
	free(p);
}

/*
 * Under park_lock: tries @p once more. True when it was answered (the caller
 * frees it); false when its waiter is queued again.
 */
static bool park_try(struct parked *p)
{
	struct dt_error err = {0};
	size_t got = 0;
	int ret;

	if (p->is_write)
		ret = terms_write(p->h, p->buf, p->size, &p->w, &err);
	else
		ret = terms_read(p->h, p->buf, p->size, p->off, &got, &p->w, &err);
	if (ret == -EAGAIN)
		return false;
	if (ret < 0)
		fuse_reply_err(p->req, -ret);
	else if (p->is_write)
		fuse_reply_write(p->req, p->size);
	else
		fuse_reply_buf(p->req, p->buf, got);
	return true;
}

static void park_wake(void *arg, struct terms_waiter *w)
{
	struct parked *p = NULL;

	(void)arg;
	pthread_mutex_lock(&park_lock);
	/* @w is only a name: the record may have been answered and freed meanwhile */
	for (struct parked *q = parked_list; q; q = q->next)
		if (&q->w == w)
			p = q;
	if (p && !atomic_load(&shutting_down) && park_try(p)) {
		park_unlink(p);
		parked_free(p);
	}
	pthread_mutex_unlock(&park_lock);
}

static void park_interrupt(fuse_req_t req, void *data)
{
	struct parked *p = NULL;

	(void)data;
	pthread_mutex_lock(&park_lock);
	for (struct parked *q = parked_list; q; q = q->next)
		if (q->req == req)
			p = q;
	if (p) {
		park_unlink(p);
		terms_cancel(p->h, &p->w);
		fuse_reply_err(req, EINTR);
		parked_free(p);
	}
	pthread_mutex_unlock(&park_lock);
}

/* Answers now, or parks @p (which is then the list's). @p is freed when answered. */
static void park_or_answer(struct parked *p, bool nonblock)
{
	/* before the lock: an interrupt that came already calls back at once */
	fuse_req_interrupt_func(p->req, park_interrupt, NULL);
	pthread_mutex_lock(&park_lock);
	if (fuse_req_interrupted(p->req)) {
		fuse_reply_err(p->req, EINTR);
		parked_free(p);
	} else if (nonblock) {
		struct dt_error err = {0};
		size_t got = 0;
		int ret = p->is_write ? terms_write(p->h, p->buf, p->size, NULL, &err)
				      : terms_read(p->h, p->buf, p->size, p->off, &got, NULL, &err);

		if (ret < 0)
			fuse_reply_err(p->req, -ret);
		else if (p->is_write)
			fuse_reply_write(p->req, p->size);
		else
			fuse_reply_buf(p->req, p->buf, got);
		parked_free(p);
	} else if (park_try(p)) {
		parked_free(p);
	} else {
		p->next = parked_list;
		parked_list = p;
	}
	pthread_mutex_unlock(&park_lock);
}

static void poll_notify(void *arg, void *ph)
{
	(void)arg;
	fuse_lowlevel_notify_poll(ph);
	fuse_pollhandle_destroy(ph);
}

static void poll_free(void *arg, void *ph)
{
	(void)arg;
	fuse_pollhandle_destroy(ph);
}

/* ---- init ---- */

void oterms_init(struct qfs *fs)
{
	static const struct terms_ops ops = {
	    .wake = park_wake,
	    .poll_notify = poll_notify,
	    .poll_free = poll_free,
	};
	struct dt_error err = {0};

	atomic_store(&shutting_down, false);
	if (terms_new(fs, &ops, &fs->terms, &err) < 0)
		log_error("terminals are not available: %s", err.message);
}

void oterms_destroy(struct qfs *fs)
{
	atomic_store(&shutting_down, true);
	terms_free(fs->terms);
	fs->terms = NULL;
	pthread_mutex_lock(&park_lock);
	while (parked_list) {
		struct parked *p = parked_list;

		parked_list = p->next;
		parked_free(p); /* the session is going: the kernel ends these requests */
	}
	pthread_mutex_unlock(&park_lock);
	pthread_mutex_lock(&ino_lock);
	for (size_t i = 0; i < ninos; i++)
		free(inos[i]);
	free(inos);
	inos = NULL;
	ninos = cap_inos = 0;
	pthread_mutex_unlock(&ino_lock);
}

uint64_t oterms_root_ino(struct qfs *fs, enum node_kind kind, const char *sb_id)
{
	struct tino *ti;
	uint64_t ino;

	(void)fs;
	pthread_mutex_lock(&ino_lock);
	ti = ino_get(kind == NK_SB_PTY ? TK_PTY : TK_TERMINALS, TN_NONE, sb_id, NULL, NULL);
	ino = ti ? ti->ino : 0;
	pthread_mutex_unlock(&ino_lock);
	return ino;
}

int oterms_root_entry(struct qfs *fs, enum node_kind kind, const char *sb_id, const char *sb_name,
		      struct fuse_entry_param *e, struct dt_error *err)
{
	int ret = make_entry(fs, kind == NK_SB_PTY ? TK_PTY : TK_TERMINALS, TN_NONE, sb_id, sb_name,
			     NULL, e);

	if (ret < 0)
		return core_fail(err, ENOMEM, "out of memory");
	/* the name given by the caller may be newer (a rename of the sandbox elsewhere) */
	pthread_mutex_lock(&ino_lock);
	{
		struct tino *ti = ino_find(e->ino);

		if (ti && sb_name)
			copy_str(ti->sb_name, sizeof(ti->sb_name), sb_name);
	}
	pthread_mutex_unlock(&ino_lock);
	return 0;
}

/* ---- names ---- */

void oterms_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct qfs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct dt_error err = {0};
	struct tino dir;
	int ret;

	if (!ino_copy(parent, &dir)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	switch (dir.kind) {
	case TK_TERMINALS:
		if (name_is_probe(name) || !fs->terms) {
			reply_negative(req, NEGATIVE_TIMEOUT);
			return;
		}
		scope_begin(req);
		ret = terms_exists(fs->terms, dir.sb_id, name, &err);
		scope_end(req);
		if (ret == -ENOENT) {
			reply_negative(req, NEGATIVE_TIMEOUT);
			return;
		}
		if (ret == 0)
			ret =
			    make_entry(fs, TK_TERM_DIR, TN_NONE, dir.sb_id, dir.sb_name, name, &e);
		break;
	case TK_TERM_DIR:
		ret = -ENOENT;
		for (size_t i = 0; i < NTERM_NODES; i++)
			if (!strcmp(name, term_nodes[i].name))
				ret = make_entry(fs, TK_NODE, term_nodes[i].node, dir.sb_id,
						 dir.sb_name, dir.term, &e);
		if (ret == -ENOENT) {
			reply_negative(req, NEGATIVE_TIMEOUT);
			return;
		}
		break;
	default:
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (ret < 0)
		reply_failure(req, &dir, name, ret, &err);
	else
		fuse_reply_entry(req, &e);
}

void oterms_forget(struct qfs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	(void)fs;
	pthread_mutex_lock(&ino_lock);
	for (size_t i = 0; i < ninos; i++) {
		struct tino *ti = inos[i];

		if (ti->ino != ino)
			continue;
		ti->nlookup = ti->nlookup > nlookup ? ti->nlookup - nlookup : 0;
		/* the roots stay: readdir of the sandbox names them without a lookup */
		if (ti->nlookup == 0 && (ti->kind == TK_TERM_DIR || ti->kind == TK_NODE)) {
			inos[i] = inos[--ninos];
			free(ti);
		}
		break;
	}
	pthread_mutex_unlock(&ino_lock);
}

void oterms_getattr(fuse_req_t req, fuse_ino_t ino)
{
	struct tino ti;
	struct stat st;

	if (!ino_copy(ino, &ti)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	fill_attr(fs_of(req), &ti, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

void oterms_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		    struct fuse_file_info *fi)
{
	struct tino ti;
	struct stat st;

	(void)attr;
	(void)fi;
	if (!ino_copy(ino, &ti)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	/* truncate (echo x > node) and touch: accepted, nothing changes */
	if ((to_set & FUSE_SET_ATTR_SIZE) && S_ISDIR(kind_mode(&ti))) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	fill_attr(fs_of(req), &ti, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

void oterms_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct qfs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct dt_error err = {0};
	struct tino dir;
	int ret;

	(void)mode;
	if (!ino_copy(parent, &dir)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (dir.kind != TK_TERMINALS) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (!fs->terms) {
		fuse_reply_err(req, EIO);
		return;
	}
	scope_begin(req);
	ret = terms_mkdir(fs->terms, dir.sb_id, dir.sb_name, name, &err);
	scope_end(req);
	if (ret == 0)
		ret = make_entry(fs, TK_TERM_DIR, TN_NONE, dir.sb_id, dir.sb_name, name, &e);
	if (ret < 0) {
		reply_failure(req, &dir, name, ret, &err);
		return;
	}
	fuse_reply_entry(req, &e);
}

void oterms_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct qfs *fs = fs_of(req);
	struct dt_error err = {0};
	struct tino dir;
	int ret;

	if (!ino_copy(parent, &dir)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (dir.kind != TK_TERMINALS) {
		fuse_reply_err(req, dir.kind == TK_TERM_DIR ? ENOTDIR : EPERM);
		return;
	}
	if (!fs->terms) {
		fuse_reply_err(req, EIO);
		return;
	}
	scope_begin(req);
	ret = terms_rmdir(fs->terms, dir.sb_id, name, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, &dir, name, ret, &err);
	else
		fuse_reply_err(req, 0);
}

void oterms_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

void oterms_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		   const char *newname, unsigned int flags)
{
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	fuse_reply_err(req, EPERM);
}

void oterms_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		   struct fuse_file_info *fi)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)fi;
	fuse_reply_err(req, EPERM);
}

/* ---- files ---- */

void oterms_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct qfs *fs = fs_of(req);
	struct terms_handle *h = NULL;
	struct dt_error err = {0};
	enum terms_node node;
	struct tino ti;
	int ret;

	if (!ino_copy(ino, &ti)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (ti.kind == TK_TERMINALS || ti.kind == TK_TERM_DIR) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	node = ti.kind == TK_PTY ? TN_PTY : ti.node;
	/* read-only even for root */
	if (node == TN_EXIT && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	if (!fs->terms) {
		fuse_reply_err(req, EIO);
		return;
	}
	scope_begin(req);
	ret = terms_open(fs->terms, ti.sb_id, ti.sb_name, ti.term, node, fi->flags,
			 (uint32_t)fuse_req_ctx(req)->pid, &h, &err);
	scope_end(req);
	if (ret < 0) {
		reply_failure(req, &ti, NULL, ret, &err);
		return;
	}
	if (node == TN_PTY && terms_handle_name(h)[0])
		log_debug("sandboxes/%s/pty: terminal %s for thread %d", ti.sb_name,
			  terms_handle_name(h), (int)fuse_req_ctx(req)->pid);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	/* streams: no offsets; the value nodes read from their start like control files */
	if (node == TN_DATA || node == TN_PTY)
		fi->nonseekable = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		terms_release(h); /* the opener was interrupted meanwhile */
}

static struct terms_handle *handle_of(struct fuse_file_info *fi)
{
	return (struct terms_handle *)(uintptr_t)fi->fh;
}

static bool is_stream(enum terms_node node)
{
	return node == TN_DATA || node == TN_PTY || node == TN_EXIT;
}

void oterms_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct terms_handle *h = handle_of(fi);
	struct parked *p;

	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (!is_stream(terms_handle_node(h))) {
		/* size and env: a value, maybe asked from the backend (not under park_lock) */
		struct dt_error err = {0};
		char *buf = malloc(size ? size : 1);
		size_t got = 0;
		struct tino ti;
		int ret;

		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		scope_begin(req);
		ret = terms_read(h, buf, size, off, &got, NULL, &err);
		scope_end(req);
		if (ret < 0 && ino_copy(ino, &ti))
			reply_failure(req, &ti, NULL, ret, &err);
		else if (ret < 0)
			fuse_reply_err(req, -ret);
		else
			fuse_reply_buf(req, buf, got);
		free(buf);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (p)
		p->buf = malloc(size ? size : 1);
	if (!p || !p->buf) {
		free(p);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->req = req;
	p->h = h;
	p->off = off;
	p->size = size;
	park_or_answer(p, (fi->flags & O_NONBLOCK) != 0);
}

void oterms_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		  struct fuse_file_info *fi)
{
	struct terms_handle *h = handle_of(fi);
	enum terms_node node;
	struct parked *p;

	(void)off;
	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	node = terms_handle_node(h);
	if (node != TN_DATA && node != TN_PTY) {
		struct dt_error err = {0};
		struct tino ti;
		int ret;

		scope_begin(req);
		ret = terms_write(h, buf, size, NULL, &err);
		scope_end(req);
		if (ret < 0 && ino_copy(ino, &ti))
			reply_failure(req, &ti, NULL, ret, &err);
		else if (ret < 0)
			fuse_reply_err(req, -ret);
		else
			fuse_reply_write(req, size);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (p)
		p->buf = malloc(size ? size : 1);
	if (!p || !p->buf) {
		free(p);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(p->buf, buf, size);
	p->req = req;
	p->h = h;
	p->is_write = true;
	p->size = size;
	park_or_answer(p, (fi->flags & O_NONBLOCK) != 0);
}

/* Never ENOSYS for flush, fsync or poll: the kernel would remember it for the whole mount. */
void oterms_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

void oterms_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

void oterms_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct terms_handle *h = handle_of(fi);

	(void)ino;
	/* a pty handle's shell is killed here: a network call, on this worker */
	if (h)
		terms_release(h);
	fuse_reply_err(req, 0);
}

/* ---- directories ---- */

struct dirsnap {
	char **names;
	size_t n;
};

void oterms_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct qfs *fs = fs_of(req);
	struct dt_error err = {0};
	struct dirsnap *d;
	struct tino ti;
	int ret = 0;

	if (!ino_copy(ino, &ti)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (ti.kind != TK_TERMINALS && ti.kind != TK_TERM_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (ti.kind == TK_TERMINALS) {
		if (!fs->terms) {
			ret = -EIO;
		} else {
			scope_begin(req);
			ret = terms_list(fs->terms, ti.sb_id, &d->names, &d->n, &err);
			scope_end(req);
		}
	}
	if (ret < 0) {
		free(d);
		reply_failure(req, &ti, NULL, ret, &err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	fuse_reply_open(req, fi);
}

void oterms_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi, bool plus)
{
	struct qfs *fs = fs_of(req);
	struct dirsnap *d = (struct dirsnap *)(uintptr_t)fi->fh;
	struct tino ti;
	char *buf;
	size_t used = 0, count;

	if (!ino_copy(ino, &ti) || !d) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	count = ti.kind == TK_TERMINALS ? d->n : NTERM_NODES;
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (off_t i = off; i < (off_t)count + 2; i++) {
		struct fuse_entry_param e;
		const char *name;
		size_t need;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			name = i == 0 ? "." : "..";
			fill_attr(fs, &ti, &e.attr);
		} else if (ti.kind == TK_TERMINALS) {
			name = d->names[i - 2];
			if (plus ? make_entry(fs, TK_TERM_DIR, TN_NONE, ti.sb_id, ti.sb_name, name,
					      &e)
				 : 0)
				break;
			if (!plus) {
				struct tino dir = ti;

				dir.kind = TK_TERM_DIR;
				fill_attr(fs, &dir, &e.attr);
			}
		} else {
			name = term_nodes[i - 2].name;
			if (plus ? make_entry(fs, TK_NODE, term_nodes[i - 2].node, ti.sb_id,
					      ti.sb_name, ti.term, &e)
				 : 0)
				break;
			if (!plus)
				e.attr.st_mode = term_nodes[i - 2].mode;
		}
		if (plus)
			need =
			    fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1);
		else
			need =
			    fuse_add_direntry(req, buf + used, size - used, name, &e.attr, i + 1);
		if (need > size - used) {
			/* no room: the lookup just counted is not the kernel's */
			if (plus && i >= 2)
				oterms_forget(fs, e.ino, 1);
			break;
		}
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

void oterms_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirsnap *d = (struct dirsnap *)(uintptr_t)fi->fh;

	(void)ino;
	if (d) {
		terms_names_free(d->names, d->n);
		free(d);
	}
	fuse_reply_err(req, 0);
}

void oterms_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		 struct fuse_pollhandle *ph)
{
	struct terms_handle *h = handle_of(fi);

	(void)ino;
	if (!h) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		fuse_reply_poll(req, POLLERR);
		return;
	}
	fuse_reply_poll(req, terms_poll(h, ph));
}
