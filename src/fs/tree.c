/*
 * The read side of the core: which nodes exist, their attributes and their
 * content, rendered from the cached DTOs. Sizes are true: getattr renders
 * the content it describes.
 */
#include "core.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void core_set_cancel(bool (*fn)(void *arg), void *arg)
{
	backend_set_cancel(fn, arg);
}

bool core_cancelled(void)
{
	return backend_cancelled();
}

int core_fail(struct dt_error *err, int errnum, const char *fmt, ...)
{
	va_list ap;

	err->err = errnum;
	err->http_status = 0;
	err->transport = false;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -errnum;
}

int qfs_init(struct qfs *fs, struct backend *bk, int op_timeout_ms)
{
	char msg[128];

	memset(fs, 0, sizeof(*fs));
	fs->bk = bk;
	fs->op_timeout_ms = op_timeout_ms;
	fs->uid = getuid();
	fs->gid = getgid();
	fs->mount_wall_ms = now_wall_ms();
	pthread_mutex_init(&fs->lock, NULL);
	copts_init(&fs->defaults);
	/* As the SDK: a sandbox knows its language, so code runs work in it. */
	copts_apply(&fs->defaults, "language=python", false, msg, sizeof(msg));
	fs->cache = cache_new(bk);
	fs->itab = itable_new();
	if (!fs->cache || !fs->itab) {
		qfs_destroy(fs);
		return -ENOMEM;
	}
	return 0;
}

void qfs_destroy(struct qfs *fs)
{
	cache_free(fs->cache);
	itable_free(fs->itab);
	copts_clear(&fs->defaults);
	free(fs->pending);
	pthread_mutex_destroy(&fs->lock);
	fs->cache = NULL;
	fs->itab = NULL;
}

/* ---- objects ------------------------------------------------------------ */

int core_node_obj(struct qfs *fs, const struct node_info *n, bool full, struct cobj **out,
		  struct dt_error *err)
{
	enum obj_type t = kind_info(n->kind)->obj;

	if (t == OBJ_NONE || !n->obj_id[0])
		return core_fail(err, ENOENT, "no object");
	return cache_refresh(fs->cache, t, n->obj_id, full, out, err);
}

/* Nodes whose content needs the full DTO, not a list item. */
static bool needs_full(enum node_kind kind)
{
	return kind == NK_SB_INFO || kind == NK_SB_ENVDIR || kind == NK_SB_ENV;
}

static const char *kv_find(const struct dt_kv *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (kv[i].key && strcmp(kv[i].key, key) == 0)
			return kv[i].value ? kv[i].value : "";
	return NULL;
}

/* ---- content ------------------------------------------------------------ */

static const char control_grammar[] =
	"create sandbox NAME [language=python|typescript|javascript] [snapshot=S] [cpu=N] "
	"[memory=N] [disk=N] [gpu=N] [autostop=M] [autoarchive=M] [autodelete=M] "
	"[public=true|false] [user=U] [target=T] [volume=VOL:/mount/path[:subpath]]... "
	"[env=K=V]... [label=K=V]...\n"
	"create volume NAME\n"
	"snapshot SANDBOX NAME\n"
	"flush\n";

static int render_status(struct qfs *fs, struct buf *out)
{
	static const struct {
		const char *key;
		enum obj_type type;
	} colls[] = {{"sandboxes", OBJ_SANDBOX}, {"volumes", OBJ_VOLUME}, {"snapshots", OBJ_SNAPSHOT}};
	char url[1024];
	size_t counts[3];
	bool known[3];
	bool down = false;
	int ret;

	for (size_t i = 0; i < ARRAY_SIZE(colls); i++) {
		struct cobj **items = NULL;
		struct dt_error err;
		size_t n = 0;

		/* One failed walk tells enough: do not wait for the others. */
		if (!down && cache_list(fs->cache, colls[i].type, &items, &n, &err) == 0) {
			cobj_array_free(items, n);
		} else if (!down && dt_error_is_transport(&err)) {
			down = true;
		}
		known[i] = cache_count(fs->cache, colls[i].type, &counts[i]);
	}
	backend_url(fs->bk, url, sizeof(url));
	ret = buf_printf(out, "backend %s\nkind %s\nversion %s\nreachable %s\n", url,
			 backend_is_local(fs->bk) ? "local" : "remote", QUAVER_VERSION,
			 backend_reachable(fs->bk) ? "yes" : "no");
	for (size_t i = 0; ret == 0 && i < ARRAY_SIZE(colls); i++) {
		if (known[i])
			ret = buf_printf(out, "%s %zu\n", colls[i].key, counts[i]);
		else
			ret = buf_printf(out, "%s -\n", colls[i].key);
	}
	return ret;
}

