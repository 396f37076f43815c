/*
 * Private to runs*.c: the records of runs/ (objects behind inode numbers,
 * sandboxes and their toolbox, sessions, commands and open nodes) and the
 * helpers the modules share. runs.c: inodes, the tree, mkdir and rmdir;
 * runs_cmd.c: commands, their followers and the nodes' reads and writes.
 * One lock (struct runs.lock) guards every record.
 */
#ifndef QUAVERFS_RUNS_INTERNAL_H
#define QUAVERFS_RUNS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "core.h"
#include "dt_process.h"
#include "runs.h"

#define NODE_BITS 4
#define NODE_MASK ((1ULL << NODE_BITS) - 1)
#define INDEX_MAX ((1ULL << (61 - NODE_BITS)) - 1)

enum { RN_DIR = 0, RN_COMMAND, RN_CODE, RN_OUTPUT, RN_EXIT, RN_STDIN, RN_COMMANDS };
enum robj_kind { RO_ROOT = 1, RO_SESSION, RO_CMD };

#define SESSION_NAME_MAX 128
#define CMD_ID_MAX 128
#define HASH_BUCKETS 4096
/* Commands of a session whose output stays spooled (the latest ones used). */
#define RING 8
/* Follower cadence. */
#define POLL_FIRST_MS 25
/* ...and while a command started this recently has said nothing yet. */
#define POLL_EAGER_MS 10
#define POLL_EAGER_FOR_MS 250
#define POLL_MAX_MS 250
/* ...and while nobody has the command's output or exit open. */
#define POLL_IDLE_MS 2000
/* A program written to code is kept in memory until close: at most this much. */
#define CODE_MAX (16u << 20)
/* Transport failures in a row before a follower gives up (quaverd gone). */
#define TRANSPORT_TRIES 2
/* How often the records of sandboxes that are gone are looked for (and freed). */
#define SWEEP_MS 250

struct robj {
	enum robj_kind kind;
	uint64_t index;
	char sb_id[OBJ_ID_MAX];
	char session[SESSION_NAME_MAX + 1];
	char cmd[CMD_ID_MAX];
	struct robj *hnext;
};

struct rtb {
	struct dt_toolbox *tb;
	struct dt_client *client;
	int refs;
	bool stale;
};

struct rcmd;

struct rsess {
	struct rsb *sb;
	char name[SESSION_NAME_MAX + 1];
	struct rcmd *latest; /* the last command run here (a reference) */
	struct rcmd *ring[RING];
	size_t ring_next;
	int64_t used_ms; /* when a command was last run or looked up here (now_mono_ms) */
	struct rsess *next;
};

struct rsb {
	char id[OBJ_ID_MAX];
	struct rtb *tb;
	struct rsess *sessions;
	struct rsb *next;
};

struct rcmd {
	struct runs *r;
	struct rsb *sb;
	char session[SESSION_NAME_MAX + 1];
	char id[CMD_ID_MAX];
	int refs;      /* users plus the follower's */
	int users;     /* handles, the ring, latest: when none is left the follower stops */
	int handles;   /* open output and exit nodes: without any, the follower polls slowly */
	bool kicked;   /* a reader came: poll now */
	bool activity; /* files_sandbox_activity(begin) was said for it: finishing ends it */
	pthread_cond_t kick;
	int spool_fd;
	int64_t size; /* bytes spooled */
	bool done;    /* exited (exit_code) or failed (fail) */
	int exit_code;
	int fail; /* an errno once following failed */
	char fail_msg[512];
	bool stop;
	bool following;
};

struct runs {
	struct qfs *fs;
	char spool_dir[PATH_MAX];
	pthread_mutex_t lock;
	pthread_cond_t followers_done;
	int followers;
	bool closing;
	runs_wake_fn wake;
	void *wake_arg;
	struct robj **objs; /* by index - 1 */
	size_t nobjs, cap;
	struct robj *hash[HASH_BUCKETS];
	struct rsb *sandboxes;
	pthread_t sweeper; /* frees what sandboxes that are gone leave (runs.c) */
	bool sweeper_started;
	pthread_cond_t sweep_wake;
};

struct runs_handle {
	uint64_t ino;
	int node;
	struct robj obj;  /* a copy: objects never change */
	struct rcmd *cmd; /* output, exit: the command followed */
	struct buf code;  /* code: the program written so far */
	char exit_text[16];
};

int runs_fail(struct dt_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* runs.c */
bool runs_obj_of(struct runs *r, uint64_t ino, struct robj *out, int *node);
bool runs_node_valid(enum robj_kind kind, int node);
mode_t runs_node_mode(enum robj_kind kind, int node);
/* The record of sandbox @id (made when new; never freed before runs_free). */
struct rsb *runs_sb_get(struct runs *r, const char *id);
void runs_rtb_put(struct runs *r, struct rtb *t);
/* The sandbox's toolbox, once it is started; @lang (may be NULL): its code language. */
int runs_sb_toolbox(struct runs *r, struct rsb *sb, struct rtb **out, char *lang, size_t lang_size,
		    struct dt_error *err);
/*
 * After a toolbox call: true when quaverd moved (call again, once). A 409 or
 * 5xx from a sandbox that stopped meanwhile becomes EHOSTDOWN with the reason.
 */
bool runs_call_done(struct runs *r, struct rsb *sb, struct rtb *t, int *ret, struct dt_error *err);
int runs_session_exists(struct runs *r, struct rsb *sb, const char *name, struct dt_session *out,
			struct dt_error *err);

/* Runs @expr with `t` the sandbox's toolbox; once more when quaverd moved. */
#define RTB_CALL(r, sb, lang, lang_size, errp, t, expr)                                            \
	({                                                                                         \
		int rc_;                                                                           \
		for (int try_ = 0;; try_++) {                                                      \
			struct rtb *t = NULL;                                                      \
			bool again_;                                                               \
			rc_ = runs_sb_toolbox((r), (sb), &t, (lang), (lang_size), (errp));         \
			if (rc_ < 0)                                                               \
				break;                                                             \
			rc_ = (expr);                                                              \
			again_ = runs_call_done((r), (sb), t, &rc_, (errp));                       \
			runs_rtb_put((r), t);                                                      \
			if (!again_ || try_)                                                       \
				break;                                                             \
		}                                                                                  \
		rc_;                                                                               \
	})
#define TB_CALL(r, sb, errp, t, expr) RTB_CALL(r, sb, NULL, 0, errp, t, expr)

/* runs_cmd.c; the _locked ones are called with the lock held. */
struct rsess *runs_sess_find(struct rsb *sb, const char *name);
struct rsess *runs_sess_get(struct rsb *sb, const char *name);
void runs_cmd_unref_locked(struct rcmd *c);
void runs_cmd_unuse_locked(struct rcmd *c);
void runs_cmd_unuse(struct runs *r, struct rcmd *c);
/* The command exited (@exited, with @code) or following it failed (@errnum, @err). */
void runs_cmd_finish(struct rcmd *c, bool exited, int code, int errnum, const struct dt_error *err);
int runs_cmd_get(struct runs *r, struct rsb *sb, const char *session, const char *id,
		 struct rcmd **out, struct dt_error *err);
void runs_set_latest(struct runs *r, struct rsb *sb, const char *session, struct rcmd *c);
int runs_latest_cmd(struct runs *r, struct rsb *sb, const char *session, struct rcmd **out,
		    struct dt_error *err);

#endif
