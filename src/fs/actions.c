/*
 * The write side of the core: control-file commands, mkdir, rmdir, unlink
 * and create. Each validates locally first (so bad input changes nothing in
 * the backend), then calls the backend, then waits until the change is
 * done, so that a shell command returns when what it asked for is true.
 */
#include "core.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "files.h"
#include "log.h"
#include "util.h"

/* ---- failures ----------------------------------------------------------- */

static void change_obj(struct core_changes *ch, const char *id)
{
	if (!ch || !id[0])
		return;
	for (size_t i = 0; i < ch->nobjs; i++)
		if (strcmp(ch->objs[i], id) == 0)
			return;
	if (ch->nobjs < CHANGES_MAX)
		copy_str(ch->objs[ch->nobjs++], OBJ_ID_MAX, id);
}

static void change_entry(struct core_changes *ch, enum node_kind dir_kind, const char *name)
{
	if (!ch || ch->nentries >= CHANGES_MAX)
		return;
	node_make(&ch->entries[ch->nentries].dir, dir_kind, "", "", NULL);
	copy_str(ch->entries[ch->nentries].name, NODE_NAME_MAX, name);
	ch->nentries++;
}

/* Bytes of the UTF-8 sequence at @s (1-4), or 0 when it is not valid UTF-8. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n = c < 0x80		    ? 1
		   : c >= 0xc2 && c <= 0xdf ? 2
		   : c >= 0xe0 && c <= 0xef ? 3
		   : c >= 0xf0 && c <= 0xf4 ? 4
					    : 0;

	if (n >= 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
		       (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f)))
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/*
 * @in as one line of printable UTF-8: messages quote what was written, and
 * the error nodes are read with cat, so a control character (an escape
 * sequence for the reader's terminal) or a byte that is not UTF-8 becomes
 * "\xNN", and a newline a space.
 */
static void printable_copy(char *out, size_t size, const char *in)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	while (*s && o + 5 < size) {
		size_t n = utf8_len(s);

		if (*s == '\n' || *s == '\t') {
			out[o++] = ' ';
			s++;
		} else if (n == 0 || (n == 1 && (*s < 0x20 || *s == 0x7f))) {
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", *s);
			s++;
		} else {
			memcpy(out + o, s, n);
			o += n;
			s += n;
		}
	}
	out[o] = '\0';
}

void core_record_failure(struct qfs *fs, const char *path, const char *obj_id,
			 const struct dt_error *err, struct core_changes *ch)
{
	char msg[sizeof(err->message)], where[400];

	printable_copy(msg, sizeof(msg), err->message[0] ? err->message : strerror(err->err));
	printable_copy(where, sizeof(where), path);
	pthread_mutex_lock(&fs->lock);
	snprintf(fs->root_error, sizeof(fs->root_error), "%s: %s", where, msg);
	pthread_mutex_unlock(&fs->lock);
	if (obj_id && obj_id[0]) {
		cache_set_error(fs->cache, obj_id, msg);
		change_obj(ch, obj_id);
	}
	if (ch)
		ch->root_error = true;
	log_warn("%s: %s", where, msg);
}

void core_clear_failure(struct qfs *fs, const char *obj_id, struct core_changes *ch)
{
	char old[8];

	if (obj_id[0] && cache_get_error(fs->cache, obj_id, old, sizeof(old))) {
		cache_set_error(fs->cache, obj_id, NULL);
		change_obj(ch, obj_id);
	}
}

/* ---- helpers ------------------------------------------------------------ */

/* The text of a write without its trailing newline; EINVAL for NUL bytes. */
static int write_text(const char *data, size_t len, char **out, struct dt_error *err)
{
	if (memchr(data, '\0', len))
		return core_fail(err, EINVAL, "a NUL byte in the value");
	if (len && data[len - 1] == '\n')
		len--;
	if (len && data[len - 1] == '\r')
		len--;
	*out = strndup(data, len);
	if (!*out)
		return core_fail(err, ENOMEM, "out of memory");
	return 0;
}

/* The single word of a write, trimmed. */
static int write_word(const char *data, size_t len, char **out, struct dt_error *err)
{
	char *text, *start, *end;
	int ret = write_text(data, len, &text, err);

	if (ret < 0)
		return ret;
	start = text;
	while (isspace((unsigned char)*start))
		start++;
	end = start + strlen(start);
	while (end > start && isspace((unsigned char)end[-1]))
		*--end = '\0';
	memmove(text, start, strlen(start) + 1);
	*out = text;
	return 0;
}