static int render_sb_snapshots(struct qfs *fs, const struct cobj *sb, struct buf *out,
			       struct dt_error *err)
{
	struct cobj **items = NULL;
	size_t n = 0;
	int ret, lines = 0;

	ret = cache_list(fs->cache, OBJ_SNAPSHOT, &items, &n, err);
	if (ret < 0)
		return ret;
	for (size_t i = 0; ret == 0 && i < n; i++) {
		const char *src = items[i]->snap.source_sandbox_id;

		if (src && strcmp(src, cobj_id(sb)) == 0) {
			ret = buf_printf(out, "%s\n", cobj_name(items[i]));
			lines++;
		}
	}
	if (ret == 0 && lines == 0)
		ret = buf_append_str(out, "\n");
	cobj_array_free(items, n);
	return ret;
}

static int render_text_line(struct buf *out, const char *text)
{
	size_t len = strlen(text);

	if (buf_append(out, text, len) < 0)
		return -ENOMEM;
	return len && text[len - 1] == '\n' ? 0 : buf_append_str(out, "\n");
}

/* Content of a node of an object, from @o. */
static int render_obj_node(struct qfs *fs, const struct node_info *n, const struct cobj *o,
			   struct buf *out, struct dt_error *err)
{
	char note[600];
	const char *v;

	switch (n->kind) {
	case NK_SB_STATE:
	case NK_VOL_STATE:
	case NK_SNAP_STATE:
		return buf_printf(out, "%s\n", cobj_state(o));
	case NK_SB_ID:
	case NK_VOL_ID:
	case NK_SNAP_ID:
		return buf_printf(out, "%s\n", cobj_id(o));
	case NK_SB_INFO:
	case NK_VOL_INFO:
	case NK_SNAP_INFO:
		return render_text_line(out, cobj_json(o));
	case NK_SB_ERROR:
		if (o->sb.error_reason && o->sb.error_reason[0])
			return render_text_line(out, o->sb.error_reason);
		if (cache_get_error(fs->cache, n->obj_id, note, sizeof(note)))
			return render_text_line(out, note);
		return buf_append_str(out, "\n");
	case NK_SB_LABEL:
		v = kv_find(o->sb.labels, o->sb.nlabels, n->name);
		if (!v && core_label_pending(fs, n->obj_id, n->name))
			v = "";
		if (!v)
			return core_fail(err, ENOENT, "no label %s", n->name);
		return buf_printf(out, "%s\n", v);
	case NK_SB_ENV:
		v = kv_find(o->sb.env, o->sb.nenv, n->name);
		if (!v)
			return core_fail(err, ENOENT, "no variable %s", n->name);
		return buf_printf(out, "%s\n", v);
	case NK_SB_AUTOSTOP:
		return buf_printf(out, "%d\n", o->sb.auto_stop_interval);
	case NK_SB_AUTOARCHIVE:
		return buf_printf(out, "%d\n", o->sb.auto_archive_interval);
	case NK_SB_AUTODELETE:
		return buf_printf(out, "%d\n", o->sb.auto_delete_interval);
	case NK_SB_RESOURCES:
		return buf_printf(out, "cpu %g\nmemory %g\ndisk %g\ngpu %g\n", o->sb.cpu,
				  o->sb.memory, o->sb.disk, o->sb.gpu);
	case NK_SB_SNAPSHOT:
		return render_sb_snapshots(fs, o, out, err);
	case NK_SB_PORT: {
		char *url = NULL, *token = NULL;
		int port = atoi(n->name);
		int ret = BK_CALL(fs->bk, err, c,
				  dt_sandbox_preview_url(c, cobj_id(o), port, &url, &token, err));

		if (ret == 0)
			ret = buf_printf(out, "%s\n", url ? url : "");
		free(url);
		if (token) {
			explicit_bzero(token, strlen(token));
			free(token);
		}
		return ret;
	}
	default:
		return core_fail(err, EISDIR, "not a file");
	}
}

