/*
 * Snapshots: STATE/snapshots/ID/image.tar, a tar of a sandbox's filesystem.
 * quaverd makes them only from sandboxes (it builds no images).
 *
 * From a sandbox: the snapshot's record goes to disk as "pending" and the
 * sandbox's as "snapshotting" (remembering where it was); a job packs the
 * tree into image.tar.part, renames it to image.tar, marks the snapshot
 * "active", and only then gives the sandbox back its previous state, so a
 * client that waits for the sandbox can use the snapshot at once.
 */
#define QUAVERD_STORE_INTERNAL
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "util.h"

struct snapshot_job {
	struct sandbox *sb;
	struct snapshot *sn;
};

static void job_snapshot(struct store *st, void *arg)
{
	struct snapshot_job *j = arg;
	struct sandbox *sb = j->sb;
	struct snapshot *sn = j->sn;
	char root[PATH_MAX], image[PATH_MAX], why[384] = "";
	int64_t start = now_mono_ms();
	struct stat stt;
	int rc;

	free(j);
	sb_path(st, sb->info.id, "root", root, sizeof(root));
	snap_path(st, sn->info.id, "image.tar", image, sizeof(image));
	rc = tree_pack(root, image, why, sizeof(why));
	store_sleep_until(st, start + st->cfg.transition_delay_ms);

	pthread_mutex_lock(&sn->op);
	pthread_mutex_lock(&st->lock);
	if (rc == 0) {
		sn->info.size_bytes = stat(image, &stt) == 0 ? (int64_t)stt.st_size : -1;
		snap_set_state(st, sn, SNAP_ACTIVE);
	} else {
		snap_set_state(st, sn, SNAP_ERROR);
		copy_str(sn->info.error_reason, sizeof(sn->info.error_reason), why);
		log_warn("snapshot %s (%s): %s", sn->info.id, sn->info.name, why);
	}
	pthread_mutex_unlock(&st->lock);
	snap_save(st, sn);
	pthread_mutex_unlock(&sn->op);

	pthread_mutex_lock(&sb->op);
	pthread_mutex_lock(&st->lock);
	/* Back to where it was; a stopped sandbox keeps its stop time for auto-archive. */
	sb_set_state(st, sb, sb->prev, sb->prev);
	pthread_mutex_unlock(&st->lock);
	sb_save(st, sb);
	pthread_mutex_unlock(&sb->op);

	store_job_done(st, &sn->job);
	store_job_done(st, &sb->job);
	snap_put(st, sn);
	sb_put(st, sb);
}

static bool snap_name_taken_locked(struct store *st, const char *name)
{
	for (size_t i = 0; i < st->snapshots.len; i++) {
		const struct snapshot *o = st->snapshots.items[i];
		if (!strcmp(o->info.name, name) || !strcmp(o->info.id, name))
			return true;
	}
	return false;
}

/* Takes the sandbox from @prev to snapshotting and inserts @sn. Under st->lock. */
static int admit_snapshot_locked(struct store *st, struct sandbox *sb, struct snapshot *sn,
				 struct store_err *err)
{
	if (snap_name_taken_locked(st, sn->info.name)) {
		snprintf(err->msg, sizeof(err->msg),
			 "Snapshot with name \"%s\" already exists for this organization",
			 sn->info.name);
		return -EEXIST;
	}
	while (snap_name_taken_locked(st, sn->info.id))
		uuid4(sn->info.id);
	if (ptr_vec_push(&st->snapshots, sn) < 0) {
		snprintf(err->msg, sizeof(err->msg), "Out of memory");
		return -ENOMEM;
	}
	sn->refs += 1; /* the map's and the job's */
	sn->job = true;
	sb->prev = sb->state;
	sb_set_state(st, sb, SB_SNAPSHOTTING, sb->prev);
	sb->job = true;
	sb->refs++; /* the job's */
	return 0;
}

static int snapshot_sandbox(struct store *st, struct sandbox *sb, const char *name,
			    struct store_err *err)
{
	struct snapshot_job *j = NULL;
	struct snapshot *sn;
	char dir[PATH_MAX];
	int64_t now = now_wall_ms();
	int rc;

	pthread_mutex_lock(&sb->op);
	if (sb->state != SB_STARTED && sb->state != SB_STOPPED) {
		rc = sb_refuse_unsettled(sb, err);
		if (rc == 0 || rc == -EINVAL) {
			snprintf(err->msg, sizeof(err->msg),
				 "Sandbox must be in started or stopped state to create a snapshot "
				 "(state: %s)",
				 sb_state_name(sb->state));
			rc = -EINVAL;
		}
		pthread_mutex_unlock(&sb->op);
		return rc;
	}
	sn = snapshot_alloc();
	j = malloc(sizeof(*j));
	if (!sn || !j) {
		free(j);
		if (sn)
			snap_put(st, sn);
		pthread_mutex_unlock(&sb->op);
		snprintf(err->msg, sizeof(err->msg), "Out of memory");
		return -ENOMEM;
	}
	uuid4(sn->info.id);
	copy_str(sn->info.name, sizeof(sn->info.name), name);
	copy_str(sn->info.source_sandbox_id, sizeof(sn->info.source_sandbox_id), sb->info.id);
	sn->info.created_ms = sn->info.updated_ms = now;
	sn->state = SNAP_PENDING;
	sn->info.state = snap_state_name(SNAP_PENDING);

