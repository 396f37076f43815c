/*
 * The store of sandboxes, volumes and snapshots (store*.c): state machine,
 * persistence in the state dir, storage trees, background jobs (archive,
 * snapshot, auto-stop). Knows nothing of HTTP. Owned by the store/api room;
 * main.c relies only on what is declared in this first block.
 */
#ifndef QUAVERD_STORE_H
#define QUAVERD_STORE_H

#include <stdbool.h>
#include <stdint.h>

struct store_config {
	const char *state_dir;       /* exists, 0700, locked by main.c */
	const char *organization_id; /* this installation's organization id */
	double clock_scale;          /* minutes pass this many times faster (>= 1) */
	int transition_delay_ms;     /* transitional states last at least this long */
	/*
	 * Cloud-like mode: create, start and stop also answer at once with
	 * "creating", "starting", "stopping" and finish in a background job
	 * (at least lifecycle_delay_ms later), as Daytona cloud does.
	 */
	bool lasting_lifecycle;
	int lifecycle_delay_ms;
};

struct store;

/* Loads every object, resolves what a crash interrupted, starts background jobs. */
struct store *store_open(const struct store_config *cfg, int *err);
/* Stops background jobs (waiting for running ones to reach a safe point) and frees. */
void store_close(struct store *st);

/* --- everything below belongs to the store/api room --- */
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#define STORE_ID_LEN 36      /* a lower-case UUID */
#define STORE_NAME_MAX 63    /* doc/quaverd.md "Object names" */
#define STORE_USER_MAX 32
#define STORE_TARGET_MAX 63
#define STORE_REASON_MAX 512

/*
 * Every operation returns 0 or a negative errno and, on failure, a sentence
 * for the user in err->msg. The api maps the errno to a status:
 * -EINVAL 400 (bad input or a transition the current state does not allow),
 * -ENOENT 404, -EEXIST 409 (a duplicate name), -EBUSY 409 (a state change is
 * in progress), anything else 500.
 */
struct store_err {
	char msg[STORE_REASON_MAX];
};

/* ---- sandboxes ---------------------------------------------------------- */

/* A copy of a sandbox record; the cJSON members are owned by the copy. */
struct store_sandbox_info {
	char id[STORE_ID_LEN + 1];
	char name[STORE_NAME_MAX + 1];
	char snapshot[STORE_NAME_MAX + 1]; /* the snapshot's name at create, "" when none */
	char user[STORE_USER_MAX + 1];
	char target[STORE_TARGET_MAX + 1];
	const char *state;         /* Daytona state name, a static string */
	const char *desired_state; /* Daytona desired state name */
	char error_reason[STORE_REASON_MAX]; /* "" when none */
	bool recoverable;
	bool is_public;
	double cpu, gpu, memory, disk;
	int64_t auto_stop_min, auto_archive_min, auto_delete_min;
	int64_t created_ms, updated_ms, last_activity_ms; /* wall clock */
	char preview_token[33];
	cJSON *labels;  /* object of strings */
	cJSON *env;     /* object of strings */
	cJSON *volumes; /* array of {volumeId, mountPath, subpath?} with ids resolved */
	cJSON *extra;   /* other accepted CreateSandbox fields, echoed as given */
};

void store_sandbox_info_free(struct store_sandbox_info *info);

struct store_volume_mount {
	const char *volume;     /* id or name */
	const char *mount_path; /* absolute, checked by the caller */
	const char *subpath;    /* NULL or a relative path checked by the caller */
};

/* What a create asks for; every string is borrowed and already validated for syntax. */
struct store_sandbox_create {
	const char *name;     /* NULL: the id */
	const char *snapshot; /* name or id, NULL: an empty tree */
	const char *user;     /* NULL: "daytona" */
	const char *target;   /* NULL: "local" */
	bool is_public;
	bool has_resources;   /* cpu/gpu/memory/disk were given (refused with a snapshot) */
	double cpu, gpu, memory, disk;
	int64_t auto_stop_min, auto_archive_min, auto_delete_min;
	const cJSON *labels, *env, *extra; /* NULL: empty */
	const struct store_volume_mount *volumes;
	size_t nvolumes;
};

