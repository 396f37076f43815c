/*
 * The FUSE side of files/: each operation on an inode of files.h asks the
 * core, replies once, and records what went wrong where a user looks for it
 * (the root and sandbox error nodes, the log) when it is not an answer a
 * local disk gives every day (ENOENT, EEXIST, ENOTEMPTY...).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"
#include "log.h"
#include "ops_internal.h"
#include "util.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static struct qfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct files *files_of(fuse_req_t req)
{
	return fs_of(req)->files;
}

/* Failures a local disk gives in the ordinary course of things: only answered. */
static bool ordinary(int errnum)
{
	switch (errnum) {
	case ENOENT:
	case EEXIST:
	case ENOTEMPTY:
	case ENOTDIR:
	case EISDIR:
	case EINVAL:
	case EPERM:
	case EXDEV:
	case ENAMETOOLONG:
	case EINTR:
	case ENOTSUP:
	case ESTALE:
		return true;
	default:
		return false;
	}
}

/* Replies -@ret; an unusual failure leaves its reason in the error nodes and the log. */
static void reply_failure(fuse_req_t req, fuse_ino_t ino, const char *name, int ret,
			  const struct dt_error *err)
{
	struct qfs *fs = fs_of(req);

	if (!ordinary(-ret)) {
		struct core_changes ch = {0};
		char path[PATH_MAX + 64], sb_id[OBJ_ID_MAX] = "";

		files_node_path(fs->files, ino, name, path, sizeof(path));
		files_sandbox_of(fs->files, ino, sb_id, sizeof(sb_id));
		core_record_failure(fs, path, sb_id, err, &ch);
		apply_changes(fs, &ch);
	}
	fuse_reply_err(req, -ret);
}

static void fill_entry(struct fuse_entry_param *e, const struct files_entry *fe)
{
	memset(e, 0, sizeof(*e));
	e->ino = fe->ino;
	e->attr = fe->attr;
	e->attr_timeout = timeout_left(ATTR_TIMEOUT, fe->data_ms);
	e->entry_timeout = timeout_left(ENTRY_TIMEOUT, fe->data_ms);
}

/* ---- kernel invalidations asked for by the core ------------------------- */

static void inval_inode(void *arg, uint64_t ino, int64_t off, int64_t len)
{
	(void)arg;
	notify_inode(ino, off, len);
}

static void inval_entry(void *arg, uint64_t parent, const char *name)
{
	(void)arg;
	notify_entry(parent, name);
}

/* `flush` and SIGHUP: never from a request, so the kernel's locks are free. */
static void inval_inode_now(void *arg, uint64_t ino)
{
	(void)arg;
	if (ops_session())
		fuse_lowlevel_notify_inval_inode(ops_session(), ino, 0, 0);
}

void ofiles_init(struct qfs *fs)
{
	struct files_inval_ops ops = {
	    .inode = inval_inode, .entry = inval_entry, .arg = fs, .inode_now = inval_inode_now};

	files_set_inval(fs->files, &ops);
}

void ops_drop_caches(struct qfs *fs)
{
	cache_flush(fs->cache);
	files_drop_caches(fs->files);
}

/* ---- names -------------------------------------------------------------- */

int ofiles_root_entry(struct qfs *fs, const char *sb_id, struct fuse_entry_param *e,
		      struct dt_error *err)
{
	struct files_entry fe;
	int ret = files_root_entry(fs->files, sb_id, &fe, err);

	if (ret == 0)
		fill_entry(e, &fe);
	return ret;
}

void ofiles_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	struct files_entry fe;
	struct dt_error err = {0};
	int ret;

	log_debug("files lookup %lx/%s", (unsigned long)parent, name);
	scope_begin(req);
	ret = files_lookup(files_of(req), parent, name, &fe, &err);
	scope_end(req);
	if (ret == -ENOENT) {
		reply_negative(req, NEGATIVE_TIMEOUT);
	} else if (ret < 0) {
		reply_failure(req, parent, name, ret, &err);
	} else {
		fill_entry(&e, &fe);
		fuse_reply_entry(req, &e);
	}
}

void ofiles_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	files_forget(files_of(req), ino, nlookup);
}

void ofiles_getattr(fuse_req_t req, fuse_ino_t ino)
{
	struct dt_error err = {0};
	struct stat st;
	int64_t data_ms;
	int ret;

	log_debug("files getattr %lx", (unsigned long)ino);
	scope_begin(req);
	ret = files_getattr(files_of(req), ino, &st, &data_ms, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, ino, NULL, ret, &err);
	else
		fuse_reply_attr(req, &st, timeout_left(ATTR_TIMEOUT, data_ms));
}

