/*
 * The sandbox runtime (runtime.h): one bubblewrap instance per started
 * sandbox, its start and stop from the store's hooks, and what survives a
 * restart of quaverd (nothing runs; the namespaces are rebuilt).
 */
#define QUAVERD_RUNTIME_INTERNAL
#include "runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "process.h"
#include "session.h"
#include "util.h"
#include "view.h"

#ifndef QUAVERD_LIBEXECDIR
#define QUAVERD_LIBEXECDIR "/usr/local/libexec"
#endif

#define BWRAP_PATH "/usr/bin/bwrap"
#define INIT_NAME "quaverd-sandbox-init"
/* How long bubblewrap may take to bring a sandbox up. */
#define START_TIMEOUT_MS 10000

static const struct store_runtime_ops hooks;

/* runtime_of(): one runtime per process, attached to one store. */
static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct runtime *current;

struct runtime *runtime_of(struct store *st)
{
	struct runtime *rt;

	pthread_mutex_lock(&current_lock);
	rt = current && current->store == st ? current : NULL;
	pthread_mutex_unlock(&current_lock);
	return rt;
}

bool rt_env_key_valid(const char *key)
{
	return key && key[0] && !strchr(key, '=');
}

/* ---- the instance table -------------------------------------------------------- */

static struct rt_instance *table_find_locked(struct runtime *rt, const char *id)
{
	for (size_t i = 0; i < rt->nitems; i++)
		if (!strcmp(rt->items[i]->id, id))
			return rt->items[i];
	return NULL;
}

/* The entry for @id, made when missing, with a reference. */
static struct rt_instance *table_get_or_add(struct runtime *rt, const char *id)
{
	struct rt_instance *inst;

	pthread_mutex_lock(&rt->lock);
	inst = table_find_locked(rt, id);
	if (!inst && rt->nitems == rt->cap) {
		size_t cap = rt->cap ? rt->cap * 2 : 16;
		struct rt_instance **items = realloc(rt->items, cap * sizeof(*items));

		if (!items) {
			pthread_mutex_unlock(&rt->lock);
			return NULL;
		}
		rt->items = items;
		rt->cap = cap;
	}
	if (!inst) {
		inst = calloc(1, sizeof(*inst));
		if (!inst) {
			pthread_mutex_unlock(&rt->lock);
			return NULL;
		}
		inst->rt = rt;
		copy_str(inst->id, sizeof(inst->id), id);
		pthread_mutex_init(&inst->lock, NULL);
		inst->init_pidfd = -1;
		inst->lifeline_fd = -1;
		inst->lifeline_rd = -1;
		inst->refs = 1; /* the table's */
		inst->sessions = session_table_new(inst);
		rt->items[rt->nitems++] = inst;
	}
	inst->refs++;
	pthread_mutex_unlock(&rt->lock);
	return inst;
}

static void instance_free(struct rt_instance *inst)
{
	session_table_free(inst->sessions);
	cJSON_Delete(inst->env);
	pthread_mutex_destroy(&inst->lock);
	free(inst);
}

void rt_instance_put(struct rt_instance *inst)
{
	struct runtime *rt = inst->rt;
	bool last;

	pthread_mutex_lock(&rt->lock);
	last = --inst->refs == 0;
	pthread_mutex_unlock(&rt->lock);
	if (last)
		instance_free(inst);
}

/* Drops the table's reference when the instance is stopped and nobody wants it. */
static void table_forget_if_idle(struct runtime *rt, struct rt_instance *inst)
{
	bool drop = false;

	pthread_mutex_lock(&rt->lock);
	if (!inst->wanted && !inst->running && !rt->attaching) {
		for (size_t i = 0; i < rt->nitems; i++) {
			if (rt->items[i] == inst) {
				rt->items[i] = rt->items[--rt->nitems];
				drop = true;
				break;
			}
		}
	}
	pthread_mutex_unlock(&rt->lock);
	if (drop)
		rt_instance_put(inst);
}

static void forget_idle(struct runtime *rt)
{
	for (size_t i = 0;; i++) {
		struct rt_instance *inst = NULL;

		pthread_mutex_lock(&rt->lock);
		if (i < rt->nitems) {
			inst = rt->items[i];
			inst->refs++;
		}
		pthread_mutex_unlock(&rt->lock);
		if (!inst)
			break;
		table_forget_if_idle(rt, inst);
		rt_instance_put(inst);
	}
}

/* ---- environment ----------------------------------------------------------------- */

/* HOME, USER, PATH... then the sandbox's env: what every process starts from. */
static cJSON *base_environment(struct runtime *rt, const struct store_sandbox_info *info)
{
	cJSON *env = cJSON_CreateObject();
	const cJSON *e;

	if (!env)
		return NULL;
	cJSON_AddStringToObject(env, "HOME", RT_HOME);
	cJSON_AddStringToObject(env, "USER", "daytona");
	cJSON_AddStringToObject(env, "LOGNAME", "daytona");
	cJSON_AddStringToObject(env, "SHELL", strstr(rt->shell, "bash") ? "/bin/bash" : "/bin/sh");
	cJSON_AddStringToObject(env, "PATH", RT_PATH);
	cJSON_AddStringToObject(env, "LANG", "C.UTF-8");
	cJSON_AddStringToObject(env, "HOSTNAME", info->name);
	cJSON_ArrayForEach(e, info->env)
	{
		if (!cJSON_IsString(e) || !rt_env_key_valid(e->string))
			continue;
		cJSON_DeleteItemFromObjectCaseSensitive(env, e->string);
		cJSON_AddStringToObject(env, e->string, e->valuestring);
	}
	return env;
}