static bool state_in(const char *state, const char *const *states)
{
	for (; *states; states++)
		if (strcmp(state, *states) == 0)
			return true;
	return false;
}

/* Fills a 400's meaning where a state is the reason: EBUSY, keeping the backend's words. */
static int as_busy(struct dt_error *err, const char *what)
{
	struct buf msg = BUF_INIT;
	int ret;

	buf_printf(&msg, "%s: %s", what, err->message);
	ret = core_fail(err, EBUSY, "%s", buf_str(&msg));
	buf_free(&msg);
	return ret;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ---- sandboxes ---------------------------------------------------------- */

/* The id of a ready volume named or with id @vol. */
static int resolve_volume(struct qfs *fs, const char *vol, char *id, size_t idsize,
			  struct dt_error *err)
{
	struct dt_volume v = {0};
	int ret;

	ret = BK_CALL(fs->bk, err, c, dt_volume_get_by_name(c, vol, &v, err));
	if (ret == -ENOENT)
		ret = BK_CALL(fs->bk, err, c, dt_volume_get(c, vol, &v, err));
	if (ret == -ENOENT || (ret == 0 && v.state && strcmp(v.state, "deleted") == 0))
		ret = core_fail(err, ENOENT, "no volume named %s", vol);
	else if (ret == 0 && (!v.state || strcmp(v.state, "ready") != 0))
		ret = core_fail(err, EBUSY, "volume %s is %s, not ready", vol,
				v.state ? v.state : "in an unknown state");
	if (ret == 0)
		copy_str(id, idsize, v.id);
	dt_volume_clear(&v);
	return ret;
}

/* Creates sandbox @name with @o and waits until it is started. */
static int create_sandbox(struct qfs *fs, const char *name, const struct create_opts *o,
			  struct node_info *child, struct dt_error *err)
{
	struct dt_volume_mount *vols = NULL;
	char (*vol_ids)[OBJ_ID_MAX] = NULL;
	static const char *const started[] = {"started", NULL};
	struct dt_create_params p;
	struct dt_sandbox sb = {0};
	struct cobj *obj;
	char msg[256];
	int ret;

	if (!valid_object_name(name))
		return core_fail(err, EINVAL,
				 "invalid sandbox name '%s' (1-63 of A-Z a-z 0-9 . _ -, "
				 "starting with a letter or digit)", name);
	if (copts_check(o, msg, sizeof(msg)) < 0)
		return core_fail(err, EINVAL, "%s", msg);
	if (o->snapshot) {
		struct dt_snapshot snap = {0};

		ret = BK_CALL(fs->bk, err, c, dt_snapshot_get(c, o->snapshot, &snap, err));
		dt_snapshot_clear(&snap);
		if (ret == -ENOENT)
			return core_fail(err, ENOENT, "no snapshot named %s", o->snapshot);
		if (ret < 0)
			return ret;
	}
	if (o->nvolumes) {
		vols = calloc(o->nvolumes, sizeof(*vols));
		vol_ids = calloc(o->nvolumes, sizeof(*vol_ids));
		if (!vols || !vol_ids) {
			ret = core_fail(err, ENOMEM, "out of memory");
			goto out;
		}
	}
	copts_to_params(o, name, vols, &p);
	for (size_t i = 0; i < o->nvolumes; i++) {
		ret = resolve_volume(fs, o->volumes[i].volume, vol_ids[i], OBJ_ID_MAX, err);
		if (ret < 0)
			goto out;
		vols[i].volume_id = vol_ids[i];
	}

	if (o->target) {
		ret = backend_create_in_target(fs->bk, o->target, &p, &sb, err);
	} else {
		ret = BK_CALL(fs->bk, err, c, dt_sandbox_create(c, &p, &sb, err));
	}
	if (ret < 0)
		goto out;
	if (strcmp(sb.state ? sb.state : "", "started") != 0) {
		char id[OBJ_ID_MAX];

		copy_str(id, sizeof(id), sb.id);
		/* Outputs are cleared, not freed, by the client: free the first answer. */
		dt_sandbox_clear(&sb);
		ret = BK_CALL(fs->bk, err, c,
			      dt_sandbox_wait(c, id, started, fs->op_timeout_ms, &sb, err));
		if (ret < 0) {
			cache_mark_stale(fs->cache, OBJ_SANDBOX, id);
			goto out;
		}
	}
	/* The list item lacks env; the full record comes with the next read. */
	obj = cache_store_sandbox(fs->cache, &sb);
	if (obj) {
		if (child)
			node_make(child, NK_SANDBOX, cobj_id(obj), cobj_name(obj), cobj_name(obj));
		cobj_put(obj);
	}
	ret = 0;
out:
	dt_sandbox_clear(&sb);
	free(vols);
	free(vol_ids);
	return ret;
}

static int create_volume(struct qfs *fs, const char *name, struct node_info *child,
			 struct dt_error *err)
{
	struct dt_volume v = {0};
	struct cobj *obj;
	int ret;

	if (!valid_object_name(name))
		return core_fail(err, EINVAL,
				 "invalid volume name '%s' (1-63 of A-Z a-z 0-9 . _ -, "
				 "starting with a letter or digit)", name);
	ret = BK_CALL(fs->bk, err, c, dt_volume_create(c, name, &v, err));
	if (ret == 0 && strcmp(v.state ? v.state : "", "ready") != 0) {
		char id[OBJ_ID_MAX];

		copy_str(id, sizeof(id), v.id);
		dt_volume_clear(&v);
		ret = BK_CALL(fs->bk, err, c,
			      dt_volume_wait(c, id, "ready", fs->op_timeout_ms, &v, err));
	}
	if (ret == 0) {
		obj = cache_store_volume(fs->cache, &v);
		if (obj && child)
			node_make(child, NK_VOLUME, cobj_id(obj), cobj_name(obj), cobj_name(obj));
		cobj_put(obj);
	}
	dt_volume_clear(&v);
	return ret;
}

/* Snapshots sandbox @sb as @name; returns once the snapshot is active. */
static int snapshot_sandbox(struct qfs *fs, const struct cobj *sb, const char *name,
			    struct core_changes *ch, struct dt_error *err)
{
	static const char *const allowed[] = {"started", "stopped", NULL};
	struct dt_sandbox after = {0};
	struct dt_snapshot snap = {0};
	char id[OBJ_ID_MAX];
	struct cobj *obj;
	int ret;

	if (!valid_object_name(name))
		return core_fail(err, EINVAL,
				 "invalid snapshot name '%s' (1-63 of A-Z a-z 0-9 . _ -, "
				 "starting with a letter or digit)", name);
	if (!state_in(cobj_state(sb), allowed))
		return core_fail(err, EBUSY,
				 "cannot snapshot sandbox %s while it is %s (it must be started "
				 "or stopped)", cobj_name(sb), cobj_state(sb));
	copy_str(id, sizeof(id), cobj_id(sb));
	/* Returns once the sandbox left snapshotting and the snapshot is active. */
	ret = BK_CALL(fs->bk, err, c, dt_sandbox_create_snapshot(c, id, name, &after, err));
	if (ret < 0 && err->http_status == 400 && strstr(err->message, "state"))
		ret = as_busy(err, "cannot snapshot the sandbox");
	if (ret < 0) {
		cache_mark_stale(fs->cache, OBJ_SANDBOX, id);
		goto out;
	}
	if (after.id) {
		obj = cache_store_sandbox(fs->cache, &after);
		cobj_put(obj);
	}
	/* Its record, so that snapshots/NAME is there at once. */
	ret = BK_CALL(fs->bk, err, c,
		      dt_snapshot_wait_active(c, name, fs->op_timeout_ms, &snap, err));
	if (ret < 0)
		goto out;
	obj = cache_store_snapshot(fs->cache, &snap);
	cobj_put(obj);
	change_entry(ch, NK_SNAPSHOTS, name);
	change_obj(ch, id);
out:
	dt_sandbox_clear(&after);
	dt_snapshot_clear(&snap);
	return ret;
}

struct state_word {
	const char *word;
	enum dt_action action;
	const char *const *targets;
};

static const char *const to_started[] = {"started", NULL};
static const char *const to_stopped[] = {"stopped", "destroyed", NULL};
static const char *const to_archived[] = {"archived", NULL};

static const struct state_word state_words[] = {
	{"start", DT_START, to_started},
	{"stop", DT_STOP, to_stopped},
	{"archive", DT_ARCHIVE, to_archived},
	{"recover", DT_RECOVER, to_started},
};

static int write_state(struct qfs *fs, const struct node_info *n, const char *word,
		       struct core_changes *ch, struct dt_error *err)
{
	const struct state_word *sw = NULL;
	struct dt_sandbox sb = {0};
	struct cobj *o = NULL, *stored;
	int ret;

	for (size_t i = 0; i < ARRAY_SIZE(state_words); i++)
		if (strcmp(word, state_words[i].word) == 0)
			sw = &state_words[i];
	if (!sw)
		return core_fail(err, EINVAL,
				 "unknown state command '%s' (write start, stop, archive or recover)",
				 word);
	ret = core_node_obj(fs, n, false, &o, err);
	if (ret < 0)
		return ret;
	/* Already there: nothing to ask (a for loop over every sandbox stays cheap). */
	if (sw->action != DT_RECOVER && state_in(cobj_state(o), sw->targets))
		goto out;
	if (sw->action == DT_RECOVER && strcmp(cobj_state(o), "error") != 0) {
		ret = core_fail(err, EBUSY, "cannot recover sandbox %s: it is %s, not in error",
				cobj_name(o), cobj_state(o));
		goto out;
	}
	/* op_timeout bounds the whole change, a request without answer included. */
	backend_set_deadline(now_mono_ms() + fs->op_timeout_ms);
	ret = BK_CALL(fs->bk, err, c, dt_sandbox_action(c, n->obj_id, sw->action, &sb, err));
	/* The backend refuses a transition with 400 (Daytona) or 409: the state is why. */
	if (ret < 0 && (err->http_status == 400 || err->http_status == 409)) {
		char what[128];

		snprintf(what, sizeof(what), "cannot %s sandbox %s while it is %s", word,
			 cobj_name(o), cobj_state(o));
		ret = as_busy(err, what);
	}
	if (ret < 0) {
		/* The change may have been made though its answer was lost. */
		cache_mark_stale(fs->cache, OBJ_SANDBOX, n->obj_id);
		goto out;
	}
	/* The client waits for the target state itself; this only covers a shortcut of it. */
	if (!state_in(sb.state ? sb.state : "", sw->targets)) {
		dt_sandbox_clear(&sb);
		ret = BK_CALL(fs->bk, err, c,
			      dt_sandbox_wait(c, n->obj_id, sw->targets, fs->op_timeout_ms, &sb,
					      err));
	}
	if (ret == 0) {
		stored = cache_store_sandbox(fs->cache, &sb);
		cobj_put(stored);
	} else {
		cache_mark_stale(fs->cache, OBJ_SANDBOX, n->obj_id);
		if (ret == -EINTR && !backend_past_deadline())
			snprintf(err->message, sizeof(err->message),
				 "interrupted while waiting for %s to be %s (the backend goes on)",
				 cobj_name(o), sw->targets[0]);
	}
	change_obj(ch, n->obj_id);
out:
	/* The deadline ends a request or a wait as Ctrl-C would; it is a timeout. */
	if (ret == -EINTR && backend_past_deadline() && !backend_interrupted())
		ret = core_fail(err, ETIMEDOUT,
				"sandbox %s not %s after %d s (op_timeout; the backend goes on)",
				cobj_name(o), sw->targets[0], fs->op_timeout_ms / 1000);
	backend_set_deadline(0);
	dt_sandbox_clear(&sb);
	cobj_put(o);
	return ret;
}

static int write_interval(struct qfs *fs, const struct node_info *n, const char *word,
			  struct core_changes *ch, struct dt_error *err)
{
	enum dt_interval which = n->kind == NK_SB_AUTOSTOP	? DT_AUTOSTOP
				 : n->kind == NK_SB_AUTOARCHIVE ? DT_AUTOARCHIVE
								: DT_AUTODELETE;
	int64_t min = which == DT_AUTODELETE ? -1 : 0;
	struct dt_sandbox sb = {0};
	struct cobj *stored;
	int64_t minutes;
	int ret;

	if (parse_int64(word, min, INT32_MAX, &minutes) < 0)
		return core_fail(err, EINVAL, "%s takes a whole number of minutes from %lld (got '%s')",
				 n->name, (long long)min, word);
	ret = BK_CALL(fs->bk, err, c,
		      dt_sandbox_set_interval(c, n->obj_id, which, (int)minutes, &sb, err));
	if (ret == 0 && sb.id) {
		stored = cache_store_sandbox(fs->cache, &sb);
		cobj_put(stored);
	} else {
		cache_mark_stale(fs->cache, OBJ_SANDBOX, n->obj_id);
	}
	change_obj(ch, n->obj_id);
	dt_sandbox_clear(&sb);
	return ret;
}

/*
 * Replaces the labels with the current ones plus @key=@value (or without
 * @key when @value is NULL). Labels that are no file names stay as they are.
 */
static int update_labels(struct qfs *fs, const char *id, const char *key, const char *value,
			 struct core_changes *ch, struct dt_error *err)
{
	struct dt_kv *labels = NULL;
	struct cobj *o = NULL;
	size_t n = 0;
	bool found = false;
	int ret;

	/* Read-modify-write: start from what the backend has now. */
	cache_mark_stale(fs->cache, OBJ_SANDBOX, id);
	ret = cache_refresh(fs->cache, OBJ_SANDBOX, id, false, &o, err);
	if (ret < 0)
		return ret;
	labels = calloc(o->sb.nlabels + 1, sizeof(*labels));
	if (!labels) {
		ret = core_fail(err, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < o->sb.nlabels; i++) {
		if (strcmp(o->sb.labels[i].key, key) == 0) {
			found = true;
			if (!value)
				continue;
			labels[n].key = o->sb.labels[i].key;
			labels[n++].value = (char *)value;
			continue;
		}
		labels[n++] = o->sb.labels[i];
	}
	if (!found && !value) {
		ret = core_fail(err, ENOENT, "no label %s", key);
		goto out;
	}
	if (!found) {
		labels[n].key = (char *)key;
		labels[n++].value = (char *)value;
	}
	ret = BK_CALL(fs->bk, err, c, dt_sandbox_set_labels(c, id, labels, n, err));
	cache_mark_stale(fs->cache, OBJ_SANDBOX, id);
	change_obj(ch, id);
out:
	free(labels);
	cobj_put(o);
	return ret;
}

static int write_label(struct qfs *fs, const struct node_info *n, const char *value,
		       struct core_changes *ch, struct dt_error *err)
{
	int ret;

	if (strchr(value, '\n'))
		return core_fail(err, EINVAL, "a label value is one line");
	ret = update_labels(fs, n->obj_id, n->name, value, ch, err);
	if (ret == 0)
		core_label_pending_drop(fs, n->obj_id, n->name);
	return ret;
}

static int write_snapshot_node(struct qfs *fs, const struct node_info *n, const char *name,
			       struct core_changes *ch, struct dt_error *err)
{
	struct cobj *o = NULL;
	int ret;

	/* The state decides whether it can be snapshotted: ask for it now. */
	cache_mark_stale(fs->cache, OBJ_SANDBOX, n->obj_id);
	ret = core_node_obj(fs, n, false, &o, err);
	if (ret == 0)
		ret = snapshot_sandbox(fs, o, name, ch, err);
	cobj_put(o);
	return ret;
}

/* ---- root control files ------------------------------------------------- */

static int write_defaults(struct qfs *fs, const char *data, size_t len, struct dt_error *err)
{
	struct create_opts next;
	char **words = NULL;
	size_t nwords = 0;
	char msg[300];
	int ret;

	ret = words_split(data, len, &words, &nwords, msg, sizeof(msg));
	if (ret < 0)
		return core_fail(err, -ret, "%s", msg);
	if (nwords == 0) {
		words_free(words);
		return core_fail(err, EINVAL, "write key=value options (see control)");
	}
	pthread_mutex_lock(&fs->lock);
	ret = copts_copy(&next, &fs->defaults);
	for (size_t i = 0; ret == 0 && i < nwords; i++)
		ret = copts_apply(&next, words[i], true, msg, sizeof(msg));
	if (ret == 0)
		ret = copts_check(&next, msg, sizeof(msg));
	if (ret == 0) {
		copts_clear(&fs->defaults);
		fs->defaults = next;
	} else {
		copts_clear(&next);
	}
	pthread_mutex_unlock(&fs->lock);
	words_free(words);
	if (ret < 0)
		return core_fail(err, -ret, "%s", ret == -ENOMEM ? "out of memory" : msg);
	return 0;
}

static int control_create_sandbox(struct qfs *fs, char **words, size_t nwords,
				  struct core_changes *ch, struct dt_error *err)
{
	struct create_opts o;
	char msg[300];
	int ret = 0;

	copts_init(&o);
	for (size_t i = 3; ret == 0 && i < nwords; i++)
		ret = copts_apply(&o, words[i], false, msg, sizeof(msg));
	if (ret < 0) {
		copts_clear(&o);
		return core_fail(err, -ret, "%s", msg);
	}
	/* As the SDK does when no language is given. */
	if (!o.language)
		copts_apply(&o, "language=python", false, msg, sizeof(msg));
	ret = create_sandbox(fs, words[2], &o, NULL, err);
	copts_clear(&o);
	if (ret == 0)
		change_entry(ch, NK_SANDBOXES, words[2]);
	return ret;
}

static int write_control(struct qfs *fs, const char *data, size_t len, struct core_changes *ch,
			 struct dt_error *err)
{
	char **w = NULL;
	size_t n = 0;
	char msg[300];
	int ret;

	ret = words_split(data, len, &w, &n, msg, sizeof(msg));
	if (ret < 0)
		return core_fail(err, -ret, "%s", msg);

	if (n == 1 && strcmp(w[0], "flush") == 0) {
		cache_flush(fs->cache);
		if (fs->files)
			files_drop_caches(fs->files);
		ret = 0;
	} else if (n >= 3 && strcmp(w[0], "create") == 0 && strcmp(w[1], "sandbox") == 0) {
		ret = control_create_sandbox(fs, w, n, ch, err);
	} else if (n == 3 && strcmp(w[0], "create") == 0 && strcmp(w[1], "volume") == 0) {
		ret = create_volume(fs, w[2], NULL, err);
		if (ret == 0)
			change_entry(ch, NK_VOLUMES, w[2]);
	} else if (n == 3 && strcmp(w[0], "snapshot") == 0) {
		struct cobj *o = NULL;

		ret = cache_lookup(fs->cache, OBJ_SANDBOX, w[1], false, true, &o, err);
		if (ret == -ENOENT)
			ret = core_fail(err, ENOENT, "no sandbox named %s", w[1]);
		if (ret == 0) {
			/* Its state decides whether it can be snapshotted: ask for it now. */
			char id[OBJ_ID_MAX];

			copy_str(id, sizeof(id), cobj_id(o));
			cobj_put(o);
			o = NULL;
			cache_mark_stale(fs->cache, OBJ_SANDBOX, id);
			ret = cache_refresh(fs->cache, OBJ_SANDBOX, id, false, &o, err);
		}
		if (ret == 0)
			ret = snapshot_sandbox(fs, o, w[2], ch, err);
		cobj_put(o);
	} else if (n == 0) {
		ret = core_fail(err, EINVAL, "empty command (read control for the commands)");
	} else if (strcmp(w[0], "create") == 0) {
		ret = core_fail(err, EINVAL,
				"usage: create sandbox NAME [option...] | create volume NAME");
	} else if (strcmp(w[0], "snapshot") == 0) {
		ret = core_fail(err, EINVAL, "usage: snapshot SANDBOX NAME");
	} else {
		ret = core_fail(err, EINVAL,
				"unknown command '%s' (create sandbox, create volume, snapshot, "
				"flush)", w[0]);
	}
	words_free(w);
	return ret;
}

/* ---- entry points ------------------------------------------------------- */

int core_write(struct qfs *fs, const struct node_info *n, const char *data, size_t len,
	       struct core_changes *ch, struct dt_error *err)
{
	char *text = NULL;
	int ret;

	switch (n->kind) {
	case NK_DEFAULTS:
		return write_defaults(fs, data, len, err);
	case NK_CONTROL:
		return write_control(fs, data, len, ch, err);
	case NK_SB_STATE:
	case NK_SB_AUTOSTOP:
	case NK_SB_AUTOARCHIVE:
	case NK_SB_AUTODELETE:
	case NK_SB_SNAPSHOT:
		ret = write_word(data, len, &text, err);
		if (ret < 0)
			return ret;
		if (n->kind == NK_SB_STATE)
			ret = write_state(fs, n, text, ch, err);
		else if (n->kind == NK_SB_SNAPSHOT)
			ret = write_snapshot_node(fs, n, text, ch, err);
		else
			ret = write_interval(fs, n, text, ch, err);
		break;
	case NK_SB_LABEL:
		ret = write_text(data, len, &text, err);
		if (ret == 0)
			ret = write_label(fs, n, text, ch, err);
		break;
	default:
		return core_fail(err, EACCES, "read-only");
	}
	free(text);
	if (ret == 0)
		core_clear_failure(fs, n->obj_id, ch);
	return ret;
}

int core_mkdir(struct qfs *fs, const struct node_info *dir, const char *name,
	       struct node_info *child, struct core_changes *ch, struct dt_error *err)
{
	struct create_opts o;
	int ret;

	(void)ch;
	switch (dir->kind) {
	case NK_SANDBOXES:
		pthread_mutex_lock(&fs->lock);
		ret = copts_copy(&o, &fs->defaults);
		pthread_mutex_unlock(&fs->lock);
		if (ret < 0)
			return core_fail(err, ENOMEM, "out of memory");
		ret = create_sandbox(fs, name, &o, child, err);
		copts_clear(&o);
		return ret;
	case NK_VOLUMES:
		return create_volume(fs, name, child, err);
	case NK_SNAPSHOTS:
		return core_fail(err, EPERM,
				 "a snapshot is made from a sandbox: echo %s > "
				 "sandboxes/SANDBOX/snapshot",
				 name);
	default:
		return core_fail(err, EPERM, "no directories can be made here");
	}
}

/* Polls until @id is gone (404) or in state @gone_state, at most op_timeout. */
static int wait_gone(struct qfs *fs, enum obj_type t, const char *id, const char *gone_state,
		     struct dt_error *err)
{
	int64_t deadline = now_mono_ms() + fs->op_timeout_ms;
	int delay = 50;

	for (;;) {
		struct dt_volume v = {0};
		struct dt_snapshot s = {0};
		const char *state;
		int ret;

		if (t == OBJ_VOLUME)
			ret = BK_CALL(fs->bk, err, c, dt_volume_get(c, id, &v, err));
		else
			ret = BK_CALL(fs->bk, err, c, dt_snapshot_get(c, id, &s, err));
		state = t == OBJ_VOLUME ? v.state : s.state;
		if (ret == 0 && gone_state && state && strcmp(state, gone_state) == 0)
			ret = -ENOENT;
		dt_volume_clear(&v);
		dt_snapshot_clear(&s);
		if (ret == -ENOENT)
			return 0;
		if (ret < 0)
			return ret;
		if (core_cancelled())
			return core_fail(err, EINTR, "interrupted while waiting for the deletion");
		if (now_mono_ms() >= deadline)
			return core_fail(err, ETIMEDOUT, "still not deleted after %d s",
					 fs->op_timeout_ms / 1000);
		sleep_ms(delay);
		if (delay < 500)
			delay *= 2;
	}
}

int core_rmdir(struct qfs *fs, const struct node_info *dir, const char *name,
	       struct core_changes *ch, struct dt_error *err)
{
	enum obj_type t;
	struct cobj *o = NULL;
	char id[OBJ_ID_MAX];
	int ret;

	(void)ch;
	switch (dir->kind) {
	case NK_SANDBOXES:
		t = OBJ_SANDBOX;
		break;
	case NK_VOLUMES:
		t = OBJ_VOLUME;
		break;
	case NK_SNAPSHOTS:
		t = OBJ_SNAPSHOT;
		break;
	default:
		return core_fail(err, EPERM, "%s cannot be removed", name);
	}
	ret = cache_lookup(fs->cache, t, name, false, true, &o, err);
	if (ret < 0)
		return ret;
	if (strcmp(cobj_name(o), name) != 0) {
		ret = core_fail(err, ENOTDIR, "%s is the id of %s: rmdir its name", name,
				cobj_name(o));
		cobj_put(o);
		return ret;
	}
	copy_str(id, sizeof(id), cobj_id(o));
	cobj_put(o);

	if (t == OBJ_SANDBOX) {
		/* Returns once the sandbox is destroyed (or gone). */
		ret = BK_CALL(fs->bk, err, c, dt_sandbox_delete(c, id, err));
		if (ret < 0 && err->http_status == 409)
			ret = as_busy(err, "cannot delete the sandbox");
	} else if (t == OBJ_VOLUME) {
		ret = BK_CALL(fs->bk, err, c, dt_volume_delete(c, id, err));
		if (ret < 0 && (err->http_status == 400 || err->http_status == 409))
			ret = as_busy(err, "cannot delete the volume");
		if (ret == 0)
			ret = wait_gone(fs, t, id, "deleted", err);
	} else {
		ret = BK_CALL(fs->bk, err, c, dt_snapshot_delete(c, id, err));
		if (ret < 0 && (err->http_status == 400 || err->http_status == 409))
			ret = as_busy(err, "cannot delete the snapshot");
		if (ret == 0)
			ret = wait_gone(fs, t, id, NULL, err);
	}
	if (ret == 0)
		cache_drop(fs->cache, t, id);
	else
		cache_mark_stale(fs->cache, t, id);
	return ret;
}

int core_unlink(struct qfs *fs, const struct node_info *dir, const char *name,
		struct core_changes *ch, struct dt_error *err)
{
	if (dir->kind != NK_SB_LABELS)
		return core_fail(err, EPERM, "%s cannot be removed (only labels can)", name);
	core_label_pending_drop(fs, dir->obj_id, name);
	return update_labels(fs, dir->obj_id, name, NULL, ch, err);
}

/* ---- labels created but not yet written --------------------------------- */

bool core_label_pending(struct qfs *fs, const char *id, const char *key)
{
	bool found = false;

	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->npending && !found; i++)
		found = strcmp(fs->pending[i].id, id) == 0 && strcmp(fs->pending[i].key, key) == 0;
	pthread_mutex_unlock(&fs->lock);
	return found;
}

void core_label_pending_drop(struct qfs *fs, const char *id, const char *key)
{
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->npending; i++)
		if (strcmp(fs->pending[i].id, id) == 0 && strcmp(fs->pending[i].key, key) == 0) {
			fs->pending[i] = fs->pending[--fs->npending];
			break;
		}
	pthread_mutex_unlock(&fs->lock);
}

