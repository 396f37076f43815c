/*
 * files/: a sandbox's own filesystem, read and written through the toolbox
 * file API (daytona-api.md section 6). This is the core of it: inodes of
 * sandbox paths, the listing and attribute cache, staged copies, and what
 * each syscall does, with errno values and sentences in dt_error. It knows
 * nothing of FUSE; ops_files.c wires it to the kernel. fs-layout.md
 * (files/) is its contract.
 */
#ifndef QUAVERFS_FILES_H
#define QUAVERFS_FILES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "daytona.h"

/* Inodes of files/ have the top bit set; those of the control plane never do. */
#define FILES_INO_BIT (1ULL << 63)
static inline bool files_is_ino(uint64_t ino)
{
	return (ino & FILES_INO_BIT) != 0;
}

/* How long listings and attributes are trusted, and the kernel keeps them. */
#define FILES_TTL_MS 1000
/* At most this many entries of one directory are listed (the rest open by name). */
#define FILES_MAX_LISTING DT_MAX_LISTING

struct qfs;
struct files;

struct files_config {
	const char *cache_base; /* -o cache_dir=; NULL: $XDG_CACHE_HOME/quaverfs */
	bool autostart;		/* start a stopped or archived sandbox on access */
	int64_t cache_bytes;	/* clean cached data kept at most; 0: the default */
};

#define FILES_DEFAULT_CACHE_BYTES (1LL << 30)

/* Kernel cache invalidations the core asks for (queued, sent later). */
struct files_inval_ops {
	void (*inode)(void *arg, uint64_t ino, int64_t off, int64_t len);
	void (*entry)(void *arg, uint64_t parent, const char *name);
	void *arg;
	/*
	 * The kernel's pages and attributes of @ino dropped before it returns
	 * (`flush`: what is read next comes from the sandbox); NULL: queued.
	 */
	void (*inode_now)(void *arg, uint64_t ino);
};

int files_new(struct qfs *fs, const struct files_config *cfg, struct files **out, char *msg,
	      size_t msg_size);
/* Uploads nothing: staged copies never uploaded are left in the cache dir (logged). */
void files_free(struct files *f);
void files_set_inval(struct files *f, const struct files_inval_ops *ops);
const char *files_cache_dir(const struct files *f);

/* A node for the kernel: its inode, attributes and when they were learnt (monotonic ms). */
struct files_entry {
	uint64_t ino;
	struct stat attr;
	int64_t data_ms;
};

/* sandboxes/NAME/files itself (counts a lookup). Never asks the network. */
int files_root_entry(struct files *f, const char *sb_id, struct files_entry *e,
		     struct dt_error *err);
/* The inode files/ of @sb_id has or would get (for readdir). */
uint64_t files_root_ino(struct files *f, const char *sb_id);
int files_lookup(struct files *f, uint64_t parent, const char *name, struct files_entry *e,
		 struct dt_error *err);
void files_forget(struct files *f, uint64_t ino, uint64_t nlookup);
int files_getattr(struct files *f, uint64_t ino, struct stat *st, int64_t *data_ms,
		  struct dt_error *err);

/* "sandboxes/NAME/files/a/b" (plus "/@name" when given), for logs and error nodes. */
void files_node_path(struct files *f, uint64_t ino, const char *name, char *out, size_t size);
/* The sandbox of @ino; false when the inode is unknown. */
bool files_sandbox_of(struct files *f, uint64_t ino, char *id, size_t size);

/* ---- directories (a snapshot of one listing per opendir) ---- */

struct files_dir;
int files_opendir(struct files *f, uint64_t ino, struct files_dir **out, struct dt_error *err);
size_t files_dir_count(const struct files_dir *d);
const char *files_dir_name(const struct files_dir *d, size_t i);
/* The inode of the entry's parent (for ".."): the directory's own parent. */
uint64_t files_dir_parent_ino(struct files *f, const struct files_dir *d);
/* For readdirplus: counts a lookup of entry @i. */
int files_dir_entry(struct files *f, const struct files_dir *d, size_t i, struct files_entry *e,
		    struct dt_error *err);
/* For readdir: the inode the entry has or would get, and its type. */
void files_dir_peek(struct files *f, const struct files_dir *d, size_t i, uint64_t *ino,
		    mode_t *mode);
void files_dir_free(struct files_dir *d);

/* ---- changes of names ---- */

int files_mkdir(struct files *f, uint64_t parent, const char *name, mode_t mode,
		struct files_entry *e, struct dt_error *err);
int files_rmdir(struct files *f, uint64_t parent, const char *name, struct dt_error *err);
int files_unlink(struct files *f, uint64_t parent, const char *name, struct dt_error *err);
#define FILES_RENAME_NOREPLACE 1u
#define FILES_RENAME_EXCHANGE 2u
int files_rename(struct files *f, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname, unsigned flags, struct dt_error *err);

/* ---- files ---- */

struct files_handle;

/*
 * Opens a regular file. *@keep_cache: the kernel's cached pages of it are
 * still right (same size and mtime as when they were read). *@changed: the
 * file changed in the sandbox since the kernel last heard of it; its
 * attributes must be dropped before the open is answered.
 */
int files_open(struct files *f, uint64_t ino, int flags, struct files_handle **out,
	       bool *keep_cache, bool *changed, struct dt_error *err);
int files_create(struct files *f, uint64_t parent, const char *name, mode_t mode, int flags,
		 struct files_entry *e, struct files_handle **out, struct dt_error *err);
int files_read(struct files *f, struct files_handle *h, char *buf, size_t size, int64_t off,
	       size_t *got, struct dt_error *err);
/* *@at: where the bytes went (an O_APPEND handle writes at the end of the copy). */
int files_write(struct files *f, struct files_handle *h, const char *buf, size_t size, int64_t off,
		int64_t *at, struct dt_error *err);
/*
 * close() (@sync false) and fsync() (@sync true): upload what was written;
 * the upload's failure is theirs, and the copy is kept for the next try. A
 * read-only handle's close sends nothing.
 */
int files_flush(struct files *f, struct files_handle *h, bool sync, struct dt_error *err);
/* The last close: uploads what is still unsent (a failure only logged) and frees @h. */
void files_release(struct files *f, struct files_handle *h);
uint64_t files_handle_ino(const struct files_handle *h);

/* setattr: which fields of @attr to apply (ops_files.c maps FUSE's bits). */
#define FILES_SET_MODE 0x01
#define FILES_SET_UID 0x02
#define FILES_SET_GID 0x04
#define FILES_SET_SIZE 0x08
#define FILES_SET_MTIME 0x10
#define FILES_SET_MTIME_NOW 0x20
#define FILES_SET_ATIME 0x40
int files_setattr(struct files *f, uint64_t ino, const struct stat *attr, int to_set,
		  struct files_handle *h, struct stat *out, int64_t *data_ms, struct dt_error *err);

/* Local numbers only: the cache directory's filesystem. */
int files_statfs(struct files *f, struct statvfs *st);

/* `flush` and SIGHUP: forgets every listing, attribute and clean cached byte. */
void files_drop_caches(struct files *f);

/*
 * A process of sandbox @sb_id started (@begin) or ended through this mount
 * (runs/, pty, terminals/). While one runs, every open of its files/ asks
 * the sandbox (strict close-to-open); at either event its listings and
 * attributes are forgotten, so what the process changed is seen at the
 * next open, stat or lookup. Calls must pair (begin, then end).
 */
void files_sandbox_activity(struct files *f, const char *sb_id, bool begin);

#endif
