/*
 * Sandbox cgroups (runtime.h): cpu, memory and pids limits where the
 * machine lets quaverd apply them, in cgroup v2 when the controller is
 * there, else in its cgroup v1 hierarchy (hybrid machines), else noted as
 * "recorded, not enforced". A v2 group, even without controllers, also
 * gives cgroup.kill and the list of every process of the sandbox.
 *
 * Directories live under quaverd's own cgroup in each hierarchy (as a
 * delegated service would): CGROUP/quaverd-STATE-RUN/SANDBOX_ID, STATE
 * naming the state dir and RUN this run of quaverd. A killed run's janitor
 * (runtime_init.c) removes its groups; a run starting removes those of
 * earlier runs on its state dir that are still there. Neither touches
 * another run's.
 */
#define QUAVERD_RUNTIME_INTERNAL
#include "runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char *const limit_ctrl[RT_NLIMITS] = {"cpu", "memory", "pids"};

/* ---- small file helpers ------------------------------------------------------ */

static int write_text(const char *dir, const char *file, const char *text)
{
	char path[PATH_MAX];
	size_t len = strlen(text);
	ssize_t n;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, text, len);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

static bool file_exists(const char *dir, const char *file)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return false;
	return access(path, F_OK) == 0;
}

static bool word_in(const char *list, const char *word, const char *seps)
{
	size_t wl = strlen(word);
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, seps);

		if (n == wl && !strncmp(p, word, wl))
			return true;
		p += n;
		if (*p)
			p++;
	}
	return false;
}

/* ---- finding the hierarchies ------------------------------------------------- */

struct hier {
	char mount[PATH_MAX]; /* where it is mounted */
	char root[PATH_MAX];  /* the mount's root inside the hierarchy */
	char self[PATH_MAX];  /* quaverd's cgroup in it (/proc/self/cgroup) */
	bool found, have_self;
};

/* One mountinfo line: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS". */
static void parse_mountinfo(struct hier *v2, struct hier v1[RT_NLIMITS])
{
	char line[4096];
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char root[PATH_MAX], mnt[PATH_MAX], fstype[64], super[1024];
		const char *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
		    sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2)
			continue;
		if (!strcmp(fstype, "cgroup2") && !v2->found) {
			v2->found = true;
			copy_str(v2->mount, sizeof(v2->mount), mnt);
			copy_str(v2->root, sizeof(v2->root), root);
		} else if (!strcmp(fstype, "cgroup")) {
			for (int i = 0; i < RT_NLIMITS; i++) {
				if (v1[i].found || !word_in(super, limit_ctrl[i], ","))
					continue;
				v1[i].found = true;
				copy_str(v1[i].mount, sizeof(v1[i].mount), mnt);
				copy_str(v1[i].root, sizeof(v1[i].root), root);
			}
		}
	}
	fclose(f);
}

/* "N:CONTROLLERS:PATH" lines; "0::PATH" is v2. */
static void parse_self_cgroup(struct hier *v2, struct hier v1[RT_NLIMITS])
{
	char line[4096];
	FILE *f = fopen("/proc/self/cgroup", "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		size_t n;

		if (!c2)
			continue;
		n = strlen(c2 + 1);
		while (n && (c2[n] == '\n'))
			c2[n--] = '\0';
		*c2 = '\0';
		if (c1[1] == '\0') {
			if (!strcmp(line, "0")) {
				copy_str(v2->self, sizeof(v2->self), c2 + 1);
				v2->have_self = true;
			}
			continue;
		}
		for (int i = 0; i < RT_NLIMITS; i++) {
			if (word_in(c1 + 1, limit_ctrl[i], ",")) {
				copy_str(v1[i].self, sizeof(v1[i].self), c2 + 1);
				v1[i].have_self = true;
			}
		}
	}
	fclose(f);
}

