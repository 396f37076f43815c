/*
 * Staged copies of files/ files: the local cache file that holds what
 * quaverfs has read of a sandbox file and what was written to it before the
 * upload. One staged copy per file, shared by every handle open on it. The
 * bytes live in a 0600 file of a 0700 cache directory and are moved with
 * pread/pwrite and the client's fd transfers, so memory does not grow with
 * the size of a file. Nothing here knows of FUSE or of inodes.
 */
#ifndef QUAVERFS_STAGE_H
#define QUAVERFS_STAGE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "daytona.h"

struct stage_dir;

/*
 * Creates the mount's cache directory @base/<mount id>/ (mode 0700; @base is
 * made 0700 when missing, and refused when others may write to it or it is
 * not the mounting user's). Returns 0 or -errno with a sentence in @msg.
 */
int stage_dir_open(const char *base, struct stage_dir **out, char *msg, size_t msg_size);
/*
 * stage_dir_open also looks at the other mount directories in @base: one
 * whose quaverfs is gone (its lock is free: killed, or the machine stopped)
 * has its clean cached files removed, and each copy that held writes never
 * acknowledged is logged (warn) with its sandbox, path and cache file, and
 * kept there; a directory left with nothing is removed.
 */
/* Removes the directory unless a staged copy that never reached the sandbox is left in it. */
void stage_dir_close(struct stage_dir *sd);
const char *stage_dir_path(const struct stage_dir *sd);
/* Bytes held by every staged copy (what was fetched or written). */
int64_t stage_dir_bytes(const struct stage_dir *sd);

struct srange {
	int64_t start, end; /* [start, end) */
};

/*
 * Fields are guarded by @lock, which a caller holds around any sequence of
 * stage_* calls on the copy, network transfers included: reads and writes
 * of one file wait for each other and for its upload.
 */
struct staged {
	pthread_mutex_t lock;
	struct stage_dir *sd;
	char *file;	       /* the cache file */
	int fd;		       /* -1 while closed (idle copies keep no descriptor) */
	int64_t size;	       /* the file's size as seen through this copy */
	bool complete;	       /* every byte of [0, size) is in the cache file */
	struct srange *ranges; /* what is there when !complete; sorted, disjoint */
	size_t nranges;
	int64_t seq_next; /* where a sequential reader's next read would start */
	int64_t chunk;	  /* how much the next fetch asks for */
	unsigned fetches; /* downloads into the copy since its last reset */
	bool served;	  /* fetched bytes were handed to a reader since then */

	bool dirty;		     /* written here since the last upload */
	uint64_t gen;		     /* bumped by every change made here */
	struct timespec local_mtime; /* when it last changed here */
	int upload_err;		     /* errno of the last failed upload, 0 when none */

	/* The sandbox's version the clean bytes belong to (from info or a listing). */
	bool srv_known;
	int64_t srv_size;
	struct timespec srv_mtime;

	int64_t accounted; /* bytes counted in the directory's total */

	/*
	 * "sandbox ID path /a/b": what the copy is, recorded on the cache file
	 * (an xattr, else a FILE.origin file beside it) while it holds writes
	 * not acknowledged, so that a mount killed meanwhile leaves word of it.
	 */
	char *origin;
	bool marked;
};

/* A new, empty and complete staged copy (a new file). 0 or -errno. */
int stage_new(struct stage_dir *sd, struct staged **out, struct dt_error *err);
/* Closes and removes the cache file and frees the copy. */
void stage_free(struct staged *st);
/* Frees the copy but leaves its cache file (a write that never reached the sandbox). */
void stage_abandon(struct staged *st);

/* The descriptor, reopened when it was closed. 0 or -errno. Under the lock. */
int stage_open_fd(struct staged *st, struct dt_error *err);
/* Gives the descriptor back while the copy is idle. Under the lock. */
void stage_close_fd(struct staged *st);

/*
 * Forgets the content: the copy now stands for the sandbox's file of
 * @size bytes and mtime @mtime, of which nothing is fetched yet. Under the
 * lock; only for a clean copy.
 */
int stage_reset(struct staged *st, int64_t size, const struct timespec *mtime,
		struct dt_error *err);

/*
 * Copies [@off, @off + @len) into @buf, fetching what is missing from the
 * sandbox's @path with Range requests (a server that answers 200 sends
 * the whole file once, and the copy is complete from then on). A file of
 * at most STAGE_WHOLE_MAX bytes is fetched whole by its first read, in one
 * answer: one version of it. *@got is short at the end of the file. Under
 * the lock.
 */
#define STAGE_WHOLE_MAX (8LL << 20)
int stage_read(struct staged *st, struct dt_toolbox *tb, const char *path, char *buf, size_t len,
	       int64_t off, size_t *got, struct dt_error *err);

/* Fetches whatever is missing so the copy holds the whole file. Under the lock. */
int stage_fill(struct staged *st, struct dt_toolbox *tb, const char *path, struct dt_error *err);

/* Writes @len bytes at @off (holes stay holes). The copy becomes dirty. Under the lock. */
int stage_write(struct staged *st, struct dt_toolbox *tb, const char *path, const char *buf,
		size_t len, int64_t off, struct dt_error *err);

/* Sets the size (a truncate); dirty. Under the lock. */
int stage_truncate(struct staged *st, struct dt_toolbox *tb, const char *path, int64_t size,
		   struct dt_error *err);

/*
 * Uploads the whole copy to @path (atomically replaced on the server);
 * @mode >= 0: the permission bits asked for. On success the copy is clean
 * (unless written meanwhile, which the lock prevents); on failure it stays
 * dirty and upload_err says why. *@have_info: the server said what the file
 * is now (@info, to clear). Under the lock.
 */
int stage_upload(struct staged *st, struct dt_toolbox *tb, const char *path, int mode,
		 struct dt_file_info *info, bool *have_info, struct dt_error *err);

/* Says what the copy is (see origin above); kept on the cache file while dirty. Under the lock. */
void stage_set_origin(struct staged *st, const char *sb_id, const char *path);

/* Records the sandbox's version the (clean) copy now equals. Under the lock. */
void stage_set_server(struct staged *st, int64_t size, const struct timespec *mtime);

#endif
