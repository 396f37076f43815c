/*
 * The store's core: opening and closing, the maps of records with their
 * references, state names, paths, meta.json writes and background jobs.
 * The operations themselves live in store_sandbox.c, store_volume.c and
 * store_snapshot.c; loading and crash recovery in store_recover.c.
 */
#define QUAVERD_STORE_INTERNAL
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Every state Daytona defines, for validating list filters. */
const char *const store_sandbox_state_names[] = {
	"creating", "restoring", "destroyed", "destroying", "started", "stopped", "starting",
	"stopping", "error", "build_failed", "pending_build", "building_snapshot", "unknown",
	"pulling_snapshot", "archived", "archiving", "resizing", "snapshotting", "forking",
	"pausing", "paused", "resuming", NULL,
};

static const char *const sb_names[SB_NSTATES] = {
	[SB_CREATING] = "creating",
	[SB_STARTED] = "started",
	[SB_STOPPED] = "stopped",
	[SB_ARCHIVING] = "archiving",
	[SB_ARCHIVED] = "archived",
	[SB_RESTORING] = "restoring",
	[SB_SNAPSHOTTING] = "snapshotting",
	[SB_DESTROYING] = "destroying",
	[SB_DESTROYED] = "destroyed",
	[SB_ERROR] = "error",
	[SB_STARTING] = "starting",
	[SB_STOPPING] = "stopping",
};

static const char *const vol_names[] = {
	[VOL_PENDING_CREATE] = "pending_create",
	[VOL_READY] = "ready",
	[VOL_PENDING_DELETE] = "pending_delete",
	[VOL_DELETING] = "deleting",
	[VOL_ERROR] = "error",
};

static const char *const snap_names[] = {
	[SNAP_PENDING] = "pending",
	[SNAP_ACTIVE] = "active",
	[SNAP_ERROR] = "error",
	[SNAP_REMOVING] = "removing",
};

bool store_is_sandbox_state_name(const char *s)
{
	for (size_t i = 0; store_sandbox_state_names[i]; i++)
		if (!strcmp(s, store_sandbox_state_names[i]))
			return true;
	return false;
}

const char *sb_state_name(enum sb_state s)
{
	return (unsigned)s < SB_NSTATES ? sb_names[s] : "unknown";
}