int store_sandbox_create(struct store *st, const struct store_sandbox_create *req,
			 struct store_sandbox_info *out, struct store_err *err);
/* Looks up by id, then by name. */
int store_sandbox_get(struct store *st, const char *id_or_name, struct store_sandbox_info *out,
		      struct store_err *err);
int store_sandbox_start(struct store *st, const char *id_or_name, struct store_sandbox_info *out,
			struct store_err *err);
int store_sandbox_stop(struct store *st, const char *id_or_name, bool force,
		       struct store_sandbox_info *out, struct store_err *err);
int store_sandbox_archive(struct store *st, const char *id_or_name,
			  struct store_sandbox_info *out, struct store_err *err);
int store_sandbox_recover(struct store *st, const char *id_or_name, bool skip_start,
			  struct store_sandbox_info *out, struct store_err *err);
int store_sandbox_delete(struct store *st, const char *id_or_name,
			 struct store_sandbox_info *out, struct store_err *err);
/* Replaces the labels (an object of strings, borrowed). */
int store_sandbox_set_labels(struct store *st, const char *id_or_name, const cJSON *labels,
			     struct store_sandbox_info *out, struct store_err *err);

enum store_interval { STORE_AUTO_STOP, STORE_AUTO_ARCHIVE, STORE_AUTO_DELETE };
int store_sandbox_set_interval(struct store *st, const char *id_or_name, enum store_interval which,
			       int64_t minutes, struct store_sandbox_info *out,
			       struct store_err *err);
/* Starts a snapshot of the sandbox's filesystem named @name; the sandbox shows "snapshotting". */
int store_sandbox_snapshot(struct store *st, const char *id_or_name, const char *name,
			   struct store_sandbox_info *out, struct store_err *err);

/*
 * Marks activity on a sandbox (id or name) so auto-stop does not fire: every
 * API call naming it and every toolbox call. Unknown names are ignored.
 */
void store_touch(struct store *st, const char *sandbox_id);

/*
 * The host directory holding a started sandbox's filesystem
 * (STATE/sandboxes/ID/root). -ENOENT when unknown, -EINVAL when the sandbox is
 * not started (err says which state it is in).
 */
int store_sandbox_root(struct store *st, const char *id_or_name, char *out, size_t out_size,
		       struct store_err *err);

struct store_sandbox_filter {
	const char *id_prefix;   /* case-insensitive prefix, NULL: any */
	const char *name_prefix; /* case-insensitive prefix, NULL: any */
	const cJSON *labels;     /* object: every pair must match, NULL: any */
	const char *const *states; /* Daytona state names, NULL/0: any */
	size_t nstates;
	const char *const *snapshots; /* snapshot names, NULL/0: any */
	size_t nsnapshots;
	const char *const *targets;
	size_t ntargets;
	int is_public;      /* -1 any, 0, 1 */
	int is_recoverable; /* -1 any, 0, 1 */
	double min_cpu, max_cpu, min_memory, max_memory, min_disk, max_disk; /* <0: unset */
	bool ascending;     /* oldest first; default newest first */
};

/*
 * One page of sandboxes ordered by creation time then id (newest first unless
 * ascending). @cursor is NULL or a next_cursor from an earlier page: keyset
 * paging, so deletes between pages never skip or repeat a sandbox. -EINVAL on
 * a malformed cursor. *next_cursor is malloc'd, NULL on the last page.
 */
int store_sandbox_list(struct store *st, const struct store_sandbox_filter *filter,
		       const char *cursor, size_t limit, struct store_sandbox_info **items,
		       size_t *count, char **next_cursor, struct store_err *err);
void store_sandbox_list_free(struct store_sandbox_info *items, size_t count);

/* Every Daytona sandbox state name, for validating a states filter. */
bool store_is_sandbox_state_name(const char *s);
extern const char *const store_sandbox_state_names[];

/*
 * Where the runtime (a later issue) plugs in: called with the sandbox's
 * per-object lock held and never under the store lock. start() runs when a
 * sandbox enters "started" (create, start, restore, recover), stop() when it
 * leaves it (stop, archive path, delete, auto-stop). A start failure puts the
 * sandbox in error (recoverable); stop failures are logged.
 */
