/*
 * What files.c, files_change.c and files_io.c share: the inode table of
 * sandbox paths, the listing cache and the toolbox handles. One mutex
 * (files.lock) guards the table and the listings and is never held across
 * a network call or while taking a staged copy's lock; a staged copy's
 * lock may be held while taking it (order: staged, then files).
 */
#ifndef QUAVERFS_FILES_INTERNAL_H
#define QUAVERFS_FILES_INTERNAL_H

#include <limits.h>
#include <pthread.h>

#include "backend.h"
#include "core.h"
#include "files.h"
#include "stage.h"

/* What the sandbox says of a path (or what quaverfs made it since). */
struct fattr {
	mode_t mode; /* S_IFDIR or S_IFREG (or another type) | 07777 */
	int64_t size;
	struct timespec mtime;
};

/* One sandbox path the kernel knows, or that holds something worth keeping. */
struct fnode {
	uint64_t ino;
	uint64_t nlookup; /* the kernel's lookup count */
	uint64_t key_hash;
	struct fnode *next_by_ino, *next_by_key;
	struct fnode *lru_prev, *lru_next;
	bool in_lru;
	bool keyed; /* found by its path (false once unlinked or replaced) */
	char *sb_id;
	char *path; /* "/" for files/ itself, else "/a/b" */

	bool attr_known;
	struct fattr attr;
	int64_t attr_ms;    /* when the sandbox said so (monotonic) */
	int64_t touched_ms; /* a directory: when quaverfs last changed what it holds */
	/* A directory changed here: its mtime is this mount's clock until the sandbox is asked. */
	bool estimated;
	int64_t inval_ms; /* a directory: when the kernel's attributes were last dropped */

	bool local_only; /* created here, not yet in the sandbox */
	bool dirty;	 /* the staged copy is newer than the sandbox's file */
	bool unlinked;	 /* removed while open: uploads are skipped */
	mode_t create_mode;

	/* A time set by utimens, shown while the sandbox's mtime stays @ov_srv_mtime. */
	bool ov_set;
	bool ov_pending; /* set while dirty: anchored by the next upload */
	uint64_t ov_gen; /* the copy's generation when it was set */
	struct timespec ov_mtime;
	struct timespec ov_srv_mtime;

	bool warned; /* a directory: its odd entries were logged once (later: debug) */
	/* A directory: a digest of its last listing, to tell a symlink back up (a loop). */
	bool fp_known;
	uint64_t fp;

	struct staged *st; /* the local copy, or NULL */
	int opens;	   /* open handles */
	int pins;	   /* operations using the node outside the lock */
};

struct lent {
	char *name;
	struct fattr attr;
	bool dead; /* removed by quaverfs since the listing */
};

/* A change quaverfs made in a directory while its listing was being fetched. */
struct lop {
	char *name;
	struct fattr attr;
	bool remove;
};

/* One directory's listing, trusted for FILES_TTL_MS. */
struct listing {
	struct listing *next;
	char *sb_id, *path;
	uint64_t key_hash;
	int64_t fetched_ms; /* 0 while loading */
	bool loading;
	bool truncated; /* the sandbox sent more than FILES_MAX_LISTING */
	bool loop;	/* the same entries as an ancestor's: listed empty */
	struct lent *ents;
	size_t n, cap;
	uint32_t *index; /* open addressing over ents by name: 0 empty, else i + 1 */
	size_t index_cap;
	/* Changes made while loading, applied to what the fetch brings (it may predate them). */
	struct lop *pend;
	size_t npend;
	/* The last fetch failed (kept empty for FILES_TTL_MS so waiters take it). */
	int64_t failed_ms; /* 0: it did not */
	bool stalled;	   /* no answer in time: asked again within FILES_TTL_MS, fails at once */
	struct dt_error fail_err;
};

/* A toolbox handle made with the client in use at the time. */
struct tbref {
	int refs;
	struct dt_toolbox *tb;
	struct dt_client *client;
	bool stale;
	char *url; /* the sandbox's toolboxProxyUrl the handle was made from (NULL: none) */
	char sb_id[OBJ_ID_MAX];
};