void ofiles_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		    struct fuse_file_info *fi)
{
	struct files_handle *h = fi ? (struct files_handle *)(uintptr_t)fi->fh : NULL;
	struct dt_error err = {0};
	struct stat st;
	int64_t data_ms;
	int set = 0, ret;

	log_debug("files setattr %lx", (unsigned long)ino);
	if (to_set & FUSE_SET_ATTR_MODE)
		set |= FILES_SET_MODE;
	if (to_set & FUSE_SET_ATTR_UID)
		set |= FILES_SET_UID;
	if (to_set & FUSE_SET_ATTR_GID)
		set |= FILES_SET_GID;
	if (to_set & FUSE_SET_ATTR_SIZE)
		set |= FILES_SET_SIZE;
	if (to_set & FUSE_SET_ATTR_MTIME)
		set |= FILES_SET_MTIME;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		set |= FILES_SET_MTIME_NOW;
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW))
		set |= FILES_SET_ATIME;
	scope_begin(req);
	ret = files_setattr(files_of(req), ino, attr, set, h, &st, &data_ms, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, ino, NULL, ret, &err);
	else
		fuse_reply_attr(req, &st, timeout_left(ATTR_TIMEOUT, data_ms));
}

void ofiles_readlink(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	/* files/ shows no symbolic links (the sandbox's listing follows them). */
	fuse_reply_err(req, EPERM);
}

void ofiles_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fuse_entry_param e;
	struct files_entry fe;
	struct dt_error err = {0};
	int ret;

	log_debug("files mkdir %lx/%s", (unsigned long)parent, name);
	scope_begin(req);
	ret = files_mkdir(files_of(req), parent, name, mode, &fe, &err);
	scope_end(req);
	if (ret < 0) {
		reply_failure(req, parent, name, ret, &err);
		return;
	}
	fill_entry(&e, &fe);
	fuse_reply_entry(req, &e);
}

void ofiles_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct dt_error err = {0};
	int ret;

	log_debug("files unlink %lx/%s", (unsigned long)parent, name);
	scope_begin(req);
	ret = files_unlink(files_of(req), parent, name, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, parent, name, ret, &err);
	else
		fuse_reply_err(req, 0);
}

void ofiles_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct dt_error err = {0};
	int ret;

	log_debug("files rmdir %lx/%s", (unsigned long)parent, name);
	scope_begin(req);
	ret = files_rmdir(files_of(req), parent, name, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, parent, name, ret, &err);
	else
		fuse_reply_err(req, 0);
}

void ofiles_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		   const char *newname, unsigned int flags)
{
	struct dt_error err = {0};
	unsigned fl = 0;
	int ret;

	log_debug("files rename %lx/%s", (unsigned long)parent, name);
	/* In and out of files/ (the control nodes, another mount point of view): not a rename. */
	if (!files_is_ino(parent) || !files_is_ino(newparent)) {
		fuse_reply_err(req, EXDEV);
		return;
	}
	if (flags & RENAME_NOREPLACE)
		fl |= FILES_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		fl |= FILES_RENAME_EXCHANGE;
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	scope_begin(req);
	ret = files_rename(files_of(req), parent, name, newparent, newname, fl, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, parent, name, ret, &err);
	else
		fuse_reply_err(req, 0);
}

/* ---- files -------------------------------------------------------------- */

void ofiles_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct files_handle *h = NULL;
	struct dt_error err = {0};
	bool keep_cache, changed;
	int ret;

	log_debug("files open %lx", (unsigned long)ino);
	scope_begin(req);
	ret = files_open(files_of(req), ino, fi->flags, &h, &keep_cache, &changed, &err);
	scope_end(req);
	if (ret < 0) {
		reply_failure(req, ino, NULL, ret, &err);
		return;
	}
	/*
	 * Changed in the sandbox: the kernel must ask for the new size before
	 * it reads. Only attributes are dropped here, which takes no lock the
	 * kernel holds during an open, so it is done before the answer.
	 */
	if (changed && ops_session())
		fuse_lowlevel_notify_inval_inode(ops_session(), ino, -1, 0);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->keep_cache = keep_cache;
	fi->direct_io = 0;
	/* A reader's close sends nothing (files_flush): the kernel need not ask. */
	fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
	if (fuse_reply_open(req, fi) == -ENOENT)
		files_release(files_of(req), h);
}

void ofiles_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		   struct fuse_file_info *fi)
{
	struct files_handle *h = NULL;
	struct fuse_entry_param e;
	struct files_entry fe;
	struct dt_error err = {0};
	int ret;

	log_debug("files create %lx/%s", (unsigned long)parent, name);
	scope_begin(req);
	ret = files_create(files_of(req), parent, name, mode, fi->flags, &fe, &h, &err);
	scope_end(req);
	if (ret < 0) {
		reply_failure(req, parent, name, ret, &err);
		return;
	}
	fill_entry(&e, &fe);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->keep_cache = 0;
	fi->direct_io = 0;
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		files_release(files_of(req), h);
}

