/*
 * Staged copies: cache files, the map of fetched ranges, fetching with
 * Range, and the upload. Every function but the directory's runs under
 * the copy's lock (see stage.h).
 */
#include "stage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* A sequential reader's fetches grow from the first size to the last. */
#define CHUNK_MIN (1LL << 20)
#define CHUNK_MAX (16LL << 20)

/* The xattr (or FILE.origin file) naming the sandbox file a copy with unsent writes is. */
#define ORIGIN_XATTR "user.quaverfs.origin"
#define ORIGIN_SUFFIX ".origin"
/* In each mount's directory, locked for as long as that quaverfs lives. */
#define LOCK_NAME "lock"

/*
 * Cache files of freed copies kept, emptied, for the next copies: creating
 * and unlinking a file per copy made ext4 scan past every inode freed in
 * the last seconds at each create (find_inode_bit, recently_deleted), which
 * after a `flush` of thousands of copies cost more than the network.
 */
#define POOL_MAX 16384

struct stage_dir {
	char *path;
	int lock_fd;
	pthread_mutex_t pool_lock;
	char **pool; /* names of empty cache files ready for reuse */
	size_t npool;
	int64_t bytes;	    /* atomic */
	uint64_t next_file; /* atomic */
};

static int fail(struct dt_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct dt_error *err, int errnum, const char *fmt, ...)
{
	va_list ap;

	err->err = errnum;
	err->http_status = 0;
	err->transport = false;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -errnum;
}

/* ---- the directory ------------------------------------------------------ */

