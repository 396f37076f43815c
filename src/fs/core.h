/*
 * The core of quaverfs: what each node of fs-layout.md contains and what a
 * write, mkdir, rmdir, unlink or create on it does. It works on node_info
 * values and errno numbers and knows nothing of FUSE; ops.c wires it to the
 * kernel. Every function returns 0 or -errno with a sentence in @err.
 */
#ifndef QUAVERFS_CORE_H
#define QUAVERFS_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "backend.h"
#include "buf.h"
#include "cache.h"
#include "grammar.h"
#include "inode.h"
#include "node.h"

struct files;
struct runs;
struct terms;

struct qfs {
	struct backend *bk;
	struct cache *cache;
	struct inode_table *itab;
	struct files *files; /* files/ of every sandbox (files.h) */
	struct runs *runs;   /* runs/ of every sandbox (ops_runs.c) */
	struct terms *terms; /* pty and terminals/ of every sandbox (ops_terms.c) */
	int op_timeout_ms; /* a state change may wait this long */
	uid_t uid;
	gid_t gid;
	int64_t mount_wall_ms;

	pthread_mutex_t lock; /* guards what follows */
	struct create_opts defaults;
	char root_error[1024];
	/* labels created (open O_CREAT) but not written yet */
	struct pending_label {
		char id[OBJ_ID_MAX];
		char key[NODE_NAME_MAX];
	} *pending;
	size_t npending;
};

int qfs_init(struct qfs *fs, struct backend *bk, int op_timeout_ms);
void qfs_destroy(struct qfs *fs);

/*
 * What a change made, for the kernel's caches: names whose (maybe negative)
 * entries must go, and objects whose nodes' attributes must be refetched.
 */
#define CHANGES_MAX 4
struct core_changes {
	struct {
		struct node_info dir;
		char name[NODE_NAME_MAX];
	} entries[CHANGES_MAX];
	size_t nentries;
	char objs[CHANGES_MAX][OBJ_ID_MAX];
	size_t nobjs;
	bool root_error; /* the root error node changed */
};

/* ---- reading (tree.c) ---- */

/*
 * @data_ms (may be NULL): the monotonic time the backend sent what the
 * attributes say (now for nodes of no object), so the kernel is never told
 * to keep them longer than they are fresh.
 */
int core_getattr(struct qfs *fs, const struct node_info *n, struct stat *st, int64_t *data_ms,
		 struct dt_error *err);
int core_lookup(struct qfs *fs, const struct node_info *dir, const char *name,
		struct node_info *child, struct dt_error *err);
/* The entries of a directory (without "." and ".."); free with free(). */
int core_list(struct qfs *fs, const struct node_info *dir, struct node_info **entries,
	      size_t *n, struct dt_error *err);
int core_read(struct qfs *fs, const struct node_info *n, struct buf *out, struct dt_error *err);
int core_readlink(struct qfs *fs, const struct node_info *n, char *out, size_t size,
		  struct dt_error *err);

/* The object a node belongs to, refetched when stale. */
int core_node_obj(struct qfs *fs, const struct node_info *n, bool full, struct cobj **out,
		  struct dt_error *err);

/* ---- changing (actions.c) ---- */

int core_write(struct qfs *fs, const struct node_info *n, const char *data, size_t len,
	       struct core_changes *ch, struct dt_error *err);
int core_mkdir(struct qfs *fs, const struct node_info *dir, const char *name,
	       struct node_info *child, struct core_changes *ch, struct dt_error *err);
int core_rmdir(struct qfs *fs, const struct node_info *dir, const char *name,
	       struct core_changes *ch, struct dt_error *err);
int core_unlink(struct qfs *fs, const struct node_info *dir, const char *name,
		struct core_changes *ch, struct dt_error *err);
/* O_CREAT of a new name: only labels/K, which exists once written (or closed). */
int core_create(struct qfs *fs, const struct node_info *dir, const char *name,
		struct node_info *child, struct core_changes *ch, struct dt_error *err);
/* Close of a created label never written: it becomes a label with an empty value. */
int core_finish_create(struct qfs *fs, const struct node_info *n, struct core_changes *ch,
		       struct dt_error *err);
bool core_label_pending(struct qfs *fs, const char *id, const char *key);
void core_label_pending_drop(struct qfs *fs, const char *id, const char *key);

/*
 * Records a failure of an operation on @path: the root error node, the
 * object's error node (@obj_id, "" for none) and a warning in the log.
 */
void core_record_failure(struct qfs *fs, const char *path, const char *obj_id,
			 const struct dt_error *err, struct core_changes *ch);
/* A successful change on @obj_id clears its last failure. */
void core_clear_failure(struct qfs *fs, const char *obj_id, struct core_changes *ch);

/* Cancellation of the calling thread's operation (a FUSE interrupt). */
void core_set_cancel(bool (*fn)(void *arg), void *arg);
bool core_cancelled(void);

/* Fills @err. Returns -@errnum. */
int core_fail(struct dt_error *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