int core_create(struct qfs *fs, const struct node_info *dir, const char *name,
		struct node_info *child, struct core_changes *ch, struct dt_error *err)
{
	struct pending_label *grown;
	struct cobj *o = NULL;
	int ret;

	(void)ch;
	if (dir->kind == NK_SB_ENVDIR)
		return core_fail(err, EACCES,
				 "environment variables are set at creation (create sandbox ... "
				 "env=%s=VALUE)", name);
	if (dir->kind != NK_SB_LABELS)
		return core_fail(err, EPERM, "no files can be made here");
	ret = core_node_obj(fs, dir, false, &o, err);
	if (ret < 0)
		return ret;
	if (!node_make(child, NK_SB_LABEL, dir->obj_id, cobj_name(o), name)) {
		/* Never a truncated key: the kernel lets FUSE names reach 1024 bytes. */
		cobj_put(o);
		return core_fail(err, ENAMETOOLONG, "a label's name has at most 255 bytes");
	}
	cobj_put(o);
	/* The label exists once written (or closed unwritten: an empty value). */
	pthread_mutex_lock(&fs->lock);
	grown = realloc(fs->pending, (fs->npending + 1) * sizeof(*grown));
	if (grown) {
		fs->pending = grown;
		copy_str(grown[fs->npending].id, OBJ_ID_MAX, dir->obj_id);
		copy_str(grown[fs->npending].key, NODE_NAME_MAX, name);
		fs->npending++;
	}
	pthread_mutex_unlock(&fs->lock);
	return grown ? 0 : core_fail(err, ENOMEM, "out of memory");
}

int core_finish_create(struct qfs *fs, const struct node_info *n, struct core_changes *ch,
		       struct dt_error *err)
{
	int ret;

	if (n->kind != NK_SB_LABEL || !core_label_pending(fs, n->obj_id, n->name))
		return 0;
	ret = update_labels(fs, n->obj_id, n->name, "", ch, err);
	core_label_pending_drop(fs, n->obj_id, n->name);
	return ret;
}