	pthread_mutex_lock(&st->lock);
	sn->info.cpu = sb->info.cpu;
	sn->info.gpu = sb->info.gpu;
	sn->info.memory = sb->info.memory;
	sn->info.disk = sb->info.disk;
	rc = admit_snapshot_locked(st, sb, sn, err);
	pthread_mutex_unlock(&st->lock);
	if (rc < 0) {
		free(j);
		snap_put(st, sn);
		pthread_mutex_unlock(&sb->op);
		return rc;
	}
	log_info("snapshot %s (%s): created from sandbox %s, pending", sn->info.id, sn->info.name,
		 sb->info.id);

	/* The snapshot's record first: a crash before the sandbox's leaves no loose end. */
	snap_path(st, sn->info.id, NULL, dir, sizeof(dir));
	rc = mkdir(dir, 0700) < 0 ? -errno : 0;
	if (rc == 0)
		rc = snap_save(st, sn);
	if (rc == 0)
		rc = sb_save(st, sb);
	if (rc == 0) {
		j->sb = sb;
		j->sn = sn;
		rc = store_spawn(st, job_snapshot, j);
	}
	if (rc < 0) {
		free(j);
		tree_remove(st, dir);
		pthread_mutex_lock(&st->lock);
		ptr_vec_remove(&st->snapshots, sn);
		sn->removed = true;
		sn->refs--; /* the map's; the job's goes with snap_put below */
		sb_set_state(st, sb, sb->prev, sb->prev);
		sb->job = false;
		sb->refs--;
		pthread_mutex_unlock(&st->lock);
		sb_save(st, sb);
		pthread_mutex_unlock(&sb->op);
		snap_put(st, sn);
		snprintf(err->msg, sizeof(err->msg), "Could not start the snapshot: %s",
			 strerror(-rc));
		return rc;
	}
	pthread_mutex_unlock(&sb->op);
	return 0;
}

int store_sandbox_snapshot(struct store *st, const char *id_or_name, const char *name,
			   struct store_sandbox_info *out, struct store_err *err)
{
	struct sandbox *sb = sb_get(st, id_or_name, err);
	int rc;

	if (!sb)
		return -ENOENT;
	rc = snapshot_sandbox(st, sb, name, err);
	if (rc == 0)
		sb_copy_out(st, sb, out);
	sb_put(st, sb);
	return rc;
}

int store_snapshot_get(struct store *st, const char *id_or_name, struct store_snapshot_info *out,
		       struct store_err *err)
{
	struct snapshot *sn;

	pthread_mutex_lock(&st->lock);
	sn = snap_find_locked(st, id_or_name);
	if (sn)
		*out = sn->info;
	pthread_mutex_unlock(&st->lock);
	if (!sn) {
		snprintf(err->msg, sizeof(err->msg), "Snapshot %s not found", id_or_name);
		return -ENOENT;
	}
	return 0;
}

static void job_snapshot_delete(struct store *st, void *arg)
{
	struct snapshot *sn = arg;
	int64_t start = now_mono_ms();
	char dir[PATH_MAX];

	store_sleep_until(st, start + st->cfg.transition_delay_ms);
	snap_path(st, sn->info.id, NULL, dir, sizeof(dir));
	pthread_mutex_lock(&sn->op);
	tree_remove(st, dir);
	pthread_mutex_lock(&st->lock);
	log_info("snapshot %s (%s): removing -> removed", sn->info.id, sn->info.name);
	if (!sn->removed) {
		ptr_vec_remove(&st->snapshots, sn);
		sn->removed = true;
		sn->refs--; /* the map's reference */
	}
	pthread_mutex_unlock(&st->lock);
	pthread_mutex_unlock(&sn->op);
	store_job_done(st, &sn->job);
	snap_put(st, sn);
}

int store_snapshot_delete(struct store *st, const char *id_or_name, struct store_err *err)
{
	struct snapshot *sn = snap_get(st, id_or_name, err);
	enum snap_state old;
	int rc = 0;

	if (!sn)
		return -ENOENT;
	/* Held while a sandbox create copies the image: the delete waits for it. */
	pthread_mutex_lock(&sn->op);
	pthread_mutex_lock(&st->lock);
	old = sn->state;
	if (old == SNAP_PENDING) {
		snprintf(err->msg, sizeof(err->msg),
			 "Snapshot %s cannot be deleted while it is pending", sn->info.name);
		rc = -EINVAL;
	} else if (old != SNAP_REMOVING) {
		snap_set_state(st, sn, SNAP_REMOVING);
		sn->job = true;
		sn->refs++;
	}
	pthread_mutex_unlock(&st->lock);
	if (rc == 0 && old != SNAP_REMOVING) {
		rc = snap_save(st, sn);
		if (rc == 0)
			rc = store_spawn(st, job_snapshot_delete, sn);
		if (rc < 0) {
			pthread_mutex_lock(&st->lock);
			snap_set_state(st, sn, old);
			sn->job = false;
			sn->refs--;
			pthread_mutex_unlock(&st->lock);
			snap_save(st, sn);
			snprintf(err->msg, sizeof(err->msg), "Could not delete the snapshot: %s",
				 strerror(-rc));
		}
	}
	pthread_mutex_unlock(&sn->op);
	snap_put(st, sn);
	return rc;
}