struct store_runtime_ops {
	int (*start)(void *ctx, const char *sandbox_id, const char *root_dir);
	int (*stop)(void *ctx, const char *sandbox_id, bool force);
};
void store_set_runtime(struct store *st, const struct store_runtime_ops *ops, void *ctx);

/*
 * State change notifications (the socket.io events, events.c): @fn runs for
 * every change of a sandbox's, volume's or snapshot's state, with the store
 * lock held, so it must neither block nor call the store; it copies what it
 * needs and returns. At most STORE_MAX_EVENT_HOOKS; -ENOSPC beyond.
 */
enum store_event_kind { STORE_EVENT_SANDBOX, STORE_EVENT_VOLUME, STORE_EVENT_SNAPSHOT };
typedef void (*store_event_fn)(void *ctx, enum store_event_kind kind, const char *id,
			       const char *old_state, const char *new_state);
#define STORE_MAX_EVENT_HOOKS 4
int store_add_event_hook(struct store *st, store_event_fn fn, void *ctx);

/* ---- volumes ------------------------------------------------------------ */

struct store_volume_info {
	char id[STORE_ID_LEN + 1];
	char name[STORE_NAME_MAX + 1];
	const char *state; /* pending_create, ready, pending_delete, deleting, error */
	char error_reason[STORE_REASON_MAX];
	int64_t created_ms, updated_ms, last_used_ms; /* last_used_ms 0: never */
};

int store_volume_create(struct store *st, const char *name, struct store_volume_info *out,
			struct store_err *err);
int store_volume_get(struct store *st, const char *id, struct store_volume_info *out,
		     struct store_err *err);
int store_volume_get_by_name(struct store *st, const char *name, struct store_volume_info *out,
			     struct store_err *err);
int store_volume_delete(struct store *st, const char *id, struct store_err *err);
/* Every volume, newest first; *items is malloc'd. */
int store_volume_list(struct store *st, struct store_volume_info **items, size_t *count,
		      struct store_err *err);

/* ---- snapshots ---------------------------------------------------------- */

struct store_snapshot_info {
	char id[STORE_ID_LEN + 1];
	char name[STORE_NAME_MAX + 1];
	const char *state; /* pending, active, error, removing */
	char error_reason[STORE_REASON_MAX];
	char source_sandbox_id[STORE_ID_LEN + 1];
	double cpu, gpu, memory, disk;
	int64_t size_bytes; /* of the captured filesystem, -1: not known yet */
	int64_t created_ms, updated_ms, last_used_ms;
};

int store_snapshot_get(struct store *st, const char *id_or_name, struct store_snapshot_info *out,
		       struct store_err *err);
int store_snapshot_delete(struct store *st, const char *id_or_name, struct store_err *err);
/*
 * A page of snapshots, newest first, whose name contains @name_part
 * (case-insensitive; NULL: all). *total counts every match.
 */
/* @name_part: substring of the name; @source_sandbox_id: exact; NULL for either: all. */
int store_snapshot_list(struct store *st, const char *name_part, const char *source_sandbox_id,
			size_t page, size_t limit,
			struct store_snapshot_info **items, size_t *count, size_t *total,
			struct store_err *err);

const char *store_organization_id(const struct store *st);

/*
 * ---- private to store*.c ---------------------------------------------------
 * The records and helpers the store's modules share. Nothing outside
 * store*.c defines QUAVERD_STORE_INTERNAL.
 */
#ifdef QUAVERD_STORE_INTERNAL

#include <pthread.h>

enum sb_state {
	SB_CREATING,
	SB_STARTED,
	SB_STOPPED,
	SB_ARCHIVING,
	SB_ARCHIVED,
	SB_RESTORING,
	SB_SNAPSHOTTING,
	SB_DESTROYING,
	SB_DESTROYED,
	SB_ERROR,
	SB_STARTING, /* cloud-like mode only (store_config.lasting_lifecycle) */
	SB_STOPPING,
	SB_NSTATES
};