char **rt_instance_environ(struct rt_instance *inst, const cJSON *extra)
{
	cJSON *merged;
	const cJSON *e;
	size_t count = 0, bytes = 0;
	char **out = NULL, *p;

	pthread_mutex_lock(&inst->lock);
	merged = inst->env ? cJSON_Duplicate(inst->env, true) : cJSON_CreateObject();
	pthread_mutex_unlock(&inst->lock);
	if (!merged)
		return NULL;
	cJSON_ArrayForEach(e, extra)
	{
		if (!cJSON_IsString(e))
			continue;
		cJSON_DeleteItemFromObjectCaseSensitive(merged, e->string);
		cJSON_AddStringToObject(merged, e->string, e->valuestring);
	}
	cJSON_ArrayForEach(e, merged)
	{
		count++;
		bytes += strlen(e->string) + 1 + strlen(e->valuestring) + 1;
	}
	out = malloc((count + 1) * sizeof(char *) + bytes);
	if (!out)
		goto done;
	p = (char *)(out + count + 1);
	count = 0;
	cJSON_ArrayForEach(e, merged)
	{
		size_t kl = strlen(e->string), vl = strlen(e->valuestring);

		out[count++] = p;
		memcpy(p, e->string, kl);
		p[kl] = '=';
		memcpy(p + kl + 1, e->valuestring, vl + 1);
		p += kl + vl + 2;
	}
	out[count] = NULL;
done:
	cJSON_Delete(merged);
	return out;
}

int rt_instance_update_env(struct rt_instance *inst, const cJSON *set, const cJSON *unset)
{
	const cJSON *e;
	int rc = 0;

	pthread_mutex_lock(&inst->lock);
	if (!inst->env) {
		rc = -ESRCH;
		goto out;
	}
	cJSON_ArrayForEach(e, unset) if (cJSON_IsString(e))
	    cJSON_DeleteItemFromObjectCaseSensitive(inst->env, e->valuestring);
	cJSON_ArrayForEach(e, set)
	{
		cJSON_DeleteItemFromObjectCaseSensitive(inst->env, e->string);
		if (!cJSON_AddStringToObject(inst->env, e->string, e->valuestring)) {
			rc = -ENOMEM;
			break;
		}
	}
out:
	pthread_mutex_unlock(&inst->lock);
	return rc;
}

/* ---- the mount table ------------------------------------------------------------- */

struct rt_mount {
	char path[PATH_MAX]; /* in the sandbox */
	int fd;		     /* O_PATH of the source, opened beneath its trusted base */
	bool read_only;
};

struct rt_mounts {
	struct rt_mount m[VIEW_MAX_MOUNTS];
	size_t n;
};

static void mounts_close(struct rt_mounts *ms)
{
	for (size_t i = 0; i < ms->n; i++)
		if (ms->m[i].fd >= 0)
			close(ms->m[i].fd);
	ms->n = 0;
}

static int add_mount(struct rt_mounts *ms, const char *path, const char *base, const char *rel,
		     bool read_only)
{
	struct view_mount vm = {0};
	struct rt_mount *m;
	int fd;

	if (ms->n == VIEW_MAX_MOUNTS)
		return -E2BIG;
	/* The view's own opener: the subpath is walked beneath the base without a symlink. */
	vm.source_base = (char *)base;
	vm.source_rel = (char *)(rel ? rel : "");
	fd = view_open_source(&vm);
	if (fd < 0)
		return fd;
	m = &ms->m[ms->n++];
	copy_str(m->path, sizeof(m->path), path);
	m->fd = fd;
	m->read_only = read_only;
	return 0;
}

static int cmp_mount_len(const void *a, const void *b)
{
	const struct rt_mount *x = a, *y = b;
	size_t lx = strlen(x->path), ly = strlen(y->path);

	return lx < ly ? -1 : lx > ly;
}

/*
 * The view's table (view.h): "/" the sandbox's root, "/usr" the host's
 * read-only, each volume at its mount path (parents before children). Built
 * here from the record rather than with view_build, which needs the sandbox
 * to be "started" already; the rules are the same.
 */
