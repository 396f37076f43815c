/*
 * Volumes: a directory STATE/volumes/ID/data that sandboxes mount.
 * create: pending_create (record on disk) -> ready once data/ exists, after
 * the transition delay, in a job. delete: pending_delete -> deleting -> gone
 * (one rename out of the state dir, then the slow removal in the trash).
 */
#define QUAVERD_STORE_INTERNAL
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "util.h"

static void job_volume_create(struct store *st, void *arg)
{
	struct volume *v = arg;
	int64_t start = now_mono_ms();
	char data[PATH_MAX];
	int rc;

	vol_path(st, v->info.id, "data", data, sizeof(data));
	store_sleep_until(st, start + st->cfg.transition_delay_ms);
	/* Nothing of the volume but its record exists while it is pending_create. */
	rc = mkdir(data, 0755) < 0 && errno != EEXIST ? -errno : 0;
	pthread_mutex_lock(&v->op);
	pthread_mutex_lock(&st->lock);
	vol_set_state(st, v, rc == 0 ? VOL_READY : VOL_ERROR);
	if (rc < 0)
		snprintf(v->info.error_reason, sizeof(v->info.error_reason),
			 "creating its directory: %s", strerror(-rc));
	pthread_mutex_unlock(&st->lock);
	vol_save(st, v);
	pthread_mutex_unlock(&v->op);
	store_job_done(st, &v->job);
	vol_put(st, v);
}

static void job_volume_delete(struct store *st, void *arg)
{
	struct volume *v = arg;
	int64_t start = now_mono_ms();
	char dir[PATH_MAX];

	store_sleep_until(st, start + st->cfg.transition_delay_ms / 2);
	pthread_mutex_lock(&v->op);
	pthread_mutex_lock(&st->lock);
	vol_set_state(st, v, VOL_DELETING);
	pthread_mutex_unlock(&st->lock);
	vol_save(st, v);
	pthread_mutex_unlock(&v->op);
	store_sleep_until(st, start + st->cfg.transition_delay_ms);

	vol_path(st, v->info.id, NULL, dir, sizeof(dir));
	pthread_mutex_lock(&v->op);
	tree_remove(st, dir);
	pthread_mutex_lock(&st->lock);
	log_info("volume %s (%s): deleting -> deleted", v->info.id, v->info.name);
	if (!v->removed) {
		ptr_vec_remove(&st->volumes, v);
		v->removed = true;
		v->refs--; /* the map's reference */
	}
	pthread_mutex_unlock(&st->lock);
	pthread_mutex_unlock(&v->op);
	store_job_done(st, &v->job);
	vol_put(st, v);
}

static bool vol_name_taken_locked(struct store *st, const char *name)
{
	for (size_t i = 0; i < st->volumes.len; i++) {
		const struct volume *o = st->volumes.items[i];
		if (!strcmp(o->info.name, name) || !strcmp(o->info.id, name))
			return true;
	}
	return false;
}

int store_volume_create(struct store *st, const char *name, struct store_volume_info *out,
			struct store_err *err)
{
	struct volume *v = volume_alloc();
	char dir[PATH_MAX];
	int64_t now = now_wall_ms();
	int rc;

	if (!v) {
		snprintf(err->msg, sizeof(err->msg), "Out of memory");
		return -ENOMEM;
	}
	uuid4(v->info.id);
	copy_str(v->info.name, sizeof(v->info.name), name ? name : v->info.id);
	v->info.created_ms = v->info.updated_ms = now;
	v->state = VOL_PENDING_CREATE;
	v->info.state = vol_state_name(v->state);

	pthread_mutex_lock(&v->op);
	pthread_mutex_lock(&st->lock);
	if (vol_name_taken_locked(st, v->info.name)) {
		pthread_mutex_unlock(&st->lock);
		pthread_mutex_unlock(&v->op);
		snprintf(err->msg, sizeof(err->msg), "Volume with name %s already exists",
			 v->info.name);
		vol_put(st, v);
		return -EEXIST;
	}
	while (vol_name_taken_locked(st, v->info.id))
		uuid4(v->info.id);
	rc = ptr_vec_push(&st->volumes, v);
	if (rc == 0)
		v->refs += 2; /* the map's, ours and the job's */
	v->job = true;
	pthread_mutex_unlock(&st->lock);
	if (rc < 0) {
		pthread_mutex_unlock(&v->op);
		vol_put(st, v);
		snprintf(err->msg, sizeof(err->msg), "Out of memory");
		return rc;
	}

