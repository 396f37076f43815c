/*
 * files/, file content: open (close-to-open: the sandbox's size and mtime
 * are checked at every open), create, read with Range into the staged
 * copy, write into it, upload on close and fsync, setattr (chmod, truncate,
 * utimens kept locally, chown accepted and ignored).
 */
#include "files_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct files_handle {
	struct fnode *fn; /* pinned by the open count */
	struct staged *st;
	bool writable;
	bool append;
	/*
	 * The last read's download that got no answer in time (guarded by the
	 * copy's lock). The kernel reads again at once what its readahead failed
	 * to get, and other reads wait for the copy meanwhile: a read on the
	 * handle that needs a download within STALLED_READ_MS fails at once with
	 * that error, so one syscall waits one deadline, not one per FUSE read.
	 */
	int64_t stalled_ms; /* 0: none */
	struct dt_error stalled_err;
};

#define STALLED_READ_MS 1000

uint64_t files_handle_ino(const struct files_handle *h)
{
	return h->fn->ino;
}

/* The node's sandbox and path, as they are now (a rename may change the path). */
static void node_where(struct files *f, const struct fnode *fn, char *sb_id, size_t sb_size,
		       char *path, size_t size)
{
	pthread_mutex_lock(&f->lock);
	copy_str(sb_id, sb_size, fn->sb_id);
	copy_str(path, size, fn->path);
	pthread_mutex_unlock(&f->lock);
}

static void inval_inode(struct files *f, uint64_t ino, int64_t off, int64_t len)
{
	if (f->inval.inode)
		f->inval.inode(f->inval.arg, ino, off, len);
}

/* What a change of the copy did to the node's attributes. Takes the files lock. */
static void mirror_local(struct files *f, struct fnode *fn, const struct staged *st)
{
	pthread_mutex_lock(&f->lock);
	fn->dirty = st->dirty;
	fn->attr.size = st->size;
	fn->attr.mtime = st->local_mtime;
	fn->attr_known = true;
	/* A write changes the mtime, as on a local disk: a time set earlier is gone. */
	if (fn->ov_set && (!fn->ov_pending || st->gen != fn->ov_gen))
		fn->ov_set = false;
	pthread_mutex_unlock(&f->lock);
}

