/*
 * The FUSE side of runs/ (runs.h is the core). Every operation asks the
 * core and replies once, except a read of output or exit that has nothing
 * to give yet: that request is parked here, not in a worker thread, and
 * answered from the follower thread that wakes it (new output, the exit,
 * a failure), or with EINTR as soon as the kernel interrupts it (Ctrl-C).
 * poll() handles wait the same way. Streaming nodes are direct_io and
 * non-seekable.
 */
#include "ops_runs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"
#include "log.h"
#include "ops_internal.h"
#include "runs.h"
#include "util.h"

/* An open node: the core's handle and where the next sequential read starts. */
struct ohandle {
	struct runs_handle *h;
	int64_t next_off;
};

/* A read waiting for output or an exit. */
struct parked {
	fuse_req_t req;
	struct ohandle *oh;
	const void *key;
	size_t size;
	off_t off;
	struct parked *next;
};

/* A poll() waiting for the same. */
struct pollwait {
	struct fuse_pollhandle *ph;
	const void *key;
	struct pollwait *next;
};

static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static struct parked *parked;
static struct pollwait *pollers;

static struct qfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct runs *runs_of(fuse_req_t req)
{
	return fs_of(req)->runs;
}

/* Failures a local file gives in the ordinary course of things: only answered. */
static bool ordinary(int errnum)
{
	switch (errnum) {
	case ENOENT:
	case EEXIST:
	case ENOTDIR:
	case EISDIR:
	case EPERM:
	case EINTR:
	case ESTALE:
	case EACCES:
		return true;
	default:
		return false;
	}
}

/* Replies -@ret; anything unusual leaves its reason in the error nodes and the log. */
static void reply_failure(fuse_req_t req, fuse_ino_t ino, const char *name, int ret,
			  const struct dt_error *err)
{
	struct qfs *fs = fs_of(req);

	if (ret == -EAGAIN) /* never the kernel's: would make a blocking read fail */
		ret = -EIO;
	if (!ordinary(-ret)) {
		struct core_changes ch = {0};
		char path[PATH_MAX + 64], sb_id[OBJ_ID_MAX] = "";
		struct dt_error e = *err;

		if (!e.err)
			e.err = -ret;
		runs_node_path(fs->runs, ino, name, path, sizeof(path));
		runs_sandbox_of(fs->runs, ino, sb_id, sizeof(sb_id));
		core_record_failure(fs, path, sb_id, &e, &ch);
		apply_changes(fs, &ch);
	}
	fuse_reply_err(req, -ret);
}

static double attr_timeout(uint64_t ino)
{
	return runs_attr_volatile(ino) ? 0.0 : ATTR_TIMEOUT;
}

static void fill_entry(struct fuse_entry_param *e, const struct runs_entry *re)
{
	memset(e, 0, sizeof(*e));
	e->ino = re->ino;
	e->attr = re->attr;
	e->attr_timeout = attr_timeout(re->ino);
	e->entry_timeout = ENTRY_TIMEOUT;
}

/* ---- parked reads and polls --------------------------------------------- */

static void on_interrupt(fuse_req_t req, void *data)
{
	struct parked *p, **pp;

	(void)data;
	pthread_mutex_lock(&park_lock);
	for (pp = &parked; (p = *pp); pp = &p->next)
		if (p->req == req)
			break;
	if (p)
		*pp = p->next;
	pthread_mutex_unlock(&park_lock);
	/* Not found: it is being answered right now, or was. */
	if (p) {
		fuse_reply_err(req, EINTR);
		free(p);
	}
}

static void serve(struct runs *r, struct parked *p);

/*
 * Parks @p until its command changes. Output may have come between the
 * read and now: then it is served again at once.
 */
static void park(struct runs *r, struct parked *p)
{
	bool ready;

	pthread_mutex_lock(&park_lock);
	if (fuse_req_interrupted(p->req)) {
		pthread_mutex_unlock(&park_lock);
		fuse_reply_err(p->req, EINTR);
		free(p);
		return;
	}
	p->next = parked;
	parked = p;
	pthread_mutex_unlock(&park_lock);
	ready = runs_ready(r, p->oh->h, p->off);
	if (ready) {
		struct parked *q, **pp;

		pthread_mutex_lock(&park_lock);
		for (pp = &parked; (q = *pp); pp = &q->next)
			if (q == p)
				break;
		if (q)
			*pp = q->next;
		pthread_mutex_unlock(&park_lock);
		if (q)
			serve(r, q);
	}
}