static int build_mounts(struct runtime *rt, const struct store_sandbox_info *info,
			const char *root_dir, struct rt_mounts *ms, char *why, size_t why_size)
{
	char base[PATH_MAX], path[PATH_MAX];
	const cJSON *v;
	size_t first_volume;
	int rc;

	ms->n = 0;
	rc = add_mount(ms, "/", root_dir, "", false);
	if (rc == 0)
		rc = add_mount(ms, "/usr", "/usr", "", true);
	if (rc < 0) {
		snprintf(why, why_size, "opening %s: %s", ms->n ? "/usr" : root_dir, strerror(-rc));
		return rc;
	}
	first_volume = ms->n;
	cJSON_ArrayForEach(v, info->volumes)
	{
		const cJSON *vid = cJSON_GetObjectItemCaseSensitive(v, "volumeId");
		const cJSON *mp = cJSON_GetObjectItemCaseSensitive(v, "mountPath");
		const cJSON *sub = cJSON_GetObjectItemCaseSensitive(v, "subpath");

		if (!cJSON_IsString(vid) || !cJSON_IsString(mp) ||
		    !view_normalize_mount_path(mp->valuestring, path, sizeof(path)) ||
		    strchr(vid->valuestring, '/') || vid->valuestring[0] == '.') {
			snprintf(why, why_size, "invalid volume mount in the record");
			return -EINVAL;
		}
		if (snprintf(base, sizeof(base), "%s/volumes/%s/data", rt->state_dir,
			     vid->valuestring) >= (int)sizeof(base))
			return -ENAMETOOLONG;
		rc = add_mount(ms, path, base, cJSON_IsString(sub) ? sub->valuestring : "", false);
		if (rc < 0) {
			snprintf(why, why_size, "opening volume %.40s for %.200s: %s",
				 vid->valuestring, path, strerror(-rc));
			return rc;
		}
	}
	qsort(ms->m + first_volume, ms->n - first_volume, sizeof(ms->m[0]), cmp_mount_len);
	return 0;
}

/* ---- starting an instance ---------------------------------------------------------- */

struct argv_vec {
	char *items[256];
	size_t n;
	bool overflow;
};

static void argv_add(struct argv_vec *a, const char *s)
{
	if (a->n + 1 >= ARRAY_SIZE(a->items) || !s) {
		a->overflow = true;
		return;
	}
	a->items[a->n] = strdup(s);
	if (!a->items[a->n])
		a->overflow = true;
	else
		a->n++;
	a->items[a->n] = NULL;
}

static void argv_add_int(struct argv_vec *a, int v)
{
	char text[32];

	snprintf(text, sizeof(text), "%d", v);
	argv_add(a, text);
}

static void argv_free(struct argv_vec *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->items[i]);
	a->n = 0;
}

/* Descriptor numbers in bubblewrap's process. */
enum { FD_INIT = 3, FD_LIFELINE, FD_READY, FD_INFO, FD_FIRST_MOUNT };
#define FD_INIT_TEXT "3"

struct bwrap_plan {
	char *const *argv;
	int src[FD_FIRST_MOUNT + VIEW_MAX_MOUNTS];
	int nfds;
	const struct rt_cgroup *cg;
};

static _Noreturn void bwrap_child(const struct bwrap_plan *pl)
{
	static char *const envp[] = {"PATH=" RT_PATH, NULL};
	int tmp[FD_FIRST_MOUNT + VIEW_MAX_MOUNTS];
	sigset_t none;

	/* bubblewrap and everything under it count against the sandbox's limits. */
	rt_cgroup_join(pl->cg);
	for (int i = 0; i < pl->nfds; i++) {
		tmp[i] = fcntl(pl->src[i], F_DUPFD_CLOEXEC, pl->nfds + 10);
		if (tmp[i] < 0)
			_exit(126);
	}
	for (int i = 0; i < pl->nfds; i++)
		if (dup2(tmp[i], i) < 0)
			_exit(126);
	close_range((unsigned)pl->nfds, ~0U, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(BWRAP_PATH, pl->argv, envp);
	_exit(127);
}

static void build_bwrap_argv(struct runtime *rt, const struct store_sandbox_info *info,
			     const struct rt_mounts *ms, bool block_net, struct argv_vec *a)
{
	argv_add(a, "bwrap");
	argv_add(a, "--unshare-user");
	argv_add(a, "--uid");
	argv_add_int(a, RT_UID);
	argv_add(a, "--gid");
	argv_add_int(a, RT_UID);
	argv_add(a, "--unshare-pid");
	argv_add(a, "--unshare-ipc");
	argv_add(a, "--unshare-uts");
	argv_add(a, "--hostname");
	argv_add(a, info->name);
	if (block_net)
		argv_add(a, "--unshare-net");
	for (size_t i = 0; i < ms->n; i++) {
		argv_add(a, ms->m[i].read_only ? "--ro-bind-fd" : "--bind-fd");
		argv_add_int(a, FD_FIRST_MOUNT + (int)i);
		argv_add(a, ms->m[i].path);
	}
	argv_add(a, "--proc");
	argv_add(a, "/proc");
	argv_add(a, "--dev");
	argv_add(a, "/dev");
	/*
	 * No --chdir: bubblewrap would fail the whole sandbox when the user has
	 * removed /home/daytona; each process changes to its own directory.
	 */
	argv_add(a, "--setenv");
	argv_add(a, "HOME");
	argv_add(a, RT_HOME);
	argv_add(a, "--setenv");
	argv_add(a, "USER");
	argv_add(a, "daytona");
	argv_add(a, "--setenv");
	argv_add(a, "PATH");
	argv_add(a, RT_PATH);
	argv_add(a, "--setenv");
	argv_add(a, "LANG");
	argv_add(a, "C.UTF-8");
	argv_add(a, "--new-session");
	argv_add(a, "--as-pid-1");
	argv_add(a, "--info-fd");
	argv_add_int(a, FD_INFO);
	argv_add(a, "--");
	/* The init is executed through its descriptor: it never appears in the sandbox's tree. */
	argv_add(a, "/proc/self/fd/" FD_INIT_TEXT);
	argv_add_int(a, FD_LIFELINE);
	argv_add_int(a, FD_READY);
	(void)rt;
}

/* "child-pid": N in bubblewrap's info JSON, 0 when not there yet. */
static pid_t info_child_pid(const struct buf *info)
{
	cJSON *o = cJSON_Parse(buf_str(info));
	const cJSON *pid = cJSON_GetObjectItemCaseSensitive(o, "child-pid");
	pid_t out = cJSON_IsNumber(pid) && pid->valuedouble > 1 ? (pid_t)pid->valuedouble : 0;

	cJSON_Delete(o);
	return out;
}

/* Which namespaces of @pid differ from quaverd's: the setns() flags for a process. */
static int differing_namespaces(pid_t pid)
{
	static const struct {
		const char *name;
		int flag;
	} ns[] = {
	    {"user", CLONE_NEWUSER},	 {"mnt", CLONE_NEWNS},	{"pid", CLONE_NEWPID},
	    {"uts", CLONE_NEWUTS},	 {"ipc", CLONE_NEWIPC}, {"net", CLONE_NEWNET},
	    {"cgroup", CLONE_NEWCGROUP},
	};
	int flags = 0;

	for (size_t i = 0; i < ARRAY_SIZE(ns); i++) {
		char theirs[64], ours[64];
		struct stat a, b;

		snprintf(theirs, sizeof(theirs), "/proc/%d/ns/%s", (int)pid, ns[i].name);
		snprintf(ours, sizeof(ours), "/proc/self/ns/%s", ns[i].name);
		if (stat(theirs, &a) < 0 || stat(ours, &b) < 0)
			continue;
		if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
			flags |= ns[i].flag;
	}
	return flags;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Reads what is there from @fd into @out (at most @max kept); false at EOF. */
static bool drain(int *fd, struct buf *out, size_t max)
{
	char chunk[4096];
	ssize_t n = read(*fd, chunk, sizeof(chunk));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0) {
		close_fd(fd);
		return false;
	}
	if (out->len < max)
		buf_append(out, chunk, (size_t)n < max - out->len ? (size_t)n : max - out->len);
	return true;
}

static bool net_blocked(const struct store_sandbox_info *info)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(info->extra, "networkBlockAll");

	return cJSON_IsTrue(v);
}

