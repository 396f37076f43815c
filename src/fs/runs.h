/*
 * runs/: commands and code in a sandbox's toolbox sessions (fs-layout.md,
 * "sandboxes/NAME/runs/"). This is the core: the inodes of the sub-tree,
 * sessions and commands, and one follower thread per command someone
 * watches, which polls the command's status and log (dt_process.h) and
 * spools its output to an unlinked local file. It knows nothing of FUSE:
 * reads never block here (-EAGAIN says "wait"), and the FUSE side
 * (ops_runs.c) parks a waiting request until the wake hook names its
 * command. Every function returns 0 or -errno with a sentence in @err.
 */
#ifndef QUAVERFS_RUNS_H
#define QUAVERFS_RUNS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "daytona.h"

struct qfs;
struct runs;
struct runs_handle;

int runs_new(struct qfs *fs, const char *spool_dir, struct runs **out);
/* Stops every follower (waits for them) and frees everything; handles must be released. */
void runs_free(struct runs *r);

/*
 * Called from a follower thread, without a lock held, when the command
 * @key (runs_handle_key) has new output, finished or failed.
 */
typedef void (*runs_wake_fn)(void *arg, const void *key);
void runs_set_wake(struct runs *r, runs_wake_fn fn, void *arg);

/* Inode numbers carry this tag in bits 63..61 (ops_runs.h: runs_is_ino). */
#define RUNS_TAG (2ULL << 61)

struct runs_entry {
	uint64_t ino;
	struct stat attr;
};

uint64_t runs_root_ino(struct runs *r, const char *sb_id);
/* sandboxes/NAME/runs itself; never asks the network. */
int runs_root_entry(struct runs *r, const char *sb_id, const char *sb_name, struct runs_entry *e,
		    struct dt_error *err);
int runs_lookup(struct runs *r, uint64_t parent, const char *name, struct runs_entry *e,
		struct dt_error *err);
/* Output and exit nodes: their size is what this mount has of the command so far. */
int runs_getattr(struct runs *r, uint64_t ino, struct stat *st, struct dt_error *err);
/* Attributes that change while a command runs: the kernel must not keep them. */
bool runs_attr_volatile(uint64_t ino);

struct runs_dirent {
	char name[256];
	uint64_t ino;
	mode_t mode;
};
/* The entries of directory @ino (without "." and ".."), and the inode of its parent (0: not ours).
 */
int runs_list(struct runs *r, uint64_t ino, struct runs_dirent **out, size_t *n, uint64_t *parent,
	      struct dt_error *err);

/* mkdir runs/S: a new session S. rmdir runs/S: the session is deleted (what it runs dies). */
int runs_mkdir(struct runs *r, uint64_t parent, const char *name, struct runs_entry *e,
	       struct dt_error *err);
int runs_rmdir(struct runs *r, uint64_t parent, const char *name, struct dt_error *err);

/* "sandboxes/NAME/runs/S/output" (plus "/@name"), for logs and error nodes. */
void runs_node_path(struct runs *r, uint64_t ino, const char *name, char *out, size_t size);
bool runs_sandbox_of(struct runs *r, uint64_t ino, char *id, size_t size);

/* ---- nodes ---- */

/*
 * Opens a node. *@streaming: its content grows while a command runs (reads
 * may wait; no seeking). The output and exit nodes of a session follow the
 * command that was the latest at open.
 */
int runs_open(struct runs *r, uint64_t ino, int flags, struct runs_handle **out, bool *streaming,
	      struct dt_error *err);
/*
 * Bytes at @off. 0 with *@got (0 at the end: the command finished);
 * -EAGAIN: none yet, wait for a wake naming runs_handle_key(@h); -errno.
 */
int runs_read(struct runs *r, struct runs_handle *h, char *buf, size_t size, int64_t off,
	      size_t *got, struct dt_error *err);
/* Whether a read at @off would answer at once (poll). */
bool runs_ready(struct runs *r, struct runs_handle *h, int64_t off);
/* What a waiting read of @h waits on; NULL when its reads never wait. */
const void *runs_handle_key(const struct runs_handle *h);
/* command: runs the line now; code: keeps the program for flush; stdin: feeds the command. */
int runs_write(struct runs *r, struct runs_handle *h, const char *data, size_t len,
	       struct dt_error *err);
/* close() of the code node: runs the program written. */
int runs_flush(struct runs *r, struct runs_handle *h, struct dt_error *err);
void runs_release(struct runs *r, struct runs_handle *h);
uint64_t runs_handle_ino(const struct runs_handle *h);

#endif