/* Reads for @p, and replies; parks it again when there is still nothing. */
static void serve(struct runs *r, struct parked *p)
{
	struct dt_error err = {0};
	size_t got = 0;
	char *buf = malloc(p->size ? p->size : 1);
	int ret;

	if (!buf) {
		fuse_reply_err(p->req, ENOMEM);
		free(p);
		return;
	}
	ret = runs_read(r, p->oh->h, buf, p->size, p->off, &got, &err);
	if (ret == -EAGAIN) {
		free(buf);
		park(r, p);
		return;
	}
	if (ret < 0) {
		reply_failure(p->req, runs_handle_ino(p->oh->h), NULL, ret, &err);
	} else {
		__atomic_store_n(&p->oh->next_off, (int64_t)p->off + (int64_t)got,
				 __ATOMIC_RELAXED);
		fuse_reply_buf(p->req, buf, got);
	}
	free(buf);
	free(p);
}

/* From a follower thread: command @key has news. */
static void on_wake(void *arg, const void *key)
{
	struct qfs *fs = arg;
	struct parked *mine = NULL, *p, **pp;
	struct pollwait *polls = NULL, *w, **wp;

	pthread_mutex_lock(&park_lock);
	for (pp = &parked; (p = *pp);) {
		if (p->key == key) {
			*pp = p->next;
			p->next = mine;
			mine = p;
		} else {
			pp = &p->next;
		}
	}
	for (wp = &pollers; (w = *wp);) {
		if (w->key == key) {
			*wp = w->next;
			w->next = polls;
			polls = w;
		} else {
			wp = &w->next;
		}
	}
	pthread_mutex_unlock(&park_lock);
	while ((p = mine)) {
		mine = p->next;
		serve(fs->runs, p);
	}
	while ((w = polls)) {
		polls = w->next;
		fuse_lowlevel_notify_poll(w->ph);
		fuse_pollhandle_destroy(w->ph);
		free(w);
	}
}

void oruns_init(struct qfs *fs)
{
	const char *spool = fs->files ? files_cache_dir(fs->files) : NULL;

	if (runs_new(fs, spool, &fs->runs) < 0) {
		log_error("runs/: out of memory");
		return;
	}
	runs_set_wake(fs->runs, on_wake, fs);
}

void oruns_destroy(struct qfs *fs)
{
	struct parked *p;
	struct pollwait *w;

	pthread_mutex_lock(&park_lock);
	p = parked;
	parked = NULL;
	w = pollers;
	pollers = NULL;
	pthread_mutex_unlock(&park_lock);
	while (p) {
		struct parked *next = p->next;

		fuse_reply_err(p->req, EIO);
		free(p);
		p = next;
	}
	while (w) {
		struct pollwait *next = w->next;

		fuse_pollhandle_destroy(w->ph);
		free(w);
		w = next;
	}
	runs_free(fs->runs);
	fs->runs = NULL;
}

/* ---- names -------------------------------------------------------------- */

uint64_t oruns_root_ino(struct qfs *fs, const char *sb_id)
{
	return fs->runs ? runs_root_ino(fs->runs, sb_id) : RUNS_TAG;
}

int oruns_root_entry(struct qfs *fs, const char *sb_id, const char *sb_name,
		     struct fuse_entry_param *e, struct dt_error *err)
{
	struct runs_entry re;
	int ret;

	if (!fs->runs) {
		err->err = ENOMEM;
		copy_str(err->message, sizeof(err->message), "runs/ is not available");
		return -ENOMEM;
	}
	ret = runs_root_entry(fs->runs, sb_id, sb_name, &re, err);
	if (ret == 0)
		fill_entry(e, &re);
	return ret;
}