int core_read(struct qfs *fs, const struct node_info *n, struct buf *out, struct dt_error *err)
{
	struct cobj *o = NULL;
	int ret;

	switch (n->kind) {
	case NK_STATUS:
		ret = render_status(fs, out);
		break;
	case NK_DEFAULTS:
		pthread_mutex_lock(&fs->lock);
		ret = copts_render(&fs->defaults, out);
		pthread_mutex_unlock(&fs->lock);
		if (ret == 0 && out->len == 0)
			ret = buf_append_str(out, "\n");
		break;
	case NK_CONTROL:
		ret = buf_append_str(out, control_grammar);
		break;
	case NK_ROOT_ERROR:
		pthread_mutex_lock(&fs->lock);
		ret = buf_printf(out, "%s\n", fs->root_error);
		pthread_mutex_unlock(&fs->lock);
		break;
	default:
		if (kind_is_dir(n->kind) || n->kind == NK_SB_IDLINK)
			return core_fail(err, EISDIR, "not a file");
		ret = core_node_obj(fs, n, needs_full(n->kind), &o, err);
		if (ret == 0)
			ret = render_obj_node(fs, n, o, out, err);
		cobj_put(o);
		return ret;
	}
	return ret == -ENOMEM ? core_fail(err, ENOMEM, "out of memory") : ret;
}

/* ---- attributes --------------------------------------------------------- */

