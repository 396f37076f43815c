/*
 * quaverd's sandbox runtime (runtime*.c): each started sandbox is a
 * bubblewrap instance built from its mount table (view.h: its root, /usr
 * read-only, its volumes), in its own user, pid, mount, ipc and uts
 * namespaces (and network, with networkBlockAll), with a tiny init as pid 1
 * (runtime_init.c) and cgroup limits where the machine allows. Processes
 * are started inside an instance by joining its namespaces (process.h).
 *
 * The store calls the runtime through store_set_runtime(): start when a
 * sandbox enters "started", stop when it leaves it. Processes do not
 * outlive quaverd: a killed quaverd takes every sandbox's processes with it
 * (the init's lifeline), and the next quaverd rebuilds the namespaces of
 * every sandbox still "started" (doc/quaverd.md, "Runtime and processes").
 */
#ifndef QUAVERD_RUNTIME_H
#define QUAVERD_RUNTIME_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "store.h"

struct runtime;

/*
 * Registers the runtime with the store and starts the namespaces of the
 * sandboxes the store holds as "started". @state_dir is quaverd's (work
 * files go to its tmp/). NULL with *err (-errno) when bubblewrap or the init
 * program cannot be found.
 */
struct runtime *runtime_new(struct store *st, const char *state_dir, int *err);
/*
 * Kills every sandbox's processes and refuses new ones (for a clean stop:
 * call it before the HTTP server drains, so requests waiting on a process
 * end at once). Sandboxes stay "started" in the store.
 */
void runtime_shutdown(struct runtime *rt);
/* Frees the runtime; the store must be closed (no hook can run any more). */
void runtime_free(struct runtime *rt);

/* The runtime registered with @st, or NULL. */
struct runtime *runtime_of(struct store *st);

/*
 * How the sandbox's resources are applied: {"cpu": {"value", "enforced",
 * "how"}, "memory": ..., "disk": ..., "pids": ...}. NULL when the sandbox has
 * no running instance. For the sandbox DTO or a log line; caller frees.
 */
cJSON *runtime_limits_json(struct runtime *rt, const char *sandbox_id);

/*
 * ---- private to runtime*.c, process*.c and session*.c ----------------------
 */
#ifdef QUAVERD_RUNTIME_INTERNAL

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

/* The sandbox user. */
#define RT_UID 1000
#define RT_HOME "/home/daytona"
#define RT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* Processes (and threads) one sandbox may have at once, where pids cgroups exist. */
#define RT_PIDS_MAX 1024

/* ---- cgroups (runtime_cgroup.c) ---- */

enum rt_limit { RT_LIMIT_CPU, RT_LIMIT_MEMORY, RT_LIMIT_PIDS, RT_NLIMITS };

/* Where this quaverd may create cgroups, found once. */
struct rt_cgroup_env {
	char v2_base[PATH_MAX];		    /* "" when no cgroup2 hierarchy is usable */
	bool v2_has[RT_NLIMITS];	    /* controller usable in v2 */
	char v1_base[RT_NLIMITS][PATH_MAX]; /* per controller, "" when none */
	char why_not[RT_NLIMITS][128];	    /* when neither works */
};

/* One sandbox's cgroups. */
struct rt_cgroup {
	char v2_dir[PATH_MAX];		   /* "" when none */
	char v1_dir[RT_NLIMITS][PATH_MAX]; /* "" when none */
	int procs_fd[RT_NLIMITS + 1];	   /* cgroup.procs files to join (-1 unused) */
	bool enforced[RT_NLIMITS];
	char how[RT_NLIMITS][128]; /* "cgroup v1 memory.limit_in_bytes", or why not */
};

/* Finds the hierarchies; @tag ("STATE-RUN") names this run's directories. */
void rt_cgroup_env_init(struct rt_cgroup_env *env, const char *tag);
/* Removes what earlier runs on the same state dir left (killing any process still in them). */
void rt_cgroup_env_clean(const struct rt_cgroup_env *env);
/* Removes the base directories when empty (at the end). */
void rt_cgroup_env_fini(const struct rt_cgroup_env *env);
/* Creates and configures a sandbox's cgroups; limits it cannot apply are noted in cg->how. */
void rt_cgroup_create(const struct rt_cgroup_env *env, const char *sandbox_id, double cpu,
		      double memory_gib, struct rt_cgroup *cg);
