/*
 * The FUSE side: each operation finds its node in the inode table, asks the
 * core, replies exactly once, and tells the kernel what changed. errno
 * values cross here and nowhere else. Every request that may wait on the
 * backend runs with a cancel hook, so a FUSE interrupt (Ctrl-C) ends it.
 */
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "files.h"
#include "log.h"
#include "ops_internal.h"
#include "ops_runs.h"
#include "ops_terms.h"
#include "util.h"
/* Probe names never exist here: the kernel may remember that for long. */
#define PROBE_TIMEOUT 3600.0

static struct fuse_session *session;

struct fuse_session *ops_session(void)
{
	return session;
}

void ops_set_session(struct fuse_session *se)
{
	session = se;
	if (notify_start(se) < 0)
		log_warn("no notifier thread: the kernel's caches expire by their timeouts only");
}

void ops_shutdown(void)
{
	if (!notify_stop(2000))
		log_debug("the notifier waits on the kernel; stopping it after the unmount");
}

void ops_shutdown_finish(void)
{
	notify_stop(-1);
}

/*
 * How long the kernel may keep what was learnt at @data_ms: the timeout
 * less the data's age, so that it never believes anything older than the
 * timeout (an object deleted elsewhere is gone within the contract's 2 s).
 */
double timeout_left(double timeout, int64_t data_ms)
{
	double age = (double)(now_mono_ms() - data_ms) / 1000.0;

	if (age <= 0)
		return timeout;
	return age >= timeout ? 0.0 : timeout - age;
}

static struct qfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- interrupts --------------------------------------------------------- */

static void on_interrupt(fuse_req_t req, void *data)
{
	(void)req;
	(void)data;
	log_debug("request interrupted");
}

static bool req_cancelled(void *arg)
{
	return fuse_req_interrupted((fuse_req_t)arg) != 0;
}

/* Between these two, a backend call or wait on this thread ends with EINTR on an interrupt. */
void scope_begin(fuse_req_t req)
{
	fuse_req_interrupt_func(req, on_interrupt, NULL);
	core_set_cancel(req_cancelled, req);
}

void scope_end(fuse_req_t req)
{
	core_set_cancel(NULL, NULL);
	fuse_req_interrupt_func(req, NULL, NULL);
}

/* ---- helpers ------------------------------------------------------------ */

static bool get_node(fuse_req_t req, fuse_ino_t ino, struct node_info *n)
{
	if (itable_get(fs_of(req)->itab, ino, n))
		return true;
	fuse_reply_err(req, ESTALE);
	return false;
}

/* Tells the kernel to drop what a change made stale. Never called holding a lock. */
void apply_changes(struct qfs *fs, const struct core_changes *ch)
{
	uint64_t inos[64];

	if (!session)
		return;
	for (size_t i = 0; i < ch->nentries; i++) {
		fuse_ino_t parent = itable_peek(fs->itab, &ch->entries[i].dir);
		const char *name = ch->entries[i].name;

		fuse_lowlevel_notify_inval_entry(session, parent, name, strlen(name));
	}
	for (size_t i = 0; i < ch->nobjs; i++) {
		size_t n = itable_inos_of(fs->itab, ch->objs[i], inos, ARRAY_SIZE(inos));

		for (size_t j = 0; j < n; j++)
			fuse_lowlevel_notify_inval_inode(session, inos[j], -1, 0);
	}
	if (ch->root_error) {
		struct node_info err_node;

		node_make(&err_node, NK_ROOT_ERROR, "", "", NULL);
		fuse_lowlevel_notify_inval_inode(session, itable_peek(fs->itab, &err_node), -1, 0);
	}
}

static void child_path(const struct node_info *dir, const char *name, char *out, size_t size)
{
	char dir_path[600];

	node_path(dir, dir_path, sizeof(dir_path));
	if (dir->kind == NK_ROOT)
		snprintf(out, size, "%s", name);
	else
		snprintf(out, size, "%s/%s", dir_path, name);
}

