/*
 * files/, changes of names: mkdir, rmdir, unlink and rename, each checked
 * first (the API's mkdir is mkdir -p, its delete is recursive and its move
 * refuses an existing destination) so that the errno is the one a local
 * disk gives. The caches are brought in line with what was done.
 */
#include "files_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* Above this, a rename over a file moves it instead of uploading our copy to the target. */
#define RENAME_UPLOAD_MAX (64LL << 20)

static int attr_now(struct files *f, const char *sb_id, const char *path, struct fattr *a,
		    struct dt_error *err);

/* Is anything in directory @path (listed afresh, and made here but not uploaded)? */
static int dir_is_empty(struct files *f, const char *sb_id, const char *path, bool *empty,
			struct dt_error *err)
{
	struct listing *l;
	size_t plen = strlen(path);
	int ret;

	pthread_mutex_lock(&f->lock);
	ret = listing_get(f, sb_id, path, true, &l, err);
	if (ret < 0)
		goto out;
	*empty = true;
	for (size_t i = 0; i < l->n && *empty; i++)
		if (!l->ents[i].dead)
			*empty = false;
	for (size_t b = 0; *empty && b < f->nbuckets; b++)
		for (struct fnode *fn = f->by_key[b]; fn; fn = fn->next_by_key)
			if (fn->local_only && strcmp(fn->sb_id, sb_id) == 0 &&
			    strncmp(fn->path, path, plen) == 0 && fn->path[plen] == '/') {
				*empty = false;
				break;
			}
out:
	pthread_mutex_unlock(&f->lock);
	return ret;
}

/* True when a fresh listing of @path's directory says it is not there. */
static bool absent_in_listing(struct files *f, const char *sb_id, const char *path)
{
	char dir[PATH_MAX];
	const char *name = path_split(path, dir, sizeof(dir));
	struct listing *l;
	struct lent *e;
	bool absent;

	pthread_mutex_lock(&f->lock);
	l = listing_find(f, sb_id, dir);
	e = listing_fresh(l, now_mono_ms()) ? listing_entry(l, name) : NULL;
	absent = listing_fresh(l, now_mono_ms()) && !l->truncated && (!e || e->dead);
	pthread_mutex_unlock(&f->lock);
	return absent;
}

int files_mkdir(struct files *f, uint64_t parent, const char *name, mode_t mode,
		struct files_entry *e, struct dt_error *err)
{
	char path[PATH_MAX], sb_id[OBJ_ID_MAX];
	struct dt_file_info info = {0};
	struct fnode *dir, *fn;
	struct fattr a;
	bool have_info = false;
	int64_t now, asked;
	int ret;

	if (!name_is_file_name(name))
		return files_fail(err, EINVAL, "invalid name");
	dir = files_child(f, parent, name, path, sizeof(path), sb_id, sizeof(sb_id), err);
	if (!dir)
		return -err->err;
	pthread_mutex_lock(&f->lock);
	fn = fnode_by_path(f, sb_id, path);
	ret = fn && fn->local_only ? files_fail(err, EEXIST, "a file of that name exists") : 0;
	pthread_mutex_unlock(&f->lock);
	if (ret < 0)
		goto out;
	/*
	 * The API makes parents and accepts an existing directory: look first,
	 * in the parent's fresh listing (as the kernel's lookup just did), else
	 * with GET /files/info.
	 */
	ret = absent_in_listing(f, sb_id, path) ? -ENOENT : files_info(f, sb_id, path, &a, err);
	if (ret == 0) {
		ret = files_fail(err, EEXIST, "%s exists", path);
		goto out;
	}
	if (ret != -ENOENT)
		goto out;
	asked = now_mono_ms();
	ret = TB_CALL(f, sb_id, err, t,
		      dt_fs_mkdir_info(t->tb, path, mode & 07777, &info, &have_info, err));
	if (ret < 0)
		goto out;
	now = now_mono_ms();
	if (have_info) {
		/* quaverd said what it made: no GET /files/info after it. */
		fattr_from_info(&a, &info);
		dt_file_info_clear(&info);
	} else if (files_info(f, sb_id, path, &a, err) < 0) {
		/* Made; only its attributes are unknown: say what was asked. */
		a.mode = S_IFDIR | (mode & 07777);
		a.size = 4096;
		clock_gettime(CLOCK_REALTIME, &a.mtime);
	}
	pthread_mutex_lock(&f->lock);
	{
		char dir_path[PATH_MAX];

		path_split(path, dir_path, sizeof(dir_path));
		listing_upsert(f, sb_id, dir_path, name, &a);
		dir_touched(f, sb_id, dir_path);
		/* It did not exist before: empty, as of the request (lookups in it ask nothing). */
		listing_new_empty(f, sb_id, path, asked);
	}
	fn = fnode_get(f, sb_id, path);
	if (!fn) {
		ret = files_fail(err, ENOMEM, "out of memory");
	} else {
		fnode_set_server(f, fn, &a, now);
		fnode_ref(f, fn);
		fnode_settle(f, fn);
		e->ino = fn->ino;
		fnode_stat(f, fn, &e->attr);
		e->data_ms = now;
	}
	pthread_mutex_unlock(&f->lock);
out:
	fnode_unpin(f, dir);
	return ret;
}