enum vol_state { VOL_PENDING_CREATE, VOL_READY, VOL_PENDING_DELETE, VOL_DELETING, VOL_ERROR };

enum snap_state { SNAP_PENDING, SNAP_ACTIVE, SNAP_ERROR, SNAP_REMOVING };

/*
 * Locking: st->lock guards the maps and every field of every record (held
 * briefly, never across disk work). A record's op mutex serialises the
 * changes to that one object, including its meta.json writes; it is taken
 * before st->lock, never after. A background job owns an object's files
 * while rec->job is set: ops that need the files wait for it or refuse.
 */
struct sandbox {
	struct store_sandbox_info info; /* info.state/desired_state follow the enums */
	enum sb_state state, desired;
	enum sb_state prev;  /* what "snapshotting" returns to */
	int64_t stopped_ms;  /* wall clock of the last stop (auto-archive/delete), 0: running */
	bool job;
	bool removed;        /* out of the map: lookups no longer find it */
	int refs;
	pthread_mutex_t op;
};

struct volume {
	struct store_volume_info info;
	enum vol_state state;
	bool job, removed;
	int refs;
	pthread_mutex_t op;
};

struct snapshot {
	struct store_snapshot_info info;
	enum snap_state state;
	bool job, removed;
	int refs;
	pthread_mutex_t op;
};

struct ptr_vec {
	void **items;
	size_t len, cap;
};

struct store {
	struct store_config cfg;
	char *state_dir;
	char org_id[64];
	pthread_mutex_t lock;
	pthread_cond_t cv; /* CLOCK_MONOTONIC; broadcast when a job ends and on close */
	struct ptr_vec sandboxes, volumes, snapshots;
	int jobs;          /* background jobs running */
	bool closing;
	pthread_t ticker;
	bool ticker_running;
	const struct store_runtime_ops *rt;
	void *rt_ctx;
	struct {
		store_event_fn fn;
		void *ctx;
	} hooks[STORE_MAX_EVENT_HOOKS];
	int nhooks;
};
/* Tells the event hooks about a state change. Under st->lock. */
void store_notify(struct store *st, enum store_event_kind kind, const char *id, const char *old_state,
		  const char *new_state);

/* store.c: records, lookups, paths, jobs */
int ptr_vec_push(struct ptr_vec *v, void *p);
void ptr_vec_remove(struct ptr_vec *v, void *p);
const char *sb_state_name(enum sb_state s);
int sb_state_parse(const char *s, enum sb_state *out);
const char *vol_state_name(enum vol_state s);
int vol_state_parse(const char *s, enum vol_state *out);
const char *snap_state_name(enum snap_state s);
int snap_state_parse(const char *s, enum snap_state *out);
bool sb_state_transitional(enum sb_state s);
/* Sets state (and desired), updatedAt, and logs the change. Under st->lock. */
void sb_set_state(struct store *st, struct sandbox *sb, enum sb_state s, enum sb_state desired);
void vol_set_state(struct store *st, struct volume *v, enum vol_state s);
void snap_set_state(struct store *st, struct snapshot *sn, enum snap_state s);

struct sandbox *sandbox_alloc(void);
struct volume *volume_alloc(void);
struct snapshot *snapshot_alloc(void);
/* Lookups under st->lock: by id first, then by a live (not deleted) name. No ref taken. */
struct sandbox *sb_find_locked(struct store *st, const char *id_or_name);
struct volume *vol_find_locked(struct store *st, const char *id_or_name, bool by_name);
struct snapshot *snap_find_locked(struct store *st, const char *id_or_name);
/* The same, taking a reference; NULL with -ENOENT's message in err. */
struct sandbox *sb_get(struct store *st, const char *id_or_name, struct store_err *err);
void sb_put(struct store *st, struct sandbox *sb);
struct volume *vol_get(struct store *st, const char *id, bool by_name, struct store_err *err);
void vol_put(struct store *st, struct volume *v);
struct snapshot *snap_get(struct store *st, const char *id_or_name, struct store_err *err);
void snap_put(struct store *st, struct snapshot *sn);
/* Copies a record out (under st->lock). */
int sb_copy_locked(const struct sandbox *sb, struct store_sandbox_info *out);
void sb_copy_out(struct store *st, struct sandbox *sb, struct store_sandbox_info *out);