int sb_state_parse(const char *s, enum sb_state *out)
{
	for (int i = 0; i < SB_NSTATES; i++) {
		if (!strcmp(s, sb_names[i])) {
			*out = (enum sb_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *vol_state_name(enum vol_state s)
{
	return (unsigned)s < ARRAY_SIZE(vol_names) ? vol_names[s] : "error";
}

int vol_state_parse(const char *s, enum vol_state *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(vol_names); i++) {
		if (!strcmp(s, vol_names[i])) {
			*out = (enum vol_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *snap_state_name(enum snap_state s)
{
	return (unsigned)s < ARRAY_SIZE(snap_names) ? snap_names[s] : "error";
}

int snap_state_parse(const char *s, enum snap_state *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(snap_names); i++) {
		if (!strcmp(s, snap_names[i])) {
			*out = (enum snap_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool sb_state_transitional(enum sb_state s)
{
	return s == SB_CREATING || s == SB_ARCHIVING || s == SB_RESTORING || s == SB_SNAPSHOTTING ||
	       s == SB_DESTROYING || s == SB_STARTING || s == SB_STOPPING;
}

void sb_set_state(struct store *st, struct sandbox *sb, enum sb_state s, enum sb_state desired)
{
	enum sb_state old = sb->state;

	sb->state = s;
	sb->desired = desired;
	sb->info.state = sb_state_name(s);
	sb->info.desired_state = sb_state_name(desired);
	sb->info.updated_ms = now_wall_ms();
	if (s != SB_ERROR) {
		sb->info.error_reason[0] = '\0';
		sb->info.recoverable = false;
	}
	if (old != s) {
		log_info("sandbox %s (%s): %s -> %s", sb->info.id, sb->info.name,
			 sb_state_name(old), sb_state_name(s));
		store_notify(st, STORE_EVENT_SANDBOX, sb->info.id, sb_state_name(old),
			     sb_state_name(s));
	}
}

void vol_set_state(struct store *st, struct volume *v, enum vol_state s)
{
	enum vol_state old = v->state;

	v->state = s;
	v->info.state = vol_state_name(s);
	v->info.updated_ms = now_wall_ms();
	if (s != VOL_ERROR)
		v->info.error_reason[0] = '\0';
	if (old != s) {
		log_info("volume %s (%s): %s -> %s", v->info.id, v->info.name, vol_state_name(old),
			 vol_state_name(s));
		store_notify(st, STORE_EVENT_VOLUME, v->info.id, vol_state_name(old),
			     vol_state_name(s));
	}
}

void snap_set_state(struct store *st, struct snapshot *sn, enum snap_state s)
{
	enum snap_state old = sn->state;

	sn->state = s;
	sn->info.state = snap_state_name(s);
	sn->info.updated_ms = now_wall_ms();
	if (s != SNAP_ERROR)
		sn->info.error_reason[0] = '\0';
	if (old != s) {
		log_info("snapshot %s (%s): %s -> %s", sn->info.id, sn->info.name,
			 snap_state_name(old), snap_state_name(s));
		store_notify(st, STORE_EVENT_SNAPSHOT, sn->info.id, snap_state_name(old),
			     snap_state_name(s));
	}
}

/* ---- vectors and records -------------------------------------------------- */

int ptr_vec_push(struct ptr_vec *v, void *p)
{
	if (v->len == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		void **items = realloc(v->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		v->items = items;
		v->cap = cap;
	}
	v->items[v->len++] = p;
	return 0;
}

void ptr_vec_remove(struct ptr_vec *v, void *p)
{
	for (size_t i = 0; i < v->len; i++) {
		if (v->items[i] == p) {
			memmove(&v->items[i], &v->items[i + 1], (v->len - i - 1) * sizeof(void *));
			v->len--;
			return;
		}
	}
}

struct sandbox *sandbox_alloc(void)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));

	if (!sb)
		return NULL;
	pthread_mutex_init(&sb->op, NULL);
	sb->info.labels = cJSON_CreateObject();
	sb->info.env = cJSON_CreateObject();
	sb->info.volumes = cJSON_CreateArray();
	sb->info.extra = cJSON_CreateObject();
	if (!sb->info.labels || !sb->info.env || !sb->info.volumes || !sb->info.extra) {
		store_sandbox_info_free(&sb->info);
		pthread_mutex_destroy(&sb->op);
		free(sb);
		return NULL;
	}
	sb->info.state = sb_state_name(SB_CREATING);
	sb->info.desired_state = sb_state_name(SB_STARTED);
	sb->desired = SB_STARTED;
	sb->refs = 1;
	return sb;
}

static void sandbox_free(struct sandbox *sb)
{
	store_sandbox_info_free(&sb->info);
	pthread_mutex_destroy(&sb->op);
	free(sb);
}

struct volume *volume_alloc(void)
{
	struct volume *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	pthread_mutex_init(&v->op, NULL);
	v->info.state = vol_state_name(VOL_PENDING_CREATE);
	v->refs = 1;
	return v;
}

struct snapshot *snapshot_alloc(void)
{
	struct snapshot *sn = calloc(1, sizeof(*sn));

	if (!sn)
		return NULL;
	pthread_mutex_init(&sn->op, NULL);
	sn->info.state = snap_state_name(SNAP_PENDING);
	sn->info.size_bytes = -1;
	sn->refs = 1;
	return sn;
}

void store_sandbox_info_free(struct store_sandbox_info *info)
{
	if (!info)
		return;
	cJSON_Delete(info->labels);
	cJSON_Delete(info->env);
	cJSON_Delete(info->volumes);
	cJSON_Delete(info->extra);
	info->labels = info->env = info->volumes = info->extra = NULL;
}

/* Ids are compared exactly, names case-sensitively as Daytona does. */
struct sandbox *sb_find_locked(struct store *st, const char *id_or_name)
{
	for (size_t i = 0; i < st->sandboxes.len; i++) {
		struct sandbox *sb = st->sandboxes.items[i];
		if (!strcmp(sb->info.id, id_or_name))
			return sb;
	}
	for (size_t i = 0; i < st->sandboxes.len; i++) {
		struct sandbox *sb = st->sandboxes.items[i];
		/* A sandbox being deleted has given up its name, as on Daytona. */
		if (sb->desired != SB_DESTROYED && !strcmp(sb->info.name, id_or_name))
			return sb;
	}
	return NULL;
}

struct volume *vol_find_locked(struct store *st, const char *id_or_name, bool by_name)
{
	for (size_t i = 0; i < st->volumes.len; i++) {
		struct volume *v = st->volumes.items[i];
		if (!by_name && !strcmp(v->info.id, id_or_name))
			return v;
		if (by_name && !strcmp(v->info.name, id_or_name))
			return v;
	}
	return NULL;
}

struct snapshot *snap_find_locked(struct store *st, const char *id_or_name)
{
	for (size_t i = 0; i < st->snapshots.len; i++) {
		struct snapshot *sn = st->snapshots.items[i];
		if (!strcmp(sn->info.id, id_or_name))
			return sn;
	}
	for (size_t i = 0; i < st->snapshots.len; i++) {
		struct snapshot *sn = st->snapshots.items[i];
		if (!strcmp(sn->info.name, id_or_name))
			return sn;
	}
	return NULL;
}

struct sandbox *sb_get(struct store *st, const char *id_or_name, struct store_err *err)
{
	struct sandbox *sb;

	pthread_mutex_lock(&st->lock);
	sb = sb_find_locked(st, id_or_name);
	if (sb)
		sb->refs++;
	pthread_mutex_unlock(&st->lock);
	if (!sb)
		snprintf(err->msg, sizeof(err->msg), "Sandbox with ID or name %s not found",
			 id_or_name);
	return sb;
}

void sb_put(struct store *st, struct sandbox *sb)
{
	bool last;

	if (!sb)
		return;
	pthread_mutex_lock(&st->lock);
	last = --sb->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (last)
		sandbox_free(sb);
}

struct volume *vol_get(struct store *st, const char *id, bool by_name, struct store_err *err)
{
	struct volume *v;

	pthread_mutex_lock(&st->lock);
	v = vol_find_locked(st, id, by_name);
	if (v)
		v->refs++;
	pthread_mutex_unlock(&st->lock);
	if (!v)
		snprintf(err->msg, sizeof(err->msg), "Volume with %s %s not found",
			 by_name ? "name" : "ID", id);
	return v;
}

void vol_put(struct store *st, struct volume *v)
{
	bool last;

	if (!v)
		return;
	pthread_mutex_lock(&st->lock);
	last = --v->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (last) {
		pthread_mutex_destroy(&v->op);
		free(v);
	}
}

struct snapshot *snap_get(struct store *st, const char *id_or_name, struct store_err *err)
{
	struct snapshot *sn;

	pthread_mutex_lock(&st->lock);
	sn = snap_find_locked(st, id_or_name);
	if (sn)
		sn->refs++;
	pthread_mutex_unlock(&st->lock);
	if (!sn)
		snprintf(err->msg, sizeof(err->msg), "Snapshot %s not found", id_or_name);
	return sn;
}

void snap_put(struct store *st, struct snapshot *sn)
{
	bool last;

	if (!sn)
		return;
	pthread_mutex_lock(&st->lock);
	last = --sn->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (last) {
		pthread_mutex_destroy(&sn->op);
		free(sn);
	}
}

int sb_copy_locked(const struct sandbox *sb, struct store_sandbox_info *out)
{
	*out = sb->info;
	out->labels = cJSON_Duplicate(sb->info.labels, true);
	out->env = cJSON_Duplicate(sb->info.env, true);
	out->volumes = cJSON_Duplicate(sb->info.volumes, true);
	out->extra = cJSON_Duplicate(sb->info.extra, true);
	if (!out->labels || !out->env || !out->volumes || !out->extra) {
		store_sandbox_info_free(out);
		return -ENOMEM;
	}
	return 0;
}

void sb_copy_out(struct store *st, struct sandbox *sb, struct store_sandbox_info *out)
{
	if (!out)
		return;
	pthread_mutex_lock(&st->lock);
	if (sb_copy_locked(sb, out) < 0)
		memset(out, 0, sizeof(*out));
	pthread_mutex_unlock(&st->lock);
}

const char *store_organization_id(const struct store *st)
{
	return st->org_id;
}

/* ---- paths and meta.json -------------------------------------------------- */

static int kind_path(const struct store *st, const char *kind, const char *id, const char *leaf,
		     char *out, size_t size)
{
	int n;

	if (leaf)
		n = snprintf(out, size, "%s/%s/%s/%s", st->state_dir, kind, id, leaf);
	else
		n = snprintf(out, size, "%s/%s/%s", st->state_dir, kind, id);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int sb_path(const struct store *st, const char *id, const char *leaf, char *out, size_t size)
{
	return kind_path(st, "sandboxes", id, leaf, out, size);
}

int vol_path(const struct store *st, const char *id, const char *leaf, char *out, size_t size)
{
	return kind_path(st, "volumes", id, leaf, out, size);
}

int snap_path(const struct store *st, const char *id, const char *leaf, char *out, size_t size)
{
	return kind_path(st, "snapshots", id, leaf, out, size);
}

int tmp_path(const struct store *st, const char *what, char *out, size_t size)
{
	char rnd[17];
	int n;

	random_hex(rnd, 8);
	/* The "store-" prefix tells our work files from the HTTP layer's spooled bodies. */
	n = snprintf(out, size, "%s/tmp/store-%s-%s", st->state_dir, what, rnd);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int save_json(const char *path, char *json)
{
	int rc;

	if (!json)
		return -ENOMEM;
	rc = write_file_atomic(path, json, strlen(json), 0600);
	free(json);
	return rc;
}

int sb_save(struct store *st, struct sandbox *sb)
{
	char path[PATH_MAX];
	char *json;
	int rc;

	pthread_mutex_lock(&st->lock);
	json = sb_to_meta(sb);
	pthread_mutex_unlock(&st->lock);
	rc = sb_path(st, sb->info.id, "meta.json", path, sizeof(path));
	if (rc < 0) {
		free(json);
		return rc;
	}
	rc = save_json(path, json);
	if (rc < 0)
		log_error("sandbox %s: writing %s: %s", sb->info.id, path, strerror(-rc));
	return rc;
}

int vol_save(struct store *st, struct volume *v)
{
	char path[PATH_MAX];
	char *json;
	int rc;

	pthread_mutex_lock(&st->lock);
	json = vol_to_meta(v);
	pthread_mutex_unlock(&st->lock);
	rc = vol_path(st, v->info.id, "meta.json", path, sizeof(path));
	if (rc < 0) {
		free(json);
		return rc;
	}
	rc = save_json(path, json);
	if (rc < 0)
		log_error("volume %s: writing %s: %s", v->info.id, path, strerror(-rc));
	return rc;
}

int snap_save(struct store *st, struct snapshot *sn)
{
	char path[PATH_MAX];
	char *json;
	int rc;

	pthread_mutex_lock(&st->lock);
	json = snap_to_meta(sn);
	pthread_mutex_unlock(&st->lock);
	rc = snap_path(st, sn->info.id, "meta.json", path, sizeof(path));
	if (rc < 0) {
		free(json);
		return rc;
	}
	rc = save_json(path, json);
	if (rc < 0)
		log_error("snapshot %s: writing %s: %s", sn->info.id, path, strerror(-rc));
	return rc;
}

/* ---- jobs ----------------------------------------------------------------- */

struct job_start {
	struct store *st;
	void (*fn)(struct store *st, void *arg);
	void *arg;
};

static void *job_main(void *p)
{
	struct job_start js = *(struct job_start *)p;

	free(p);
	js.fn(js.st, js.arg);
	pthread_mutex_lock(&js.st->lock);
	js.st->jobs--;
	pthread_cond_broadcast(&js.st->cv);
	pthread_mutex_unlock(&js.st->lock);
	return NULL;
}

int store_spawn(struct store *st, void (*fn)(struct store *st, void *arg), void *arg)
{
	struct job_start *js = malloc(sizeof(*js));
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (!js)
		return -ENOMEM;
	js->st = st;
	js->fn = fn;
	js->arg = arg;
	pthread_mutex_lock(&st->lock);
	st->jobs++;
	pthread_mutex_unlock(&st->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Jobs run tar and sleep; a small stack lets hundreds wait at once. */
	pthread_attr_setstacksize(&attr, 256 * 1024);
	rc = pthread_create(&tid, &attr, job_main, js);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		free(js);
		pthread_mutex_lock(&st->lock);
		st->jobs--;
		pthread_cond_broadcast(&st->cv);
		pthread_mutex_unlock(&st->lock);
		return -rc;
	}
	return 0;
}

static void deadline_ts(int64_t deadline_mono_ms, struct timespec *ts)
{
	ts->tv_sec = (time_t)(deadline_mono_ms / 1000);
	ts->tv_nsec = (long)(deadline_mono_ms % 1000) * 1000000L;
}

bool store_sleep_until(struct store *st, int64_t deadline_mono_ms)
{
	struct timespec ts;
	bool open;

	deadline_ts(deadline_mono_ms, &ts);
	pthread_mutex_lock(&st->lock);
	while (!st->closing && now_mono_ms() < deadline_mono_ms)
		pthread_cond_timedwait(&st->cv, &st->lock, &ts);
	open = !st->closing;
	pthread_mutex_unlock(&st->lock);
	return open;
}

bool store_wait_job_locked(struct store *st, const bool *job_flag, int64_t timeout_ms)
{
	int64_t deadline = now_mono_ms() + timeout_ms;
	struct timespec ts;

	deadline_ts(deadline, &ts);
	while (*job_flag && !st->closing && now_mono_ms() < deadline)
		pthread_cond_timedwait(&st->cv, &st->lock, &ts);
	return !*job_flag;
}

void store_job_done(struct store *st, bool *job_flag)
{
	pthread_mutex_lock(&st->lock);
	*job_flag = false;
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->lock);
}

int64_t store_minutes_ms(const struct store *st, int64_t minutes)
{
	double scale = st->cfg.clock_scale >= 1 ? st->cfg.clock_scale : 1;

	return (int64_t)((double)minutes * 60000.0 / scale);
}

/* ---- runtime hooks -------------------------------------------------------- */

int store_add_event_hook(struct store *st, store_event_fn fn, void *ctx)
{
	int rc = -ENOSPC;

	pthread_mutex_lock(&st->lock);
	if (st->nhooks < STORE_MAX_EVENT_HOOKS) {
		st->hooks[st->nhooks].fn = fn;
		st->hooks[st->nhooks].ctx = ctx;
		st->nhooks++;
		rc = 0;
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

void store_notify(struct store *st, enum store_event_kind kind, const char *id,
		  const char *old_state, const char *new_state)
{
	for (int i = 0; i < st->nhooks; i++)
		st->hooks[i].fn(st->hooks[i].ctx, kind, id, old_state, new_state);
}

void store_set_runtime(struct store *st, const struct store_runtime_ops *ops, void *ctx)
{
	pthread_mutex_lock(&st->lock);
	st->rt = ops;
	st->rt_ctx = ctx;
	pthread_mutex_unlock(&st->lock);
}

int store_runtime_start(struct store *st, struct sandbox *sb)
{
	const struct store_runtime_ops *rt;
	char root[PATH_MAX];
	void *ctx;

	pthread_mutex_lock(&st->lock);
	rt = st->rt;
	ctx = st->rt_ctx;
	pthread_mutex_unlock(&st->lock);
	/* No runtime yet: "started" is a state of the record and its tree only. */
	if (!rt || !rt->start)
		return 0;
	if (sb_path(st, sb->info.id, "root", root, sizeof(root)) < 0)
		return -ENAMETOOLONG;
	return rt->start(ctx, sb->info.id, root);
}

void store_runtime_stop(struct store *st, struct sandbox *sb, bool force)
{
	const struct store_runtime_ops *rt;
	void *ctx;
	int rc;

	pthread_mutex_lock(&st->lock);
	rt = st->rt;
	ctx = st->rt_ctx;
	pthread_mutex_unlock(&st->lock);
	if (!rt || !rt->stop)
		return;
	rc = rt->stop(ctx, sb->info.id, force);
	if (rc < 0)
		log_warn("sandbox %s: stopping its processes: %s", sb->info.id, strerror(-rc));
}

/* ---- open and close ------------------------------------------------------- */

/*
 * Removes the work files, trash and spooled request bodies (server.c's
 * body-*) a killed quaverd left in STATE/tmp. The store opens before the
 * HTTP server starts, so nothing here is in use yet.
 */
static void clean_tmp(struct store *st)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/tmp", st->state_dir);
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "store-", 6) != 0 && strncmp(de->d_name, "body-", 5) != 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
			continue;
		int rc = rm_rf(path);
		if (rc < 0)
			log_warn("removing leftover %s: %s", path, strerror(-rc));
	}
	closedir(d);
}

static void free_records(struct store *st)
{
	for (size_t i = 0; i < st->sandboxes.len; i++)
		sandbox_free(st->sandboxes.items[i]);
	for (size_t i = 0; i < st->volumes.len; i++) {
		struct volume *v = st->volumes.items[i];
		pthread_mutex_destroy(&v->op);
		free(v);
	}
	for (size_t i = 0; i < st->snapshots.len; i++) {
		struct snapshot *sn = st->snapshots.items[i];
		pthread_mutex_destroy(&sn->op);
		free(sn);
	}
	free(st->sandboxes.items);
	free(st->volumes.items);
	free(st->snapshots.items);
}

struct store *store_open(const struct store_config *cfg, int *err)
{
	static const char *const subdirs[] = {"sandboxes", "volumes", "snapshots", "tmp"};
	pthread_condattr_t ca;
	struct store *st;
	char path[PATH_MAX];
	int rc;

	st = calloc(1, sizeof(*st));
	if (!st) {
		*err = -ENOMEM;
		return NULL;
	}
	st->cfg = *cfg;
	st->state_dir = strdup(cfg->state_dir);
	if (!st->state_dir) {
		free(st);
		*err = -ENOMEM;
		return NULL;
	}
	st->cfg.state_dir = st->state_dir;
	copy_str(st->org_id, sizeof(st->org_id), cfg->organization_id ? cfg->organization_id : "");
	st->cfg.organization_id = st->org_id;
	if (st->cfg.clock_scale < 1)
		st->cfg.clock_scale = 1;
	if (st->cfg.transition_delay_ms < 0)
		st->cfg.transition_delay_ms = 0;
	pthread_mutex_init(&st->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cv, &ca);
	pthread_condattr_destroy(&ca);

	for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
		snprintf(path, sizeof(path), "%s/%s", st->state_dir, subdirs[i]);
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			log_error("creating %s: %s", path, strerror(errno));
			goto fail;
		}
	}
	clean_tmp(st);
	rc = store_load(st);
	if (rc < 0)
		goto fail;
	rc = pthread_create(&st->ticker, NULL, store_ticker_main, st);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	st->ticker_running = true;
	return st;

fail:
	free_records(st);
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->lock);
	free(st->state_dir);
	free(st);
	*err = rc;
	return NULL;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	st->closing = true;
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->lock);
	if (st->ticker_running)
		pthread_join(st->ticker, NULL);
	/* Jobs see "closing", skip what is left of their delay and commit. */
	pthread_mutex_lock(&st->lock);
	while (st->jobs > 0)
		pthread_cond_wait(&st->cv, &st->lock);
	pthread_mutex_unlock(&st->lock);
	free_records(st);
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->lock);
	free(st->state_dir);
	free(st);
}