void ofiles_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct files_handle *h = (struct files_handle *)(uintptr_t)fi->fh;
	struct dt_error err = {0};
	char *buf = malloc(size ? size : 1);
	size_t got = 0;
	int ret;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	scope_begin(req);
	ret = files_read(files_of(req), h, buf, size, off, &got, &err);
	scope_end(req);
	/* The reply is written from our own buffer, freed only after it. */
	if (ret < 0)
		reply_failure(req, ino, NULL, ret, &err);
	else
		fuse_reply_buf(req, buf, got);
	free(buf);
}

void ofiles_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		  struct fuse_file_info *fi)
{
	struct files_handle *h = (struct files_handle *)(uintptr_t)fi->fh;
	struct dt_error err = {0};
	int64_t at = off;
	int ret;

	scope_begin(req);
	ret = files_write(files_of(req), h, buf, size, off, &at, &err);
	scope_end(req);
	if (ret < 0) {
		reply_failure(req, ino, NULL, ret, &err);
		return;
	}
	/* An append landed elsewhere than the kernel's cached size said: its pages are wrong. */
	if (at != off)
		notify_inode(ino, 0, 0);
	fuse_reply_write(req, size);
}

void ofiles_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct files_handle *h = (struct files_handle *)(uintptr_t)fi->fh;
	struct dt_error err = {0};
	int ret;

	log_debug("files flush %lx", (unsigned long)ino);
	scope_begin(req);
	ret = files_flush(files_of(req), h, false, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, ino, NULL, ret, &err);
	else
		fuse_reply_err(req, 0);
}

void ofiles_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct files_handle *h = (struct files_handle *)(uintptr_t)fi->fh;
	struct dt_error err = {0};
	int ret;

	log_debug("files fsync %lx", (unsigned long)ino);
	(void)datasync;
	scope_begin(req);
	ret = files_flush(files_of(req), h, true, &err);
	scope_end(req);
	if (ret < 0)
		reply_failure(req, ino, NULL, ret, &err);
	else
		fuse_reply_err(req, 0);
}

void ofiles_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	files_release(files_of(req), (struct files_handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* ---- directories -------------------------------------------------------- */

void ofiles_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct files_dir *d = NULL;
	struct dt_error err = {0};
	int ret;

	log_debug("files opendir %lx", (unsigned long)ino);
	scope_begin(req);
	ret = files_opendir(files_of(req), ino, &d, &err);
	scope_end(req);
	if (ret < 0) {
		reply_failure(req, ino, NULL, ret, &err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		files_dir_free(d);
}

void ofiles_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi, bool plus)
{
	struct files_dir *d = (struct files_dir *)(uintptr_t)fi->fh;
	struct files *f = files_of(req);
	struct dt_error err = {0};
	size_t n = files_dir_count(d), used = 0;
	char *buf = calloc(1, size);
	int ret = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (off_t i = off; i < (off_t)n + 2; i++) {
		struct fuse_entry_param e;
		const char *name;
		size_t want;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			/* "." and "..": no lookup is counted for them. */
			uint64_t up = files_dir_parent_ino(f, d);

			name = i == 0 ? "." : "..";
			e.attr.st_ino = i == 0 ? ino : up ? up : FUSE_ROOT_ID;
			e.attr.st_mode = S_IFDIR;
		} else if (plus) {
			struct files_entry fe;

			name = files_dir_name(d, (size_t)(i - 2));
			ret = files_dir_entry(f, d, (size_t)(i - 2), &fe, &err);
			if (ret < 0)
				break;
			fill_entry(&e, &fe);
		} else {
			uint64_t child;
			mode_t mode;

			name = files_dir_name(d, (size_t)(i - 2));
			files_dir_peek(f, d, (size_t)(i - 2), &child, &mode);
			e.attr.st_ino = child;
			e.attr.st_mode = mode;
		}
		if (plus)
			want =
			    fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1);
		else
			want =
			    fuse_add_direntry(req, buf + used, size - used, name, &e.attr, i + 1);
		if (want > size - used) {
			/* Does not fit: the kernel never sees it, so it was not looked up. */
			if (plus && e.ino)
				files_forget(f, e.ino, 1);
			break;
		}
		used += want;
	}
	if (ret < 0 && used == 0)
		reply_failure(req, ino, NULL, ret, &err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

void ofiles_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	files_dir_free((struct files_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

void ofiles_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int ret;

	(void)ino;
	memset(&st, 0, sizeof(st));
	ret = files_statfs(files_of(req), &st);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_statfs(req, &st);
}