/* MOUNT + (SELF relative to the mount's ROOT) into @out; false when SELF is outside the mount. */
static bool hier_dir(const struct hier *h, char *out, size_t size)
{
	const char *rel = h->self;
	size_t rl = strlen(h->root);

	if (!h->found || !h->have_self)
		return false;
	if (strcmp(h->root, "/")) {
		if (strncmp(h->self, h->root, rl) || (h->self[rl] && h->self[rl] != '/'))
			return false;
		rel = h->self + rl;
	}
	while (*rel == '/')
		rel++;
	return snprintf(out, size, "%s%s%s", h->mount, *rel ? "/" : "", rel) < (int)size;
}

static int make_base(const char *dir, const char *tag, char *out, size_t size)
{
	if (snprintf(out, size, "%s/quaverd-%s", dir, tag) >= (int)size)
		return -ENAMETOOLONG;
	if (mkdir(out, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

void rt_cgroup_env_init(struct rt_cgroup_env *env, const char *tag)
{
	struct hier v2 = {0}, v1[RT_NLIMITS];
	char dir[PATH_MAX];
	struct buf ctrls = BUF_INIT;
	int rc;

	memset(env, 0, sizeof(*env));
	memset(v1, 0, sizeof(v1));
	parse_mountinfo(&v2, v1);
	parse_self_cgroup(&v2, v1);

	if (hier_dir(&v2, dir, sizeof(dir))) {
		rc = make_base(dir, tag, env->v2_base, sizeof(env->v2_base));
		if (rc < 0) {
			log_info("runtime: no cgroup v2 group for sandboxes (%s: %s)", env->v2_base,
				 strerror(-rc));
			env->v2_base[0] = '\0';
		} else {
			char path[PATH_MAX];

			if (snprintf(path, sizeof(path), "%s/cgroup.controllers", dir) <
			    (int)sizeof(path))
				read_file(path, &ctrls, 4096);
			for (int i = 0; i < RT_NLIMITS; i++) {
				char plus[32];

				if (!word_in(buf_str(&ctrls), limit_ctrl[i], " \n"))
					continue;
				snprintf(plus, sizeof(plus), "+%s", limit_ctrl[i]);
				/*
				 * Fails (EBUSY) when quaverd's own group is not the root and
				 * holds processes (the no-internal-process rule): then v1 or
				 * nothing.
				 */
				if (write_text(dir, "cgroup.subtree_control", plus) == 0 &&
				    write_text(env->v2_base, "cgroup.subtree_control", plus) == 0)
					env->v2_has[i] = true;
			}
		}
	}
	for (int i = 0; i < RT_NLIMITS; i++) {
		if (env->v2_has[i])
			continue;
		if (!hier_dir(&v1[i], dir, sizeof(dir))) {
			snprintf(env->why_not[i], sizeof(env->why_not[i]),
				 "no %s cgroup controller on this machine", limit_ctrl[i]);
			continue;
		}
		rc = make_base(dir, tag, env->v1_base[i], sizeof(env->v1_base[i]));
		if (rc < 0) {
			snprintf(env->why_not[i], sizeof(env->why_not[i]),
				 "cannot create a %s cgroup: %s", limit_ctrl[i], strerror(-rc));
			env->v1_base[i][0] = '\0';
		}
	}
	buf_free(&ctrls);
}

/* ---- killing and removing ---------------------------------------------------- */

/* SIGKILLs every pid listed in DIR/cgroup.procs; returns how many. */
static int kill_listed(const char *dir)
{
	char path[PATH_MAX];
	struct buf text = BUF_INIT;
	int count = 0;
	char *p, *end;

	if (!dir[0] || snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
		return 0;
	if (read_file(path, &text, 1 << 20) < 0)
		return 0;
	for (p = text.data; p && *p; p = end) {
		long pid = strtol(p, &end, 10);

		if (end == p)
			break;
		if (pid > 1 && kill((pid_t)pid, SIGKILL) == 0)
			count++;
		while (*end == '\n')
			end++;
	}
	buf_free(&text);
	return count;
}

/* rmdir, retrying for up to a second while the last processes finish exiting. */
static int remove_dir(const char *dir)
{
	struct timespec pause = {0, 10 * 1000 * 1000};

	if (!dir[0])
		return 0;
	for (int i = 0; i < 100; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		kill_listed(dir);
		nanosleep(&pause, NULL);
	}
	return -EBUSY;
}

static void clean_base(const char *base)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (!base[0] || !(d = opendir(base)))
		return;
	while ((de = readdir(d))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", base, de->d_name) >= (int)sizeof(path))
			continue;
		if (write_text(path, "cgroup.kill", "1") < 0)
			kill_listed(path);
		if (remove_dir(path) < 0)
			log_warn("runtime: cannot remove the leftover cgroup %s", path);
		else
			log_info("runtime: removed the leftover cgroup %s", path);
	}
	closedir(d);
}

/*
 * Removes the groups of earlier runs on the same state dir beside @base
 * ("quaverd-STATE-RUN": same STATE, another RUN). Only one quaverd runs on a
 * state dir, so what is in them belongs to a dead one.
 */
static void clean_earlier_runs(const char *base)
{
	char parent[PATH_MAX], prefix[NAME_MAX + 1], path[PATH_MAX];
	const char *own, *dash;
	struct dirent *de;
	DIR *d;

	if (!base[0] || !copy_str(parent, sizeof(parent), base))
		return;
	own = strrchr(base, '/');
	if (!own)
		return;
	own++;
	dash = strrchr(own, '-');
	if (!dash || (size_t)(dash - own + 1) >= sizeof(prefix))
		return;
	memcpy(prefix, own, (size_t)(dash - own + 1));
	prefix[dash - own + 1] = '\0';
	parent[own - base - 1] = '\0';
	if (!(d = opendir(parent)))
		return;
	while ((de = readdir(d))) {
		if (de->d_type != DT_DIR || strncmp(de->d_name, prefix, strlen(prefix)) ||
		    !strcmp(de->d_name, own))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", parent, de->d_name) >= (int)sizeof(path))
			continue;
		clean_base(path);
		rmdir(path);
	}
	closedir(d);
}

void rt_cgroup_env_clean(const struct rt_cgroup_env *env)
{
	clean_earlier_runs(env->v2_base);
	for (int i = 0; i < RT_NLIMITS; i++)
		clean_earlier_runs(env->v1_base[i]);
}

void rt_cgroup_env_fini(const struct rt_cgroup_env *env)
{
	if (env->v2_base[0])
		rmdir(env->v2_base);
	for (int i = 0; i < RT_NLIMITS; i++)
		if (env->v1_base[i][0])
			rmdir(env->v1_base[i]);
}

/* ---- one sandbox ------------------------------------------------------------- */

static int open_procs(const char *dir)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
		return -1;
	return open(path, O_WRONLY | O_CLOEXEC);
}

/* Makes DIR = BASE/ID (and BASE when someone removed it), emptying a leftover one. */
static int make_group(const char *base, const char *id, char *dir, size_t size)
{
	if (snprintf(dir, size, "%s/%s", base, id) >= (int)size)
		return -ENAMETOOLONG;
	if (mkdir(dir, 0755) == 0)
		return 0;
	if (errno == ENOENT && (mkdir(base, 0755) == 0 || errno == EEXIST) && mkdir(dir, 0755) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	kill_listed(dir);
	return 0;
}

static int apply_limit(const char *dir, enum rt_limit which, bool v2, double cpu, double memory_gib,
		       char *how, size_t how_size)
{
	char text[64];
	const char *file;
	int rc;

	switch (which) {
	case RT_LIMIT_CPU:
		if (v2) {
			file = "cpu.max";
			snprintf(text, sizeof(text), "%lld 100000", (long long)(cpu * 100000));
			rc = write_text(dir, file, text);
		} else {
			file = "cpu.cfs_quota_us";
			rc = write_text(dir, "cpu.cfs_period_us", "100000");
			snprintf(text, sizeof(text), "%lld", (long long)(cpu * 100000));
			if (rc == 0)
				rc = write_text(dir, file, text);
		}
		break;
	case RT_LIMIT_MEMORY: {
		long long bytes = (long long)(memory_gib * 1024 * 1024 * 1024);

		snprintf(text, sizeof(text), "%lld", bytes);
		if (v2) {
			file = "memory.max";
			rc = write_text(dir, file, text);
			/* No swapping around the limit. */
			if (rc == 0 && file_exists(dir, "memory.swap.max"))
				write_text(dir, "memory.swap.max", "0");
		} else {
			file = "memory.limit_in_bytes";
			rc = write_text(dir, file, text);
			if (rc == 0 && file_exists(dir, "memory.memsw.limit_in_bytes"))
				write_text(dir, "memory.memsw.limit_in_bytes", text);
		}
		break;
	}
	default:
		file = "pids.max";
		snprintf(text, sizeof(text), "%d", RT_PIDS_MAX);
		rc = write_text(dir, file, text);
		break;
	}
	if (rc < 0)
		snprintf(how, how_size, "not enforced: writing %s: %s", file, strerror(-rc));
	else
		snprintf(how, how_size, "cgroup %s %s", v2 ? "v2" : "v1", file);
	return rc;
}

void rt_cgroup_create(const struct rt_cgroup_env *env, const char *sandbox_id, double cpu,
		      double memory_gib, struct rt_cgroup *cg)
{
	int nfd = 0, rc;

	memset(cg, 0, sizeof(*cg));
	for (int i = 0; i <= RT_NLIMITS; i++)
		cg->procs_fd[i] = -1;

	if (env->v2_base[0]) {
		rc = make_group(env->v2_base, sandbox_id, cg->v2_dir, sizeof(cg->v2_dir));
		if (rc < 0) {
			log_info("runtime: sandbox %s: no cgroup v2 group: %s", sandbox_id,
				 strerror(-rc));
			cg->v2_dir[0] = '\0';
		} else {
			cg->procs_fd[nfd++] = open_procs(cg->v2_dir);
		}
	}
	for (int i = 0; i < RT_NLIMITS; i++) {
		bool v2 = env->v2_has[i] && cg->v2_dir[0];

		if (v2) {
			cg->enforced[i] = apply_limit(cg->v2_dir, i, true, cpu, memory_gib,
						      cg->how[i], sizeof(cg->how[i])) == 0;
			continue;
		}
		if (!env->v1_base[i][0]) {
			snprintf(cg->how[i], sizeof(cg->how[i]), "not enforced: %s",
				 env->why_not[i][0] ? env->why_not[i] : "no cgroup");
			continue;
		}
		rc = make_group(env->v1_base[i], sandbox_id, cg->v1_dir[i], sizeof(cg->v1_dir[i]));
		if (rc < 0) {
			snprintf(cg->how[i], sizeof(cg->how[i]), "not enforced: cgroup %s: %s",
				 cg->v1_dir[i], strerror(-rc));
			cg->v1_dir[i][0] = '\0';
			continue;
		}
		cg->enforced[i] = apply_limit(cg->v1_dir[i], i, false, cpu, memory_gib, cg->how[i],
					      sizeof(cg->how[i])) == 0;
		cg->procs_fd[nfd++] = open_procs(cg->v1_dir[i]);
	}
}

void rt_cgroup_join(const struct rt_cgroup *cg)
{
	for (int i = 0; i <= RT_NLIMITS; i++)
		if (cg->procs_fd[i] >= 0)
			(void)!write(cg->procs_fd[i], "0", 1);
}

int rt_cgroup_kill(const struct rt_cgroup *cg)
{
	int count = 0;

	if (cg->v2_dir[0]) {
		count += kill_listed(cg->v2_dir);
		write_text(cg->v2_dir, "cgroup.kill", "1");
	}
	for (int i = 0; i < RT_NLIMITS; i++)
		count += kill_listed(cg->v1_dir[i]);
	return count;
}

int rt_cgroup_destroy(struct rt_cgroup *cg)
{
	int rc = 0;

	for (int i = 0; i <= RT_NLIMITS; i++) {
		if (cg->procs_fd[i] >= 0)
			close(cg->procs_fd[i]);
		cg->procs_fd[i] = -1;
	}
	if (remove_dir(cg->v2_dir) < 0)
		rc = -EBUSY;
	cg->v2_dir[0] = '\0';
	for (int i = 0; i < RT_NLIMITS; i++) {
		if (remove_dir(cg->v1_dir[i]) < 0)
			rc = -EBUSY;
		cg->v1_dir[i][0] = '\0';
	}
	return rc;
}