void oruns_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	struct runs_entry re;
	struct dt_error err = {0};
	int ret;

	log_debug("runs lookup %lx/%s", (unsigned long)parent, name);
	scope_begin(req);
	ret = runs_lookup(runs_of(req), parent, name, &re, &err);
	scope_end(req);
	if (ret == -ENOENT) {
		reply_negative(req, NEGATIVE_TIMEOUT);
	} else if (ret < 0) {
		reply_failure(req, parent, name, ret, &err);
	} else {
		fill_entry(&e, &re);
		fuse_reply_entry(req, &e);
	}
}

void oruns_forget(struct qfs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	/* Numbers are kept for the life of the mount: nothing to count. */
	(void)fs;
	(void)ino;
	(void)nlookup;
}

void oruns_getattr(fuse_req_t req, fuse_ino_t ino)
{
	struct dt_error err = {0};
	struct stat st;
	int ret = runs_getattr(runs_of(req), ino, &st, &err);

	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, attr_timeout(ino));
}

void oruns_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi)
{
	struct dt_error err = {0};
	struct stat st;
	int ret;

	(void)attr;
	(void)fi;
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	/* Truncation (echo > command) and times: accepted, nothing to change. */
	ret = runs_getattr(runs_of(req), ino, &st, &err);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, attr_timeout(ino));
}

void oruns_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fuse_entry_param e;
	struct runs_entry re;
	struct dt_error err = {0};
	int ret;

	(void)mode;
	log_debug("runs mkdir %lx/%s", (unsigned long)parent, name);
	scope_begin(req);
	ret = runs_mkdir(runs_of(req), parent, name, &re, &err);
	scope_end(req);
	if (ret < 0) {
		reply_failure(req, parent, name, ret, &err);
		return;
	}
	notify_entry(parent, name);
	fill_entry(&e, &re);
	fuse_reply_entry(req, &e);
}

void oruns_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

void oruns_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct dt_error err = {0};
	int ret;

	log_debug("runs rmdir %lx/%s", (unsigned long)parent, name);
	scope_begin(req);
	ret = runs_rmdir(runs_of(req), parent, name, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, parent, name, ret, &err);
	else
		fuse_reply_err(req, 0);
}

void oruns_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags)
{
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	fuse_reply_err(req, EPERM);
}

/* ---- nodes -------------------------------------------------------------- */

void oruns_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ohandle *oh = calloc(1, sizeof(*oh));
	struct dt_error err = {0};
	bool streaming = false;
	int ret;

	if (!oh) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	log_debug("runs open %lx", (unsigned long)ino);
	scope_begin(req);
	ret = runs_open(runs_of(req), ino, fi->flags, &oh->h, &streaming, &err);
	scope_end(req);
	if (ret < 0) {
		free(oh);
		reply_failure(req, ino, NULL, ret, &err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)oh;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fi->nonseekable = streaming;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		runs_release(runs_of(req), oh->h);
		free(oh);
	}
}

void oruns_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)fi;
	/* The nodes exist; a new name does not: sessions are made with mkdir. */
	fuse_reply_err(req, EPERM);
}

void oruns_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct ohandle *oh = (struct ohandle *)(uintptr_t)fi->fh;
	struct runs *r = runs_of(req);
	struct dt_error err = {0};
	struct parked *p;
	size_t got = 0;
	char *buf = malloc(size ? size : 1);
	int ret;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	scope_begin(req);
	ret = runs_read(r, oh->h, buf, size, off, &got, &err);
	scope_end(req);
	if (ret == -EAGAIN) {
		free(buf);
		p = calloc(1, sizeof(*p));
		if (!p) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		p->req = req;
		p->oh = oh;
		p->key = runs_handle_key(oh->h);
		p->size = size;
		p->off = off;
		fuse_req_interrupt_func(req, on_interrupt, NULL);
		park(r, p);
		return;
	}
	if (ret < 0) {
		reply_failure(req, ino, NULL, ret, &err);
	} else {
		__atomic_store_n(&oh->next_off, (int64_t)off + (int64_t)got, __ATOMIC_RELAXED);
		fuse_reply_buf(req, buf, got);
	}
	free(buf);
}

void oruns_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct ohandle *oh = (struct ohandle *)(uintptr_t)fi->fh;
	struct dt_error err = {0};
	int ret;

	(void)off; /* one command per write, wherever it lands */
	log_debug("runs write %lx %zu bytes", (unsigned long)ino, size);
	scope_begin(req);
	ret = runs_write(runs_of(req), oh->h, buf, size, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, ino, NULL, ret, &err);
	else
		fuse_reply_write(req, size);
}