/*
 * Replies a failure. Reads that fail for other reasons than a missing name
 * or an interrupt leave their reason in the root error node and the log too.
 */
static void reply_read_failure(fuse_req_t req, const char *path, int ret,
			       const struct dt_error *err)
{
	struct qfs *fs = fs_of(req);

	if (ret != -ENOENT && ret != -EINTR) {
		struct core_changes ch = {0};

		core_record_failure(fs, path, "", err, &ch);
		apply_changes(fs, &ch);
	}
	fuse_reply_err(req, -ret);
}

/* Replies a failed change after recording it: root error, object error, log. */
static void reply_change_failure(fuse_req_t req, const char *path, const char *obj_id,
				 struct core_changes *ch, int ret, const struct dt_error *err)
{
	struct qfs *fs = fs_of(req);

	core_record_failure(fs, path, obj_id, err, ch);
	apply_changes(fs, ch);
	fuse_reply_err(req, -ret);
}

/* Fills @e for @child (counting a lookup) from its attributes. */
static int make_entry(struct qfs *fs, struct node_info *child, struct fuse_entry_param *e,
		      struct dt_error *err)
{
	int64_t data_ms;
	int ret;

	memset(e, 0, sizeof(*e));
	if (child->kind == NK_SB_FILES)
		return ofiles_root_entry(fs, child->obj_id, e, err);
	if (child->kind == NK_SB_RUNS)
		return oruns_root_entry(fs, child->obj_id, child->obj_name, e, err);
	if (child->kind == NK_SB_PTY || child->kind == NK_SB_TERMINALS)
		return oterms_root_entry(fs, child->kind, child->obj_id, child->obj_name, e, err);
	child->ino = itable_peek(fs->itab, child);
	ret = core_getattr(fs, child, &e->attr, &data_ms, err);
	if (ret < 0)
		return ret;
	if (itable_ref(fs->itab, child) < 0)
		return core_fail(err, ENOMEM, "out of memory");
	e->ino = child->ino;
	e->attr.st_ino = child->ino;
	e->attr_timeout = timeout_left(ATTR_TIMEOUT, data_ms);
	e->entry_timeout = timeout_left(ENTRY_TIMEOUT, data_ms);
	return 0;
}

void reply_negative(fuse_req_t req, double timeout)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.entry_timeout = timeout;
	fuse_reply_entry(req, &e);
}

/* Names in labels/ and env/ are data: a probe name there may be real. */
static bool probes_answered_locally(const struct node_info *dir)
{
	return dir->kind != NK_SB_LABELS && dir->kind != NK_SB_ENVDIR;
}

/* ---- the operations ----------------------------------------------------- */

/*
 * A refresh found an object gone (deleted elsewhere): the kernel must drop
 * its name now rather than when the entry times out.
 */
static void on_object_gone(void *arg, enum obj_type t, const char *id, const char *name)
{
	struct qfs *fs = arg;
	struct node_info coll;
	fuse_ino_t parent;

	node_make(&coll, t == OBJ_SANDBOX ? NK_SANDBOXES : t == OBJ_VOLUME ? NK_VOLUMES
									    : NK_SNAPSHOTS,
		  "", "", NULL);
	parent = itable_peek(fs->itab, &coll);
	log_debug("%s: gone from the backend", name);
	notify_entry(parent, name);
	if (t == OBJ_SANDBOX && strcmp(id, name) != 0)
		notify_entry(parent, id); /* the id symlink */
}

