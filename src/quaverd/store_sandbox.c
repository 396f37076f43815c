/*
 * Sandboxes: create, start, stop, archive, restore, recover, delete, labels
 * and intervals, with the background jobs behind the asynchronous ones.
 *
 * Every multi-step change is ordered so that a SIGKILL between any two steps
 * leaves something store_recover.c can resolve: the record goes to disk in
 * its transitional state first, new trees and tars appear by rename, the
 * record then names the final state, and only then is the old copy removed.
 */
#define QUAVERD_STORE_INTERNAL
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define MAX_AUTO_ARCHIVE_MIN 43200 /* 30 days: Daytona's ceiling, and what 0 means */
#define JOB_WAIT_MS 120000

static int fail(struct store_err *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct store_err *err, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return rc;
}

int sb_refuse_unsettled(const struct sandbox *sb, struct store_err *err)
{
	if (sb->state == SB_DESTROYING || sb->state == SB_DESTROYED)
		return fail(err, -EINVAL, "Sandbox %s is being deleted (state: %s)", sb->info.name,
			    sb_state_name(sb->state));
	if (sb_state_transitional(sb->state))
		return fail(err, -EBUSY, "Sandbox state change in progress (state: %s)",
			    sb_state_name(sb->state));
	if (sb->state == SB_ERROR)
		return fail(err, -EINVAL, "Sandbox is in an errored state (%s); recover it first",
			    sb->info.error_reason[0] ? sb->info.error_reason : "no reason given");
	return 0;
}

void sb_unlink_locked(struct store *st, struct sandbox *sb)
{
	if (sb->removed)
		return;
	ptr_vec_remove(&st->sandboxes, sb);
	sb->removed = true;
	sb->refs--; /* the map's reference; the caller still holds one */
}

static void set_error_locked(struct store *st, struct sandbox *sb, const char *why)
{
	enum sb_state desired = sb->desired == SB_DESTROYED ? SB_STARTED : sb->desired;

	sb_set_state(st, sb, SB_ERROR, desired);
	copy_str(sb->info.error_reason, sizeof(sb->info.error_reason), why);
	sb->info.recoverable = true;
	log_warn("sandbox %s (%s): error: %s", sb->info.id, sb->info.name, why);
}

static void set_state(struct store *st, struct sandbox *sb, enum sb_state s, enum sb_state desired)
{
	pthread_mutex_lock(&st->lock);
	sb_set_state(st, sb, s, desired);
	if (s == SB_STOPPED)
		sb->stopped_ms = now_wall_ms();
	else if (s == SB_STARTED)
		sb->stopped_ms = 0;
	pthread_mutex_unlock(&st->lock);
}

/* Whether a job owns @sb now; the flag is cleared under st->lock, not the op mutex. */
static bool job_running(struct store *st, const struct sandbox *sb)
{
	bool running;

	pthread_mutex_lock(&st->lock);
	running = sb->job;
	pthread_mutex_unlock(&st->lock);
	return running;
}

/*
 * Waits, without holding the op mutex, for a job on @sb to finish. Returns 0
 * once none runs (op mutex held again), -EBUSY on timeout (not held).
 */
static int wait_job(struct store *st, struct sandbox *sb, struct store_err *err)
{
	enum sb_state state;
	bool done;

	pthread_mutex_unlock(&sb->op);
	pthread_mutex_lock(&st->lock);
	done = store_wait_job_locked(st, &sb->job, JOB_WAIT_MS);
	state = sb->state;
	pthread_mutex_unlock(&st->lock);
	if (!done)
		return fail(err, -EBUSY, "Sandbox state change in progress (state: %s)",
			    sb_state_name(state));
	pthread_mutex_lock(&sb->op);
	return 0;
}