/* After a name is gone from the sandbox: the caches forget it. */
static void forget_name(struct files *f, const char *sb_id, const char *path)
{
	char dir_path[PATH_MAX];
	const char *name = path_split(path, dir_path, sizeof(dir_path));
	struct fnode *fn;

	pthread_mutex_lock(&f->lock);
	listing_remove(f, sb_id, dir_path, name);
	listing_drop_tree(f, sb_id, path);
	dir_touched(f, sb_id, dir_path);
	fn = fnode_by_path(f, sb_id, path);
	if (fn) {
		/* Open handles go on with the copy; nothing of it is uploaded any more. */
		fn->unlinked = true;
		fn->local_only = false;
		fn->dirty = false;
		fn->ov_set = false;
		fnode_unkey(f, fn);
		fnode_settle(f, fn);
	}
	pthread_mutex_unlock(&f->lock);
}

int files_rmdir(struct files *f, uint64_t parent, const char *name, struct dt_error *err)
{
	char path[PATH_MAX], sb_id[OBJ_ID_MAX];
	struct fnode *dir;
	struct fattr a;
	bool empty = false;
	int ret;

	dir = files_child(f, parent, name, path, sizeof(path), sb_id, sizeof(sb_id), err);
	if (!dir)
		return -err->err;
	ret = attr_now(f, sb_id, path, &a, err);
	if (ret == 0 && !S_ISDIR(a.mode))
		ret = files_fail(err, ENOTDIR, "%s is not a directory", path);
	if (ret == 0)
		ret = dir_is_empty(f, sb_id, path, &empty, err);
	if (ret == 0 && !empty)
		ret = files_fail(err, ENOTEMPTY, "%s is not empty", path);
	/* The API removes a directory only recursively: it was checked empty just now. */
	if (ret == 0)
		ret = TB_CALL(f, sb_id, err, t, dt_fs_delete(t->tb, path, true, err));
	if (ret == 0)
		forget_name(f, sb_id, path);
	fnode_unpin(f, dir);
	return ret;
}