static void qfs_init_op(void *userdata, struct fuse_conn_info *conn)
{
	struct qfs *fs = userdata;

	cache_set_gone_hook(fs->cache, on_object_gone, fs);
	ofiles_init(fs);
	oruns_init(fs);
	oterms_init(fs);
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* Listings carry attributes at no extra cost: always use readdirplus. */
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/*
	 * O_TRUNC comes with the open: the kernel's truncate after an open
	 * carries no file handle, and files/ must truncate the handle's copy
	 * (sent at close), not the sandbox's file at once. Control files ignore
	 * it, as they ignore any truncate.
	 */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

static void qfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct qfs *fs = fs_of(req);
	struct node_info dir, child;
	struct fuse_entry_param e;
	struct dt_error err = {0};
	char path[1024];
	int ret;

	if (files_is_ino(parent)) {
		ofiles_lookup(req, parent, name);
		return;
	}
	if (runs_is_ino(parent)) {
		oruns_lookup(req, parent, name);
		return;
	}
	if (terms_is_ino(parent)) {
		oterms_lookup(req, parent, name);
		return;
	}
	if (!get_node(req, parent, &dir))
		return;
	if (name_is_probe(name) && probes_answered_locally(&dir)) {
		reply_negative(req, PROBE_TIMEOUT);
		return;
	}
	child_path(&dir, name, path, sizeof(path));
	log_debug("lookup %s", path);
	scope_begin(req);
	ret = core_lookup(fs, &dir, name, &child, &err);
	if (ret == 0)
		ret = make_entry(fs, &child, &e, &err);
	scope_end(req);
	if (ret == -ENOENT)
		reply_negative(req, NEGATIVE_TIMEOUT);
	else if (ret < 0)
		reply_read_failure(req, path, ret, &err);
	else
		fuse_reply_entry(req, &e);
}

static void forget_one(struct qfs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	if (files_is_ino(ino))
		files_forget(fs->files, ino, nlookup);
	else if (runs_is_ino(ino))
		oruns_forget(fs, ino, nlookup);
	else if (terms_is_ino(ino))
		oterms_forget(fs, ino, nlookup);
	else
		itable_forget(fs->itab, ino, nlookup);
}

static void qfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void qfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget_one(fs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void qfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct qfs *fs = fs_of(req);
	struct dt_error err = {0};
	struct node_info n;
	int64_t data_ms;
	struct stat st;
	char path[1024];
	int ret;

	if (files_is_ino(ino)) {
		ofiles_getattr(req, ino);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_getattr(req, ino);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_getattr(req, ino);
		return;
	}
	(void)fi;
	if (!get_node(req, ino, &n))
		return;
	node_path(&n, path, sizeof(path));
	log_debug("getattr %s", path);
	scope_begin(req);
	ret = core_getattr(fs, &n, &st, &data_ms, &err);
	scope_end(req);
	if (ret < 0)
		reply_read_failure(req, path, ret, &err);
	else
		fuse_reply_attr(req, &st, timeout_left(ATTR_TIMEOUT, data_ms));
}

static void qfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			struct fuse_file_info *fi)
{
	struct qfs *fs = fs_of(req);
	struct dt_error err = {0};
	struct node_info n;
	int64_t data_ms;
	struct stat st;
	char path[1024];
	int ret;

	if (files_is_ino(ino)) {
		ofiles_setattr(req, ino, attr, to_set, fi);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_setattr(req, ino, attr, to_set, fi);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_setattr(req, ino, attr, to_set, fi);
		return;
	}
	(void)attr;
	(void)fi;
	if (!get_node(req, ino, &n))
		return;
	node_path(&n, path, sizeof(path));
	log_debug("setattr %s 0x%x", path, to_set);
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		/* `echo x > file` truncates first: a no-op on a control file. */
		if (kind_is_dir(n.kind)) {
			fuse_reply_err(req, EISDIR);
			return;
		}
		if (!kind_is_writable(n.kind)) {
			fuse_reply_err(req, EACCES);
			return;
		}
	}
	/* Times cannot be set; touch succeeds and changes nothing. */
	scope_begin(req);
	ret = core_getattr(fs, &n, &st, &data_ms, &err);
	scope_end(req);
	if (ret < 0)
		reply_read_failure(req, path, ret, &err);
	else
		fuse_reply_attr(req, &st, timeout_left(ATTR_TIMEOUT, data_ms));
}