/* Creates the subpath directories the sandbox mounts, inside their volumes. */
static int make_subpaths(struct store *st, const cJSON *volumes, char *why, size_t why_size)
{
	const cJSON *m;

	cJSON_ArrayForEach(m, volumes)
	{
		const cJSON *vid = cJSON_GetObjectItemCaseSensitive(m, "volumeId");
		const cJSON *sub = cJSON_GetObjectItemCaseSensitive(m, "subpath");
		char data[PATH_MAX];
		int rc;

		if (!cJSON_IsString(vid) || !cJSON_IsString(sub) || !sub->valuestring[0])
			continue;
		if (vol_path(st, vid->valuestring, "data", data, sizeof(data)) < 0)
			return -ENAMETOOLONG;
		rc = tree_mkdir_beneath(data, sub->valuestring);
		if (rc < 0) {
			snprintf(why, why_size, "creating subpath '%s' in volume %s: %s",
				 sub->valuestring, vid->valuestring, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* ---- the seed of a new sandbox's tree ------------------------------------ */

/*
 * Copies the directory @sfd into the empty directory @dfd: directories and
 * regular files are new (the sandbox may change them), symlinks are hard
 * links to @sfd's (a symlink cannot be changed in place, only replaced, so
 * sharing its inode shares nothing a sandbox could write). Why: on ext4 each
 * new inode scans the inode bitmaps, longer the more inodes were deleted
 * lately; the seed's ~850 symlinks (ca-certificates, alternatives) were 90%
 * of a create's time, 0.3-2 s on a busy disk (bench/run, perf).
 */
static int clone_dir(int sfd, int dfd)
{
	const int dir_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	const int new_flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	struct dirent *de;
	int rc = 0, fd;
	DIR *dir;

	fd = dup(sfd);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while (rc == 0 && (de = readdir(dir))) {
		const char *name = de->d_name;
		struct stat st;

		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = -errno;
		} else if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n;

			if (linkat(sfd, name, dfd, name, 0) == 0)
				continue;
			/* EMLINK, EXDEV, a protected_hardlinks refusal: a new symlink */
			n = readlinkat(sfd, name, target, sizeof(target) - 1);
			if (n < 0)
				rc = -errno;
			target[n < 0 ? 0 : n] = '\0';
			if (rc == 0 && symlinkat(target, dfd, name) < 0)
				rc = -errno;
		} else if (S_ISDIR(st.st_mode)) {
			int s = -1, d = -1;

			if (mkdirat(dfd, name, 0700) < 0 ||
			    (s = openat(sfd, name, dir_flags)) < 0 ||
			    (d = openat(dfd, name, dir_flags)) < 0)
				rc = -errno;
			if (rc == 0)
				rc = clone_dir(s, d);
			/* after the contents, so a 0555 directory can be filled */
			if (rc == 0 && fchmod(d, st.st_mode & 07777) < 0)
				rc = -errno;
			if (s >= 0)
				close(s);
			if (d >= 0)
				close(d);
		} else if (S_ISREG(st.st_mode)) {
			int in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			/* 0600 until it is full, then the template's mode */
			int out = openat(dfd, name, new_flags, 0600);
			char chunk[16384];
			ssize_t n = 0;

			if (in < 0 || out < 0)
				rc = -errno;
			while (rc == 0 && (n = read(in, chunk, sizeof(chunk))) > 0) {
				if (write(out, chunk, n) != n)
					rc = -EIO;
			}
			if (rc == 0 && n < 0)
				rc = -errno;
			if (rc == 0 && fchmod(out, st.st_mode & 07777) < 0)
				rc = -errno;
			if (in >= 0)
				close(in);
			if (out >= 0)
				close(out);
		}
		/* the seed holds nothing else (view_seed_root skips special files) */
	}
	closedir(dir);
	return rc;
}

/*
 * The skeleton of a sandbox made without a snapshot, in the new directory
 * @root: cloned from a template that the first create of this quaverd
 * builds in STATE/tmp/store-seed-* (removed at the next start, as all
 * store-* work files); the template is made the usual way, so the tree is
 * the one tree_skeleton makes. Falls back to tree_skeleton on any failure.
 */
static int seed_skeleton(struct store *st, const char *root)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char template[PATH_MAX];
	static const struct store *owner;
	int sfd = -1, dfd = -1, rc;
	struct stat tst;

	pthread_mutex_lock(&lock);
	if (owner != st) {
		char dir[PATH_MAX];

		/* another store in this process (tests): its own template */
		owner = NULL;
		if (tmp_path(st, "seed", dir, sizeof(dir)) == 0 && mkdir(dir, 0755) == 0) {
			if (tree_skeleton(dir) == 0) {
				copy_str(template, sizeof(template), dir);
				owner = st;
			} else {
				rm_rf(dir);
			}
		}
	}
	rc = owner ? 0 : -ENOENT;
	if (rc == 0) {
		sfd = open(template, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		dfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		rc = sfd < 0 || dfd < 0 ? -errno : 0;
	}
	pthread_mutex_unlock(&lock);
	if (rc == 0)
		rc = clone_dir(sfd, dfd);
	if (rc == 0 && (fstat(sfd, &tst) < 0 || fchmod(dfd, tst.st_mode & 07777) < 0))
		rc = -errno;
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	if (rc == 0)
		return 0;
	log_debug("seeding %s from the template: %s; seeding it directly", root, strerror(-rc));
	return tree_skeleton(root);
}

/*
 * Builds STATE/sandboxes/ID/root: in root.new from the snapshot's image (or
 * the skeleton), then a rename. @snap is NULL for an empty tree.
 */
static int build_root(struct store *st, struct sandbox *sb, struct snapshot *snap, char *why,
		      size_t why_size)
{
	char root[PATH_MAX], root_new[PATH_MAX], image[PATH_MAX];
	int rc;

	sb_path(st, sb->info.id, "root", root, sizeof(root));
	sb_path(st, sb->info.id, "root.new", root_new, sizeof(root_new));
	tree_remove(st, root_new);
	if (snap) {
		enum snap_state s;

		/* The snapshot's op mutex keeps a delete from taking the image mid-copy. */
		pthread_mutex_lock(&snap->op);
		pthread_mutex_lock(&st->lock);
		s = snap->state;
		pthread_mutex_unlock(&st->lock);
		if (s != SNAP_ACTIVE) {
			pthread_mutex_unlock(&snap->op);
			snprintf(why, why_size, "Snapshot %s is %s", snap->info.name,
				 snap_state_name(s));
			return -EINVAL;
		}
		snap_path(st, snap->info.id, "image.tar", image, sizeof(image));
		rc = tree_unpack(image, root_new, why, why_size);
		pthread_mutex_unlock(&snap->op);
	} else {
		rc = mkdir(root_new, 0755) < 0 ? -errno : 0;
		if (rc < 0)
			snprintf(why, why_size, "creating its filesystem: %s", strerror(-rc));
	}
	if (rc == 0) {
		rc = snap ? tree_skeleton(root_new) : seed_skeleton(st, root_new);
		if (rc < 0)
			snprintf(why, why_size, "creating home and tmp: %s", strerror(-rc));
	}
	if (rc == 0)
		rc = make_subpaths(st, sb->info.volumes, why, why_size);
	if (rc == 0) {
		/*
		 * syncfs flushes the whole filesystem, everyone's dirty data: on a
		 * busy disk it made a create take 0.2-1 s. A snapshot's unpacked
		 * image is the user's data and gets it; the skeleton is a seed copy
		 * of a few host files (a killed quaverd loses none of it, only a
		 * host crash within the kernel's writeback delay could empty one).
		 */
		if (snap)
			tree_sync(root_new);
		if (rename(root_new, root) < 0) {
			rc = -errno;
			snprintf(why, why_size, "renaming root.new: %s", strerror(errno));
		}
	}
	if (rc < 0)
		tree_remove(st, root_new);
	return rc;
}

/* ---- the jobs of cloud-like mode (store_config.lasting_lifecycle) --------- */

/*
 * "started", with the sandbox's processes running; when they cannot start,
 * the sandbox goes to error with the reason. The op mutex is held. Returns
 * store_runtime_start's answer.
 */
static int set_started(struct store *st, struct sandbox *sb)
{
	int rc;

	set_state(st, sb, SB_STARTED, SB_STARTED);
	rc = store_runtime_start(st, sb);
	if (rc < 0) {
		pthread_mutex_lock(&st->lock);
		set_error_locked(st, sb, "its processes did not start");
		pthread_mutex_unlock(&st->lock);
	}
	return rc;
}

/*
 * "creating" or "starting" -> "started" once the delay has passed. A
 * create built its tree before it answered, so the state lasts the delay
 * and no more, however slow the disk is.
 */
static void job_start(struct store *st, void *arg)
{
	struct sandbox *sb = arg;

	store_sleep_until(st, now_mono_ms() + st->cfg.lifecycle_delay_ms);
	pthread_mutex_lock(&sb->op);
	set_started(st, sb);
	sb_save(st, sb);
	pthread_mutex_unlock(&sb->op);
	store_job_done(st, &sb->job);
	sb_put(st, sb);
}

/* Hands a new record (op mutex held, state creating, tree built) to job_start. */
static int spawn_create(struct store *st, struct sandbox *sb)
{
	int rc;

	pthread_mutex_lock(&st->lock);
	sb->job = true;
	sb->refs++;
	pthread_mutex_unlock(&st->lock);
	rc = store_spawn(st, job_start, sb);
	if (rc < 0) {
		pthread_mutex_lock(&st->lock);
		sb->job = false;
		sb->refs--;
		pthread_mutex_unlock(&st->lock);
	}
	return rc;
}

/* "stopping" -> "stopped" (the processes were stopped before); ephemeral: deleted. */
static void job_stop(struct store *st, void *arg)
{
	struct sandbox *sb = arg;
	struct store_err err = {{0}};
	bool ephemeral;

	store_sleep_until(st, now_mono_ms() + st->cfg.lifecycle_delay_ms);
	pthread_mutex_lock(&sb->op);
	set_state(st, sb, SB_STOPPED, SB_STOPPED);
	sb_save(st, sb);
	ephemeral = sb->info.auto_delete_min == 0;
	pthread_mutex_unlock(&sb->op);
	store_job_done(st, &sb->job);
	if (ephemeral && sb_delete(st, sb, &err) < 0)
		log_warn("sandbox %s (%s): delete after stop: %s", sb->info.id, sb->info.name,
			 err.msg);
	sb_put(st, sb);
}

/* ---- create --------------------------------------------------------------- */

static bool name_taken_locked(struct store *st, const char *name, const struct sandbox *self)
{
	for (size_t i = 0; i < st->sandboxes.len; i++) {
		const struct sandbox *o = st->sandboxes.items[i];
		if (o == self)
			continue;
		if (!strcmp(o->info.id, name))
			return true;
		if (o->desired != SB_DESTROYED && !strcmp(o->info.name, name))
			return true;
	}
	return false;
}

/* Resolves the volume mounts into @sb's list (ids, not names). Under st->lock. */
static int resolve_volumes_locked(struct store *st, const struct store_sandbox_create *req,
				  struct sandbox *sb, struct store_err *err)
{
	int64_t now = now_wall_ms();

	for (size_t i = 0; i < req->nvolumes; i++) {
		const struct store_volume_mount *m = &req->volumes[i];
		struct volume *v = vol_find_locked(st, m->volume, false);
		cJSON *item;

		if (!v)
			v = vol_find_locked(st, m->volume, true);
		if (!v)
			return fail(err, -ENOENT, "Volume '%s' not found", m->volume);
		if (v->state != VOL_READY)
			return fail(err, -EINVAL,
				    "Volume '%s' is not in a ready state. Current state: %s",
				    v->info.name, vol_state_name(v->state));
		item = cJSON_CreateObject();
		if (!item || !cJSON_AddStringToObject(item, "volumeId", v->info.id) ||
		    !cJSON_AddStringToObject(item, "mountPath", m->mount_path) ||
		    (m->subpath && m->subpath[0] &&
		     !cJSON_AddStringToObject(item, "subpath", m->subpath))) {
			cJSON_Delete(item);
			return fail(err, -ENOMEM, "Out of memory");
		}
		cJSON_AddItemToArray(sb->info.volumes, item);
		v->info.last_used_ms = now;
	}
	return 0;
}

static int fill_record(struct sandbox *sb, const struct store_sandbox_create *req,
		       struct store_err *err)
{
	struct store_sandbox_info *i = &sb->info;
	int64_t now = now_wall_ms();

	if (req->auto_stop_min < 0)
		return fail(err, -EINVAL, "Auto-stop interval must be non-negative");
	if (req->auto_archive_min < 0)
		return fail(err, -EINVAL, "Auto-archive interval must be non-negative");
	uuid4(i->id);
	copy_str(i->name, sizeof(i->name), req->name ? req->name : i->id);
	copy_str(i->user, sizeof(i->user), req->user ? req->user : "daytona");
	copy_str(i->target, sizeof(i->target), req->target ? req->target : "local");
	i->is_public = req->is_public;
	i->cpu = req->has_resources ? req->cpu : 1;
	i->gpu = req->has_resources ? req->gpu : 0;
	i->memory = req->has_resources ? req->memory : 1;
	i->disk = req->has_resources ? req->disk : 3;
	i->auto_stop_min = req->auto_stop_min;
	i->auto_archive_min =
	    req->auto_archive_min == 0 || req->auto_archive_min > MAX_AUTO_ARCHIVE_MIN
		? MAX_AUTO_ARCHIVE_MIN
		: req->auto_archive_min;
	i->auto_delete_min = req->auto_delete_min;
	i->created_ms = i->updated_ms = i->last_activity_ms = now;
	random_hex(i->preview_token, 16);
	if (req->labels) {
		cJSON_Delete(i->labels);
		i->labels = cJSON_Duplicate(req->labels, true);
	}
	if (req->env) {
		cJSON_Delete(i->env);
		i->env = cJSON_Duplicate(req->env, true);
	}
	if (req->extra) {
		cJSON_Delete(i->extra);
		i->extra = cJSON_Duplicate(req->extra, true);
	}
	if (!i->labels || !i->env || !i->extra)
		return fail(err, -ENOMEM, "Out of memory");
	sb->state = SB_CREATING;
	sb->desired = SB_STARTED;
	sb->prev = SB_STOPPED;
	i->state = sb_state_name(SB_CREATING);
	i->desired_state = sb_state_name(SB_STARTED);
	return 0;
}

/* Validates against the other records and inserts @sb (state creating). Under st->lock. */
static int admit_locked(struct store *st, struct sandbox *sb,
			const struct store_sandbox_create *req, struct snapshot **snap_out,
			struct store_err *err)
{
	struct snapshot *snap = NULL;
	int rc;

	if (name_taken_locked(st, sb->info.name, sb))
		return fail(err, -EEXIST, "Sandbox with name %s already exists", sb->info.name);
	/* A fresh id that happens to be a live name would make lookups ambiguous. */
	while (name_taken_locked(st, sb->info.id, sb)) {
		bool named_after_id = !req->name;
		uuid4(sb->info.id);
		if (named_after_id)
			copy_str(sb->info.name, sizeof(sb->info.name), sb->info.id);
	}
	if (req->snapshot) {
		snap = snap_find_locked(st, req->snapshot);
		if (!snap)
			return fail(err, -EINVAL, "Snapshot %s not found", req->snapshot);
		if (snap->state != SNAP_ACTIVE)
			return fail(err, -EINVAL, "Snapshot %s is %s", req->snapshot,
				    snap_state_name(snap->state));
		copy_str(sb->info.snapshot, sizeof(sb->info.snapshot), snap->info.name);
		sb->info.cpu = snap->info.cpu;
		sb->info.gpu = snap->info.gpu;
		sb->info.memory = snap->info.memory;
		sb->info.disk = snap->info.disk;
	}
	rc = resolve_volumes_locked(st, req, sb, err);
	if (rc < 0)
		return rc;
	rc = ptr_vec_push(&st->sandboxes, sb);
	if (rc < 0)
		return fail(err, rc, "Out of memory");
	sb->refs++; /* the map's and ours */
	if (snap) {
		snap->refs++;
		snap->info.last_used_ms = now_wall_ms();
	}
	*snap_out = snap;
	return 0;
}

int store_sandbox_create(struct store *st, const struct store_sandbox_create *req,
			 struct store_sandbox_info *out, struct store_err *err)
{
	struct snapshot *snap = NULL;
	struct sandbox *sb;
	char dir[PATH_MAX], why[384];
	int rc;

	sb = sandbox_alloc();
	if (!sb)
		return fail(err, -ENOMEM, "Out of memory");
	rc = fill_record(sb, req, err);
	if (rc < 0) {
		sb_put(st, sb);
		return rc;
	}
	/* Held from before the record is visible: other ops on it wait for the create. */
	pthread_mutex_lock(&sb->op);
	pthread_mutex_lock(&st->lock);
	rc = admit_locked(st, sb, req, &snap, err);
	pthread_mutex_unlock(&st->lock);
	if (rc < 0) {
		pthread_mutex_unlock(&sb->op);
		sb_put(st, sb);
		return rc;
	}

	sb_path(st, sb->info.id, NULL, dir, sizeof(dir));
	why[0] = '\0';
	if (mkdir(dir, 0700) < 0) {
		rc = -errno;
		snprintf(why, sizeof(why), "creating its directory: %s", strerror(errno));
		goto undo;
	}
	rc = sb_save(st, sb);
	if (rc < 0) {
		snprintf(why, sizeof(why), "writing its record: %s", strerror(-rc));
		goto undo;
	}
	rc = build_root(st, sb, snap, why, sizeof(why));
	if (rc < 0)
		goto undo;
	if (st->cfg.lasting_lifecycle) {
		/* Cloud-like: the answer says "creating"; a job starts it later. */
		rc = spawn_create(st, sb);
		if (rc < 0) {
			snprintf(why, sizeof(why), "starting its job: %s", strerror(-rc));
			goto undo;
		}
		pthread_mutex_unlock(&sb->op);
		sb_copy_out(st, sb, out);
		snap_put(st, snap);
		sb_put(st, sb);
		return 0;
	}
	rc = set_started(st, sb);
	sb_save(st, sb);
	pthread_mutex_unlock(&sb->op);
	sb_copy_out(st, sb, out);
	snap_put(st, snap);
	sb_put(st, sb);
	return 0;

undo:
	/* Nothing of a failed create survives, on disk or in the maps. */
	if (rc == -EINVAL)
		log_info("sandbox %s (%s): create refused: %s", sb->info.id, sb->info.name, why);
	else
		log_error("sandbox %s (%s): create failed: %s", sb->info.id, sb->info.name, why);
	tree_remove(st, dir);
	pthread_mutex_lock(&st->lock);
	sb_unlink_locked(st, sb);
	pthread_mutex_unlock(&st->lock);
	pthread_mutex_unlock(&sb->op);
	snap_put(st, snap);
	sb_put(st, sb);
	if (rc == -EINVAL)
		return fail(err, rc, "%s", why);
	return fail(err, rc < 0 ? rc : -EIO, "Could not create the sandbox: %s", why);
}

/* ---- reads ---------------------------------------------------------------- */

int store_sandbox_get(struct store *st, const char *id_or_name, struct store_sandbox_info *out,
		      struct store_err *err)
{
	struct sandbox *sb;
	int rc = -ENOENT;

	pthread_mutex_lock(&st->lock);
	sb = sb_find_locked(st, id_or_name);
	if (sb)
		rc = sb_copy_locked(sb, out);
	pthread_mutex_unlock(&st->lock);
	if (!sb)
		return fail(err, -ENOENT, "Sandbox with ID or name %s not found", id_or_name);
	if (rc < 0)
		return fail(err, rc, "Out of memory");
	return 0;
}

void store_touch(struct store *st, const char *sandbox_id)
{
	struct sandbox *sb;

	pthread_mutex_lock(&st->lock);
	sb = sb_find_locked(st, sandbox_id);
	if (sb)
		sb->info.last_activity_ms = now_wall_ms();
	pthread_mutex_unlock(&st->lock);
}

int store_sandbox_root(struct store *st, const char *id_or_name, char *out, size_t out_size,
		       struct store_err *err)
{
	enum sb_state s = SB_ERROR;
	char id[STORE_ID_LEN + 1] = "";
	struct sandbox *sb;

	pthread_mutex_lock(&st->lock);
	sb = sb_find_locked(st, id_or_name);
	if (sb) {
		s = sb->state;
		copy_str(id, sizeof(id), sb->info.id);
	}
	pthread_mutex_unlock(&st->lock);
	if (!sb)
		return fail(err, -ENOENT, "Sandbox with ID or name %s not found", id_or_name);
	if (s != SB_STARTED)
		return fail(err, -EINVAL, "Sandbox is not started (state: %s)", sb_state_name(s));
	if (sb_path(st, id, "root", out, out_size) < 0)
		return fail(err, -ENAMETOOLONG, "The state directory path is too long");
	return 0;
}

/* ---- jobs ----------------------------------------------------------------- */

static void job_archive(struct store *st, void *arg)
{
	struct sandbox *sb = arg;
	char root[PATH_MAX], tar[PATH_MAX], why[384] = "";
	int64_t start = now_mono_ms();
	int rc;

	sb_path(st, sb->info.id, "root", root, sizeof(root));
	sb_path(st, sb->info.id, "archive.tar", tar, sizeof(tar));
	rc = tree_pack(root, tar, why, sizeof(why));
	store_sleep_until(st, start + st->cfg.transition_delay_ms);
	pthread_mutex_lock(&sb->op);
	if (rc == 0) {
		set_state(st, sb, SB_ARCHIVED, SB_ARCHIVED);
		if (sb_save(st, sb) == 0)
			tree_remove(st, root); /* only once the record says "archived" */
	} else {
		char reason[STORE_REASON_MAX];
		snprintf(reason, sizeof(reason), "archive failed: %s", why);
		pthread_mutex_lock(&st->lock);
		set_error_locked(st, sb, reason);
		pthread_mutex_unlock(&st->lock);
		sb_save(st, sb);
	}
	pthread_mutex_unlock(&sb->op);
	store_job_done(st, &sb->job);
	sb_put(st, sb);
}

static void job_restore(struct store *st, void *arg)
{
	struct sandbox *sb = arg;
	char root[PATH_MAX], root_new[PATH_MAX], tar[PATH_MAX], why[384] = "";
	int64_t start = now_mono_ms();
	int rc;

	sb_path(st, sb->info.id, "root", root, sizeof(root));
	sb_path(st, sb->info.id, "root.new", root_new, sizeof(root_new));
	sb_path(st, sb->info.id, "archive.tar", tar, sizeof(tar));
	tree_remove(st, root_new);
	rc = tree_unpack(tar, root_new, why, sizeof(why));
	if (rc == 0) {
		tree_sync(root_new);
		if (rename(root_new, root) < 0) {
			rc = -errno;
			snprintf(why, sizeof(why), "renaming root.new: %s", strerror(errno));
		}
	}
	if (rc < 0)
		tree_remove(st, root_new);
	store_sleep_until(st, start + st->cfg.transition_delay_ms);
	pthread_mutex_lock(&sb->op);
	if (rc == 0) {
		set_started(st, sb);
		if (sb_save(st, sb) == 0)
			unlink(tar); /* only once the record no longer needs it */
	} else {
		char reason[STORE_REASON_MAX];
		snprintf(reason, sizeof(reason), "restore failed: %s", why);
		pthread_mutex_lock(&st->lock);
		set_error_locked(st, sb, reason);
		pthread_mutex_unlock(&st->lock);
		sb_save(st, sb);
	}
	pthread_mutex_unlock(&sb->op);
	store_job_done(st, &sb->job);
	sb_put(st, sb);
}

static void job_destroy(struct store *st, void *arg)
{
	struct sandbox *sb = arg;
	int64_t start = now_mono_ms();
	char dir[PATH_MAX];

	store_sleep_until(st, start + st->cfg.transition_delay_ms);
	sb_path(st, sb->info.id, NULL, dir, sizeof(dir));
	pthread_mutex_lock(&sb->op);
	/* One rename takes the whole directory, record included, out of the state dir. */
	tree_remove(st, dir);
	pthread_mutex_lock(&st->lock);
	log_info("sandbox %s (%s): %s -> %s", sb->info.id, sb->info.name, sb_state_name(sb->state),
		 sb_state_name(SB_DESTROYED));
	sb_unlink_locked(st, sb);
	pthread_mutex_unlock(&st->lock);
	pthread_mutex_unlock(&sb->op);
	store_job_done(st, &sb->job);
	sb_put(st, sb);
}

/*
 * Hands @sb to a job: sets the transitional state, writes the record, and
 * starts @fn with a reference. Caller holds the op mutex. On failure the
 * state is put back.
 */
static int begin_job(struct store *st, struct sandbox *sb, enum sb_state s, enum sb_state desired,
		     void (*fn)(struct store *, void *), struct store_err *err)
{
	enum sb_state old = sb->state, old_desired = sb->desired;
	int rc;

	pthread_mutex_lock(&st->lock);
	sb_set_state(st, sb, s, desired);
	sb->job = true;
	sb->refs++;
	pthread_mutex_unlock(&st->lock);
	rc = sb_save(st, sb);
	if (rc == 0)
		rc = store_spawn(st, fn, sb);
	if (rc < 0) {
		pthread_mutex_lock(&st->lock);
		sb_set_state(st, sb, old, old_desired);
		sb->job = false;
		sb->refs--;
		pthread_mutex_unlock(&st->lock);
		sb_save(st, sb);
		return fail(err, rc, "Could not start the %s: %s", sb_state_name(s), strerror(-rc));
	}
	return 0;
}

/* ---- state changes -------------------------------------------------------- */

int sb_delete(struct store *st, struct sandbox *sb, struct store_err *err)
{
	int rc;

	pthread_mutex_lock(&sb->op);
	/* An archive, restore or snapshot finishes first: the job owns the files. */
	while (sb->state != SB_DESTROYING && job_running(st, sb)) {
		rc = wait_job(st, sb, err);
		if (rc < 0)
			return rc;
	}
	if (sb->removed || sb->state == SB_DESTROYING) {
		pthread_mutex_unlock(&sb->op);
		return 0; /* already on its way: deleting twice is not an error */
	}
	if (sb->state == SB_STARTED)
		store_runtime_stop(st, sb, true);
	rc = begin_job(st, sb, SB_DESTROYING, SB_DESTROYED, job_destroy, err);
	pthread_mutex_unlock(&sb->op);
	return rc;
}

int sb_stop(struct store *st, struct sandbox *sb, bool force, struct store_err *err)
{
	bool ephemeral;
	int rc;

	pthread_mutex_lock(&sb->op);
	if (sb->state == SB_STOPPING) { /* cloud-like: already on its way */
		pthread_mutex_unlock(&sb->op);
		return 0;
	}
	rc = sb_refuse_unsettled(sb, err);
	if (rc == 0 && sb->state != SB_STARTED)
		rc = fail(err, -EINVAL, "Sandbox is not in a stoppable state (state: %s)",
			  sb_state_name(sb->state));
	if (rc < 0) {
		pthread_mutex_unlock(&sb->op);
		return rc;
	}
	store_runtime_stop(st, sb, force);
	if (st->cfg.lasting_lifecycle) {
		rc = begin_job(st, sb, SB_STOPPING, SB_STOPPED, job_stop, err);
		pthread_mutex_unlock(&sb->op);
		return rc;
	}
	set_state(st, sb, SB_STOPPED, SB_STOPPED);
	rc = sb_save(st, sb);
	ephemeral = sb->info.auto_delete_min == 0;
	pthread_mutex_unlock(&sb->op);
	if (rc < 0)
		return fail(err, rc, "Could not save the sandbox: %s", strerror(-rc));
	/* Ephemeral (autoDeleteInterval 0): a stop is a delete, as on Daytona. */
	if (ephemeral)
		return sb_delete(st, sb, err);
	return 0;
}

int sb_archive(struct store *st, struct sandbox *sb, struct store_err *err)
{
	int rc;

	pthread_mutex_lock(&sb->op);
	rc = sb_refuse_unsettled(sb, err);
	if (rc == 0 && sb->state != SB_STOPPED)
		rc = fail(err, -EINVAL, "Sandbox is not stopped (state: %s)",
			  sb_state_name(sb->state));
	if (rc == 0 && sb->info.auto_delete_min == 0)
		rc = fail(err, -EINVAL, "Ephemeral sandboxes cannot be archived");
	if (rc == 0)
		rc = begin_job(st, sb, SB_ARCHIVING, SB_ARCHIVED, job_archive, err);
	pthread_mutex_unlock(&sb->op);
	return rc;
}

static int sb_start(struct store *st, struct sandbox *sb, struct store_err *err)
{
	int rc = 0;

	pthread_mutex_lock(&sb->op);
	/* Daytona lets a start follow an archive at once: it restores once archived. */
	while (sb->state == SB_ARCHIVING && job_running(st, sb)) {
		rc = wait_job(st, sb, err);
		if (rc < 0)
			return rc;
	}
	switch (sb->state) {
	case SB_STARTED:
	case SB_STARTING: /* cloud-like: already on its way */
		break;
	case SB_STOPPED:
		if (st->cfg.lasting_lifecycle) {
			rc = begin_job(st, sb, SB_STARTING, SB_STARTED, job_start, err);
			break;
		}
		rc = store_runtime_start(st, sb);
		if (rc < 0) {
			rc = fail(err, -EIO, "The sandbox's processes did not start: %s",
				  strerror(-rc));
			break;
		}
		set_state(st, sb, SB_STARTED, SB_STARTED);
		rc = sb_save(st, sb);
		if (rc < 0)
			rc = fail(err, rc, "Could not save the sandbox: %s", strerror(-rc));
		break;
	case SB_ARCHIVED:
		rc = begin_job(st, sb, SB_RESTORING, SB_STARTED, job_restore, err);
		break;
	default:
		rc = sb_refuse_unsettled(sb, err);
		if (rc == 0)
			rc = fail(err, -EINVAL, "Sandbox is not in valid state (state: %s)",
				  sb_state_name(sb->state));
		break;
	}
	pthread_mutex_unlock(&sb->op);
	return rc;
}

/* Rebuilds a missing filesystem: from archive.tar, else the snapshot, else empty. */
static int rebuild_root(struct store *st, struct sandbox *sb, char *why, size_t why_size)
{
	char root[PATH_MAX], root_new[PATH_MAX], tar[PATH_MAX];
	struct snapshot *snap = NULL;
	int rc;

	sb_path(st, sb->info.id, "root", root, sizeof(root));
	sb_path(st, sb->info.id, "root.new", root_new, sizeof(root_new));
	sb_path(st, sb->info.id, "archive.tar", tar, sizeof(tar));
	if (path_exists(root)) {
		unlink(tar);
		return make_subpaths(st, sb->info.volumes, why, why_size);
	}
	if (path_exists(tar)) {
		tree_remove(st, root_new);
		rc = tree_unpack(tar, root_new, why, why_size);
		if (rc == 0) {
			tree_sync(root_new);
			rc = rename(root_new, root) < 0 ? -errno : 0;
		}
		if (rc < 0) {
			tree_remove(st, root_new);
			return rc;
		}
		unlink(tar);
		return 0;
	}
	if (sb->info.snapshot[0]) {
		pthread_mutex_lock(&st->lock);
		snap = snap_find_locked(st, sb->info.snapshot);
		if (snap && snap->state == SNAP_ACTIVE)
			snap->refs++;
		else
			snap = NULL;
		pthread_mutex_unlock(&st->lock);
	}
	rc = build_root(st, sb, snap, why, why_size);
	snap_put(st, snap);
	return rc;
}

static int sb_recover(struct store *st, struct sandbox *sb, bool skip_start, struct store_err *err)
{
	char why[384] = "";
	int rc;

	pthread_mutex_lock(&sb->op);
	if (sb->state != SB_ERROR || !sb->info.recoverable) {
		rc = fail(err, -EINVAL, "Sandbox is not in a recoverable state (state: %s)",
			  sb_state_name(sb->state));
		goto out;
	}
	rc = rebuild_root(st, sb, why, sizeof(why));
	if (rc < 0) {
		rc = fail(err, -EIO, "Could not rebuild the sandbox's filesystem: %s", why);
		goto out;
	}
	if (skip_start) {
		set_state(st, sb, SB_STOPPED, SB_STOPPED);
	} else {
		set_started(st, sb);
	}
	rc = sb_save(st, sb);
	if (rc < 0)
		rc = fail(err, rc, "Could not save the sandbox: %s", strerror(-rc));
out:
	pthread_mutex_unlock(&sb->op);
	return rc;
}

/* ---- the public entry points ---------------------------------------------- */

typedef int (*sb_op_fn)(struct store *st, struct sandbox *sb, const void *arg,
			struct store_err *err);

static int with_sandbox(struct store *st, const char *id_or_name, sb_op_fn fn, const void *arg,
			struct store_sandbox_info *out, struct store_err *err)
{
	struct sandbox *sb = sb_get(st, id_or_name, err);
	int rc;

	if (!sb)
		return -ENOENT;
	rc = fn(st, sb, arg, err);
	if (rc == 0)
		sb_copy_out(st, sb, out);
	sb_put(st, sb);
	return rc;
}

static int op_start(struct store *st, struct sandbox *sb, const void *arg, struct store_err *err)
{
	(void)arg;
	return sb_start(st, sb, err);
}

static int op_stop(struct store *st, struct sandbox *sb, const void *arg, struct store_err *err)
{
	return sb_stop(st, sb, *(const bool *)arg, err);
}

static int op_archive(struct store *st, struct sandbox *sb, const void *arg, struct store_err *err)
{
	(void)arg;
	return sb_archive(st, sb, err);
}

static int op_recover(struct store *st, struct sandbox *sb, const void *arg, struct store_err *err)
{
	return sb_recover(st, sb, *(const bool *)arg, err);
}

static int op_delete(struct store *st, struct sandbox *sb, const void *arg, struct store_err *err)
{
	(void)arg;
	return sb_delete(st, sb, err);
}

int store_sandbox_start(struct store *st, const char *id_or_name, struct store_sandbox_info *out,
			struct store_err *err)
{
	return with_sandbox(st, id_or_name, op_start, NULL, out, err);
}

int store_sandbox_stop(struct store *st, const char *id_or_name, bool force,
		       struct store_sandbox_info *out, struct store_err *err)
{
	return with_sandbox(st, id_or_name, op_stop, &force, out, err);
}

int store_sandbox_archive(struct store *st, const char *id_or_name, struct store_sandbox_info *out,
			  struct store_err *err)
{
	return with_sandbox(st, id_or_name, op_archive, NULL, out, err);
}

int store_sandbox_recover(struct store *st, const char *id_or_name, bool skip_start,
			  struct store_sandbox_info *out, struct store_err *err)
{
	return with_sandbox(st, id_or_name, op_recover, &skip_start, out, err);
}

int store_sandbox_delete(struct store *st, const char *id_or_name, struct store_sandbox_info *out,
			 struct store_err *err)
{
	return with_sandbox(st, id_or_name, op_delete, NULL, out, err);
}

static int op_labels(struct store *st, struct sandbox *sb, const void *arg, struct store_err *err)
{
	cJSON *labels = cJSON_Duplicate(arg, true);
	int rc = 0;

	if (!labels)
		return fail(err, -ENOMEM, "Out of memory");
	pthread_mutex_lock(&sb->op);
	if (sb->state == SB_DESTROYING) {
		rc = sb_refuse_unsettled(sb, err);
		cJSON_Delete(labels);
		goto out;
	}
	pthread_mutex_lock(&st->lock);
	cJSON_Delete(sb->info.labels);
	sb->info.labels = labels;
	sb->info.updated_ms = now_wall_ms();
	pthread_mutex_unlock(&st->lock);
	rc = sb_save(st, sb);
	if (rc < 0)
		rc = fail(err, rc, "Could not save the sandbox: %s", strerror(-rc));
out:
	pthread_mutex_unlock(&sb->op);
	return rc;
}

int store_sandbox_set_labels(struct store *st, const char *id_or_name, const cJSON *labels,
			     struct store_sandbox_info *out, struct store_err *err)
{
	return with_sandbox(st, id_or_name, op_labels, labels, out, err);
}

struct interval_arg {
	enum store_interval which;
	int64_t minutes;
};

static int op_interval(struct store *st, struct sandbox *sb, const void *p, struct store_err *err)
{
	const struct interval_arg *a = p;
	int64_t minutes = a->minutes;
	int rc = 0;

	if (a->which == STORE_AUTO_STOP && minutes < 0)
		return fail(err, -EINVAL, "Auto-stop interval must be non-negative");
	if (a->which == STORE_AUTO_ARCHIVE) {
		if (minutes < 0)
			return fail(err, -EINVAL, "Auto-archive interval must be non-negative");
		if (minutes == 0 || minutes > MAX_AUTO_ARCHIVE_MIN)
			minutes = MAX_AUTO_ARCHIVE_MIN;
	}
	pthread_mutex_lock(&sb->op);
	if (sb->state == SB_DESTROYING) {
		rc = sb_refuse_unsettled(sb, err);
		goto out;
	}
	pthread_mutex_lock(&st->lock);
	if (a->which == STORE_AUTO_STOP)
		sb->info.auto_stop_min = minutes;
	else if (a->which == STORE_AUTO_ARCHIVE)
		sb->info.auto_archive_min = minutes;
	else
		sb->info.auto_delete_min = minutes;
	sb->info.updated_ms = now_wall_ms();
	pthread_mutex_unlock(&st->lock);
	rc = sb_save(st, sb);
	if (rc < 0)
		rc = fail(err, rc, "Could not save the sandbox: %s", strerror(-rc));
out:
	pthread_mutex_unlock(&sb->op);
	return rc;
}

int store_sandbox_set_interval(struct store *st, const char *id_or_name, enum store_interval which,
			       int64_t minutes, struct store_sandbox_info *out,
			       struct store_err *err)
{
	struct interval_arg a = {which, minutes};

	return with_sandbox(st, id_or_name, op_interval, &a, out, err);
}