/* Processes of one sandbox run through this mount (files_sandbox_activity). */
struct sb_activity {
	char sb_id[OBJ_ID_MAX];
	int busy;	  /* running now */
	int64_t epoch_ms; /* the last start or end: attributes learnt before it are not trusted */
};

struct files {
	struct qfs *fs;
	struct stage_dir *sd;
	bool autostart;
	int64_t cache_bytes;
	struct files_inval_ops inval;
	uid_t uid;
	gid_t gid;
	struct timespec mount_time;

	pthread_mutex_t lock;  /* the rest */
	pthread_cond_t loaded; /* a listing finished loading */
	struct fnode **by_ino, **by_key;
	size_t nbuckets, count;
	size_t nretained; /* nodes the kernel forgot that are kept */
	struct fnode *lru_head, *lru_tail;
	struct listing **lbuckets;
	size_t lnbuckets, lcount;
	int64_t last_purge_ms;
	struct tbref **tbs;
	size_t ntbs;
	struct sb_activity *acts;
	size_t nacts;
	bool no_move_over; /* the backend's move never replaces (Daytona): emulate it */
	pthread_mutex_t start_lock; /* one autostart at a time */
};

/* ---- files.c: nodes (under the lock unless said otherwise) ---- */

struct fnode *fnode_by_ino(struct files *f, uint64_t ino);
struct fnode *fnode_by_path(struct files *f, const char *sb_id, const char *path);
/* Finds or adds the node of a path; NULL on ENOMEM. */
struct fnode *fnode_get(struct files *f, const char *sb_id, const char *path);
/* The kernel learnt of the node once more (a lookup count). */
void fnode_ref(struct files *f, struct fnode *fn);
/* Takes the node out of the path index: a new file of that name gets a new node. */
void fnode_unkey(struct files *f, struct fnode *fn);
/* Renames the node and every node below it (a directory's children). 0 or -ENOMEM. */
int fnode_rekey_tree(struct files *f, const char *sb_id, const char *from, const char *to);
/* Frees or keeps a node nobody uses any more (forgotten, closed, unpinned). */
void fnode_settle(struct files *f, struct fnode *fn);
/* Pins the node of @ino (without the lock): NULL with ESTALE in @err when unknown. */
struct fnode *fnode_pin(struct files *f, uint64_t ino, struct dt_error *err);
void fnode_unpin(struct files *f, struct fnode *fn);
/* The attributes the kernel is shown. */
void fnode_stat(struct files *f, const struct fnode *fn, struct stat *st);
/* Takes what the sandbox said of the node unless the local copy is newer. */
void fnode_set_server(struct files *f, struct fnode *fn, const struct fattr *a, int64_t at_ms);
/*
 * May an open use what this mount knows of @fn without asking the sandbox?
 * Yes when it was learnt (a listing or an answer) less than FILES_TTL_MS
 * ago, after any change made here in it and after the last start or end of
 * a process of its sandbox run through this mount, none running now.
 */
bool fnode_open_may_trust(struct files *f, const struct fnode *fn, int64_t now);
/* Drops the cached clean copies (least recently used first) beyond the limits. */
void files_evict(struct files *f);

/* FNV-1a, and the hash of a (sandbox, path) key. */
uint64_t fnv1a(uint64_t h, const void *data, size_t len);
uint64_t key_hash(const char *sb_id, const char *path);

/* ---- files_list.c: listings (under the lock) ---- */

/* `flush`: forgets every listing (those loading are no longer trusted). */
void listings_drop_all(struct files *f);
/* At the end: frees them all. */
void listings_free_all(struct files *f);

struct listing *listing_find(struct files *f, const char *sb_id, const char *path);
struct lent *listing_entry(struct listing *l, const char *name);
/* Puts @name with @a in a cached listing of @dir (if there is one). */
void listing_upsert(struct files *f, const char *sb_id, const char *dir, const char *name,
		    const struct fattr *a);
void listing_remove(struct files *f, const char *sb_id, const char *dir, const char *name);
/*
 * Quaverfs changed (or, creating a file, is about to change) what directory
 * @dir holds, so its mtime changes in the sandbox: a time set on it by
 * utimens is gone, as on a disk, and no attributes of it learnt before are
 * shown again (the kernel's are dropped). Until the sandbox is asked again
 * (at a stat after FILES_TTL_MS, or a listing of its parent made after the
 * change), its mtime is this mount's clock at the change: a stat in between
 * (every path walk through it checks permissions) asks nothing. The
 * kernel's attributes are dropped at most every DIR_INVAL_MS: a burst of
 * creates in one directory does not cost a getattr each.
 */