static void fill_times(struct stat *st, int64_t wall_ms)
{
	st->st_mtim.tv_sec = wall_ms / 1000;
	st->st_mtim.tv_nsec = (wall_ms % 1000) * 1000000L;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

int core_getattr(struct qfs *fs, const struct node_info *n, struct stat *st, int64_t *data_ms,
		 struct dt_error *err)
{
	const struct kind_info *ki = kind_info(n->kind);
	struct cobj *o = NULL;
	int64_t wall = fs->mount_wall_ms;
	int ret = 0;

	if (data_ms)
		*data_ms = now_mono_ms();
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = ki->mode;
	st->st_nlink = kind_is_dir(n->kind) ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;

	if (ki->obj != OBJ_NONE) {
		int64_t updated;

		ret = core_node_obj(fs, n, needs_full(n->kind), &o, err);
		if (ret < 0)
			return ret;
		if (data_ms)
			*data_ms = o->fetched_ms;
		if (parse_iso8601_ms(cobj_updated_at(o), &updated) == 0)
			wall = updated;
	}
	fill_times(st, wall);

	if (n->kind == NK_SB_IDLINK) {
		st->st_size = (off_t)strlen(cobj_name(o));
	} else if (n->kind == NK_SB_LABELS || n->kind == NK_SB_ENVDIR) {
		/* Existence checked by the refresh above. */
	} else if (!kind_is_dir(n->kind)) {
		struct buf content = BUF_INIT;

		if (o)
			ret = render_obj_node(fs, n, o, &content, err);
		else
			ret = core_read(fs, n, &content, err);
		st->st_size = (off_t)content.len;
		st->st_blocks = (blkcnt_t)((content.len + 511) / 512);
		buf_free(&content);
	}
	cobj_put(o);
	return ret;
}

/* ---- names -------------------------------------------------------------- */

static int make_node(struct node_info *child, enum node_kind kind, const char *obj_id,
		     const char *obj_name, const char *name, struct dt_error *err)
{
	if (!node_make(child, kind, obj_id, obj_name, name))
		return core_fail(err, ENAMETOOLONG, "name too long");
	return 0;
}

/* A port number as a file name: 1-65535, no sign, no leading zero. */
static bool port_name(const char *name)
{
	int64_t port;
	char again[8];

	if (parse_int64(name, 1, 65535, &port) < 0)
		return false;
	snprintf(again, sizeof(again), "%d", (int)port);
	return strcmp(again, name) == 0;
}

static enum obj_type coll_type(enum node_kind kind)
{
	return kind == NK_SANDBOXES ? OBJ_SANDBOX : kind == NK_VOLUMES ? OBJ_VOLUME : OBJ_SNAPSHOT;
}

static enum node_kind obj_dir_kind(enum obj_type t)
{
	return t == OBJ_SANDBOX ? NK_SANDBOX : t == OBJ_VOLUME ? NK_VOLUME : NK_SNAPSHOT;
}

int core_lookup(struct qfs *fs, const struct node_info *dir, const char *name,
		struct node_info *child, struct dt_error *err)
{
	struct cobj *o = NULL;
	enum node_kind kind;
	int ret = 0;

	if (!name_is_file_name(name))
		return core_fail(err, ENOENT, "%s: no such entry", name);

	switch (dir->kind) {
	case NK_ROOT:
		kind = kind_child_by_name(NK_ROOT, name);
		if (kind == NK_NONE)
			return core_fail(err, ENOENT, "%s: no such entry", name);
		return make_node(child, kind, "", "", NULL, err);

	case NK_SANDBOXES:
	case NK_VOLUMES:
	case NK_SNAPSHOTS: {
		enum obj_type t = coll_type(dir->kind);

		/*
		 * A name the backend refuses (400) cannot be looked up by name: only
		 * an object already listed under it is found.
		 */
		ret = cache_lookup(fs->cache, t, name, false, valid_object_name(name), &o, err);
		if (ret < 0)
			return ret;
		if (strcmp(cobj_name(o), name) == 0)
			ret = make_node(child, obj_dir_kind(t), cobj_id(o), cobj_name(o), name, err);
		else if (t == OBJ_SANDBOX && strcmp(cobj_id(o), name) == 0 &&
			 name_is_file_name(cobj_name(o)))
			ret = make_node(child, NK_SB_IDLINK, cobj_id(o), cobj_name(o), name, err);
		else
			ret = core_fail(err, ENOENT, "%s: no such entry", name);
		break;
	}

	case NK_SANDBOX:
	case NK_VOLUME:
	case NK_SNAPSHOT:
		kind = kind_child_by_name(dir->kind, name);
		if (kind == NK_NONE)
			return core_fail(err, ENOENT, "%s: no such entry", name);
		ret = core_node_obj(fs, dir, false, &o, err);
		if (ret == 0)
			ret = make_node(child, kind, dir->obj_id, cobj_name(o), NULL, err);
		break;

	case NK_SB_LABELS:
		ret = core_node_obj(fs, dir, false, &o, err);
		if (ret < 0)
			return ret;
		if (!kv_find(o->sb.labels, o->sb.nlabels, name) &&
		    !core_label_pending(fs, dir->obj_id, name))
			ret = core_fail(err, ENOENT, "no label %s", name);
		else
			ret = make_node(child, NK_SB_LABEL, dir->obj_id, cobj_name(o), name, err);
		break;

	case NK_SB_ENVDIR:
		ret = core_node_obj(fs, dir, true, &o, err);
		if (ret < 0)
			return ret;
		if (!kv_find(o->sb.env, o->sb.nenv, name))
			ret = core_fail(err, ENOENT, "no variable %s", name);
		else
			ret = make_node(child, NK_SB_ENV, dir->obj_id, cobj_name(o), name, err);
		break;

	case NK_SB_PORTS:
		if (!port_name(name))
			return core_fail(err, ENOENT, "%s is not a port (1-65535)", name);
		ret = core_node_obj(fs, dir, false, &o, err);
		if (ret == 0)
			ret = make_node(child, NK_SB_PORT, dir->obj_id, cobj_name(o), name, err);
		break;

	default:
		return core_fail(err, ENOTDIR, "not a directory");
	}
	cobj_put(o);
	return ret;
}

/* A name with a control character (an escape sequence for whoever runs ls). */
static bool has_control_char(const char *name)
{
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

struct named {
	const char *name;
	size_t index;
};

static int named_compare(const void *a, const void *b)
{
	const struct named *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : x->index < y->index ? -1 : x->index > y->index;
}

/*
 * Marks in @repeated (calloc'd, @n entries) every object whose name an
 * earlier object of the listing has: a backend may send two objects of one
 * name, and a directory lists each name once. NULL on ENOMEM.
 */
static bool *repeated_names(struct cobj **items, size_t n)
{
	struct named *sorted = calloc(n ? n : 1, sizeof(*sorted));
	bool *repeated = calloc(n ? n : 1, sizeof(*repeated));

	if (!sorted || !repeated) {
		free(sorted);
		free(repeated);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		sorted[i] = (struct named){cobj_name(items[i]), i};
	qsort(sorted, n, sizeof(*sorted), named_compare);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(sorted[i].name, sorted[i - 1].name))
			repeated[sorted[i].index] = true;
	free(sorted);
	return repeated;
}

static int push_entry(struct node_info **entries, size_t *n, size_t *cap,
		      const struct node_info *e)
{
	if (*n == *cap) {
		size_t next = *cap ? *cap * 2 : 16;
		struct node_info *grown = realloc(*entries, next * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		*entries = grown;
		*cap = next;
	}
	(*entries)[(*n)++] = *e;
	return 0;
}

int core_list(struct qfs *fs, const struct node_info *dir, struct node_info **entries,
	      size_t *n, struct dt_error *err)
{
	struct node_info *out = NULL, e;
	size_t count = 0, cap = 0;
	struct cobj *o = NULL;
	int ret = 0;

	switch (dir->kind) {
	case NK_ROOT:
	case NK_SANDBOX:
	case NK_VOLUME:
	case NK_SNAPSHOT: {
		enum node_kind kinds[16];
		size_t nk = kind_fixed_children(dir->kind, kinds, ARRAY_SIZE(kinds));

		if (dir->kind != NK_ROOT) {
			ret = core_node_obj(fs, dir, false, &o, err);
			if (ret < 0)
				return ret;
		}
		for (size_t i = 0; ret == 0 && i < nk; i++) {
			node_make(&e, kinds[i], dir->obj_id, o ? cobj_name(o) : "", NULL);
			ret = push_entry(&out, &count, &cap, &e);
		}
		break;
	}

	case NK_SANDBOXES:
	case NK_VOLUMES:
	case NK_SNAPSHOTS: {
		enum obj_type t = coll_type(dir->kind);
		struct cobj **items = NULL;
		size_t nitems = 0;

		bool *repeated;
		size_t dropped = 0;

		ret = cache_list(fs->cache, t, &items, &nitems, err);
		if (ret < 0)
			return ret;
		repeated = repeated_names(items, nitems);
		if (!repeated)
			ret = core_fail(err, ENOMEM, "out of memory");
		for (size_t i = 0; ret == 0 && i < nitems; i++) {
			const char *name = cobj_name(items[i]);

			/* A hostile or odd name is never a directory entry. */
			if (!name_is_file_name(name) || name_is_probe(name) ||
			    has_control_char(name) || repeated[i] ||
			    !node_make(&e, obj_dir_kind(t), cobj_id(items[i]), name, name)) {
				dropped += !name_is_probe(name);
				continue;
			}
			ret = push_entry(&out, &count, &cap, &e);
		}
		if (dropped)
			log_debug("%s: %zu names that cannot be file names, or repeated, not listed",
				  t == OBJ_SANDBOX ? "sandboxes" : t == OBJ_VOLUME ? "volumes"
								   : "snapshots",
				  dropped);
		free(repeated);
		cobj_array_free(items, nitems);
		break;
	}

	case NK_SB_LABELS:
	case NK_SB_ENVDIR: {
		bool env = dir->kind == NK_SB_ENVDIR;
		const struct dt_kv *kv;
		size_t nkv;

		ret = core_node_obj(fs, dir, env, &o, err);
		if (ret < 0)
			return ret;
		kv = env ? o->sb.env : o->sb.labels;
		nkv = env ? o->sb.nenv : o->sb.nlabels;
		for (size_t i = 0; ret == 0 && i < nkv; i++) {
			if (!kv[i].key || !name_is_file_name(kv[i].key) ||
			    !node_make(&e, env ? NK_SB_ENV : NK_SB_LABEL, dir->obj_id, cobj_name(o),
				       kv[i].key))
				continue;
			ret = push_entry(&out, &count, &cap, &e);
		}
		break;
	}

	case NK_SB_PORTS:
		ret = core_node_obj(fs, dir, false, &o, err);
		break;

	default:
		return core_fail(err, ENOTDIR, "not a directory");
	}
	cobj_put(o);
	if (ret < 0) {
		free(out);
		return ret == -ENOMEM ? core_fail(err, ENOMEM, "out of memory") : ret;
	}
	*entries = out;
	*n = count;
	return 0;
}

int core_readlink(struct qfs *fs, const struct node_info *n, char *out, size_t size,
		  struct dt_error *err)
{
	struct cobj *o = NULL;
	int ret;

	if (n->kind != NK_SB_IDLINK)
		return core_fail(err, EINVAL, "not a symlink");
	ret = core_node_obj(fs, n, false, &o, err);
	if (ret == 0)
		copy_str(out, size, cobj_name(o));
	cobj_put(o);
	return ret;
}