static void log_limits(const struct rt_instance *inst, int64_t ms)
{
	static const char *const names[RT_NLIMITS] = {"cpu", "memory", "pids"};
	struct buf text = BUF_INIT;

	for (int i = 0; i < RT_NLIMITS; i++)
		buf_printf(&text, "; %s %s", names[i], inst->cg.how[i]);
	log_info("sandbox %s (%s): namespaces up in %lld ms (init pid %d%s)%s; disk not enforced",
		 inst->id, inst->name, (long long)ms, (int)inst->init_pid,
		 inst->net_blocked ? ", no network" : "", buf_str(&text));
	buf_free(&text);
}

/* Brings the namespaces up. Called with inst->lock held. */
static int instance_start(struct runtime *rt, struct rt_instance *inst, const char *root_dir)
{
	struct store_sandbox_info info;
	struct store_err serr = {{0}};
	struct rt_mounts ms = {.n = 0};
	struct argv_vec args = {.n = 0};
	struct bwrap_plan plan = {0};
	struct buf info_text = BUF_INIT, err_text = BUF_INIT;
	int lifeline[2] = {-1, -1}, ready[2] = {-1, -1}, infop[2] = {-1, -1}, errp[2] = {-1, -1};
	int devnull = -1, rc;
	int64_t started = now_mono_ms(), deadline = started + START_TIMEOUT_MS;
	char why[512] = "";
	bool got_ready = false;
	pid_t monitor, child = 0;

	rc = store_sandbox_get(rt->store, inst->id, &info, &serr);
	if (rc < 0) {
		log_warn("sandbox %s: cannot start its processes: %s", inst->id, serr.msg);
		return rc;
	}
	copy_str(inst->name, sizeof(inst->name), info.name);
	inst->cpu = info.cpu;
	inst->memory = info.memory;
	inst->disk = info.disk;
	inst->net_blocked = net_blocked(&info);
	rc = build_mounts(rt, &info, root_dir, &ms, why, sizeof(why));
	if (rc < 0)
		goto fail;
	rt_cgroup_create(&rt->cg_env, inst->id, info.cpu, info.memory, &inst->cg);

	if (pipe2(lifeline, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0 ||
	    pipe2(infop, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
	    (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
		rc = -errno;
		snprintf(why, sizeof(why), "pipe: %s", strerror(errno));
		goto fail;
	}
	build_bwrap_argv(rt, &info, &ms, inst->net_blocked, &args);
	if (args.overflow) {
		rc = -E2BIG;
		snprintf(why, sizeof(why), "too many arguments for bubblewrap");
		goto fail;
	}
	plan.argv = args.items;
	plan.cg = &inst->cg;
	plan.src[0] = devnull;
	plan.src[1] = devnull;
	plan.src[2] = errp[1];
	plan.src[FD_INIT] = rt->init_fd;
	plan.src[FD_LIFELINE] = lifeline[0];
	plan.src[FD_READY] = ready[1];
	plan.src[FD_INFO] = infop[1];
	for (size_t i = 0; i < ms.n; i++)
		plan.src[FD_FIRST_MOUNT + i] = ms.m[i].fd;
	plan.nfds = FD_FIRST_MOUNT + (int)ms.n;

	monitor = fork();
	if (monitor == 0)
		bwrap_child(&plan);
	if (monitor < 0) {
		rc = -errno;
		snprintf(why, sizeof(why), "fork: %s", strerror(errno));
		goto fail;
	}
	close_fd(&ready[1]);
	close_fd(&infop[1]);
	close_fd(&errp[1]);

	/* Until the init says it runs (or bubblewrap gives up), collect what it says. */
	while (!got_ready || !child) {
		struct pollfd pfd[3] = {{.fd = ready[0], .events = POLLIN},
					{.fd = infop[0], .events = POLLIN},
					{.fd = errp[0], .events = POLLIN}};
		int64_t left = deadline - now_mono_ms();

		if (left <= 0) {
			rc = -ETIMEDOUT;
			snprintf(why, sizeof(why), "bubblewrap did not start within %d s",
				 START_TIMEOUT_MS / 1000);
			break;
		}
		if (ready[0] < 0 && infop[0] < 0)
			break;
		if (poll(pfd, 3, (int)left) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents) {
			char c;
			ssize_t n = read(ready[0], &c, 1);

			if (n == 1)
				got_ready = true;
			if (n == 0 || n == 1)
				close_fd(&ready[0]);
			if (n == 0 && !got_ready)
				break; /* bubblewrap or the init failed */
		}
		if (pfd[1].revents)
			drain(&infop[0], &info_text, 4096);
		if (pfd[2].revents)
			drain(&errp[0], &err_text, 4096);
		if (!child)
			child = info_child_pid(&info_text);
		if (got_ready && !child && infop[0] < 0)
			break;
	}
	if (got_ready && child) {
		inst->init_pidfd = pidfd_open(child, 0);
		if (inst->init_pidfd < 0) {
			rc = -errno;
			snprintf(why, sizeof(why), "pidfd_open: %s", strerror(errno));
		} else {
			rc = 0;
		}
	} else if (rc == 0) {
		rc = -EIO;
	}
	if (rc < 0) {
		kill(monitor, SIGKILL);
		while (waitpid(monitor, NULL, 0) < 0 && errno == EINTR)
			;
		/* Whatever bubblewrap printed says why. */
		while (errp[0] >= 0 && drain(&errp[0], &err_text, 4096))
			;
		if (!why[0]) {
			size_t n = err_text.len;

			while (n && (err_text.data[n - 1] == '\n'))
				err_text.data[--n] = '\0';
			snprintf(why, sizeof(why), "bubblewrap failed: %s",
				 n ? buf_str(&err_text) : "no message");
		}
		goto fail;
	}
	inst->monitor_pid = monitor;
	inst->init_pid = child;
	inst->lifeline_fd = lifeline[1];
	inst->lifeline_rd = lifeline[0];
	lifeline[0] = lifeline[1] = -1;
	inst->ns_flags = differing_namespaces(child);
	cJSON_Delete(inst->env);
	inst->env = base_environment(rt, &info);
	inst->running = true;
	inst->generation++;
	log_limits(inst, now_mono_ms() - started);
	rc = 0;
	goto out;

fail:
	log_warn("sandbox %s (%s): its processes cannot start: %s", inst->id, info.name,
		 why[0] ? why : strerror(-rc));
	rt_cgroup_destroy(&inst->cg);
out:
	close_fd(&lifeline[0]);
	close_fd(&lifeline[1]);
	close_fd(&ready[0]);
	close_fd(&ready[1]);
	close_fd(&infop[0]);
	close_fd(&infop[1]);
	close_fd(&errp[0]);
	close_fd(&errp[1]);
	close_fd(&devnull);
	argv_free(&args);
	mounts_close(&ms);
	buf_free(&info_text);
	buf_free(&err_text);
	store_sandbox_info_free(&info);
	return rc;
}

/* Kills every process of the instance and waits until none is left. inst->lock held. */
static void instance_stop(struct runtime *rt, struct rt_instance *inst)
{
	int survivors;

	(void)rt;
	if (!inst->running)
		return;
	inst->running = false;
	inst->generation++;
	/*
	 * The lifeline first: relays holding a finished process's zombie for a
	 * caller let it go (the namespace cannot end before), and the init
	 * exits. Then pid 1 is killed for good measure: pid 1 gone = the pid
	 * namespace gone, the kernel SIGKILLs every member.
	 */
	close_fd(&inst->lifeline_fd);
	if (pidfd_send_signal(inst->init_pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
		log_warn("sandbox %s: killing its init: %s", inst->id, strerror(errno));
	/* bubblewrap exits once its child (the init) is reaped, i.e. the namespace is empty. */
	while (waitpid(inst->monitor_pid, NULL, 0) < 0 && errno == EINTR)
		;
	close_fd(&inst->init_pidfd);
	close_fd(&inst->lifeline_rd);
	session_table_clear(inst->sessions);
	survivors = rt_cgroup_kill(&inst->cg);
	if (survivors > 0)
		log_warn("sandbox %s: %d processes outlived its namespace; killed", inst->id,
			 survivors);
	if (rt_cgroup_destroy(&inst->cg) < 0)
		log_warn("sandbox %s: a process of it survived; its cgroup stays", inst->id);
	inst->monitor_pid = 0;
	inst->init_pid = 0;
	cJSON_Delete(inst->env);
	inst->env = NULL;
	log_info("sandbox %s (%s): processes stopped", inst->id, inst->name);
}

/* ---- hooks ------------------------------------------------------------------------- */

struct start_job {
	struct rt_instance *inst; /* a reference */
	char root[PATH_MAX];
};

static void *starter_main(void *arg)
{
	struct start_job *job = arg;
	struct rt_instance *inst = job->inst;
	struct runtime *rt = inst->rt;

	pthread_mutex_lock(&inst->lock);
	/* A stop may have come first (it waited for nothing): then there is nothing to do. */
	if (inst->wanted && !inst->running && !rt->closing)
		instance_start(rt, inst, job->root);
	pthread_mutex_unlock(&inst->lock);
	rt_instance_put(inst);
	free(job);
	pthread_mutex_lock(&rt->lock);
	if (--rt->starters == 0)
		pthread_cond_broadcast(&rt->starters_done);
	pthread_mutex_unlock(&rt->lock);
	return NULL;
}

/*
 * Builds the namespaces on a thread of their own, so the store's hook
 * returns at once (the store shows "started" as soon as the tree is ready).
 * A process call meanwhile waits on the instance's lock until they are up.
 */
static void start_async(struct runtime *rt, struct rt_instance *inst, const char *root)
{
	struct start_job *job = calloc(1, sizeof(*job));
	pthread_attr_t attr;
	pthread_t thread;
	int rc = -ENOMEM;

	if (job) {
		job->inst = inst;
		copy_str(job->root, sizeof(job->root), root);
		pthread_mutex_lock(&rt->lock);
		rt->starters++;
		inst->refs++;
		pthread_mutex_unlock(&rt->lock);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = -pthread_create(&thread, &attr, starter_main, job);
		pthread_attr_destroy(&attr);
		if (rc == 0)
			return;
		pthread_mutex_lock(&rt->lock);
		rt->starters--;
		inst->refs--;
		pthread_mutex_unlock(&rt->lock);
		free(job);
	}
	/* No thread: start here. */
	pthread_mutex_lock(&inst->lock);
	if (inst->wanted && !inst->running && !rt->closing)
		instance_start(rt, inst, root);
	pthread_mutex_unlock(&inst->lock);
}

static int hook_start(void *ctx, const char *sandbox_id, const char *root_dir)
{
	struct runtime *rt = ctx;
	struct rt_instance *inst;

	inst = table_get_or_add(rt, sandbox_id);
	if (!inst)
		return -ENOMEM;
	pthread_mutex_lock(&inst->lock);
	/* Shutting down: the record says started, and the next quaverd brings it up. */
	if (!rt->closing)
		instance_stop(rt, inst);
	inst->wanted = true;
	pthread_mutex_unlock(&inst->lock);
	if (!rt->closing)
		start_async(rt, inst, root_dir);
	rt_instance_put(inst);
	return 0;
}

static int hook_stop(void *ctx, const char *sandbox_id, bool force)
{
	struct runtime *rt = ctx;
	struct rt_instance *inst;

	(void)force; /* a stop always kills: there is nothing to wait for gracefully */
	inst = table_get_or_add(rt, sandbox_id);
	if (!inst)
		return -ENOMEM;
	pthread_mutex_lock(&inst->lock);
	inst->wanted = false;
	instance_stop(rt, inst);
	pthread_mutex_unlock(&inst->lock);
	table_forget_if_idle(rt, inst);
	rt_instance_put(inst);
	return 0;
}

static const struct store_runtime_ops hooks = {.start = hook_start, .stop = hook_stop};

struct rt_instance *rt_instance_get(struct runtime *rt, const char *sandbox_id)
{
	struct rt_instance *inst;
	char root[PATH_MAX];
	struct store_err serr;

	pthread_mutex_lock(&rt->lock);
	inst = table_find_locked(rt, sandbox_id);
	if (inst)
		inst->refs++;
	pthread_mutex_unlock(&rt->lock);
	if (!inst)
		return NULL;
	pthread_mutex_lock(&inst->lock);
	/* Wanted but down (its start failed at a restart): one more try, as a restart would. */
	if (!inst->running && inst->wanted && !rt->closing &&
	    store_sandbox_root(rt->store, sandbox_id, root, sizeof(root), &serr) == 0)
		instance_start(rt, inst, root);
	if (!inst->running) {
		pthread_mutex_unlock(&inst->lock);
		rt_instance_put(inst);
		return NULL;
	}
	pthread_mutex_unlock(&inst->lock);
	return inst;
}

/* ---- life of the runtime ----------------------------------------------------------- */

/* Brings up every sandbox the store holds as started (after a restart of quaverd). */
static void start_running_sandboxes(struct runtime *rt)
{
	static const char *const started[] = {"started"};
	struct store_sandbox_filter filter = {
	    .states = started,
	    .nstates = 1,
	    .is_public = -1,
	    .is_recoverable = -1,
	    .min_cpu = -1,
	    .max_cpu = -1,
	    .min_memory = -1,
	    .max_memory = -1,
	    .min_disk = -1,
	    .max_disk = -1,
	    .ascending = true,
	};
	char *cursor = NULL;

	do {
		struct store_sandbox_info *items = NULL;
		struct store_err serr;
		char *next = NULL;
		size_t count = 0;

		if (store_sandbox_list(rt->store, &filter, cursor, 200, &items, &count, &next,
				       &serr) < 0) {
			log_warn("runtime: cannot list the started sandboxes: %s", serr.msg);
			break;
		}
		for (size_t i = 0; i < count; i++) {
			struct rt_instance *inst;
			char root[PATH_MAX];
			bool hooked, start;

			if (store_sandbox_root(rt->store, items[i].id, root, sizeof(root), &serr) <
			    0)
				continue;
			pthread_mutex_lock(&rt->lock);
			hooked = table_find_locked(rt, items[i].id) != NULL;
			pthread_mutex_unlock(&rt->lock);
			if (hooked)
				continue; /* a hook started or stopped it meanwhile: it knows best
					   */
			inst = table_get_or_add(rt, items[i].id);
			if (!inst)
				continue;
			pthread_mutex_lock(&inst->lock);
			start = !inst->running && !inst->wanted;
			/* On failure it stays wanted: the next process call retries. */
			inst->wanted = true;
			pthread_mutex_unlock(&inst->lock);
			if (start)
				start_async(rt, inst, root);
			rt_instance_put(inst);
		}
		store_sandbox_list_free(items, count);
		free(cursor);
		cursor = next;
	} while (cursor);
}

/* "STATE-RUN": a hash of the state dir, and this run (cgroup directory names). */
static void run_tag(const char *state_dir, char out[32])
{
	uint64_t h = 1469598103934665603ULL;
	char run[9];

	for (const unsigned char *p = (const unsigned char *)state_dir; *p; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	random_hex(run, 4);
	run[8] = '\0';
	snprintf(out, 32, "%016llx-%s", (unsigned long long)h, run);
}

/* The init program: beside quaverd (build tree, or installed together), else libexec. */
static int find_init(char *out, size_t size)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		char *slash;

		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			if (snprintf(out, size, "%s/%s", self, INIT_NAME) < (int)size &&
			    access(out, X_OK) == 0)
				return 0;
		}
	}
	if (snprintf(out, size, "%s/%s", QUAVERD_LIBEXECDIR, INIT_NAME) < (int)size &&
	    access(out, X_OK) == 0)
		return 0;
	return -ENOENT;
}

/*
 * The cgroup janitor (runtime_init.c --janitor): a process of its own that
 * removes this quaverd's cgroups once quaverd is gone, even killed, so
 * nothing is left in the cgroups quaverd was started in.
 */
static void start_janitor(struct runtime *rt)
{
	const struct rt_cgroup_env *env = &rt->cg_env;
	char *argv[RT_NLIMITS + 5];
	int pipefd[2], n = 0;
	pid_t pid;

	argv[n++] = "quaverd-cgroup-janitor";
	argv[n++] = "--janitor";
	argv[n++] = "3";
	if (env->v2_base[0])
		argv[n++] = (char *)env->v2_base;
	for (int i = 0; i < RT_NLIMITS; i++)
		if (env->v1_base[i][0])
			argv[n++] = (char *)env->v1_base[i];
	argv[n] = NULL;
	if (n == 3 || pipe2(pipefd, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		static char *const envp[] = {NULL};
		int in = fcntl(pipefd[0], F_DUPFD_CLOEXEC, 10);

		if (in < 0 || dup2(in, 3) < 0)
			_exit(126);
		close_range(4, ~0U, 0);
		execve(rt->init_path, argv, envp);
		_exit(127);
	}
	close(pipefd[0]);
	if (pid < 0) {
		close(pipefd[1]);
		return;
	}
	rt->janitor_pid = pid;
	rt->janitor_fd = pipefd[1];
}

/* STATE/tmp/runtime-*: command logs of a quaverd that was killed. */
static void remove_leftover_logs(const char *tmp_dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(tmp_dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "runtime-", 8) ||
		    snprintf(path, sizeof(path), "%s/%s", tmp_dir, de->d_name) >= (int)sizeof(path))
			continue;
		rm_rf(path);
	}
	closedir(d);
}

struct runtime *runtime_new(struct store *st, const char *state_dir, int *err)
{
	struct runtime *rt = calloc(1, sizeof(*rt));
	char tag[32];
	int rc;

	if (!rt) {
		*err = -ENOMEM;
		return NULL;
	}
	rt->store = st;
	rt->init_fd = -1;
	rt->janitor_fd = -1;
	pthread_mutex_init(&rt->lock, NULL);
	pthread_cond_init(&rt->starters_done, NULL);
	copy_str(rt->state_dir, sizeof(rt->state_dir), state_dir);
	snprintf(rt->tmp_dir, sizeof(rt->tmp_dir), "%s/tmp", state_dir);
	copy_str(rt->bwrap, sizeof(rt->bwrap), BWRAP_PATH);
	if (access(BWRAP_PATH, X_OK) < 0) {
		rc = -errno;
		log_warn("runtime: %s: %s (install bubblewrap): sandboxes run no processes",
			 BWRAP_PATH, strerror(errno));
		goto fail;
	}
	rc = find_init(rt->init_path, sizeof(rt->init_path));
	if (rc == 0) {
		rt->init_fd = open(rt->init_path, O_RDONLY | O_CLOEXEC);
		if (rt->init_fd < 0)
			rc = -errno;
	}
	if (rc < 0) {
		log_warn("runtime: %s not found beside quaverd nor in %s: sandboxes run no "
			 "processes",
			 INIT_NAME, QUAVERD_LIBEXECDIR);
		goto fail;
	}
	copy_str(rt->shell, sizeof(rt->shell),
		 access("/usr/bin/bash", X_OK) == 0 ? "/usr/bin/bash" : "/usr/bin/sh");
	remove_leftover_logs(rt->tmp_dir);
	run_tag(state_dir, tag);
	rt_cgroup_env_init(&rt->cg_env, tag);
	rt_cgroup_env_clean(&rt->cg_env);
	start_janitor(rt);
	rt->pump = session_pump_start(rt, &rc);
	if (!rt->pump)
		goto fail;

	pthread_mutex_lock(&current_lock);
	current = rt;
	pthread_mutex_unlock(&current_lock);
	rt->attaching = true;
	store_set_runtime(st, &hooks, rt);
	start_running_sandboxes(rt);
	pthread_mutex_lock(&rt->lock);
	rt->attaching = false;
	pthread_mutex_unlock(&rt->lock);
	forget_idle(rt);
	return rt;

fail:
	if (rt->janitor_fd >= 0)
		close(rt->janitor_fd);
	if (rt->janitor_pid > 0)
		waitpid(rt->janitor_pid, NULL, 0);
	if (rt->init_fd >= 0)
		close(rt->init_fd);
	pthread_cond_destroy(&rt->starters_done);
	pthread_mutex_destroy(&rt->lock);
	free(rt);
	*err = rc;
	return NULL;
}

void runtime_shutdown(struct runtime *rt)
{
	size_t n;

	if (!rt)
		return;
	pthread_mutex_lock(&rt->lock);
	rt->closing = true;
	/* Starts in flight see "closing" and finish quickly. */
	while (rt->starters > 0)
		pthread_cond_wait(&rt->starters_done, &rt->lock);
	pthread_mutex_unlock(&rt->lock);
	for (size_t i = 0;; i++) {
		struct rt_instance *inst = NULL;

		pthread_mutex_lock(&rt->lock);
		n = rt->nitems;
		if (i < n) {
			inst = rt->items[i];
			inst->refs++;
		}
		pthread_mutex_unlock(&rt->lock);
		if (!inst)
			break;
		pthread_mutex_lock(&inst->lock);
		instance_stop(rt, inst);
		pthread_mutex_unlock(&inst->lock);
		rt_instance_put(inst);
	}
}

void runtime_free(struct runtime *rt)
{
	if (!rt)
		return;
	runtime_shutdown(rt);
	pthread_mutex_lock(&current_lock);
	if (current == rt)
		current = NULL;
	pthread_mutex_unlock(&current_lock);
	session_pump_stop(rt->pump);
	for (size_t i = 0; i < rt->nitems; i++)
		rt_instance_put(rt->items[i]);
	free(rt->items);
	rt_cgroup_env_fini(&rt->cg_env);
	/* Nothing left for the janitor: it finds the directories gone and exits. */
	if (rt->janitor_fd >= 0)
		close(rt->janitor_fd);
	if (rt->janitor_pid > 0)
		while (waitpid(rt->janitor_pid, NULL, 0) < 0 && errno == EINTR)
			;
	if (rt->init_fd >= 0)
		close(rt->init_fd);
	pthread_cond_destroy(&rt->starters_done);
	pthread_mutex_destroy(&rt->lock);
	free(rt);
}

cJSON *runtime_limits_json(struct runtime *rt, const char *sandbox_id)
{
	static const char *const names[RT_NLIMITS] = {"cpu", "memory", "pids"};
	struct rt_instance *inst = rt_instance_get(rt, sandbox_id);
	cJSON *o, *d;

	if (!inst)
		return NULL;
	o = cJSON_CreateObject();
	pthread_mutex_lock(&inst->lock);
	for (int i = 0; i < RT_NLIMITS; i++) {
		double value = i == RT_LIMIT_CPU      ? inst->cpu
			       : i == RT_LIMIT_MEMORY ? inst->memory
						      : RT_PIDS_MAX;

		d = cJSON_AddObjectToObject(o, names[i]);
		cJSON_AddNumberToObject(d, "value", value);
		cJSON_AddBoolToObject(d, "enforced", inst->cg.enforced[i]);
		cJSON_AddStringToObject(d, "how", inst->cg.how[i]);
	}
	d = cJSON_AddObjectToObject(o, "disk");
	cJSON_AddNumberToObject(d, "value", inst->disk);
	cJSON_AddBoolToObject(d, "enforced", false);
	cJSON_AddStringToObject(d, "how", "not enforced: recorded only (no disk quota)");
	pthread_mutex_unlock(&inst->lock);
	rt_instance_put(inst);
	return o;
}