int files_upload_node(struct files *f, struct fnode *fn, struct staged *st, const char *sb_id,
		      const char *path, struct dt_error *err)
{
	char dir[PATH_MAX];
	const char *name;
	struct dt_file_info info = {0};
	struct fattr a;
	bool local_only, known, have_info = false;
	mode_t create_mode;
	int64_t now;
	int ret;

	pthread_mutex_lock(&f->lock);
	if (fn->unlinked) {
		/* Removed while open: on a local disk these bytes would vanish too. */
		st->dirty = false;
		fn->dirty = false;
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	local_only = fn->local_only;
	create_mode = fn->create_mode;
	pthread_mutex_unlock(&f->lock);

	ret = TB_CALL(f, sb_id, err, t,
		      stage_upload(st, t->tb, path, local_only ? (int)create_mode : -1, &info,
				   &have_info, err));
	if (ret < 0)
		return ret;
	now = now_mono_ms();
	if (have_info) {
		/* quaverd says what the file is now: no GET /files/info after it. */
		fattr_from_info(&a, &info);
		dt_file_info_clear(&info);
		known = true;
	} else {
		known = files_info(f, sb_id, path, &a, err) == 0;
	}
	if (known && local_only && (a.mode & 07777) != create_mode &&
	    TB_CALL(f, sb_id, err, t,
		    dt_fs_set_permissions(t->tb, path, (int)create_mode, NULL, NULL, err)) == 0)
		a.mode = (a.mode & S_IFMT) | create_mode;
	if (known)
		stage_set_server(st, a.size, &a.mtime);
	else
		st->srv_known = false;

	pthread_mutex_lock(&f->lock);
	fn->dirty = st->dirty;
	fn->local_only = false;
	if (fn->ov_set && fn->ov_pending) {
		/* utimens came after the last write: the time holds for what was uploaded. */
		if (known && fn->ov_gen == st->gen) {
			fn->ov_pending = false;
			fn->ov_srv_mtime = a.mtime;
		} else {
			fn->ov_set = false;
		}
	}
	name = path_split(path, dir, sizeof(dir));
	if (known) {
		fnode_set_server(f, fn, &a, now);
		listing_upsert(f, sb_id, dir, name, &a);
	} else {
		fn->attr_known = false;
	}
	/* The upload replaced the file by a rename in its directory. */
	dir_touched(f, sb_id, dir);
	pthread_mutex_unlock(&f->lock);
	/* The mtime is the sandbox's now. */
	inval_inode(f, fn->ino, -1, 0);
	return 0;
}

/* ---- open and create ---------------------------------------------------- */

static struct files_handle *handle_new(struct fnode *fn, struct staged *st, int flags)
{
	struct files_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->fn = fn;
	h->st = st;
	h->writable = (flags & O_ACCMODE) != O_RDONLY;
	h->append = (flags & O_APPEND) != 0;
	return h;
}

/* Gives back an open count taken by files_open or files_create. */
static void unopen(struct files *f, struct fnode *fn)
{
	pthread_mutex_lock(&f->lock);
	fn->opens--;
	if (!fn->opens && fn->st && !fn->dirty) {
		pthread_mutex_unlock(&f->lock);
		pthread_mutex_lock(&fn->st->lock);
		stage_close_fd(fn->st);
		pthread_mutex_unlock(&fn->st->lock);
		pthread_mutex_lock(&f->lock);
	}
	fnode_settle(f, fn);
	files_evict(f);
	pthread_mutex_unlock(&f->lock);
}

int files_open(struct files *f, uint64_t ino, int flags, struct files_handle **out,
	       bool *keep_cache, bool *changed, struct dt_error *err)
{
	char sb_id[OBJ_ID_MAX], path[PATH_MAX];
	struct fnode *fn = fnode_pin(f, ino, err);
	struct files_handle *h;
	struct staged *st;
	struct fattr a, told;
	bool ours, told_known, trusted;
	int64_t asked;
	int ret = 0;

	*keep_cache = false;
	*changed = false;
	if (!fn)
		return -err->err;
	pthread_mutex_lock(&f->lock);
	if (S_ISDIR(fn->attr.mode)) {
		pthread_mutex_unlock(&f->lock);
		fnode_unpin(f, fn);
		return files_fail(err, EISDIR, "is a directory");
	}
	copy_str(sb_id, sizeof(sb_id), fn->sb_id);
	copy_str(path, sizeof(path), fn->path);
	/* Written here and not uploaded (or removed): this mount's copy is the file. */
	ours = fn->local_only || fn->dirty || fn->unlinked;
	told = fn->attr;
	told_known = fn->attr_known;
	asked = now_mono_ms();
	/* Learnt within the last second (fs-layout.md, Consistency): no need to ask again. */
	trusted = !ours && fnode_open_may_trust(f, fn, asked);
	if (trusted)
		a = fn->attr;
	pthread_mutex_unlock(&f->lock);

	/* Close-to-open: what the sandbox has now decides whether old bytes still count. */
	if (!ours && !trusted) {
		ret = files_info(f, sb_id, path, &a, err);
		if (ret == 0 && S_ISDIR(a.mode))
			ret = files_fail(err, EISDIR, "is a directory");
		if (ret < 0)
			goto fail;
	}

	pthread_mutex_lock(&f->lock);
	if (!ours && !trusted)
		fnode_set_server(f, fn, &a, asked);
	if (!fn->st) {
		ret = stage_new(f->sd, &fn->st, err);
		if (ret == 0 && !ours) {
			/* Nothing fetched yet: the copy stands for the sandbox's file. */
			fn->st->complete = a.size == 0;
			fn->st->size = a.size;
			stage_set_server(fn->st, a.size, &a.mtime);
		}
	}
	st = fn->st;
	if (ret == 0)
		fn->opens++;
	pthread_mutex_unlock(&f->lock);
	if (ret < 0)
		goto fail;

	pthread_mutex_lock(&st->lock);
	ret = stage_open_fd(st, err);
	if ((flags & O_ACCMODE) != O_RDONLY)
		stage_set_origin(st, sb_id, path);
	if (ret == 0 && (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
		/* The handle's copy is emptied; the sandbox's file changes at close. */
		ret = stage_truncate(st, NULL, path, 0, err);
		if (ret == 0)
			mirror_local(f, fn, st);
		*changed = true;
	} else if (ret == 0 && !ours) {
		if (st->dirty) {
			*keep_cache = true; /* written meanwhile by another handle */
		} else if (st->srv_known && st->srv_size == a.size &&
			   ts_equal(&st->srv_mtime, &a.mtime)) {
			*keep_cache = true;
		} else {
			ret = stage_reset(st, a.size, &a.mtime, err);
		}
		*changed = !told_known || told.size != a.size || !ts_equal(&told.mtime, &a.mtime);
	} else if (ret == 0) {
		*keep_cache = true;
	}
	pthread_mutex_unlock(&st->lock);
	if (ret < 0) {
		unopen(f, fn);
		goto fail;
	}
	h = handle_new(fn, st, flags);
	if (!h) {
		unopen(f, fn);
		ret = files_fail(err, ENOMEM, "out of memory");
		goto fail;
	}
	fnode_unpin(f, fn);
	*out = h;
	return 0;
fail:
	if (ret == -ENOENT) {
		/* Gone in the sandbox: the kernel's name for it goes as well. */
		char dir[PATH_MAX];
		const char *name = path_split(path, dir, sizeof(dir));
		struct fnode *parent;

		pthread_mutex_lock(&f->lock);
		listing_remove(f, sb_id, dir, name);
		parent = fnode_by_path(f, sb_id, dir);
		if (parent && f->inval.entry)
			f->inval.entry(f->inval.arg, parent->ino, name);
		pthread_mutex_unlock(&f->lock);
	}
	fnode_unpin(f, fn);
	return ret;
}

int files_create(struct files *f, uint64_t parent, const char *name, mode_t mode, int flags,
		 struct files_entry *e, struct files_handle **out, struct dt_error *err)
{
	char path[PATH_MAX], sb_id[OBJ_ID_MAX];
	struct files_handle *h = NULL;
	struct fnode *dir, *fn;
	struct staged *st = NULL;
	int ret = 0;

	if (!name_is_file_name(name))
		return files_fail(err, EINVAL, "invalid name");
	dir = files_child(f, parent, name, path, sizeof(path), sb_id, sizeof(sb_id), err);
	if (!dir)
		return -err->err;
	/* The sandbox must be there now, not only at close. */
	ret = TB_CALL(f, sb_id, err, t, 0);
	if (ret < 0)
		goto out;

	pthread_mutex_lock(&f->lock);
	fn = fnode_get(f, sb_id, path);
	if (!fn) {
		pthread_mutex_unlock(&f->lock);
		ret = files_fail(err, ENOMEM, "out of memory");
		goto out;
	}
	if (!fn->st)
		ret = stage_new(f->sd, &fn->st, err);
	if (ret == 0) {
		st = fn->st;
		fn->opens++;
		fn->local_only = true;
		fn->create_mode = mode & 07777;
		fn->attr.mode = S_IFREG | (mode & 07777);
		fn->ov_set = false;
	}
	pthread_mutex_unlock(&f->lock);
	if (ret < 0)
		goto out;

	/* A new, empty file; the upload at close makes it exist in the sandbox. */
	pthread_mutex_lock(&st->lock);
	stage_set_origin(st, sb_id, path);
	ret = stage_truncate(st, NULL, path, 0, err);
	pthread_mutex_unlock(&st->lock);
	if (ret == 0 && !(h = handle_new(fn, st, flags)))
		ret = files_fail(err, ENOMEM, "out of memory");
	if (ret < 0) {
		pthread_mutex_lock(&f->lock);
		fn->local_only = false;
		pthread_mutex_unlock(&f->lock);
		unopen(f, fn);
		goto out;
	}
	mirror_local(f, fn, st);
	pthread_mutex_lock(&f->lock);
	{
		char dir_path[PATH_MAX];

		path_split(path, dir_path, sizeof(dir_path));
		dir_touched(f, sb_id, dir_path);
	}
	fnode_ref(f, fn);
	e->ino = fn->ino;
	fnode_stat(f, fn, &e->attr);
	e->data_ms = now_mono_ms();
	pthread_mutex_unlock(&f->lock);
	*out = h;
out:
	fnode_unpin(f, dir);
	return ret;
}

/* ---- read, write, close ------------------------------------------------- */

/*
 * After fetching into a clean copy: is what was fetched still the version
 * the handle opened? One answer holding the whole file is one version; a
 * file read in several pieces is checked with GET /files/info after each
 * fetch. A change found before any fetched byte reached a reader makes the
 * copy the new version (*@again: read once more); after, the read fails:
 * the reader would get a mix of two versions. Under the copy's lock.
 */
static int check_version(struct files *f, struct fnode *fn, struct staged *st, const char *sb_id,
			 const char *path, unsigned fetches_before, bool served_before, bool *again,
			 struct dt_error *err)
{
	bool one_whole = fetches_before == 0 && st->fetches == 1 && st->complete;
	int64_t asked = now_mono_ms();
	struct fattr a;
	int ret;

	*again = false;
	if (st->fetches == fetches_before || st->dirty || !st->srv_known)
		return 0;
	if (one_whole && st->size == st->srv_size)
		return 0;
	ret = files_info(f, sb_id, path, &a, err);
	if (ret < 0)
		return ret;
	if (a.size == st->srv_size && ts_equal(&a.mtime, &st->srv_mtime))
		return 0;
	ret = stage_reset(st, a.size, &a.mtime, err);
	pthread_mutex_lock(&f->lock);
	fnode_set_server(f, fn, &a, asked);
	pthread_mutex_unlock(&f->lock);
	inval_inode(f, fn->ino, 0, 0);
	if (ret < 0)
		return ret;
	if (!served_before) {
		*again = true;
		return 0;
	}
	return files_fail(err, EIO,
			  "%s changed in the sandbox while it was open here; open it again", path);
}

int files_read(struct files *f, struct files_handle *h, char *buf, size_t size, int64_t off,
	       size_t *got, struct dt_error *err)
{
	char sb_id[OBJ_ID_MAX], path[PATH_MAX];
	struct staged *st = h->st;
	bool fetched = false, again = false;
	int ret;

	node_where(f, h->fn, sb_id, sizeof(sb_id), path, sizeof(path));
	for (int attempt = 0;; attempt++) {
		unsigned fetches_before;
		bool served_before;

		pthread_mutex_lock(&st->lock);
		fetches_before = st->fetches;
		served_before = st->served;
		if (st->complete || off >= st->size) {
			ret = stage_read(st, NULL, path, buf, size, off, got, err);
		} else if (h->stalled_ms && now_mono_ms() - h->stalled_ms < STALLED_READ_MS) {
			/* What is here is served; what is missing is not asked for again. */
			ret = stage_read(st, NULL, path, buf, size, off, got, err);
			if (ret < 0) {
				*err = h->stalled_err;
				ret = -h->stalled_err.err;
			}
		} else {
			ret = TB_CALL(f, sb_id, err, t,
				      stage_read(st, t->tb, path, buf, size, off, got, err));
			fetched = true;
			if (ret == -ETIMEDOUT && err->transport) {
				h->stalled_ms = now_mono_ms();
				h->stalled_err = *err;
			}
		}
		if (ret == 0)
			ret = check_version(f, h->fn, st, sb_id, path, fetches_before,
					    served_before, &again, err);
		pthread_mutex_unlock(&st->lock);
		if (ret < 0 || !again || attempt > 0)
			break;
	}
	if (fetched) {
		pthread_mutex_lock(&f->lock);
		files_evict(f);
		pthread_mutex_unlock(&f->lock);
	}
	return ret;
}

int files_write(struct files *f, struct files_handle *h, const char *buf, size_t size, int64_t off,
		int64_t *at, struct dt_error *err)
{
	char sb_id[OBJ_ID_MAX], path[PATH_MAX];
	struct staged *st = h->st;
	int ret;

	node_where(f, h->fn, sb_id, sizeof(sb_id), path, sizeof(path));
	pthread_mutex_lock(&st->lock);
	/* O_APPEND writes land at the end of the file as it is here, whatever the kernel thought.
	 */
	if (h->append)
		off = st->size;
	*at = off;
	if (st->complete)
		ret = stage_write(st, NULL, path, buf, size, off, err);
	else
		ret = TB_CALL(f, sb_id, err, t, stage_write(st, t->tb, path, buf, size, off, err));
	if (ret == 0)
		mirror_local(f, h->fn, st);
	pthread_mutex_unlock(&st->lock);
	return ret;
}

/* Uploads the copy when it holds what the sandbox has not got. */
static int upload_if_needed(struct files *f, struct files_handle *h, struct dt_error *err)
{
	char sb_id[OBJ_ID_MAX], path[PATH_MAX];
	struct staged *st = h->st;
	bool needed;
	int ret = 0;

	node_where(f, h->fn, sb_id, sizeof(sb_id), path, sizeof(path));
	pthread_mutex_lock(&st->lock);
	pthread_mutex_lock(&f->lock);
	needed = (st->dirty || h->fn->local_only) && !h->fn->unlinked;
	pthread_mutex_unlock(&f->lock);
	if (needed)
		ret = files_upload_node(f, h->fn, st, sb_id, path, err);
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int files_flush(struct files *f, struct files_handle *h, bool sync, struct dt_error *err)
{
	/* A reader's close does not send what a writer elsewhere is still writing. */
	if (!h->writable && !sync)
		return 0;
	return upload_if_needed(f, h, err);
}

void files_release(struct files *f, struct files_handle *h)
{
	struct dt_error err = {0};
	bool last, retry;

	pthread_mutex_lock(&f->lock);
	last = h->fn->opens == 1;
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_lock(&h->st->lock);
	/* Written without a flush (mmap): send it now. A failed close is not retried here. */
	retry = last && h->st->dirty && !h->st->upload_err;
	pthread_mutex_unlock(&h->st->lock);
	if (retry && upload_if_needed(f, h, &err) < 0) {
		char path[PATH_MAX], sb_id[OBJ_ID_MAX];

		node_where(f, h->fn, sb_id, sizeof(sb_id), path, sizeof(path));
		log_warn(
		    "files: %s of sandbox %s: upload failed (%s); the copy is kept and sent at "
		    "the next close or fsync",
		    path, sb_id, err.message);
	}
	unopen(f, h->fn);
	free(h);
}

/* ---- setattr ------------------------------------------------------------ */

/* A truncate: through the handle's copy, or (truncate(2)) a copy uploaded at once. */
static int set_size(struct files *f, struct fnode *fn, struct files_handle *h, int64_t size,
		    struct dt_error *err)
{
	char sb_id[OBJ_ID_MAX], path[PATH_MAX];
	struct staged *st;
	struct fattr a;
	bool fresh = false;
	int ret = 0;

	node_where(f, fn, sb_id, sizeof(sb_id), path, sizeof(path));
	pthread_mutex_lock(&f->lock);
	if (S_ISDIR(fn->attr.mode)) {
		pthread_mutex_unlock(&f->lock);
		return files_fail(err, EISDIR, "is a directory");
	}
	st = h ? h->st : fn->st;
	if (!st) {
		ret = stage_new(f->sd, &fn->st, err);
		st = fn->st;
		fresh = true;
	}
	pthread_mutex_unlock(&f->lock);
	if (ret < 0)
		return ret;

	pthread_mutex_lock(&st->lock);
	if (fresh || (!h && !st->dirty && !fn->local_only)) {
		/* No handle: the copy must stand for what the sandbox has now. */
		ret = files_info(f, sb_id, path, &a, err);
		if (ret == 0 && (!st->srv_known || st->srv_size != a.size ||
				 !ts_equal(&st->srv_mtime, &a.mtime)))
			ret = stage_reset(st, a.size, &a.mtime, err);
	}
	if (ret == 0) {
		stage_set_origin(st, sb_id, path);
		if (st->complete || size == 0)
			ret = stage_truncate(st, NULL, path, size, err);
		else
			ret = TB_CALL(f, sb_id, err, t, stage_truncate(st, t->tb, path, size, err));
	}
	if (ret == 0)
		mirror_local(f, fn, st);
	/* truncate(2) on a path returns once the sandbox has it. */
	if (ret == 0 && !h)
		ret = files_upload_node(f, fn, st, sb_id, path, err);
	pthread_mutex_unlock(&st->lock);
	return ret;
}

static int set_mode(struct files *f, struct fnode *fn, mode_t mode, struct dt_error *err)
{
	char sb_id[OBJ_ID_MAX], path[PATH_MAX], dir[PATH_MAX];
	const char *name;
	bool local_only;
	int ret;

	node_where(f, fn, sb_id, sizeof(sb_id), path, sizeof(path));
	pthread_mutex_lock(&f->lock);
	local_only = fn->local_only;
	if (local_only) {
		/* Applied after the first upload. */
		fn->create_mode = mode & 07777;
		fn->attr.mode = (fn->attr.mode & S_IFMT) | (mode & 07777);
	}
	pthread_mutex_unlock(&f->lock);
	if (local_only)
		return 0;
	if (strcmp(path, "/") == 0)
		return files_fail(err, EPERM, "files/ itself has no mode to change");
	ret = TB_CALL(f, sb_id, err, t,
		      dt_fs_set_permissions(t->tb, path, (int)(mode & 07777), NULL, NULL, err));
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&f->lock);
	fn->attr.mode = (fn->attr.mode & S_IFMT) | (mode & 07777);
	if (fn->local_only)
		fn->create_mode = mode & 07777;
	name = path_split(path, dir, sizeof(dir));
	{
		struct listing *l = listing_find(f, sb_id, dir);
		struct lent *e = l && !l->loading ? listing_entry(l, name) : NULL;

		if (e)
			e->attr.mode = (e->attr.mode & S_IFMT) | (mode & 07777);
	}
	pthread_mutex_unlock(&f->lock);
	return 0;
}

/* utimens: the API has none; the time is kept here while the sandbox's file is unchanged. */
static int set_mtime(struct files *f, struct fnode *fn, const struct timespec *when,
		     struct dt_error *err)
{
	char sb_id[OBJ_ID_MAX], path[PATH_MAX];
	struct staged *st;
	struct fattr a;
	bool ours, known;
	int64_t asked;
	int ret;

	node_where(f, fn, sb_id, sizeof(sb_id), path, sizeof(path));
	if (strcmp(path, "/") == 0)
		return 0;
	pthread_mutex_lock(&f->lock);
	ours = fn->local_only || fn->dirty;
	st = fn->st;
	/* Fresh, and no later than a change made here in it (for a directory). */
	known = fn->attr_known && now_mono_ms() - fn->attr_ms < FILES_TTL_MS &&
		fn->attr_ms > fn->touched_ms;
	a = fn->attr;
	pthread_mutex_unlock(&f->lock);
	asked = now_mono_ms();
	if (!ours && !known) {
		/* The time holds for the sandbox's file as it is now: learn which that is. */
		ret = files_info(f, sb_id, path, &a, err);
		if (ret < 0)
			return ret;
	}
	if (st)
		pthread_mutex_lock(&st->lock);
	pthread_mutex_lock(&f->lock);
	if (!ours && !known)
		fnode_set_server(f, fn, &a, asked);
	fn->ov_set = true;
	fn->ov_mtime = *when;
	ours = fn->local_only || fn->dirty;
	fn->ov_pending = ours;
	if (ours)
		fn->ov_gen = st ? st->gen : 0;
	else
		fn->ov_srv_mtime = a.mtime;
	pthread_mutex_unlock(&f->lock);
	if (st)
		pthread_mutex_unlock(&st->lock);
	return 0;
}

int files_setattr(struct files *f, uint64_t ino, const struct stat *attr, int to_set,
		  struct files_handle *h, struct stat *out, int64_t *data_ms, struct dt_error *err)
{
	struct fnode *fn = h ? h->fn : fnode_pin(f, ino, err);
	int ret = 0;

	if (!fn)
		return -err->err;
	/*
	 * chown: every file is shown as the mounting user's, whoever owns it in
	 * the sandbox; a change of owner (root restoring owners: tar x, rsync -a,
	 * cp -p) is accepted and changes nothing.
	 */
	if (to_set & FILES_SET_SIZE)
		ret = set_size(f, fn, h, attr->st_size, err);
	if (ret == 0 && (to_set & FILES_SET_MODE))
		ret = set_mode(f, fn, attr->st_mode, err);
	if (ret == 0 && (to_set & (FILES_SET_MTIME | FILES_SET_MTIME_NOW))) {
		struct timespec when;

		if (to_set & FILES_SET_MTIME_NOW)
			clock_gettime(CLOCK_REALTIME, &when);
		else
			when = attr->st_mtim;
		ret = set_mtime(f, fn, &when, err);
	}
	if (ret == 0) {
		pthread_mutex_lock(&f->lock);
		fnode_stat(f, fn, out);
		*data_ms =
		    fn->attr_known && !fn->dirty && !fn->local_only ? fn->attr_ms : now_mono_ms();
		pthread_mutex_unlock(&f->lock);
	}
	if (!h)
		fnode_unpin(f, fn);
	return ret;
}