static void qfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct qfs *fs = fs_of(req);
	struct dt_error err = {0};
	struct node_info n;
	char target[NODE_NAME_MAX], path[1024];
	int ret;

	if (files_is_ino(ino)) {
		ofiles_readlink(req, ino);
		return;
	}
	if (!get_node(req, ino, &n))
		return;
	node_path(&n, path, sizeof(path));
	log_debug("readlink %s", path);
	scope_begin(req);
	ret = core_readlink(fs, &n, target, sizeof(target), &err);
	scope_end(req);
	if (ret < 0)
		reply_read_failure(req, path, ret, &err);
	else
		fuse_reply_readlink(req, target);
}

static void qfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct qfs *fs = fs_of(req);
	struct core_changes ch = {0};
	struct dt_error err = {0};
	struct node_info dir, child;
	struct fuse_entry_param e;
	char path[1024];
	int ret;

	if (files_is_ino(parent)) {
		ofiles_mkdir(req, parent, name, mode);
		return;
	}
	if (runs_is_ino(parent)) {
		oruns_mkdir(req, parent, name, mode);
		return;
	}
	if (terms_is_ino(parent)) {
		oterms_mkdir(req, parent, name, mode);
		return;
	}
	(void)mode;
	if (!get_node(req, parent, &dir))
		return;
	child_path(&dir, name, path, sizeof(path));
	log_debug("mkdir %s", path);
	if (name_is_probe(name)) {
		core_fail(&err, EINVAL, "'%s' is a name file managers probe for; use another",
			  name);
		reply_change_failure(req, path, "", &ch, -EINVAL, &err);
		return;
	}
	scope_begin(req);
	ret = core_mkdir(fs, &dir, name, &child, &ch, &err);
	if (ret == 0)
		ret = make_entry(fs, &child, &e, &err);
	scope_end(req);
	if (ret < 0) {
		reply_change_failure(req, path, "", &ch, ret, &err);
		return;
	}
	log_info("%s: created", path);
	apply_changes(fs, &ch);
	fuse_reply_entry(req, &e);
}

static void qfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct qfs *fs = fs_of(req);
	struct core_changes ch = {0};
	struct dt_error err = {0};
	struct node_info dir;
	char path[1024];
	int ret;

	if (files_is_ino(parent)) {
		ofiles_rmdir(req, parent, name);
		return;
	}
	if (runs_is_ino(parent)) {
		oruns_rmdir(req, parent, name);
		return;
	}
	if (terms_is_ino(parent)) {
		oterms_rmdir(req, parent, name);
		return;
	}
	if (!get_node(req, parent, &dir))
		return;
	child_path(&dir, name, path, sizeof(path));
	log_debug("rmdir %s", path);
	scope_begin(req);
	ret = core_rmdir(fs, &dir, name, &ch, &err);
	scope_end(req);
	if (ret < 0) {
		reply_change_failure(req, path, "", &ch, ret, &err);
		return;
	}
	log_info("%s: deleted", path);
	apply_changes(fs, &ch);
	fuse_reply_err(req, 0);
}

static void qfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct qfs *fs = fs_of(req);
	struct core_changes ch = {0};
	struct dt_error err = {0};
	struct node_info dir;
	char path[1024];
	int ret;

	if (files_is_ino(parent)) {
		ofiles_unlink(req, parent, name);
		return;
	}
	if (runs_is_ino(parent)) {
		oruns_unlink(req, parent, name);
		return;
	}
	if (terms_is_ino(parent)) {
		oterms_unlink(req, parent, name);
		return;
	}
	if (!get_node(req, parent, &dir))
		return;
	child_path(&dir, name, path, sizeof(path));
	log_debug("unlink %s", path);
	scope_begin(req);
	ret = core_unlink(fs, &dir, name, &ch, &err);
	scope_end(req);
	if (ret < 0) {
		reply_change_failure(req, path, dir.obj_id, &ch, ret, &err);
		return;
	}
	core_clear_failure(fs, dir.obj_id, &ch);
	apply_changes(fs, &ch);
	fuse_reply_err(req, 0);
}