/* Never ENOSYS for flush, fsync or poll: the kernel would remember it for the whole mount. */
void oruns_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ohandle *oh = (struct ohandle *)(uintptr_t)fi->fh;
	struct dt_error err = {0};
	int ret;

	scope_begin(req);
	ret = runs_flush(runs_of(req), oh->h, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, ino, NULL, ret, &err);
	else
		fuse_reply_err(req, 0);
}

void oruns_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	oruns_flush(req, ino, fi);
}

void oruns_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ohandle *oh = (struct ohandle *)(uintptr_t)fi->fh;

	(void)ino;
	if (oh) {
		runs_release(runs_of(req), oh->h);
		free(oh);
	}
	fuse_reply_err(req, 0);
}

void oruns_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		struct fuse_pollhandle *ph)
{
	struct ohandle *oh = (struct ohandle *)(uintptr_t)fi->fh;
	struct runs *r = runs_of(req);
	int64_t off;
	unsigned events = POLLOUT | POLLWRNORM;
	bool ready;

	(void)ino;
	if (!oh) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		fuse_reply_poll(req, POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);
		return;
	}
	off = __atomic_load_n(&oh->next_off, __ATOMIC_RELAXED);
	ready = runs_ready(r, oh->h, off);
	if (!ready && ph) {
		struct pollwait *w = calloc(1, sizeof(*w));

		if (w) {
			w->ph = ph;
			w->key = runs_handle_key(oh->h);
			pthread_mutex_lock(&park_lock);
			w->next = pollers;
			pollers = w;
			pthread_mutex_unlock(&park_lock);
			ph = NULL;
			/* It may have become ready meanwhile: notify as the follower would. */
			if (runs_ready(r, oh->h, off))
				on_wake(fs_of(req), w->key);
		}
	}
	if (ph)
		fuse_pollhandle_destroy(ph);
	if (ready)
		events |= POLLIN | POLLRDNORM;
	fuse_reply_poll(req, events);
}

/* ---- directories -------------------------------------------------------- */

struct odir {
	struct runs_dirent *items;
	size_t n;
	uint64_t parent;
};

void oruns_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct odir *d = calloc(1, sizeof(*d));
	struct dt_error err = {0};
	int ret;

	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	log_debug("runs opendir %lx", (unsigned long)ino);
	scope_begin(req);
	ret = runs_list(runs_of(req), ino, &d->items, &d->n, &d->parent, &err);
	scope_end(req);
	if (ret < 0) {
		free(d);
		reply_failure(req, ino, NULL, ret, &err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		free(d->items);
		free(d);
	}
}

void oruns_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi, bool plus)
{
	struct odir *d = (struct odir *)(uintptr_t)fi->fh;
	struct runs *r = runs_of(req);
	size_t used = 0;
	char *buf = calloc(1, size ? size : 1);

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (off_t i = off; d && i < (off_t)d->n + 2; i++) {
		struct fuse_entry_param e;
		const char *name;
		size_t want;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			name = i == 0 ? "." : "..";
			e.attr.st_ino = i == 0 ? ino : d->parent ? d->parent : FUSE_ROOT_ID;
			e.attr.st_mode = S_IFDIR;
		} else {
			const struct runs_dirent *de = &d->items[i - 2];
			struct dt_error err;

			name = de->name;
			if (plus && runs_getattr(r, de->ino, &e.attr, &err) == 0) {
				e.ino = de->ino;
				e.attr_timeout = attr_timeout(de->ino);
				e.entry_timeout = ENTRY_TIMEOUT;
			} else {
				e.attr.st_ino = de->ino;
				e.attr.st_mode = de->mode;
			}
		}
		if (plus)
			want =
			    fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1);
		else
			want =
			    fuse_add_direntry(req, buf + used, size - used, name, &e.attr, i + 1);
		if (want > size - used)
			break;
		used += want;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

void oruns_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct odir *d = (struct odir *)(uintptr_t)fi->fh;

	(void)ino;
	if (d) {
		free(d->items);
		free(d);
	}
	fuse_reply_err(req, 0);
}