/* @dir exists (made 0700 when it did not), is ours and nobody else may write to it. */
static int check_private_dir(const char *dir, char *msg, size_t size)
{
	struct stat st;
	int ret = mkdir_p(dir, 0700);

	if (ret < 0) {
		snprintf(msg, size, "cache directory %s: %s", dir, strerror(-ret));
		return ret;
	}
	if (lstat(dir, &st) < 0) {
		snprintf(msg, size, "cache directory %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(msg, size, "cache directory %s is not a directory", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != getuid()) {
		snprintf(msg, size, "cache directory %s belongs to uid %u, not to you", dir,
			 (unsigned)st.st_uid);
		return -EPERM;
	}
	if (st.st_mode & 022) {
		snprintf(msg, size,
			 "cache directory %s has mode %04o: others could replace staged files "
			 "(chmod 700 it)",
			 dir, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

/* The origin recorded on cache file @name of directory @dfd, or false. */
static bool read_origin(int dfd, const char *name, char *out, size_t size)
{
	char side[NAME_MAX + 1];
	ssize_t n;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = fgetxattr(fd, ORIGIN_XATTR, out, size - 1);
	close(fd);
	if (n < 0 && snprintf(side, sizeof(side), "%s%s", name, ORIGIN_SUFFIX) < (int)sizeof(side)) {
		fd = openat(dfd, side, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, out, size - 1);
			close(fd);
		}
	}
	if (n <= 0)
		return false;
	out[n] = '\0';
	return true;
}

/*
 * Mount directory @name of @base was left by a quaverfs that is gone:
 * reports and keeps the copies with unacknowledged writes, removes the rest.
 */
static void recover_dir(const char *base, const char *name)
{
	char dir[PATH_MAX], origin[PATH_MAX + 128];
	size_t kept = 0;
	struct dirent *de;
	DIR *d;
	int dfd;

	if (snprintf(dir, sizeof(dir), "%s/%s", base, name) >= (int)sizeof(dir))
		return;
	d = opendir(dir);
	if (!d)
		return;
	dfd = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (de->d_name[0] != 'f' ||
		    (len > strlen(ORIGIN_SUFFIX) &&
		     strcmp(de->d_name + len - strlen(ORIGIN_SUFFIX), ORIGIN_SUFFIX) == 0))
			continue;
		if (read_origin(dfd, de->d_name, origin, sizeof(origin))) {
			log_warn("files: a quaverfs that was killed (or stopped with the machine) held "
				 "writes it never sent to %s: they are kept in %s/%s",
				 origin, dir, de->d_name);
			kept++;
			continue;
		}
		/* Clean cached content: fetched again when needed. */
		unlinkat(dfd, de->d_name, 0);
	}
	closedir(d);
	if (kept) {
		log_warn("files: %s keeps %zu such file%s; copy what you need out of it, then "
			 "remove it",
			 dir, kept, kept == 1 ? "" : "s");
		return;
	}
	/* Leftover sidecars of copies no longer there, the lock, the directory. */
	d = opendir(dir);
	if (d) {
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
	}
	rmdir(dir);
}

/* Looks for mount directories of quaverfs processes that are gone (see stage.h). */
static void recover_base(const char *base)
{
	struct dirent *de;
	DIR *d = opendir(base);

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		char lock[PATH_MAX];
		long pid;
		char *end;
		bool gone;
		int fd;

		if (de->d_name[0] != 'm')
			continue;
		pid = strtol(de->d_name + 1, &end, 10);
		if (end == de->d_name + 1 || *end != '-' || pid <= 0)
			continue;
		if (snprintf(lock, sizeof(lock), "%s/%s/%s", base, de->d_name, LOCK_NAME) >=
		    (int)sizeof(lock))
			continue;
		fd = open(lock, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			/* Its quaverfs holds the lock for as long as it lives. */
			gone = flock(fd, LOCK_EX | LOCK_NB) == 0;
		} else {
			/* No lock (killed right after mkdir): is the process there? */
			gone = errno == ENOENT && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
		}
		if (gone)
			recover_dir(base, de->d_name);
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
}

int stage_dir_open(const char *base, struct stage_dir **out, char *msg, size_t msg_size)
{
	struct stage_dir *sd;
	char id[17], path[PATH_MAX];
	int ret;

	*out = NULL;
	ret = check_private_dir(base, msg, msg_size);
	if (ret < 0)
		return ret;
	random_hex(id, 8);
	if (snprintf(path, sizeof(path), "%s/m%ld-%s", base, (long)getpid(), id) >=
	    (int)sizeof(path)) {
		snprintf(msg, msg_size, "cache directory %s: path too long", base);
		return -ENAMETOOLONG;
	}
	recover_base(base);
	if (mkdir(path, 0700) < 0) {
		ret = -errno;
		snprintf(msg, msg_size, "cache directory %s: %s", path, strerror(errno));
		return ret;
	}
	sd = calloc(1, sizeof(*sd));
	if (!sd || !(sd->path = strdup(path)) ||
	    !(sd->pool = calloc(POOL_MAX, sizeof(*sd->pool)))) {
		if (sd)
			free(sd->path);
		free(sd);
		rmdir(path);
		snprintf(msg, msg_size, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&sd->pool_lock, NULL);
	/* Held until exit: a later mount finds it free only once this one is gone. */
	{
		char lock[PATH_MAX + 16];

		snprintf(lock, sizeof(lock), "%s/%s", path, LOCK_NAME);
		sd->lock_fd = open(lock, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (sd->lock_fd < 0 || flock(sd->lock_fd, LOCK_EX | LOCK_NB) < 0) {
			ret = -errno;
			snprintf(msg, msg_size, "cache directory %s: cannot lock it: %s", path,
				 strerror(errno));
			if (sd->lock_fd >= 0)
				close(sd->lock_fd);
			unlink(lock);
			rmdir(path);
			pthread_mutex_destroy(&sd->pool_lock);
			free(sd->pool);
			free(sd->path);
			free(sd);
			return ret;
		}
	}
	*out = sd;
	return 0;
}

void stage_dir_close(struct stage_dir *sd)
{
	if (!sd)
		return;
	for (size_t i = 0; i < sd->npool; i++) {
		unlink(sd->pool[i]);
		free(sd->pool[i]);
	}
	free(sd->pool);
	pthread_mutex_destroy(&sd->pool_lock);
	/* Only staged copies that never reached the sandbox are left: keep them. */
	{
		char lock[PATH_MAX + 16];

		snprintf(lock, sizeof(lock), "%s/%s", sd->path, LOCK_NAME);
		unlink(lock);
	}
	if (rmdir(sd->path) < 0 && errno != ENOENT)
		log_warn("%s is kept: it holds files that could not be uploaded", sd->path);
	if (sd->lock_fd >= 0)
		close(sd->lock_fd);
	free(sd->path);
	free(sd);
}

const char *stage_dir_path(const struct stage_dir *sd)
{
	return sd->path;
}

int64_t stage_dir_bytes(const struct stage_dir *sd)
{
	return __atomic_load_n(&sd->bytes, __ATOMIC_RELAXED);
}

/* ---- accounting and ranges ---------------------------------------------- */

static void account(struct staged *st)
{
	int64_t held = 0;

	if (st->complete) {
		held = st->size;
	} else {
		for (size_t i = 0; i < st->nranges; i++)
			held += st->ranges[i].end - st->ranges[i].start;
	}
	__atomic_add_fetch(&st->sd->bytes, held - st->accounted, __ATOMIC_RELAXED);
	st->accounted = held;
}

static void ranges_clear(struct staged *st)
{
	free(st->ranges);
	st->ranges = NULL;
	st->nranges = 0;
}

/* Marks [start, end) as fetched, merging neighbours. */
static int range_add(struct staged *st, int64_t start, int64_t end)
{
	struct srange *r;
	size_t i = 0, j;

	if (end <= start)
		return 0;
	while (i < st->nranges && st->ranges[i].end < start)
		i++;
	j = i;
	while (j < st->nranges && st->ranges[j].start <= end) {
		if (st->ranges[j].start < start)
			start = st->ranges[j].start;
		if (st->ranges[j].end > end)
			end = st->ranges[j].end;
		j++;
	}
	if (j > i) {
		/* [i, j) merge into one at i. */
		st->ranges[i].start = start;
		st->ranges[i].end = end;
		memmove(&st->ranges[i + 1], &st->ranges[j],
			(st->nranges - j) * sizeof(st->ranges[0]));
		st->nranges -= j - i - 1;
		return 0;
	}
	r = realloc(st->ranges, (st->nranges + 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	st->ranges = r;
	memmove(&r[i + 1], &r[i], (st->nranges - i) * sizeof(*r));
	r[i].start = start;
	r[i].end = end;
	st->nranges++;
	return 0;
}

/* The first byte in [start, end) not fetched, or @end. */
static int64_t first_missing(const struct staged *st, int64_t start, int64_t end)
{
	for (size_t i = 0; i < st->nranges && start < end; i++) {
		if (st->ranges[i].end <= start)
			continue;
		if (st->ranges[i].start > start)
			break;
		start = st->ranges[i].end;
	}
	return start < end ? start : end;
}

/* Where the fetched range after @pos begins (the end of a gap), at most @end. */
static int64_t next_present(const struct staged *st, int64_t pos, int64_t end)
{
	for (size_t i = 0; i < st->nranges; i++)
		if (st->ranges[i].start > pos)
			return st->ranges[i].start < end ? st->ranges[i].start : end;
	return end;
}

/* ---- copies ------------------------------------------------------------- */

int stage_new(struct stage_dir *sd, struct staged **out, struct dt_error *err)
{
	struct staged *st = calloc(1, sizeof(*st));
	char path[PATH_MAX];
	uint64_t n;

	*out = NULL;
	if (!st)
		return fail(err, ENOMEM, "out of memory");
	pthread_mutex_lock(&sd->pool_lock);
	st->file = sd->npool ? sd->pool[--sd->npool] : NULL;
	pthread_mutex_unlock(&sd->pool_lock);
	if (st->file) {
		/* An emptied cache file of a freed copy (POOL_MAX above). */
		st->fd = open(st->file, O_RDWR | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
		if (st->fd < 0) {
			unlink(st->file);
			free(st->file);
			st->file = NULL;
		}
	}
	if (!st->file) {
		n = __atomic_add_fetch(&sd->next_file, 1, __ATOMIC_RELAXED);
		snprintf(path, sizeof(path), "%s/f%" PRIu64, sd->path, n);
		st->file = strdup(path);
		if (!st->file) {
			free(st);
			return fail(err, ENOMEM, "out of memory");
		}
		st->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	}
	if (st->fd < 0) {
		int e = errno;

		free(st->file);
		free(st);
		return fail(err, e, "cannot create a staging file in %s: %s", sd->path,
			    strerror(e));
	}
	pthread_mutex_init(&st->lock, NULL);
	st->sd = sd;
	st->complete = true;
	st->chunk = CHUNK_MIN;
	clock_gettime(CLOCK_REALTIME, &st->local_mtime);
	*out = st;
	return 0;
}

void stage_abandon(struct staged *st)
{
	if (!st)
		return;
	if (st->fd >= 0)
		close(st->fd);
	__atomic_sub_fetch(&st->sd->bytes, st->accounted, __ATOMIC_RELAXED);
	ranges_clear(st);
	pthread_mutex_destroy(&st->lock);
	free(st->origin);
	free(st->file);
	free(st);
}

void stage_free(struct staged *st)
{
	if (!st)
		return;
	if (st->fd >= 0)
		close(st->fd);
	if (st->marked) {
		char side[PATH_MAX];

		snprintf(side, sizeof(side), "%s%s", st->file, ORIGIN_SUFFIX);
		unlink(side);
	} else if (truncate(st->file, 0) == 0) {
		/* Kept, empty, for the next copy. */
		struct stage_dir *sd = st->sd;

		pthread_mutex_lock(&sd->pool_lock);
		if (sd->npool < POOL_MAX) {
			sd->pool[sd->npool++] = st->file;
			st->file = NULL;
		}
		pthread_mutex_unlock(&sd->pool_lock);
	}
	if (st->file)
		unlink(st->file);
	__atomic_sub_fetch(&st->sd->bytes, st->accounted, __ATOMIC_RELAXED);
	ranges_clear(st);
	pthread_mutex_destroy(&st->lock);
	free(st->origin);
	free(st->file);
	free(st);
}

int stage_open_fd(struct staged *st, struct dt_error *err)
{
	if (st->fd >= 0)
		return 0;
	st->fd = open(st->file, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (st->fd < 0 && errno == ENOENT && !st->dirty) {
		/* Someone cleaned the cache directory: what was fetched is fetched again. */
		st->fd = open(st->file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (st->fd >= 0) {
			ranges_clear(st);
			st->complete = st->size == 0;
			account(st);
			return 0;
		}
	}
	if (st->fd < 0) {
		int e = errno;

		return fail(err, e == ENOENT ? EIO : e, "staging file %s: %s%s", st->file,
			    strerror(e),
			    st->dirty && e == ENOENT ? " (what was written is lost)" : "");
	}
	return 0;
}

void stage_close_fd(struct staged *st)
{
	if (st->fd >= 0) {
		close(st->fd);
		st->fd = -1;
	}
}

int stage_reset(struct staged *st, int64_t size, const struct timespec *mtime, struct dt_error *err)
{
	int ret = stage_open_fd(st, err);

	if (ret < 0)
		return ret;
	if (ftruncate(st->fd, 0) < 0)
		return fail(err, errno, "staging file %s: %s", st->file, strerror(errno));
	ranges_clear(st);
	st->size = size;
	st->complete = size == 0;
	st->seq_next = 0;
	st->chunk = CHUNK_MIN;
	st->fetches = 0;
	st->served = false;
	stage_set_server(st, size, mtime);
	account(st);
	return 0;
}

void stage_set_server(struct staged *st, int64_t size, const struct timespec *mtime)
{
	st->srv_known = true;
	st->srv_size = size;
	st->srv_mtime = *mtime;
}

/* Fetches [start, start + len) (clipped to the file) into the copy. */
static int fetch(struct staged *st, struct dt_toolbox *tb, const char *path, int64_t start,
		 int64_t len, struct dt_error *err)
{
	struct dt_range_result res;
	int ret;

	ret = dt_fs_download_range_fd(tb, path, start, len, st->fd, &res, err);
	if (ret < 0)
		return ret;
	st->fetches++;
	switch (res.status) {
	case DT_RANGE_WHOLE:
		/* The server ignored Range: it sent everything, which is now all here. */
		if (ftruncate(st->fd, res.bytes) < 0)
			return fail(err, errno, "staging file %s: %s", st->file, strerror(errno));
		ranges_clear(st);
		st->complete = true;
		st->size = res.bytes;
		break;
	case DT_RANGE_PARTIAL:
		if (range_add(st, start, start + res.bytes) < 0)
			return fail(err, ENOMEM, "out of memory");
		if (res.bytes < len)
			st->size = start + res.bytes; /* shorter than it was */
		else if (res.file_size >= 0 && res.file_size < st->size)
			st->size = res.file_size;
		break;
	case DT_RANGE_EOF:
		st->size = res.file_size >= 0 && res.file_size < start ? res.file_size : start;
		break;
	}
	if (!st->complete && st->nranges == 1 && st->ranges[0].start == 0 &&
	    st->ranges[0].end >= st->size) {
		/* A range that held the whole file: complete, as one answer (one version). */
		ranges_clear(st);
		st->complete = true;
	}
	/* Sequential readers get bigger fetches, others the smallest. */
	st->chunk = start == st->seq_next ? (st->chunk * 2 > CHUNK_MAX ? CHUNK_MAX : st->chunk * 2)
					  : CHUNK_MIN;
	st->seq_next = start + res.bytes;
	account(st);
	return 0;
}

static int pread_all(struct staged *st, char *buf, size_t len, int64_t off, struct dt_error *err)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(st->fd, buf + done, len - done, off + (int64_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(err, errno, "staging file %s: %s", st->file, strerror(errno));
		if (n == 0) {
			/* A hole at the end of a sparse file reads as zeros. */
			memset(buf + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	return 0;
}

int stage_read(struct staged *st, struct dt_toolbox *tb, const char *path, char *buf, size_t len,
	       int64_t off, size_t *got, struct dt_error *err)
{
	int64_t end;
	int ret;

	*got = 0;
	ret = stage_open_fd(st, err);
	if (ret < 0)
		return ret;
	for (;;) {
		int64_t gap, gap_end, want;

		if (off >= st->size)
			return 0;
		end = off + (int64_t)len < st->size ? off + (int64_t)len : st->size;
		if (st->complete)
			break;
		gap = first_missing(st, off, end);
		if (gap >= end)
			break;
		/* Fetch at least a chunk from the gap, up to what is already here. */
		want = st->chunk > end - gap ? st->chunk : end - gap;
		if (st->nranges == 0 && st->size <= STAGE_WHOLE_MAX) {
			gap = 0; /* a small file: all of it, as one version */
			want = st->size;
		}
		if (want > st->size - gap)
			want = st->size - gap;
		gap_end = next_present(st, gap, gap + want);
		if (gap_end < end)
			gap_end = end;
		if (!tb)
			return fail(err, EIO, "no connection to fetch the file");
		ret = fetch(st, tb, path, gap, gap_end - gap, err);
		if (ret < 0)
			return ret;
	}
	ret = pread_all(st, buf, (size_t)(end - off), off, err);
	if (ret == 0)
		*got = (size_t)(end - off);
	if (*got && !st->dirty)
		st->served = true;
	return ret;
}

int stage_fill(struct staged *st, struct dt_toolbox *tb, const char *path, struct dt_error *err)
{
	int64_t size = 0;
	int ret;

	if (st->complete)
		return 0;
	ret = stage_open_fd(st, err);
	if (ret < 0)
		return ret;
	if (!tb)
		return fail(err, EIO, "no connection to fetch the file");
	/* One whole download: the copy then holds one version of the file, not pieces. */
	ret = dt_fs_download_fd(tb, path, st->fd, &size, err);
	if (ret < 0)
		return ret;
	if (ftruncate(st->fd, size) < 0)
		return fail(err, errno, "staging file %s: %s", st->file, strerror(errno));
	ranges_clear(st);
	st->complete = true;
	st->size = size;
	account(st);
	return 0;
}

/* The cache file says what it is while it holds writes not acknowledged (stage.h). */
static void mark(struct staged *st)
{
	char side[PATH_MAX];
	size_t len;
	int fd;

	if (st->marked || !st->origin || st->fd < 0)
		return;
	len = strlen(st->origin);
	if (fsetxattr(st->fd, ORIGIN_XATTR, st->origin, len, 0) == 0) {
		st->marked = true;
		return;
	}
	/* No user xattrs here: a file beside it. */
	snprintf(side, sizeof(side), "%s%s", st->file, ORIGIN_SUFFIX);
	fd = open(side, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		st->marked = write(fd, st->origin, len) == (ssize_t)len;
		close(fd);
	}
}

static void unmark(struct staged *st)
{
	char side[PATH_MAX];

	if (!st->marked)
		return;
	st->marked = false;
	if (st->fd >= 0 && fremovexattr(st->fd, ORIGIN_XATTR) == 0)
		return;
	snprintf(side, sizeof(side), "%s%s", st->file, ORIGIN_SUFFIX);
	unlink(side);
}

void stage_set_origin(struct staged *st, const char *sb_id, const char *path)
{
	char text[PATH_MAX + 128];
	char *copy;

	snprintf(text, sizeof(text), "sandbox %s path %s", sb_id, path);
	if (st->origin && strcmp(st->origin, text) == 0)
		return;
	copy = strdup(text);
	if (!copy)
		return;
	free(st->origin);
	st->origin = copy;
	if (st->marked) {
		/* Renamed while dirty: say the new name. */
		unmark(st);
		mark(st);
	}
}

static void changed(struct staged *st)
{
	mark(st);
	st->dirty = true;
	st->gen++;
	clock_gettime(CLOCK_REALTIME, &st->local_mtime);
	account(st);
}

int stage_write(struct staged *st, struct dt_toolbox *tb, const char *path, const char *buf,
		size_t len, int64_t off, struct dt_error *err)
{
	size_t done = 0;
	int ret;

	ret = stage_open_fd(st, err);
	if (ret == 0)
		ret = stage_fill(st, tb, path, err);
	if (ret < 0)
		return ret;
	while (done < len) {
		ssize_t n = pwrite(st->fd, buf + done, len - done, off + (int64_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = fail(err, errno, "staging file %s: %s", st->file, strerror(errno));
			break;
		}
		done += (size_t)n;
	}
	if (off + (int64_t)done > st->size)
		st->size = off + (int64_t)done;
	if (done)
		changed(st);
	return ret;
}

int stage_truncate(struct staged *st, struct dt_toolbox *tb, const char *path, int64_t size,
		   struct dt_error *err)
{
	int ret = stage_open_fd(st, err);

	if (ret < 0)
		return ret;
	if (size == 0) {
		/* Nothing of the old content is needed. */
		ranges_clear(st);
		st->complete = true;
	} else {
		ret = stage_fill(st, tb, path, err);
		if (ret < 0)
			return ret;
	}
	if (ftruncate(st->fd, size) < 0)
		return fail(err, errno, "staging file %s: %s", st->file, strerror(errno));
	st->size = size;
	changed(st);
	return 0;
}

int stage_upload(struct staged *st, struct dt_toolbox *tb, const char *path, int mode,
		 struct dt_file_info *info, bool *have_info, struct dt_error *err)
{
	int ret = stage_open_fd(st, err);

	if (ret < 0)
		return ret;
	if (!st->complete)
		return fail(err, EIO, "internal error: uploading an incomplete copy");
	if (!tb)
		ret = fail(err, EIO, "no connection to upload the file");
	else
		ret = dt_fs_upload_fd_info(tb, path, st->fd, st->size, mode, info, have_info,
					   err);
	if (ret < 0) {
		st->upload_err = -ret;
		return ret;
	}
	st->dirty = false;
	st->upload_err = 0;
	unmark(st);
	return 0;
}