static void qfs_refuse(fuse_req_t req, const char *what)
{
	log_debug("%s: refused", what);
	fuse_reply_err(req, EPERM);
}

static void qfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		       const char *newname, unsigned int flags)
{
	if (files_is_ino(parent) || files_is_ino(newparent)) {
		ofiles_rename(req, parent, name, newparent, newname, flags);
		return;
	}
	if (runs_is_ino(parent) && runs_is_ino(newparent)) {
		oruns_rename(req, parent, name, newparent, newname, flags);
		return;
	}
	if (terms_is_ino(parent) && terms_is_ino(newparent)) {
		oterms_rename(req, parent, name, newparent, newname, flags);
		return;
	}
	if (runs_is_ino(parent) || runs_is_ino(newparent) || terms_is_ino(parent) ||
	    terms_is_ino(newparent)) {
		fuse_reply_err(req, EXDEV);
		return;
	}
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	qfs_refuse(req, "rename");
}

static void qfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	(void)parent;
	(void)name;
	qfs_refuse(req, "symlink");
}

static void qfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	qfs_refuse(req, "link");
}

static void qfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      dev_t rdev)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	qfs_refuse(req, "mknod");
}

/* ---- files -------------------------------------------------------------- */

/*
 * An open control file. Reference counted: release drops the handle's own
 * reference, and a read holds one while libfuse writes the reply from
 * @content, so a release that arrives while that reply is still being
 * written (the reader may have returned and closed by then) cannot free it.
 */
struct open_file {
	int refs;
	struct node_info node;
	struct buf content; /* rendered at open for reading */
	bool created;	    /* made by create(), not written yet */
};

static struct open_file *open_file_new(void)
{
	struct open_file *fh = calloc(1, sizeof(*fh));

	if (fh)
		fh->refs = 1;
	return fh;
}

static struct open_file *open_file_get(struct fuse_file_info *fi)
{
	struct open_file *fh = (struct open_file *)(uintptr_t)fi->fh;

	__atomic_add_fetch(&fh->refs, 1, __ATOMIC_RELAXED);
	return fh;
}