/* Holds in the copy of @fn everything handles open on it may still read. */
static int keep_open_copy(struct files *f, struct fnode *fn, const char *sb_id, const char *path,
			  struct dt_error *err)
{
	struct staged *st;
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	st = fn->opens ? fn->st : NULL;
	pthread_mutex_unlock(&f->lock);
	if (!st)
		return 0;
	pthread_mutex_lock(&st->lock);
	if (!st->complete)
		ret = TB_CALL(f, sb_id, err, t, stage_fill(st, t->tb, path, err));
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int files_unlink(struct files *f, uint64_t parent, const char *name, struct dt_error *err)
{
	char path[PATH_MAX], sb_id[OBJ_ID_MAX];
	struct fnode *dir, *fn;
	bool local_only = false, had_copy = false;
	int ret;

	dir = files_child(f, parent, name, path, sizeof(path), sb_id, sizeof(sb_id), err);
	if (!dir)
		return -err->err;
	pthread_mutex_lock(&f->lock);
	fn = fnode_by_path(f, sb_id, path);
	if (fn) {
		fn->pins++;
		local_only = fn->local_only;
		had_copy = fn->dirty;
	}
	pthread_mutex_unlock(&f->lock);
	if (local_only) {
		/* Never uploaded: nothing to remove in the sandbox. */
		ret = 0;
	} else {
		ret = fn ? keep_open_copy(f, fn, sb_id, path, err) : 0;
		if (ret == 0)
			ret = TB_CALL(f, sb_id, err, t, dt_fs_delete(t->tb, path, false, err));
		if (ret == -ENOENT && had_copy)
			ret = 0; /* only this mount's unsent copy was left */
	}
	if (ret == 0)
		forget_name(f, sb_id, path);
	fnode_unpin(f, fn);
	fnode_unpin(f, dir);
	return ret;
}

/* Uploads what was written to @fn and is not in the sandbox yet. */
static int upload_pending(struct files *f, struct fnode *fn, const char *sb_id, const char *path,
			  struct dt_error *err)
{
	struct staged *st;
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	st = fn->st;
	pthread_mutex_unlock(&f->lock);
	if (!st)
		return 0;
	pthread_mutex_lock(&st->lock);
	if (st->dirty || fn->local_only)
		ret = files_upload_node(f, fn, st, sb_id, path, err);
	pthread_mutex_unlock(&st->lock);
	return ret;
}

/*
 * Replaces file @dst by @src with an upload of our complete copy of @src
 * (the sandbox replaces a file atomically on upload), then removes @src:
 * a reader of @dst never finds it missing. Returns -EAGAIN when there is no
 * such copy, and the caller moves instead.
 */
static int replace_by_upload(struct files *f, struct fnode *fn, const char *sb_id, const char *src,
			     const char *dst, const struct fattr *src_attr, struct dt_error *err)
{
	struct staged *st = NULL;
	struct fattr a;
	int ret;

	if (fn) {
		pthread_mutex_lock(&f->lock);
		st = fn->st;
		pthread_mutex_unlock(&f->lock);
	}
	if (!st)
		return -EAGAIN;
	pthread_mutex_lock(&st->lock);
	if (!st->complete || st->dirty || !st->srv_known || st->size > RENAME_UPLOAD_MAX ||
	    st->srv_size != src_attr->size || !ts_equal(&st->srv_mtime, &src_attr->mtime)) {
		pthread_mutex_unlock(&st->lock);
		return -EAGAIN;
	}
	ret = stage_open_fd(st, err);
	if (ret == 0)
		ret = TB_CALL(f, sb_id, err, t, dt_fs_upload_fd(t->tb, dst, st->fd, st->size, err));
	if (fn->opens == 0)
		stage_close_fd(st);
	pthread_mutex_unlock(&st->lock);
	if (ret < 0)
		return ret;
	/* The target keeps its own mode on upload; a rename gives it the source's. */
	if (files_info(f, sb_id, dst, &a, err) == 0 &&
	    (a.mode & 07777) != (src_attr->mode & 07777)) {
		ret = TB_CALL(f, sb_id, err, t,
			      dt_fs_set_permissions(t->tb, dst, (int)(src_attr->mode & 07777), NULL,
						    NULL, err));
		if (ret < 0)
			return ret;
	}
	return TB_CALL(f, sb_id, err, t, dt_fs_delete(t->tb, src, false, err));
}

/*
 * What the sandbox has at @path: what this mount learnt within the trust
 * window of an open (files_internal.h, fnode_open_may_trust), else a fresh
 * listing of its directory (ENOENT when it has no such name), else GET
 * /files/info.
 */
static int attr_now(struct files *f, const char *sb_id, const char *path, struct fattr *a,
		    struct dt_error *err)
{
	char dir[PATH_MAX];
	const char *name = path_split(path, dir, sizeof(dir));
	int64_t now = now_mono_ms();
	struct fnode *fn;
	struct listing *l;
	struct lent *e;