#define DIR_INVAL_MS 100
void dir_touched(struct files *f, const char *sb_id, const char *dir);
/* Directory @dir was just made here (asked at @at_ms): its listing, empty, without a request. */
void listing_new_empty(struct files *f, const char *sb_id, const char *dir, int64_t at_ms);
/* Forgets the listings of @path and everything below it. */
void listing_drop_tree(struct files *f, const char *sb_id, const char *path);
static inline bool listing_fresh(const struct listing *l, int64_t now)
{
	return l && !l->loading && l->fetched_ms && now - l->fetched_ms < FILES_TTL_MS;
}

/*
 * The listing of @dir within the TTL, fetched when older (one request; a
 * listing being fetched by another thread is waited for). Called and
 * returns with the lock held (dropped meanwhile). @force: fetch even when
 * fresh. 0 or -errno.
 */
int listing_get(struct files *f, const char *sb_id, const char *dir, bool force,
		struct listing **out, struct dt_error *err);

/* ---- files.c: the toolbox (without the lock) ---- */

/*
 * A toolbox handle of a started sandbox: EHOSTDOWN (with what to do) when
 * it is not started, unless autostart starts it; ENOENT when it is gone.
 */
int files_toolbox(struct files *f, const char *sb_id, struct tbref **out, struct dt_error *err);
void tbref_put(struct tbref *t);
/*
 * After a toolbox call: tells the backend (which may switch to a restarted
 * quaverd: *@retry then says to call once more) and turns a "not started"
 * answer into EHOSTDOWN. Returns the errno to report.
 */
int files_call_done(struct files *f, struct tbref *t, int ret, struct dt_error *err, bool *retry);

/* Runs @expr with the toolbox @t of sandbox @sb, retrying once after a backend switch. */
#define TB_CALL(f, sb, errp, t, expr)                                                              \
	({                                                                                         \
		int tb_ret_;                                                                       \
		for (int tb_try_ = 0;; tb_try_++) {                                                \
			struct tbref *t = NULL;                                                    \
			bool tb_retry_ = false;                                                    \
			tb_ret_ = files_toolbox((f), (sb), &t, (errp));                            \
			if (tb_ret_ < 0)                                                           \
				break;                                                             \
			tb_ret_ = (expr);                                                          \
			tb_ret_ = files_call_done((f), t, tb_ret_, (errp), &tb_retry_);            \
			tbref_put(t);                                                              \
			if (!tb_retry_ || tb_try_ > 0)                                             \
				break;                                                             \
		}                                                                                  \
		tb_ret_;                                                                           \
	})

/* ---- files_io.c ---- */

/*
 * Uploads @fn's copy @st (whose lock the caller holds) to @path, then
 * brings the caches in line: attributes from the sandbox, the create mode,
 * a pending time set by utimens, the parent's listing, the kernel's
 * attributes. 0 or -errno (the copy stays dirty).
 */
int files_upload_node(struct files *f, struct fnode *fn, struct staged *st, const char *sb_id,
		      const char *path, struct dt_error *err);

/* ---- files.c: helpers ---- */

/* @dir + "/" + @name; -ENAMETOOLONG past PATH_MAX. */
int path_join(char *out, size_t size, const char *dir, const char *name);
/* The parent directory of @path ("/" for "/a") into @out, and a pointer to its last name. */
const char *path_split(const char *path, char *parent, size_t size);
void fattr_from_info(struct fattr *a, const struct dt_file_info *fi);
/* GET /files/info as attributes (the sandbox must be started). */
int files_info(struct files *f, const char *sb_id, const char *path, struct fattr *a,
	       struct dt_error *err);
int files_fail(struct dt_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool ts_equal(const struct timespec *a, const struct timespec *b);
/* The node of @parent (a directory) and @parent's path + @name; pins the parent. */
struct fnode *files_child(struct files *f, uint64_t parent, const char *name, char *path,
			  size_t size, char *sb_id, size_t sb_size, struct dt_error *err);

#endif