static void open_file_put(struct open_file *fh)
{
	if (!fh || __atomic_sub_fetch(&fh->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	buf_free(&fh->content);
	free(fh);
}

static void qfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct qfs *fs = fs_of(req);
	struct dt_error err = {0};
	struct open_file *fh;
	struct node_info n;
	char path[1024];
	int acc = fi->flags & O_ACCMODE;
	int ret = 0;

	if (files_is_ino(ino)) {
		ofiles_open(req, ino, fi);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_open(req, ino, fi);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_open(req, ino, fi);
		return;
	}
	if (!get_node(req, ino, &n))
		return;
	node_path(&n, path, sizeof(path));
	log_debug("open %s 0%o", path, fi->flags);
	if (kind_is_dir(n.kind)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	/* Even root may not write a read-only node. */
	if (acc != O_RDONLY && !kind_is_writable(n.kind)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	fh = open_file_new();
	if (!fh) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fh->node = n;
	if (acc != O_WRONLY) {
		scope_begin(req);
		ret = core_read(fs, &n, &fh->content, &err);
		scope_end(req);
	}
	if (ret < 0) {
		open_file_put(fh);
		reply_read_failure(req, path, ret, &err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)fh;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	if (fuse_reply_open(req, fi) == -ENOENT)
		open_file_put(fh);
}

static void qfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       struct fuse_file_info *fi)
{
	struct qfs *fs = fs_of(req);
	struct core_changes ch = {0};
	struct dt_error err = {0};
	struct node_info dir, child;
	struct fuse_entry_param e;
	struct open_file *fh;
	char path[1024];
	int ret;

	if (files_is_ino(parent)) {
		ofiles_create(req, parent, name, mode, fi);
		return;
	}
	if (runs_is_ino(parent)) {
		oruns_create(req, parent, name, mode, fi);
		return;
	}
	if (terms_is_ino(parent)) {
		oterms_create(req, parent, name, mode, fi);
		return;
	}
	(void)mode;
	if (!get_node(req, parent, &dir))
		return;
	child_path(&dir, name, path, sizeof(path));
	log_debug("create %s", path);
	fh = open_file_new();
	if (!fh) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	scope_begin(req);
	ret = core_create(fs, &dir, name, &child, &ch, &err);
	if (ret == 0) {
		ret = make_entry(fs, &child, &e, &err);
		if (ret < 0)
			core_label_pending_drop(fs, child.obj_id, child.name);
	}
	scope_end(req);
	if (ret == -EACCES) {
		/* As opening a read-only node for writing: refused, not a failed change. */
		open_file_put(fh);
		fuse_reply_err(req, EACCES);
		return;
	}
	if (ret < 0) {
		open_file_put(fh);
		reply_change_failure(req, path, dir.obj_id, &ch, ret, &err);
		return;
	}
	fh->node = child;
	fh->created = true;
	fi->fh = (uint64_t)(uintptr_t)fh;
	fi->direct_io = 1;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		core_label_pending_drop(fs, child.obj_id, child.name);
		open_file_put(fh);
	}
}

static void qfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct open_file *fh;

	if (files_is_ino(ino)) {
		ofiles_read(req, ino, size, off, fi);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_read(req, ino, size, off, fi);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_read(req, ino, size, off, fi);
		return;
	}
	fh = open_file_get(fi);
	if (off < 0 || (size_t)off >= fh->content.len) {
		fuse_reply_buf(req, NULL, 0);
	} else {
		if (size > fh->content.len - (size_t)off)
			size = fh->content.len - (size_t)off;
		fuse_reply_buf(req, fh->content.data + off, size);
	}
	open_file_put(fh);
}

static void qfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct open_file *fh = (struct open_file *)(uintptr_t)fi->fh;
	struct qfs *fs = fs_of(req);
	struct core_changes ch = {0};
	struct dt_error err = {0};
	char path[1024];
	int ret;

	if (files_is_ino(ino)) {
		ofiles_write(req, ino, buf, size, off, fi);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_write(req, ino, buf, size, off, fi);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_write(req, ino, buf, size, off, fi);
		return;
	}
	(void)off; /* one command per write, wherever it lands */
	node_path(&fh->node, path, sizeof(path));
	log_debug("write %s %zu bytes", path, size);
	scope_begin(req);
	ret = core_write(fs, &fh->node, buf, size, &ch, &err);
	scope_end(req);
	if (fh->created) {
		/* Written or failed: either way close() has nothing more to create. */
		fh->created = false;
		if (ret < 0)
			core_label_pending_drop(fs, fh->node.obj_id, fh->node.name);
	}
	if (ret < 0) {
		reply_change_failure(req, path, fh->node.obj_id, &ch, ret, &err);
		return;
	}
	apply_changes(fs, &ch);
	fuse_reply_write(req, size);
}

/* close(): a label created and never written becomes an empty label; its failure is close's. */
static void qfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct open_file *fh = (struct open_file *)(uintptr_t)fi->fh;
	struct qfs *fs = fs_of(req);
	struct core_changes ch = {0};
	struct dt_error err = {0};
	char path[1024];
	int ret;

	if (files_is_ino(ino)) {
		ofiles_flush(req, ino, fi);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_flush(req, ino, fi);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_flush(req, ino, fi);
		return;
	}
	if (!fh->created) {
		fuse_reply_err(req, 0);
		return;
	}
	fh->created = false;
	node_path(&fh->node, path, sizeof(path));
	scope_begin(req);
	ret = core_finish_create(fs, &fh->node, &ch, &err);
	scope_end(req);
	if (ret < 0) {
		reply_change_failure(req, path, fh->node.obj_id, &ch, ret, &err);
		return;
	}
	apply_changes(fs, &ch);
	fuse_reply_err(req, 0);
}