	pthread_mutex_lock(&f->lock);
	fn = fnode_by_path(f, sb_id, path);
	if (fn && !fn->local_only && !fn->dirty && fnode_open_may_trust(f, fn, now)) {
		*a = fn->attr;
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	if (!fn || (!fn->local_only && !fn->dirty)) {
		l = listing_find(f, sb_id, dir);
		if (listing_fresh(l, now) && !l->truncated &&
		    (!fn || l->fetched_ms > fn->touched_ms)) {
			e = listing_entry(l, name);
			if (e && !e->dead) {
				*a = e->attr;
				pthread_mutex_unlock(&f->lock);
				return 0;
			}
			if (!e || e->dead) {
				pthread_mutex_unlock(&f->lock);
				return files_fail(err, ENOENT, "%s: no such entry", path);
			}
		}
	}
	pthread_mutex_unlock(&f->lock);
	return files_info(f, sb_id, path, a, err);
}

/* The sandbox's side of a rename of @src (attributes @sa) to @dst. */
static int rename_remote(struct files *f, struct fnode *fn, const char *sb_id, const char *src,
			 const char *dst, const struct fattr *sa, unsigned flags, bool *moved,
			 struct dt_error *err)
{
	struct fattr da;
	bool empty;
	int ret;

	*moved = false;
	ret = attr_now(f, sb_id, dst, &da, err);
	if (ret == -ENOENT) {
		ret = TB_CALL(f, sb_id, err, t, dt_fs_move(t->tb, src, dst, err));
		*moved = ret == 0;
		if (ret != -EEXIST)
			return ret;
		/* Made meanwhile in the sandbox. */
		ret = files_info(f, sb_id, dst, &da, err);
		if (ret == -ENOENT)
			return files_fail(err, EAGAIN, "%s appeared and vanished meanwhile", dst);
	}
	if (ret < 0)
		return ret;
	if (flags & FILES_RENAME_NOREPLACE)
		return files_fail(err, EEXIST, "%s exists", dst);
	if (!S_ISDIR(da.mode) && !S_ISDIR(sa->mode) && !f->no_move_over) {
		/* quaverd replaces the file by one rename (overwrite=true); Daytona answers 409. */
		ret = TB_CALL(f, sb_id, err, t, dt_fs_move_over(t->tb, src, dst, err));
		if (ret == 0) {
			*moved = true;
			return 0;
		}
		if (ret != -EEXIST)
			return ret;
		ret = files_info(f, sb_id, dst, &da, err);
		if (ret == -ENOENT)
			return files_fail(err, EAGAIN, "%s vanished meanwhile", dst);
		if (ret < 0)
			return ret;
		if (!S_ISDIR(da.mode)) {
			log_debug("files: the sandbox's move does not replace a file; emulating it");
			f->no_move_over = true;
		}
	}
	if (S_ISDIR(da.mode)) {
		if (!S_ISDIR(sa->mode))
			return files_fail(err, EISDIR, "%s is a directory", dst);
		ret = dir_is_empty(f, sb_id, dst, &empty, err);
		if (ret == 0 && !empty)
			ret = files_fail(err, ENOTEMPTY, "%s is not empty", dst);
		if (ret == 0)
			ret = TB_CALL(f, sb_id, err, t, dt_fs_delete(t->tb, dst, true, err));
	} else {
		if (S_ISDIR(sa->mode))
			return files_fail(err, ENOTDIR, "%s is not a directory", dst);
		ret = replace_by_upload(f, fn, sb_id, src, dst, sa, err);
		if (ret != -EAGAIN)
			return ret;
		/* No copy to upload: remove the target, then move (not atomic). */
		ret = TB_CALL(f, sb_id, err, t, dt_fs_delete(t->tb, dst, false, err));
		if (ret == -ENOENT)
			ret = 0;
	}
	if (ret == 0)
		ret = TB_CALL(f, sb_id, err, t, dt_fs_move(t->tb, src, dst, err));
	return ret;
}

int files_rename(struct files *f, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname, unsigned flags, struct dt_error *err)
{
	char src[PATH_MAX], dst[PATH_MAX], sb_id[OBJ_ID_MAX], sb2[OBJ_ID_MAX];
	char src_dir[PATH_MAX], dst_dir[PATH_MAX];
	struct fnode *dir = NULL, *newdir = NULL, *fn = NULL, *target;
	struct fattr sa, na;
	bool moved = false;
	int64_t now;
	int ret;

	if (flags & FILES_RENAME_EXCHANGE)
		return files_fail(err, EINVAL, "the sandbox cannot exchange two names");
	if (flags & ~FILES_RENAME_NOREPLACE)
		return files_fail(err, EINVAL, "unsupported rename flags");
	if (!name_is_file_name(newname))
		return files_fail(err, EINVAL, "invalid name");
	dir = files_child(f, parent, name, src, sizeof(src), sb_id, sizeof(sb_id), err);
	if (!dir)
		return -err->err;
	newdir = files_child(f, newparent, newname, dst, sizeof(dst), sb2, sizeof(sb2), err);
	if (!newdir) {
		ret = -err->err;
		goto out;
	}
	if (strcmp(sb_id, sb2) != 0) {
		ret = files_fail(err, EXDEV, "across sandboxes");
		goto out;
	}
	if (strcmp(src, dst) == 0) {
		ret = 0;
		goto out;
	}
	path_split(src, src_dir, sizeof(src_dir));
	path_split(dst, dst_dir, sizeof(dst_dir));

	pthread_mutex_lock(&f->lock);
	fn = fnode_by_path(f, sb_id, src);
	if (fn)
		fn->pins++;
	pthread_mutex_unlock(&f->lock);
	/* What was written and not sent goes first: the move then carries it. */
	ret = fn ? upload_pending(f, fn, sb_id, src, err) : 0;
	if (ret == 0)
		ret = attr_now(f, sb_id, src, &sa, err);
	if (ret == 0)
		ret = rename_remote(f, fn, sb_id, src, dst, &sa, flags, &moved, err);
	if (ret < 0)
		goto out;

	now = now_mono_ms();
	/* A move keeps size, mode and mtime; an emulated replace made a new file. */
	if (!moved || S_ISDIR(sa.mode)) {
		if (files_info(f, sb_id, dst, &na, err) < 0)
			na = sa;
	} else {
		na = sa;
	}
	pthread_mutex_lock(&f->lock);
	target = fnode_by_path(f, sb_id, dst);
	if (target && target != fn) {
		target->unlinked = true;
		target->dirty = false;
		target->local_only = false;
		target->ov_set = false;
		fnode_unkey(f, target);
		fnode_settle(f, target);
	}
	listing_remove(f, sb_id, src_dir, name);
	listing_drop_tree(f, sb_id, src);
	listing_drop_tree(f, sb_id, dst);
	listing_upsert(f, sb_id, dst_dir, newname, &na);
	dir_touched(f, sb_id, src_dir);
	dir_touched(f, sb_id, dst_dir);
	if (fnode_rekey_tree(f, sb_id, src, dst) < 0)
		log_warn("files: out of memory following the rename of %s", src);
	if (fn) {
		/* Same content: a time set by utimens stays with it. */
		if (fn->ov_set && !fn->ov_pending)
			fn->ov_srv_mtime = na.mtime;
		fnode_set_server(f, fn, &na, now);
		if (fn->st) {
			bool clean = !fn->dirty;

			pthread_mutex_unlock(&f->lock);
			pthread_mutex_lock(&fn->st->lock);
			if (clean)
				stage_set_server(fn->st, na.size, &na.mtime);
			if (fn->st->origin)
				stage_set_origin(fn->st, sb_id, dst);
			pthread_mutex_unlock(&fn->st->lock);
			pthread_mutex_lock(&f->lock);
		}
	}
	pthread_mutex_unlock(&f->lock);
out:
	fnode_unpin(f, fn);
	fnode_unpin(f, newdir);
	fnode_unpin(f, dir);
	return ret;
}