/* "STATE/sandboxes/ID[/leaf]" and friends; -ENAMETOOLONG when it does not fit. */
int sb_path(const struct store *st, const char *id, const char *leaf, char *out, size_t size);
int vol_path(const struct store *st, const char *id, const char *leaf, char *out, size_t size);
int snap_path(const struct store *st, const char *id, const char *leaf, char *out, size_t size);
/* A fresh path under STATE/tmp for work files and trash. */
int tmp_path(const struct store *st, const char *what, char *out, size_t size);

/* Writes the record's meta.json (crash-safe). Caller holds the record's op mutex. */
int sb_save(struct store *st, struct sandbox *sb);
int vol_save(struct store *st, struct volume *v);
int snap_save(struct store *st, struct snapshot *sn);

/* Runs fn(st, arg) on its own thread; store_close waits for it. */
int store_spawn(struct store *st, void (*fn)(struct store *st, void *arg), void *arg);
/* Sleeps until the monotonic deadline or close. Returns false when closing. */
bool store_sleep_until(struct store *st, int64_t deadline_mono_ms);
/* Waits (st->lock held) until the record's job flag clears; false on timeout or close. */
bool store_wait_job_locked(struct store *st, const bool *job_flag, int64_t timeout_ms);
/* Job end: clears the flag under st->lock and wakes waiters. */
void store_job_done(struct store *st, bool *job_flag);
/* Auto-interval minutes as milliseconds of (scaled) wall time. */
int64_t store_minutes_ms(const struct store *st, int64_t minutes);

/* Runtime hooks (no-ops until a runtime registers). */
int store_runtime_start(struct store *st, struct sandbox *sb);
void store_runtime_stop(struct store *st, struct sandbox *sb, bool force);

/* store_meta.c: meta.json <-> records */
char *sb_to_meta(const struct sandbox *sb);
int sb_from_meta(const char *json, struct sandbox *sb);
char *vol_to_meta(const struct volume *v);
int vol_from_meta(const char *json, struct volume *v);
char *snap_to_meta(const struct snapshot *sn);
int snap_from_meta(const char *json, struct snapshot *sn);

/* store_tree.c: files and trees */
/* tar -cf @tar_path -C @dir . (through @tar_path.part, renamed when complete). */
int tree_pack(const char *dir, const char *tar_path, char *why, size_t why_size);
/* Extracts @tar_path into the new directory @dir. */
int tree_unpack(const char *tar_path, const char *dir, char *why, size_t why_size);
/* The minimal sandbox filesystem: home/daytona and tmp. */
int tree_skeleton(const char *root);
/* mkdir -p of @rel beneath @base without following any symlink. */
int tree_mkdir_beneath(const char *base, const char *rel);
/* Moves @path into STATE/tmp (atomic) then removes it. 0 when @path does not exist. */
int tree_remove(struct store *st, const char *path);
/* Flushes the filesystem holding @path (syncfs). */
void tree_sync(const char *path);
bool path_exists(const char *path);

/* store_recover.c: loads the state dir and resolves interrupted states */
int store_load(struct store *st);

/* store_sandbox.c: the operations on a record the caller holds a reference to */
int sb_stop(struct store *st, struct sandbox *sb, bool force, struct store_err *err);
int sb_archive(struct store *st, struct sandbox *sb, struct store_err *err);
int sb_delete(struct store *st, struct sandbox *sb, struct store_err *err);
/* Refusal for an op that needs a settled sandbox: -EBUSY/-EINVAL with a sentence, or 0. */
int sb_refuse_unsettled(const struct sandbox *sb, struct store_err *err);
/* Drops a record from its map (st->lock held; the caller holds its own reference). */
void sb_unlink_locked(struct store *st, struct sandbox *sb);

/* store_auto.c */
void *store_ticker_main(void *arg);

#endif /* QUAVERD_STORE_INTERNAL */

#endif