static void qfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct open_file *fh = (struct open_file *)(uintptr_t)fi->fh;

	if (files_is_ino(ino)) {
		ofiles_release(req, ino, fi);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_release(req, ino, fi);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_release(req, ino, fi);
		return;
	}
	if (fh->created)
		core_label_pending_drop(fs_of(req), fh->node.obj_id, fh->node.name);
	open_file_put(fh);
	fuse_reply_err(req, 0);
}

/* ---- directories -------------------------------------------------------- */

struct dir_handle {
	struct node_info dir;
	struct node_info *entries;
	size_t n;
};

static void qfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct qfs *fs = fs_of(req);
	struct dt_error err = {0};
	struct dir_handle *dh;
	struct node_info n;
	char path[1024];
	int ret;

	if (files_is_ino(ino)) {
		ofiles_opendir(req, ino, fi);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_opendir(req, ino, fi);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_opendir(req, ino, fi);
		return;
	}
	if (!get_node(req, ino, &n))
		return;
	node_path(&n, path, sizeof(path));
	log_debug("opendir %s", path);
	if (!kind_is_dir(n.kind)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	dh = calloc(1, sizeof(*dh));
	if (!dh) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	dh->dir = n;
	scope_begin(req);
	ret = core_list(fs, &n, &dh->entries, &dh->n, &err);
	scope_end(req);
	if (ret < 0) {
		free(dh);
		reply_read_failure(req, path, ret, &err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)dh;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		free(dh->entries);
		free(dh);
	}
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct dir_handle *dh = (struct dir_handle *)(uintptr_t)fi->fh;
	struct qfs *fs = fs_of(req);
	struct dt_error err = {0};
	char *buf = calloc(1, size);
	size_t used = 0;
	int ret = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	scope_begin(req);
	for (off_t i = off; i < (off_t)dh->n + 2; i++) {
		struct fuse_entry_param e;
		const char *name;
		size_t want;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			/* "." and "..": no lookup is counted for them. */
			name = i == 0 ? "." : "..";
			e.attr.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
			e.attr.st_mode = S_IFDIR;
		} else {
			struct node_info *entry = &dh->entries[i - 2];

			name = entry->name;
			if (plus) {
				ret = make_entry(fs, entry, &e, &err);
				if (ret == -ENOENT) {
					ret = 0; /* gone since the listing */
					continue;
				}
				if (ret < 0)
					break;
			} else if (entry->kind == NK_SB_FILES) {
				e.attr.st_ino = files_root_ino(fs->files, entry->obj_id);
				e.attr.st_mode = S_IFDIR;
			} else if (entry->kind == NK_SB_RUNS) {
				e.attr.st_ino = oruns_root_ino(fs, entry->obj_id);
				e.attr.st_mode = S_IFDIR;
			} else if (entry->kind == NK_SB_PTY || entry->kind == NK_SB_TERMINALS) {
				e.attr.st_ino = oterms_root_ino(fs, entry->kind, entry->obj_id);
				e.attr.st_mode = kind_info(entry->kind)->mode;
			} else {
				e.attr.st_ino = itable_peek(fs->itab, entry);
				e.attr.st_mode = kind_info(entry->kind)->mode;
			}
		}
		if (plus)
			want = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1);
		else
			want = fuse_add_direntry(req, buf + used, size - used, name, &e.attr,
						 i + 1);
		if (want > size - used) {
			/* Does not fit: the kernel never sees it, so it was not looked up. */
			if (plus && e.ino)
				itable_forget(fs->itab, e.ino, 1);
			break;
		}
		used += want;
	}
	scope_end(req);
	if (ret < 0 && used == 0) {
		char path[1024];

		node_path(&dh->dir, path, sizeof(path));
		reply_read_failure(req, path, ret, &err);
	} else {
		fuse_reply_buf(req, buf, used);
	}
	free(buf);
}

static void qfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	if (files_is_ino(ino)) {
		ofiles_readdir(req, ino, size, off, fi, false);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_readdir(req, ino, size, off, fi, false);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_readdir(req, ino, size, off, fi, false);
		return;
	}
	do_readdir(req, ino, size, off, fi, false);
}

