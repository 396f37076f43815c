/*
 * Loading the state directory at start, and crash recovery: every object
 * whose meta.json names a transitional state was interrupted by a crash (a
 * clean close lets jobs commit first). Each one is resolved here, from what
 * is complete on disk, into a final state or a retryable one. The rules are
 * documented in doc/quaverd.md "Crash recovery"; keep the two in step.
 */
#define QUAVERD_STORE_INTERNAL
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define INTERRUPTED "interrupted by a quaverd restart"

static bool looks_like_id(const char *name)
{
	if (strlen(name) != STORE_ID_LEN)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || *p == '-'))
			return false;
	return true;
}

/* Temp files of write_file_atomic that a crash left behind. */
static void remove_meta_temps(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "meta.json.tmp.", 14) != 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path))
			unlink(path);
	}
	closedir(d);
}

/*
 * Reads DIR/meta.json. 1 when loaded, 0 when the directory has no meta.json
 * (a create killed before its first write: the directory holds nothing yet
 * and is removed), negative when unreadable (left alone for a human).
 */
static int read_meta(struct store *st, const char *dir, struct buf *json)
{
	char path[PATH_MAX];
	int rc;

	remove_meta_temps(dir);
	if (snprintf(path, sizeof(path), "%s/meta.json", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	rc = read_file(path, json, 16 * 1024 * 1024);
	if (rc == -ENOENT) {
		log_info("removing %s: created without a record before a crash", dir);
		tree_remove(st, dir);
		return 0;
	}
	if (rc < 0) {
		log_error("skipping %s: %s", path, strerror(-rc));
		return rc;
	}
	return 1;
}

static void set_error(struct store *st, struct sandbox *sb, const char *why)
{
	sb_set_state(st, sb, SB_ERROR, sb->desired == SB_DESTROYED ? SB_STARTED : sb->desired);
	copy_str(sb->info.error_reason, sizeof(sb->info.error_reason), why);
	sb->info.recoverable = true;
}

/* Returns true when @sb is kept (false: it was being deleted and is now gone). */
static bool resolve_sandbox(struct store *st, struct sandbox *sb, bool *changed)
{
	char dir[PATH_MAX], root[PATH_MAX], root_new[PATH_MAX], tar[PATH_MAX], part[PATH_MAX];
	enum sb_state before = sb->state;
	bool root_ok, tar_ok;

	sb_path(st, sb->info.id, NULL, dir, sizeof(dir));
	sb_path(st, sb->info.id, "root", root, sizeof(root));
	sb_path(st, sb->info.id, "root.new", root_new, sizeof(root_new));
	sb_path(st, sb->info.id, "archive.tar", tar, sizeof(tar));
	sb_path(st, sb->info.id, "archive.tar.part", part, sizeof(part));

	if (sb->state == SB_DESTROYING || sb->state == SB_DESTROYED ||
	    sb->desired == SB_DESTROYED) {
		log_info("sandbox %s (%s): finishing its deletion", sb->info.id, sb->info.name);
		tree_remove(st, dir);
		return false;
	}
	/* Half-built work products: never complete, since completion is a rename. */
	tree_remove(st, root_new);
	unlink(part);
	root_ok = path_exists(root);
	tar_ok = path_exists(tar);

	if (sb->state == SB_SNAPSHOTTING) {
		/* The copy was read-only for the sandbox; it returns to where it was. */
		enum sb_state prev = sb->prev == SB_STARTED ? SB_STARTED : SB_STOPPED;
		sb_set_state(st, sb, prev, prev);
	}
	switch (sb->state) {
	case SB_STOPPING: /* cloud-like mode: the processes are gone with quaverd anyway */
		if (root_ok)
			sb_set_state(st, sb, SB_STOPPED, SB_STOPPED);
		else
			set_error(st, sb, "its filesystem is missing");
		break;
	case SB_STARTING:
	case SB_CREATING:
		if (root_ok)
			sb_set_state(st, sb, SB_STARTED, SB_STARTED);
		else
			set_error(st, sb, INTERRUPTED);
		break;
	case SB_ARCHIVING:
		if (tar_ok) {
			sb_set_state(st, sb, SB_ARCHIVED, SB_ARCHIVED);
			tree_remove(st, root);
		} else if (root_ok) {
			sb_set_state(st, sb, SB_STOPPED, SB_STOPPED);
		} else {
			set_error(st, sb, "its filesystem is missing");
		}
		break;
	case SB_RESTORING:
		if (root_ok) {
			sb_set_state(st, sb, SB_STARTED, SB_STARTED);
			unlink(tar);
		} else if (tar_ok) {
			sb_set_state(st, sb, SB_ARCHIVED, SB_ARCHIVED);
		} else {
			set_error(st, sb, "its filesystem is missing");
		}
		break;
	case SB_ARCHIVED:
		if (tar_ok)
			tree_remove(st, root); /* killed between the record and the cleanup */
		else if (root_ok)
			sb_set_state(st, sb, SB_STOPPED, SB_STOPPED);
		else
			set_error(st, sb, "its archive is missing");
		break;
	case SB_STARTED:
	case SB_STOPPED:
		if (root_ok) {
			if (tar_ok)
				unlink(
				    tar); /* a restore killed between the record and the cleanup */
		} else if (tar_ok) {
			sb_set_state(st, sb, SB_ARCHIVED, SB_ARCHIVED);
		} else {
			set_error(st, sb, "its filesystem is missing");
		}
		break;
	default:
		break;
	}
	*changed = sb->state != before;
	if (*changed)
		log_info("sandbox %s (%s): was %s when quaverd stopped, now %s", sb->info.id,
			 sb->info.name, sb_state_name(before), sb_state_name(sb->state));
	return true;
}

static int load_sandbox(struct store *st, const char *id)
{
	struct buf json = BUF_INIT;
	struct sandbox *sb = NULL;
	char dir[PATH_MAX];
	bool changed = false;
	int rc;

	sb_path(st, id, NULL, dir, sizeof(dir));
	rc = read_meta(st, dir, &json);
	if (rc <= 0)
		goto out;
	sb = sandbox_alloc();
	if (!sb) {
		rc = -ENOMEM;
		goto out;
	}
	if (sb_from_meta(buf_str(&json), sb) < 0 || strcmp(sb->info.id, id) != 0) {
		log_error("skipping sandbox %s: its meta.json is not a sandbox record", id);
		rc = 0;
		goto out;
	}
	if (!resolve_sandbox(st, sb, &changed)) {
		rc = 0;
		goto out;
	}
	/* quaverd being down was no one's idleness: auto-stop counts from now. */
	sb->info.last_activity_ms = now_wall_ms();
	if (changed)
		sb_save(st, sb);
	rc = ptr_vec_push(&st->sandboxes, sb);
	if (rc == 0)
		sb = NULL;
out:
	if (sb) {
		store_sandbox_info_free(&sb->info);
		pthread_mutex_destroy(&sb->op);
		free(sb);
	}
	buf_free(&json);
	return rc;
}

static int load_volume(struct store *st, const char *id)
{
	struct buf json = BUF_INIT;
	struct volume *v = NULL;
	char dir[PATH_MAX], data[PATH_MAX];
	enum vol_state before;
	int rc;

	vol_path(st, id, NULL, dir, sizeof(dir));
	vol_path(st, id, "data", data, sizeof(data));
	rc = read_meta(st, dir, &json);
	if (rc <= 0)
		goto out;
	v = volume_alloc();
	if (!v) {
		rc = -ENOMEM;
		goto out;
	}
	if (vol_from_meta(buf_str(&json), v) < 0 || strcmp(v->info.id, id) != 0) {
		log_error("skipping volume %s: its meta.json is not a volume record", id);
		rc = 0;
		goto out;
	}
	before = v->state;
	switch (v->state) {
	case VOL_PENDING_DELETE:
	case VOL_DELETING:
		log_info("volume %s (%s): finishing its deletion", id, v->info.name);
		tree_remove(st, dir);
		rc = 0;
		goto out;
	case VOL_PENDING_CREATE:
	case VOL_READY:
		if (mkdir(data, 0755) < 0 && errno != EEXIST) {
			rc = -errno;
			log_error("volume %s: creating %s: %s", id, data, strerror(errno));
			goto out;
		}
		vol_set_state(st, v, VOL_READY);
		break;
	default:
		break;
	}
	if (v->state != before) {
		log_info("volume %s (%s): was %s when quaverd stopped, now %s", id, v->info.name,
			 vol_state_name(before), vol_state_name(v->state));
		vol_save(st, v);
	}
	rc = ptr_vec_push(&st->volumes, v);
	if (rc == 0)
		v = NULL;
out:
	if (v) {
		pthread_mutex_destroy(&v->op);
		free(v);
	}
	buf_free(&json);
	return rc;
}

static int load_snapshot(struct store *st, const char *id)
{
	struct buf json = BUF_INIT;
	struct snapshot *sn = NULL;
	char dir[PATH_MAX], image[PATH_MAX], part[PATH_MAX];
	enum snap_state before;
	struct stat sb;
	int rc;

	snap_path(st, id, NULL, dir, sizeof(dir));
	snap_path(st, id, "image.tar", image, sizeof(image));
	snap_path(st, id, "image.tar.part", part, sizeof(part));
	rc = read_meta(st, dir, &json);
	if (rc <= 0)
		goto out;
	sn = snapshot_alloc();
	if (!sn) {
		rc = -ENOMEM;
		goto out;
	}
	if (snap_from_meta(buf_str(&json), sn) < 0 || strcmp(sn->info.id, id) != 0) {
		log_error("skipping snapshot %s: its meta.json is not a snapshot record", id);
		rc = 0;
		goto out;
	}
	before = sn->state;
	unlink(part);
	switch (sn->state) {
	case SNAP_REMOVING:
		log_info("snapshot %s (%s): finishing its deletion", id, sn->info.name);
		tree_remove(st, dir);
		rc = 0;
		goto out;
	case SNAP_PENDING:
	case SNAP_ACTIVE:
		if (stat(image, &sb) == 0) {
			sn->info.size_bytes = (int64_t)sb.st_size;
			snap_set_state(st, sn, SNAP_ACTIVE);
		} else {
			snap_set_state(st, sn, SNAP_ERROR);
			copy_str(sn->info.error_reason, sizeof(sn->info.error_reason),
				 before == SNAP_PENDING ? INTERRUPTED : "its image is missing");
		}
		break;
	default:
		break;
	}
	if (sn->state != before) {
		log_info("snapshot %s (%s): was %s when quaverd stopped, now %s", id, sn->info.name,
			 snap_state_name(before), snap_state_name(sn->state));
		snap_save(st, sn);
	}
	rc = ptr_vec_push(&st->snapshots, sn);
	if (rc == 0)
		sn = NULL;
out:
	if (sn) {
		pthread_mutex_destroy(&sn->op);
		free(sn);
	}
	buf_free(&json);
	return rc;
}

static int load_kind(struct store *st, const char *kind, int (*load)(struct store *, const char *))
{
	char dir[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/%s", st->state_dir, kind);
	d = opendir(dir);
	if (!d) {
		log_error("opening %s: %s", dir, strerror(errno));
		return -errno;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (!looks_like_id(de->d_name)) {
			log_warn("ignoring %s/%s: not an object of quaverd", dir, de->d_name);
			continue;
		}
		rc = load(st, de->d_name);
		if (rc == -ENOMEM)
			break;
		rc = 0;
	}
	closedir(d);
	return rc;
}

int store_load(struct store *st)
{
	int rc;

	/* Volumes and snapshots first: sandboxes refer to them. */
	rc = load_kind(st, "volumes", load_volume);
	if (rc == 0)
		rc = load_kind(st, "snapshots", load_snapshot);
	if (rc == 0)
		rc = load_kind(st, "sandboxes", load_sandbox);
	if (rc == 0)
		log_info("store: %zu sandboxes, %zu volumes, %zu snapshots", st->sandboxes.len,
			 st->volumes.len, st->snapshots.len);
	return rc;
}