/* Moves the calling process into the cgroups (async-signal-safe: after fork). */
void rt_cgroup_join(const struct rt_cgroup *cg);
/* SIGKILLs whatever is still in the cgroups; returns how many processes were found. */
int rt_cgroup_kill(const struct rt_cgroup *cg);
/* Closes and removes (rmdir) the cgroups; 0, or -EBUSY when a process survived. */
int rt_cgroup_destroy(struct rt_cgroup *cg);

/* ---- instances (runtime.c) ---- */

struct session_table;

/* The namespaces of one started sandbox. Reference counted; fields under @lock. */
struct rt_instance {
	struct runtime *rt;
	char id[STORE_ID_LEN + 1];
	char name[STORE_NAME_MAX + 1];
	pthread_mutex_t lock;
	int refs;	     /* under rt->lock */
	bool wanted;	     /* the store wants it started (hooks) */
	bool running;	     /* the namespaces exist */
	uint64_t generation; /* bumped on every start and stop */
	pid_t monitor_pid;   /* bubblewrap's outer process (quaverd's child) */
	pid_t init_pid;	     /* pid 1 of the sandbox, as the host sees it */
	int init_pidfd;	     /* setns() target */
	int lifeline_fd;     /* write end of the init's lifeline */
	int lifeline_rd;     /* its read end, for the relays (they watch it too) */
	int ns_flags;	     /* CLONE_NEW* of the namespaces a process joins */
	bool net_blocked;
	struct rt_cgroup cg;
	double cpu, memory, disk;
	/* What a new process starts from: defaults, the sandbox's env, POST /env. */
	cJSON *env; /* object of strings; NULL while not running */
	struct session_table *sessions;
};

struct runtime {
	struct store *store;
	char state_dir[PATH_MAX];
	char tmp_dir[PATH_MAX]; /* STATE/tmp: command logs (unlinked files) */
	char bwrap[PATH_MAX];
	char init_path[PATH_MAX];
	int init_fd;	/* O_RDONLY of the init program, executed via /proc/self/fd */
	char shell[32]; /* /usr/bin/bash, else /usr/bin/sh */
	struct rt_cgroup_env cg_env;
	pid_t janitor_pid;    /* removes the cgroups once quaverd is gone (0: none) */
	int janitor_fd;	      /* its lifeline */
	pthread_mutex_t lock; /* the instance table */
	struct rt_instance **items;
	size_t nitems, cap;
	bool closing;
	int starters; /* namespaces being built on their own threads */
	pthread_cond_t starters_done;
	/*
	 * While runtime_new starts what was running, entries stay in the table
	 * even when idle: an entry then means a hook handled that sandbox.
	 */
	bool attaching;
	struct session_pump *pump;
};

/*
 * A running instance of the sandbox (by id), with a reference; NULL when it
 * has none (not started, or its namespaces failed). rt_instance_put drops it.
 */
struct rt_instance *rt_instance_get(struct runtime *rt, const char *sandbox_id);
void rt_instance_put(struct rt_instance *inst);

/*
 * The environment a new process of @inst gets: the defaults (HOME, USER,
 * PATH, LANG, HOSTNAME...), the sandbox's env, POST /env, then @extra
 * (object of strings, may be NULL). A NULL-terminated array in one
 * allocation; free() it.
 */
char **rt_instance_environ(struct rt_instance *inst, const cJSON *extra);

/*
 * POST /env: sets (object of strings) and unsets (array of names) variables
 * of every later process. -ESRCH when the instance is not running.
 */
int rt_instance_update_env(struct rt_instance *inst, const cJSON *set, const cJSON *unset);

/* Whether @key can be an environment variable name (non-empty, no '=', no NUL). */
bool rt_env_key_valid(const char *key);

#endif /* QUAVERD_RUNTIME_INTERNAL */

#endif