static void qfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			    struct fuse_file_info *fi)
{
	if (files_is_ino(ino)) {
		ofiles_readdir(req, ino, size, off, fi, true);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_readdir(req, ino, size, off, fi, true);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_readdir(req, ino, size, off, fi, true);
		return;
	}
	do_readdir(req, ino, size, off, fi, true);
}

static void qfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_handle *dh = (struct dir_handle *)(uintptr_t)fi->fh;

	if (files_is_ino(ino)) {
		ofiles_releasedir(req, ino, fi);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_releasedir(req, ino, fi);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_releasedir(req, ino, fi);
		return;
	}
	free(dh->entries);
	free(dh);
	fuse_reply_err(req, 0);
}

/* Local numbers only: df and file managers must never wait on the network. */
static void qfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;

	if (files_is_ino(ino)) {
		ofiles_statfs(req, ino);
		return;
	}
	memset(&st, 0, sizeof(st));
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_files = itable_count(fs_of(req)->itab);
	st.f_namemax = 255;
	fuse_reply_statfs(req, &st);
}

/* Control files are written through at once: nothing is left for fsync to do. */
static void qfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	if (files_is_ino(ino)) {
		ofiles_fsync(req, ino, datasync, fi);
		return;
	}
	if (runs_is_ino(ino)) {
		oruns_fsync(req, ino, datasync, fi);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_fsync(req, ino, datasync, fi);
		return;
	}
	fuse_reply_err(req, 0);
}

static void qfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* No node has extended attributes (the API has none): ENOTSUP, for reads and writes. */
static void qfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			 size_t size, int flags)
{
	(void)ino;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	fuse_reply_err(req, ENOTSUP);
}

static void qfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	(void)ino;
	(void)name;
	(void)size;
	fuse_reply_err(req, ENOTSUP);
}

static void qfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	(void)ino;
	(void)size;
	fuse_reply_err(req, ENOTSUP);
}

static void qfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	(void)name;
	fuse_reply_err(req, ENOTSUP);
}

/*
 * poll() on a node with nothing to wait for: always ready. Never ENOSYS,
 * which the kernel would remember for every file of the mount, the
 * terminals included.
 */
static void qfs_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		     struct fuse_pollhandle *ph)
{
	if (runs_is_ino(ino)) {
		oruns_poll(req, ino, fi, ph);
		return;
	}
	if (terms_is_ino(ino)) {
		oterms_poll(req, ino, fi, ph);
		return;
	}
	if (ph)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);
}

static void qfs_destroy_op(void *userdata)
{
	struct qfs *fs = userdata;

	oterms_destroy(fs);
	oruns_destroy(fs);
}

const struct fuse_lowlevel_ops quaverfs_ops = {
	.init = qfs_init_op,
	.destroy = qfs_destroy_op,
	.lookup = qfs_lookup,
	.forget = qfs_forget,
	.forget_multi = qfs_forget_multi,
	.getattr = qfs_getattr,
	.setattr = qfs_setattr,
	.readlink = qfs_readlink,
	.mknod = qfs_mknod,
	.mkdir = qfs_mkdir,
	.unlink = qfs_unlink,
	.rmdir = qfs_rmdir,
	.symlink = qfs_symlink,
	.rename = qfs_rename,
	.link = qfs_link,
	.open = qfs_open,
	.read = qfs_read,
	.write = qfs_write,
	.flush = qfs_flush,
	.release = qfs_release,
	.opendir = qfs_opendir,
	.readdir = qfs_readdir,
	.readdirplus = qfs_readdirplus,
	.releasedir = qfs_releasedir,
	.statfs = qfs_statfs,
	.create = qfs_create,
	.fsync = qfs_fsync,
	.fsyncdir = qfs_fsyncdir,
	.setxattr = qfs_setxattr,
	.getxattr = qfs_getxattr,
	.listxattr = qfs_listxattr,
	.removexattr = qfs_removexattr,
	.poll = qfs_poll,
};