	vol_path(st, v->info.id, NULL, dir, sizeof(dir));
	rc = mkdir(dir, 0700) < 0 ? -errno : 0;
	if (rc == 0)
		rc = vol_save(st, v);
	if (rc == 0)
		rc = store_spawn(st, job_volume_create, v);
	if (rc < 0) {
		tree_remove(st, dir);
		pthread_mutex_lock(&st->lock);
		ptr_vec_remove(&st->volumes, v);
		v->removed = true;
		v->refs -= 2; /* the map's and the job's that never ran */
		v->job = false;
		pthread_mutex_unlock(&st->lock);
		pthread_mutex_unlock(&v->op);
		vol_put(st, v);
		snprintf(err->msg, sizeof(err->msg), "Could not create the volume: %s",
			 strerror(-rc));
		return rc;
	}
	log_info("volume %s (%s): created, pending_create", v->info.id, v->info.name);
	pthread_mutex_lock(&st->lock);
	*out = v->info;
	pthread_mutex_unlock(&st->lock);
	pthread_mutex_unlock(&v->op);
	vol_put(st, v);
	return 0;
}

static int copy_volume(struct store *st, const char *key, bool by_name,
		       struct store_volume_info *out, struct store_err *err)
{
	struct volume *v;

	pthread_mutex_lock(&st->lock);
	v = vol_find_locked(st, key, by_name);
	if (v)
		*out = v->info;
	pthread_mutex_unlock(&st->lock);
	if (!v) {
		snprintf(err->msg, sizeof(err->msg), "Volume with %s %s not found",
			 by_name ? "name" : "ID", key);
		return -ENOENT;
	}
	return 0;
}

int store_volume_get(struct store *st, const char *id, struct store_volume_info *out,
		     struct store_err *err)
{
	return copy_volume(st, id, false, out, err);
}

int store_volume_get_by_name(struct store *st, const char *name, struct store_volume_info *out,
			     struct store_err *err)
{
	return copy_volume(st, name, true, out, err);
}

/* The first sandbox not on its way out that mounts @v. Under st->lock. */
static const struct sandbox *user_of_locked(struct store *st, const struct volume *v)
{
	for (size_t i = 0; i < st->sandboxes.len; i++) {
		const struct sandbox *sb = st->sandboxes.items[i];
		const cJSON *m;

		if (sb->desired == SB_DESTROYED)
			continue;
		cJSON_ArrayForEach(m, sb->info.volumes)
		{
			const cJSON *vid = cJSON_GetObjectItemCaseSensitive(m, "volumeId");
			if (cJSON_IsString(vid) && !strcmp(vid->valuestring, v->info.id))
				return sb;
		}
	}
	return NULL;
}

int store_volume_delete(struct store *st, const char *id, struct store_err *err)
{
	struct volume *v = vol_get(st, id, false, err);
	const struct sandbox *user;
	enum vol_state old;
	int rc = 0;

	if (!v)
		return -ENOENT;
	pthread_mutex_lock(&v->op);
	pthread_mutex_lock(&st->lock);
	old = v->state;
	user = user_of_locked(st, v);
	if (v->state != VOL_READY && v->state != VOL_ERROR) {
		snprintf(err->msg, sizeof(err->msg),
			 "Volume must be in 'ready' or 'error' state in order to be deleted "
			 "(state: %s)",
			 vol_state_name(v->state));
		rc = -EINVAL;
	} else if (user) {
		snprintf(err->msg, sizeof(err->msg),
			 "Volume cannot be deleted because it is in use by one or more sandboxes "
			 "(e.g. %s)",
			 user->info.name);
		rc = -EINVAL;
	} else {
		/* Set under the same lock as the check: a create now sees it is not ready. */
		vol_set_state(st, v, VOL_PENDING_DELETE);
		v->job = true;
		v->refs++;
	}
	pthread_mutex_unlock(&st->lock);
	if (rc == 0) {
		rc = vol_save(st, v);
		if (rc == 0)
			rc = store_spawn(st, job_volume_delete, v);
		if (rc < 0) {
			pthread_mutex_lock(&st->lock);
			vol_set_state(st, v, old);
			v->job = false;
			v->refs--;
			pthread_mutex_unlock(&st->lock);
			vol_save(st, v);
			snprintf(err->msg, sizeof(err->msg), "Could not delete the volume: %s",
				 strerror(-rc));
		}
	}
	pthread_mutex_unlock(&v->op);
	vol_put(st, v);
	return rc;
}
