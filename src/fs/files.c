/*
 * files/, read side: the inode table of sandbox paths, the listing cache
 * (one GET /files per directory per second answers readdir, READDIRPLUS and
 * lookups), attributes, the toolbox handles and the started-sandbox check.
 */
#include "files_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Nodes the kernel forgot kept for their mtime set by utimens (or a cached copy). */
#define RETAIN_MAX 65536

/* ---- helpers ------------------------------------------------------------ */

int files_fail(struct dt_error *err, int errnum, const char *fmt, ...)
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

bool ts_equal(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

int path_join(char *out, size_t size, const char *dir, const char *name)
{
	int n = strcmp(dir, "/") == 0 ? snprintf(out, size, "/%s", name)
				      : snprintf(out, size, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= size || n >= PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

const char *path_split(const char *path, char *parent, size_t size)
{
	const char *slash = strrchr(path, '/');
	size_t len = slash ? (size_t)(slash - path) : 0;

	if (len == 0) {
		copy_str(parent, size, "/");
	} else {
		if (len >= size)
			len = size - 1;
		memcpy(parent, path, len);
		parent[len] = '\0';
	}
	return slash ? slash + 1 : path;
}

void fattr_from_info(struct fattr *a, const struct dt_file_info *fi)
{
	mode_t type = fi->mode & S_IFMT;

	/* Listings follow symlinks; a link the server still reports is shown as a file. */
	if (fi->is_dir)
		type = S_IFDIR;
	else if (!type || type == S_IFLNK || type == S_IFDIR)
		type = S_IFREG;
	a->mode = type | (fi->mode & 07777);
	a->size = fi->size < 0 ? 0 : fi->size;
	a->mtime = fi->mtime;
}

uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

uint64_t key_hash(const char *sb_id, const char *path)
{
	uint64_t h = 14695981039346656037ULL;

	h = fnv1a(h, sb_id, strlen(sb_id) + 1);
	return fnv1a(h, path, strlen(path));
}

/* ---- the node table ----------------------------------------------------- */

static size_t bucket(const struct files *f, uint64_t h)
{
	return h & (f->nbuckets - 1);
}

struct fnode *fnode_by_ino(struct files *f, uint64_t ino)
{
	for (struct fnode *fn = f->by_ino[bucket(f, ino)]; fn; fn = fn->next_by_ino)
		if (fn->ino == ino)
			return fn;
	return NULL;
}

struct fnode *fnode_by_path(struct files *f, const char *sb_id, const char *path)
{
	uint64_t h = key_hash(sb_id, path);

	for (struct fnode *fn = f->by_key[bucket(f, h)]; fn; fn = fn->next_by_key)
		if (fn->key_hash == h && strcmp(fn->path, path) == 0 &&
		    strcmp(fn->sb_id, sb_id) == 0)
			return fn;
	return NULL;
}

static void link_ino(struct files *f, struct fnode *fn)
{
	size_t b = bucket(f, fn->ino);

	fn->next_by_ino = f->by_ino[b];
	f->by_ino[b] = fn;
}

static void link_key(struct files *f, struct fnode *fn)
{
	size_t b = bucket(f, fn->key_hash);

	fn->next_by_key = f->by_key[b];
	f->by_key[b] = fn;
	fn->keyed = true;
}

static void unlink_ino(struct files *f, struct fnode *fn)
{
	for (struct fnode **pp = &f->by_ino[bucket(f, fn->ino)]; *pp; pp = &(*pp)->next_by_ino)
		if (*pp == fn) {
			*pp = fn->next_by_ino;
			return;
		}
}

void fnode_unkey(struct files *f, struct fnode *fn)
{
	if (!fn->keyed)
		return;
	for (struct fnode **pp = &f->by_key[bucket(f, fn->key_hash)]; *pp; pp = &(*pp)->next_by_key)
		if (*pp == fn) {
			*pp = fn->next_by_key;
			break;
		}
	fn->keyed = false;
}

static int grow_table(struct files *f)
{
	size_t old_n = f->nbuckets, n = old_n * 2;
	struct fnode **ino = calloc(n, sizeof(*ino)), **key = calloc(n, sizeof(*key));
	struct fnode **old_ino = f->by_ino;

	if (!ino || !key) {
		free(ino);
		free(key);
		return -ENOMEM;
	}
	free(f->by_key);
	f->by_ino = ino;
	f->by_key = key;
	f->nbuckets = n;
	for (size_t b = 0; b < old_n; b++) {
		struct fnode *fn = old_ino[b];

		while (fn) {
			struct fnode *next = fn->next_by_ino;

			link_ino(f, fn);
			if (fn->keyed)
				link_key(f, fn);
			fn = next;
		}
	}
	free(old_ino);
	return 0;
}

struct fnode *fnode_get(struct files *f, const char *sb_id, const char *path)
{
	struct fnode *fn = fnode_by_path(f, sb_id, path);
	uint64_t ino;

	if (fn)
		return fn;
	if (f->count >= f->nbuckets && grow_table(f) < 0)
		return NULL;
	fn = calloc(1, sizeof(*fn));
	if (!fn)
		return NULL;
	fn->sb_id = strdup(sb_id);
	fn->path = strdup(path);
	if (!fn->sb_id || !fn->path) {
		free(fn->sb_id);
		free(fn->path);
		free(fn);
		return NULL;
	}
	fn->key_hash = key_hash(sb_id, path);
	/* Stable: the number follows from the path, unless another node holds it. */
	ino = fn->key_hash | FILES_INO_BIT;
	while (fnode_by_ino(f, ino))
		ino = (ino + 1) | FILES_INO_BIT;
	fn->ino = ino;
	link_ino(f, fn);
	link_key(f, fn);
	f->count++;
	/* Not looked up yet: counted as kept until the kernel takes it. */
	f->nretained++;
	return fn;
}

void fnode_ref(struct files *f, struct fnode *fn)
{
	if (fn->nlookup++ == 0)
		f->nretained--;
}

static void lru_remove(struct files *f, struct fnode *fn)
{
	if (!fn->in_lru)
		return;
	if (fn->lru_prev)
		fn->lru_prev->lru_next = fn->lru_next;
	else
		f->lru_head = fn->lru_next;
	if (fn->lru_next)
		fn->lru_next->lru_prev = fn->lru_prev;
	else
		f->lru_tail = fn->lru_prev;
	fn->lru_prev = fn->lru_next = NULL;
	fn->in_lru = false;
}

static void lru_touch(struct files *f, struct fnode *fn)
{
	lru_remove(f, fn);
	fn->lru_prev = f->lru_tail;
	if (f->lru_tail)
		f->lru_tail->lru_next = fn;
	else
		f->lru_head = fn;
	f->lru_tail = fn;
	fn->in_lru = true;
}

static void fnode_free(struct files *f, struct fnode *fn)
{
	lru_remove(f, fn);
	fnode_unkey(f, fn);
	unlink_ino(f, fn);
	f->count--;
	if (fn->nlookup == 0)
		f->nretained--;
	if (fn->st)
		stage_free(fn->st);
	free(fn->sb_id);
	free(fn->path);
	free(fn);
}

/*
 * A node renamed here keeps the inode number of its old path: kept (as a
 * time set by utimens is) after the kernel forgets it, so that the next
 * lookup of its path finds the same number (`git status` compares them).
 */
static bool ino_moved(const struct fnode *fn)
{
	return fn->keyed && fn->ino != (fn->key_hash | FILES_INO_BIT);
}

void fnode_settle(struct files *f, struct fnode *fn)
{
	if (fn->opens || fn->pins) {
		lru_remove(f, fn);
		return;
	}
	if (fn->nlookup == 0 && (!fn->keyed || (!fn->dirty && !fn->local_only && !fn->st &&
						!fn->ov_set && !ino_moved(fn)))) {
		/* Nobody can reach it, or nothing in it is worth keeping. */
		fnode_free(f, fn);
		return;
	}
	if (fn->st || fn->nlookup == 0)
		lru_touch(f, fn);
	else
		lru_remove(f, fn);
}

void files_evict(struct files *f)
{
	struct fnode *fn = f->lru_head;

	while (fn && (stage_dir_bytes(f->sd) > f->cache_bytes || f->nretained > RETAIN_MAX)) {
		struct fnode *next = fn->lru_next;

		if (!fn->dirty && !fn->local_only && !fn->opens && !fn->pins) {
			if (fn->st) {
				/* Idle and clean: nobody holds or waits for its lock. */
				stage_free(fn->st);
				fn->st = NULL;
			}
			if (fn->nlookup == 0 &&
			    ((!fn->ov_set && !ino_moved(fn)) || f->nretained > RETAIN_MAX))
				fnode_free(f, fn);
			else if (fn->nlookup > 0)
				lru_remove(f, fn);
		}
		fn = next;
	}
}

struct fnode *fnode_pin(struct files *f, uint64_t ino, struct dt_error *err)
{
	struct fnode *fn;

	pthread_mutex_lock(&f->lock);
	fn = fnode_by_ino(f, ino);
	if (fn) {
		fn->pins++;
		lru_remove(f, fn);
	}
	pthread_mutex_unlock(&f->lock);
	if (!fn)
		files_fail(err, ESTALE, "unknown inode");
	return fn;
}

void fnode_unpin(struct files *f, struct fnode *fn)
{
	if (!fn)
		return;
	pthread_mutex_lock(&f->lock);
	fn->pins--;
	fnode_settle(f, fn);
	pthread_mutex_unlock(&f->lock);
}

int fnode_rekey_tree(struct files *f, const char *sb_id, const char *from, const char *to)
{
	size_t from_len = strlen(from);
	struct fnode **moved = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;

	/* Collect first: rekeying while walking the buckets would revisit nodes. */
	for (size_t b = 0; b < f->nbuckets; b++)
		for (struct fnode *fn = f->by_key[b]; fn; fn = fn->next_by_key) {
			if (strcmp(fn->sb_id, sb_id) != 0 ||
			    strncmp(fn->path, from, from_len) != 0 ||
			    (fn->path[from_len] != '\0' && fn->path[from_len] != '/'))
				continue;
			if (n == cap) {
				size_t next_cap = cap ? cap * 2 : 16;
				struct fnode **grown = realloc(moved, next_cap * sizeof(*grown));

				if (!grown) {
					free(moved);
					return -ENOMEM;
				}
				moved = grown;
				cap = next_cap;
			}
			moved[n++] = fn;
		}
	for (size_t i = 0; i < n; i++) {
		struct fnode *fn = moved[i];
		char path[PATH_MAX];
		char *copy;

		if (snprintf(path, sizeof(path), "%s%s", to, fn->path + from_len) >=
			(int)sizeof(path) ||
		    !(copy = strdup(path))) {
			/* Cannot follow the rename: the node stays reachable by its inode only. */
			fnode_unkey(f, fn);
			ret = -ENOMEM;
			continue;
		}
		fnode_unkey(f, fn);
		free(fn->path);
		fn->path = copy;
		fn->key_hash = key_hash(fn->sb_id, fn->path);
		link_key(f, fn);
	}
	free(moved);
	return ret;
}

static bool fnode_is_root(const struct fnode *fn)
{
	return strcmp(fn->path, "/") == 0;
}

void fnode_stat(struct files *f, const struct fnode *fn, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = fn->ino;
	st->st_mode = fn->attr.mode;
	st->st_nlink = S_ISDIR(fn->attr.mode) ? 2 : 1;
	st->st_uid = f->uid;
	st->st_gid = f->gid;
	st->st_size = fn->attr.size;
	/* Whole 4 KiB blocks, as the sandbox's disk (and `du` on a local one) counts them. */
	st->st_blocks = (fn->attr.size + 4095) / 4096 * 8;
	st->st_blksize = 128 * 1024;
	st->st_mtim = fn->ov_set ? fn->ov_mtime : fn->attr.mtime;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

void fnode_set_server(struct files *f, struct fnode *fn, const struct fattr *a, int64_t at_ms)
{
	(void)f;
	if (fn->dirty || fn->local_only || fnode_is_root(fn))
		return;
	/* An answer older than what the node knows (a listing made before an upload) is stale. */
	if (fn->attr_known && at_ms < fn->attr_ms)
		return;
	/* A time set here lasts until the sandbox's file changes. */
	if (fn->ov_set && !fn->ov_pending && !ts_equal(&a->mtime, &fn->ov_srv_mtime))
		fn->ov_set = false;
	fn->attr = *a;
	fn->attr_known = true;
	fn->attr_ms = at_ms;
	fn->estimated = false;
}

static struct sb_activity *activity_of(struct files *f, const char *sb_id)
{
	for (size_t i = 0; i < f->nacts; i++)
		if (strcmp(f->acts[i].sb_id, sb_id) == 0)
			return &f->acts[i];
	return NULL;
}

bool fnode_open_may_trust(struct files *f, const struct fnode *fn, int64_t now)
{
	const struct sb_activity *act;

	if (!fn->attr_known || fn->estimated || now - fn->attr_ms >= FILES_TTL_MS ||
	    fn->attr_ms <= fn->touched_ms)
		return false;
	act = activity_of(f, fn->sb_id);
	return !act || (!act->busy && fn->attr_ms > act->epoch_ms);
}

void files_sandbox_activity(struct files *f, const char *sb_id, bool begin)
{
	struct sb_activity *act;

	pthread_mutex_lock(&f->lock);
	act = activity_of(f, sb_id);
	if (!act) {
		struct sb_activity *grown = realloc(f->acts, (f->nacts + 1) * sizeof(*grown));

		if (grown) {
			f->acts = grown;
			act = &f->acts[f->nacts++];
			memset(act, 0, sizeof(*act));
			copy_str(act->sb_id, sizeof(act->sb_id), sb_id);
		}
	}
	if (act) {
		if (begin)
			act->busy++;
		else if (act->busy > 0)
			act->busy--;
		act->epoch_ms = now_mono_ms();
	}
	/* What the process changed is asked for again: listings and attributes. */
	listing_drop_tree(f, sb_id, "/");
	for (size_t b = 0; b < f->nbuckets; b++)
		for (struct fnode *fn = f->by_ino[b]; fn; fn = fn->next_by_ino)
			if (!fnode_is_root(fn) && strcmp(fn->sb_id, sb_id) == 0)
				fn->attr_ms = 0;
	if (!act)
		log_warn("files: out of memory noting a process of sandbox %s", sb_id);
	pthread_mutex_unlock(&f->lock);
}

/* ---- the toolbox -------------------------------------------------------- */

void tbref_put(struct tbref *t)
{
	if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	dt_toolbox_free(t->tb);
	free(t->url);
	free(t);
}

/* Whether handle @t still names the toolbox URL the sandbox's record gives: Daytona may hand
 * out another toolboxProxyUrl after a start or restore (daytona-api.md section 10). */
static bool tbref_url_current(const struct tbref *t, const struct dt_sandbox *sb)
{
	const char *now = sb->toolbox_proxy_url ? sb->toolbox_proxy_url : "";

	return strcmp(t->url ? t->url : "", now) == 0;
}

/* What to tell a user who reaches files/ of a sandbox that is not started. */
static int not_started(struct dt_error *err, const struct cobj *o)
{
	const char *state = cobj_state(o), *name = cobj_name(o);

	if (strcmp(state, "stopped") == 0 || strcmp(state, "archived") == 0)
		return files_fail(err, EHOSTDOWN,
				  "sandbox %s is %s; echo start > sandboxes/%s/state (or mount "
				  "with -o autostart)",
				  name, state, name);
	return files_fail(err, EHOSTDOWN, "sandbox %s is %s, not started", name, state);
}

/* Starts sandbox @id (autostart) and waits until it is. */
static int autostart(struct files *f, const char *id, struct dt_error *err)
{
	static const char *const started[] = {"started", NULL};
	struct backend *bk = f->fs->bk;
	struct dt_sandbox sb = {0};
	struct cobj *o = NULL, *stored;
	int ret;

	pthread_mutex_lock(&f->start_lock);
	/* Another thread may have started it while this one waited. */
	cache_mark_stale(f->fs->cache, OBJ_SANDBOX, id);
	ret = cache_refresh(f->fs->cache, OBJ_SANDBOX, id, false, &o, err);
	if (ret < 0 || strcmp(cobj_state(o), "started") == 0)
		goto out;
	if (strcmp(cobj_state(o), "stopped") != 0 && strcmp(cobj_state(o), "archived") != 0) {
		ret = not_started(err, o);
		goto out;
	}
	log_info("sandboxes/%s: starting it for files/ (autostart)", cobj_name(o));
	ret = BK_CALL(bk, err, c, dt_sandbox_action(c, id, DT_START, &sb, err));
	if (ret == 0 && strcmp(sb.state ? sb.state : "", "started") != 0) {
		dt_sandbox_clear(&sb);
		ret = BK_CALL(bk, err, c,
			      dt_sandbox_wait(c, id, started, f->fs->op_timeout_ms, &sb, err));
	}
	if (ret == 0) {
		stored = cache_store_sandbox(f->fs->cache, &sb);
		cobj_put(stored);
	} else {
		cache_mark_stale(f->fs->cache, OBJ_SANDBOX, id);
	}
out:
	dt_sandbox_clear(&sb);
	cobj_put(o);
	pthread_mutex_unlock(&f->start_lock);
	return ret;
}

/*
 * How long files/ goes on using a sandbox record it holds, without asking
 * for it again, to reach the toolbox. One syscall makes several toolbox
 * calls (a cat: lookups, info, download, info), and asking for the record
 * again once it is FILES_TTL_MS old made a cat at 500 ms of latency take 16
 * round trips. The record only says where the toolbox is and that the
 * sandbox is started: what this mount changes replaces or drops it (a state
 * change, flush), a toolbox that refuses a stopped sandbox has it fetched
 * again (files_call_done), and so does a transfer that failed.
 */
#define TOOLBOX_RECORD_MS 5000

/* The toolbox handle for a started @sb_id whose record is recent enough, or NULL. Takes a ref. */
static struct tbref *toolbox_known(struct files *f, const char *sb_id, struct dt_client *client)
{
	struct cobj *o = cache_peek(f->fs->cache, OBJ_SANDBOX, sb_id);
	struct tbref *t = NULL;

	if (!o)
		return NULL;
	if (o->fetched_ms && now_mono_ms() - o->fetched_ms < TOOLBOX_RECORD_MS &&
	    strcmp(cobj_state(o), "started") == 0) {
		pthread_mutex_lock(&f->lock);
		for (size_t i = 0; i < f->ntbs; i++) {
			struct tbref *c = f->tbs[i];

			if (strcmp(c->sb_id, sb_id) == 0 && c->client == client && !c->stale &&
			    tbref_url_current(c, &o->sb)) {
				t = c;
				__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
				break;
			}
		}
		pthread_mutex_unlock(&f->lock);
	}
	cobj_put(o);
	return t;
}

int files_toolbox(struct files *f, const char *sb_id, struct tbref **out, struct dt_error *err)
{
	struct dt_client *client = backend_client(f->fs->bk);
	struct tbref *t = NULL, *fresh;
	struct cobj *o = NULL;
	size_t i;
	int ret;

	*out = toolbox_known(f, sb_id, client);
	if (*out)
		return 0;
	ret = cache_refresh(f->fs->cache, OBJ_SANDBOX, sb_id, false, &o, err);
	if (ret == -ENOENT)
		return files_fail(err, ENOENT, "the sandbox is gone");
	if (ret < 0)
		return ret;
	if (strcmp(cobj_state(o), "started") != 0) {
		if (!f->autostart) {
			ret = not_started(err, o);
			cobj_put(o);
			return ret;
		}
		cobj_put(o);
		o = NULL;
		ret = autostart(f, sb_id, err);
		if (ret < 0)
			return ret;
		ret = cache_refresh(f->fs->cache, OBJ_SANDBOX, sb_id, false, &o, err);
		if (ret < 0)
			return ret;
	}

	pthread_mutex_lock(&f->lock);
	for (i = 0; i < f->ntbs; i++)
		if (strcmp(f->tbs[i]->sb_id, sb_id) == 0)
			break;
	if (i < f->ntbs && f->tbs[i]->client == client && !f->tbs[i]->stale &&
	    tbref_url_current(f->tbs[i], &o->sb)) {
		t = f->tbs[i];
		__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&f->lock);
	if (t) {
		cobj_put(o);
		*out = t;
		return 0;
	}

	/* A new handle: the first use, a restarted quaverd, or a toolbox URL that changed (a start
	 * or restore moved the sandbox) or failed. */
	fresh = calloc(1, sizeof(*fresh));
	if (!fresh) {
		cobj_put(o);
		return files_fail(err, ENOMEM, "out of memory");
	}
	if (o->sb.toolbox_proxy_url && !(fresh->url = strdup(o->sb.toolbox_proxy_url))) {
		cobj_put(o);
		free(fresh);
		return files_fail(err, ENOMEM, "out of memory");
	}
	fresh->tb = dt_toolbox_for_sandbox(client, &o->sb, err);
	cobj_put(o);
	if (!fresh->tb) {
		free(fresh->url);
		free(fresh);
		return -(err->err ? err->err : EIO);
	}
	fresh->client = client;
	fresh->refs = 2; /* the table's and the caller's */
	copy_str(fresh->sb_id, sizeof(fresh->sb_id), sb_id);
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < f->ntbs; i++)
		if (strcmp(f->tbs[i]->sb_id, sb_id) == 0)
			break;
	if (i < f->ntbs) {
		tbref_put(f->tbs[i]);
		f->tbs[i] = fresh;
	} else {
		struct tbref **grown = realloc(f->tbs, (f->ntbs + 1) * sizeof(*grown));

		if (grown) {
			f->tbs = grown;
			f->tbs[f->ntbs++] = fresh;
		} else {
			fresh->refs = 1; /* the caller's only */
		}
	}
	pthread_mutex_unlock(&f->lock);
	*out = fresh;
	return 0;
}

int files_call_done(struct files *f, struct tbref *t, int ret, struct dt_error *err, bool *retry)
{
	struct cobj *o = NULL;
	struct dt_error again = {0};

	*retry = false;
	if (backend_after(f->fs->bk, t->client, ret, err)) {
		/* quaverd moved: the handle, and the sandbox's toolbox URL, name the old port. */
		pthread_mutex_lock(&f->lock);
		t->stale = true;
		pthread_mutex_unlock(&f->lock);
		cache_mark_stale(f->fs->cache, OBJ_SANDBOX, t->sb_id);
		*retry = true;
		return ret;
	}
	if (ret < 0 && err->transport) {
		/* The toolbox may have moved (a start or restore elsewhere): ask next time. */
		cache_mark_stale(f->fs->cache, OBJ_SANDBOX, t->sb_id);
		return ret;
	}
	if (ret >= 0 || (err->http_status != 409 && err->http_status < 500))
		return ret;
	/* The toolbox refuses a sandbox that stopped meanwhile: say so. */
	cache_mark_stale(f->fs->cache, OBJ_SANDBOX, t->sb_id);
	if (cache_refresh(f->fs->cache, OBJ_SANDBOX, t->sb_id, false, &o, &again) == 0 &&
	    strcmp(cobj_state(o), "started") != 0) {
		if (f->autostart)
			*retry = true; /* stopped elsewhere: files_toolbox starts it */
		else
			ret = not_started(err, o);
	}
	cobj_put(o);
	return ret;
}

int files_info(struct files *f, const char *sb_id, const char *path, struct fattr *a,
	       struct dt_error *err)
{
	struct dt_file_info fi = {0};
	int ret = TB_CALL(f, sb_id, err, t, dt_fs_info(t->tb, path, &fi, err));

	if (ret == 0)
		fattr_from_info(a, &fi);
	dt_file_info_clear(&fi);
	return ret;
}

/* ---- the context -------------------------------------------------------- */

static char *default_cache_base(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	struct buf b = BUF_INIT;

	if (xdg && xdg[0] == '/')
		buf_printf(&b, "%s/quaverfs", xdg);
	else if (home && home[0] == '/')
		buf_printf(&b, "%s/.cache/quaverfs", home);
	else
		buf_printf(&b, "/tmp/quaverfs-%u", (unsigned)getuid());
	return b.data ? buf_steal(&b) : NULL;
}

int files_new(struct qfs *fs, const struct files_config *cfg, struct files **out, char *msg,
	      size_t msg_size)
{
	struct files *f = calloc(1, sizeof(*f));
	char *base = NULL;
	int ret;

	*out = NULL;
	if (!f)
		goto nomem;
	f->fs = fs;
	f->autostart = cfg->autostart;
	f->cache_bytes = cfg->cache_bytes > 0 ? cfg->cache_bytes : FILES_DEFAULT_CACHE_BYTES;
	f->uid = getuid();
	f->gid = getgid();
	clock_gettime(CLOCK_REALTIME, &f->mount_time);
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->start_lock, NULL);
	pthread_cond_init(&f->loaded, NULL);
	f->nbuckets = 1024;
	f->lnbuckets = 256;
	f->by_ino = calloc(f->nbuckets, sizeof(*f->by_ino));
	f->by_key = calloc(f->nbuckets, sizeof(*f->by_key));
	f->lbuckets = calloc(f->lnbuckets, sizeof(*f->lbuckets));
	if (!f->by_ino || !f->by_key || !f->lbuckets)
		goto nomem;
	base = cfg->cache_base ? strdup(cfg->cache_base) : default_cache_base();
	if (!base)
		goto nomem;
	ret = stage_dir_open(base, &f->sd, msg, msg_size);
	free(base);
	if (ret < 0) {
		files_free(f);
		return ret;
	}
	*out = f;
	return 0;
nomem:
	files_free(f);
	snprintf(msg, msg_size, "out of memory");
	return -ENOMEM;
}

void files_free(struct files *f)
{
	if (!f)
		return;
	for (size_t b = 0; f->by_ino && b < f->nbuckets; b++) {
		struct fnode *fn = f->by_ino[b];

		while (fn) {
			struct fnode *next = fn->next_by_ino;

			if (fn->st && (fn->dirty || fn->local_only) && fn->keyed && !fn->unlinked) {
				log_warn("files: %s of sandbox %s was never uploaded; its content "
					 "is kept in %s",
					 fn->path, fn->sb_id, fn->st->file);
				stage_abandon(fn->st);
			} else if (fn->st) {
				stage_free(fn->st);
			}
			free(fn->sb_id);
			free(fn->path);
			free(fn);
			fn = next;
		}
	}
	listings_free_all(f);
	for (size_t i = 0; i < f->ntbs; i++)
		tbref_put(f->tbs[i]);
	free(f->tbs);
	free(f->acts);
	free(f->by_ino);
	free(f->by_key);
	free(f->lbuckets);
	stage_dir_close(f->sd);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->start_lock);
	pthread_cond_destroy(&f->loaded);
	free(f);
}

void files_set_inval(struct files *f, const struct files_inval_ops *ops)
{
	f->inval = *ops;
}

const char *files_cache_dir(const struct files *f)
{
	return stage_dir_path(f->sd);
}

/* ---- reading the tree --------------------------------------------------- */

static void fill_entry(struct files *f, struct fnode *fn, struct files_entry *e, int64_t data_ms)
{
	e->ino = fn->ino;
	fnode_stat(f, fn, &e->attr);
	e->data_ms = data_ms;
}

int files_root_entry(struct files *f, const char *sb_id, struct files_entry *e,
		     struct dt_error *err)
{
	struct fnode *fn;

	pthread_mutex_lock(&f->lock);
	fn = fnode_get(f, sb_id, "/");
	if (!fn) {
		pthread_mutex_unlock(&f->lock);
		return files_fail(err, ENOMEM, "out of memory");
	}
	/* files/ itself is ours: a directory of the mounting user, whatever the sandbox's state. */
	fn->attr.mode = S_IFDIR | 0755;
	fn->attr.size = 4096;
	fn->attr.mtime = f->mount_time;
	fn->attr_known = true;
	fnode_ref(f, fn);
	fnode_settle(f, fn);
	fill_entry(f, fn, e, now_mono_ms());
	pthread_mutex_unlock(&f->lock);
	return 0;
}

uint64_t files_root_ino(struct files *f, const char *sb_id)
{
	struct fnode *fn;
	uint64_t ino;

	pthread_mutex_lock(&f->lock);
	fn = fnode_by_path(f, sb_id, "/");
	ino = fn ? fn->ino : key_hash(sb_id, "/") | FILES_INO_BIT;
	pthread_mutex_unlock(&f->lock);
	return ino;
}

struct fnode *files_child(struct files *f, uint64_t parent, const char *name, char *path,
			  size_t size, char *sb_id, size_t sb_size, struct dt_error *err)
{
	struct fnode *dir = fnode_pin(f, parent, err);
	int ret;

	if (!dir)
		return NULL;
	pthread_mutex_lock(&f->lock);
	if (!S_ISDIR(dir->attr.mode)) {
		pthread_mutex_unlock(&f->lock);
		fnode_unpin(f, dir);
		files_fail(err, ENOTDIR, "not a directory");
		return NULL;
	}
	copy_str(sb_id, sb_size, dir->sb_id);
	ret = path_join(path, size, dir->path, name);
	pthread_mutex_unlock(&f->lock);
	if (ret < 0) {
		fnode_unpin(f, dir);
		files_fail(err, ENAMETOOLONG, "path too long");
		return NULL;
	}
	return dir;
}

/* Counts a lookup of the node of @path with attributes @a learnt at @at_ms. Under the lock. */
static int entry_for(struct files *f, const char *sb_id, const char *path, const struct fattr *a,
		     int64_t at_ms, struct files_entry *e, struct dt_error *err)
{
	struct fnode *fn = fnode_get(f, sb_id, path);

	if (!fn)
		return files_fail(err, ENOMEM, "out of memory");
	if (a && fn->touched_ms >= at_ms && fn->attr_known) {
		/* A directory changed here since: the kernel must ask again (getattr). */
		fnode_ref(f, fn);
		fnode_settle(f, fn);
		fill_entry(f, fn, e, 0);
		return 0;
	}
	if (a)
		fnode_set_server(f, fn, a, at_ms);
	fnode_ref(f, fn);
	fnode_settle(f, fn);
	fill_entry(f, fn, e, fn->dirty || fn->local_only ? now_mono_ms() : at_ms);
	return 0;
}

int files_lookup(struct files *f, uint64_t parent, const char *name, struct files_entry *e,
		 struct dt_error *err)
{
	char path[PATH_MAX], sb_id[OBJ_ID_MAX], dir_path[PATH_MAX];
	struct fnode *dir, *fn;
	struct listing *l = NULL;
	struct fattr a;
	int64_t asked;
	int ret;

	if (!name_is_file_name(name))
		return files_fail(err, ENOENT, "no such entry");
	dir = files_child(f, parent, name, path, sizeof(path), sb_id, sizeof(sb_id), err);
	if (!dir)
		return -err->err;
	pthread_mutex_lock(&f->lock);
	copy_str(dir_path, sizeof(dir_path), dir->path);
	/* A file made or written here is what this mount shows until it is uploaded. */
	fn = fnode_by_path(f, sb_id, path);
	if (fn && (fn->local_only || fn->dirty)) {
		ret = entry_for(f, sb_id, path, NULL, now_mono_ms(), e, err);
		goto out;
	}
	ret = listing_get(f, sb_id, dir_path, false, &l, err);
	if (ret < 0)
		goto out;
	{
		struct lent *ent = listing_entry(l, name);

		if (ent && !ent->dead) {
			a = ent->attr;
			ret = entry_for(f, sb_id, path, &a,
					l->fetched_ms ? l->fetched_ms : now_mono_ms(), e, err);
			goto out;
		}
		if (!l->truncated || ent) {
			ret = files_fail(err, ENOENT, "no such entry");
			goto out;
		}
	}
	/* Past the listing's limit: ask for the name itself. */
	pthread_mutex_unlock(&f->lock);
	asked = now_mono_ms();
	ret = files_info(f, sb_id, path, &a, err);
	pthread_mutex_lock(&f->lock);
	if (ret == 0) {
		listing_upsert(f, sb_id, dir_path, name, &a);
		ret = entry_for(f, sb_id, path, &a, asked, e, err);
	}
out:
	pthread_mutex_unlock(&f->lock);
	fnode_unpin(f, dir);
	return ret;
}

void files_forget(struct files *f, uint64_t ino, uint64_t nlookup)
{
	struct fnode *fn;

	pthread_mutex_lock(&f->lock);
	fn = fnode_by_ino(f, ino);
	if (fn && fn->nlookup) {
		fn->nlookup = nlookup >= fn->nlookup ? 0 : fn->nlookup - nlookup;
		if (fn->nlookup == 0)
			f->nretained++;
		fnode_settle(f, fn);
		files_evict(f);
	}
	pthread_mutex_unlock(&f->lock);
}

int files_getattr(struct files *f, uint64_t ino, struct stat *st, int64_t *data_ms,
		  struct dt_error *err)
{
	char sb_id[OBJ_ID_MAX], path[PATH_MAX], dir_path[PATH_MAX];
	struct fnode *fn = fnode_pin(f, ino, err);
	int64_t now = now_mono_ms();
	struct listing *l;
	const char *name;
	struct fattr a;
	int ret = 0;

	if (!fn)
		return -err->err;
	pthread_mutex_lock(&f->lock);
	*data_ms = now;
	if (fnode_is_root(fn) || fn->local_only || fn->dirty || fn->unlinked ||
	    (fn->attr_known && now - fn->attr_ms < FILES_TTL_MS &&
	     (fn->attr_ms > fn->touched_ms || fn->estimated))) {
		if (!fnode_is_root(fn) && !fn->local_only && !fn->dirty && !fn->unlinked)
			*data_ms = fn->attr_ms;
		/* An estimate moves with each change: the kernel keeps it DIR_INVAL_MS at most. */
		if (fn->estimated && *data_ms > now - (FILES_TTL_MS - DIR_INVAL_MS))
			*data_ms = now - (FILES_TTL_MS - DIR_INVAL_MS);
		fnode_stat(f, fn, st);
		goto out;
	}
	copy_str(sb_id, sizeof(sb_id), fn->sb_id);
	copy_str(path, sizeof(path), fn->path);
	name = path_split(path, dir_path, sizeof(dir_path));
	/* A fresh listing of the parent knows it already. */
	l = listing_find(f, sb_id, dir_path);
	if (listing_fresh(l, now) && l->fetched_ms > fn->touched_ms) {
		struct lent *ent = listing_entry(l, name);

		if (ent && !ent->dead) {
			fnode_set_server(f, fn, &ent->attr, l->fetched_ms);
			*data_ms = l->fetched_ms;
			fnode_stat(f, fn, st);
			goto out;
		}
	}
	pthread_mutex_unlock(&f->lock);
	ret = files_info(f, sb_id, path, &a, err);
	pthread_mutex_lock(&f->lock);
	if (ret == 0) {
		/* Meanwhile this mount may have written it: then its own view wins. */
		fnode_set_server(f, fn, &a, now);
		*data_ms = fn->dirty || fn->local_only ? now_mono_ms() : now;
		fnode_stat(f, fn, st);
	} else if (ret == -ENOENT && fn->keyed) {
		/* Deleted in the sandbox: the kernel's name for it must go as well. */
		struct fnode *parent = fnode_by_path(f, sb_id, dir_path);

		if (parent && f->inval.entry)
			f->inval.entry(f->inval.arg, parent->ino, name);
	}
out:
	pthread_mutex_unlock(&f->lock);
	fnode_unpin(f, fn);
	return ret;
}

void files_node_path(struct files *f, uint64_t ino, const char *name, char *out, size_t size)
{
	struct fnode *fn;
	struct cobj *o = NULL;
	char sb_id[OBJ_ID_MAX] = "", path[PATH_MAX] = "";

	pthread_mutex_lock(&f->lock);
	fn = fnode_by_ino(f, ino);
	if (fn) {
		copy_str(sb_id, sizeof(sb_id), fn->sb_id);
		copy_str(path, sizeof(path), fn->path);
	}
	pthread_mutex_unlock(&f->lock);
	/* The name as the user knows it, if the cache has it (no request for a log line). */
	if (sb_id[0])
		o = cache_peek(f->fs->cache, OBJ_SANDBOX, sb_id);
	snprintf(out, size, "sandboxes/%s/files%s%s%s", o ? cobj_name(o) : sb_id,
		 strcmp(path, "/") == 0 ? "" : path, name ? "/" : "", name ? name : "");
	cobj_put(o);
}

bool files_sandbox_of(struct files *f, uint64_t ino, char *id, size_t size)
{
	struct fnode *fn;

	pthread_mutex_lock(&f->lock);
	fn = fnode_by_ino(f, ino);
	if (fn)
		copy_str(id, size, fn->sb_id);
	pthread_mutex_unlock(&f->lock);
	return fn != NULL;
}

/* ---- directories -------------------------------------------------------- */

struct files_dir {
	uint64_t ino;
	char *sb_id, *path;
	int64_t data_ms;
	struct lent *ents; /* names owned */
	size_t n;
};

static int dir_push(struct files_dir *d, size_t *cap, const char *name, const struct fattr *a)
{
	char *copy;

	if (d->n == *cap) {
		size_t next = *cap ? *cap * 2 : 16;
		struct lent *grown = realloc(d->ents, next * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		d->ents = grown;
		*cap = next;
	}
	copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	d->ents[d->n++] = (struct lent){.name = copy, .attr = *a};
	return 0;
}

int files_opendir(struct files *f, uint64_t ino, struct files_dir **out, struct dt_error *err)
{
	struct fnode *fn = fnode_pin(f, ino, err);
	struct files_dir *d;
	struct listing *l;
	size_t cap = 0, plen;
	int ret = 0;

	if (!fn)
		return -err->err;
	d = calloc(1, sizeof(*d));
	pthread_mutex_lock(&f->lock);
	if (!d || !(d->sb_id = strdup(fn->sb_id)) || !(d->path = strdup(fn->path))) {
		ret = files_fail(err, ENOMEM, "out of memory");
		goto out;
	}
	if (!S_ISDIR(fn->attr.mode)) {
		ret = files_fail(err, ENOTDIR, "not a directory");
		goto out;
	}
	d->ino = ino;
	ret = listing_get(f, d->sb_id, d->path, false, &l, err);
	if (ret < 0)
		goto out;
	d->data_ms = l->fetched_ms ? l->fetched_ms : now_mono_ms();
	for (size_t i = 0; ret == 0 && !l->loop && i < l->n; i++)
		if (!l->ents[i].dead)
			ret = dir_push(d, &cap, l->ents[i].name, &l->ents[i].attr);
	/* Files created here and not uploaded yet are entries too. */
	plen = strlen(d->path);
	for (size_t b = 0; ret == 0 && b < f->nbuckets; b++)
		for (struct fnode *c = f->by_key[b]; ret == 0 && c; c = c->next_by_key) {
			const char *rest = c->path + plen;

			if (!c->local_only || strcmp(c->sb_id, d->sb_id) != 0 ||
			    strncmp(c->path, d->path, plen) != 0)
				continue;
			if (plen > 1) {
				if (*rest != '/')
					continue;
				rest++;
			}
			if (!*rest || strchr(rest, '/'))
				continue;
			{
				struct lent *listed = listing_entry(l, rest);

				if (listed && !listed->dead)
					continue;
			}
			ret = dir_push(d, &cap, rest, &c->attr);
		}
	if (ret < 0)
		ret = files_fail(err, ENOMEM, "out of memory");
out:
	pthread_mutex_unlock(&f->lock);
	fnode_unpin(f, fn);
	if (ret < 0) {
		files_dir_free(d);
		return ret;
	}
	*out = d;
	return 0;
}

size_t files_dir_count(const struct files_dir *d)
{
	return d->n;
}

const char *files_dir_name(const struct files_dir *d, size_t i)
{
	return d->ents[i].name;
}

uint64_t files_dir_parent_ino(struct files *f, const struct files_dir *d)
{
	char parent[PATH_MAX];
	struct fnode *fn;
	uint64_t ino = 0;

	if (strcmp(d->path, "/") == 0)
		return 0; /* the sandbox's directory: the caller knows it */
	path_split(d->path, parent, sizeof(parent));
	pthread_mutex_lock(&f->lock);
	fn = fnode_by_path(f, d->sb_id, parent);
	if (fn)
		ino = fn->ino;
	pthread_mutex_unlock(&f->lock);
	return ino;
}

int files_dir_entry(struct files *f, const struct files_dir *d, size_t i, struct files_entry *e,
		    struct dt_error *err)
{
	char path[PATH_MAX];
	int ret;

	if (path_join(path, sizeof(path), d->path, d->ents[i].name) < 0)
		return files_fail(err, ENAMETOOLONG, "path too long");
	pthread_mutex_lock(&f->lock);
	ret = entry_for(f, d->sb_id, path, &d->ents[i].attr, d->data_ms, e, err);
	pthread_mutex_unlock(&f->lock);
	return ret;
}

void files_dir_peek(struct files *f, const struct files_dir *d, size_t i, uint64_t *ino,
		    mode_t *mode)
{
	char path[PATH_MAX];
	struct fnode *fn = NULL;

	*mode = d->ents[i].attr.mode;
	*ino = 0;
	if (path_join(path, sizeof(path), d->path, d->ents[i].name) < 0)
		return;
	pthread_mutex_lock(&f->lock);
	fn = fnode_by_path(f, d->sb_id, path);
	*ino = fn ? fn->ino : key_hash(d->sb_id, path) | FILES_INO_BIT;
	pthread_mutex_unlock(&f->lock);
}

void files_dir_free(struct files_dir *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->ents[i].name);
	free(d->ents);
	free(d->sb_id);
	free(d->path);
	free(d);
}

/* ---- the whole cache ---------------------------------------------------- */

int files_statfs(struct files *f, struct statvfs *st)
{
	if (statvfs(stage_dir_path(f->sd), st) < 0)
		return -errno;
	st->f_namemax = 255;
	return 0;
}

void files_drop_caches(struct files *f)
{
	uint64_t *inos = NULL;
	size_t ninos = 0;

	pthread_mutex_lock(&f->lock);
	if (f->inval.inode_now)
		inos = malloc((f->count ? f->count : 1) * sizeof(*inos));
	listings_drop_all(f);
	for (size_t b = 0; b < f->nbuckets; b++)
		for (struct fnode *fn = f->by_ino[b]; fn; fn = fn->next_by_ino) {
			fn->attr_ms = 0;
			if (!fnode_is_root(fn))
				fn->attr_known = fn->dirty || fn->local_only;
			/* The next open checks the sandbox and keeps no kernel page. */
			if (fn->st && !fn->dirty && !fn->local_only && !fn->opens && !fn->pins)
				fn->st->srv_known = false;
			if (fn->nlookup && inos && ninos < f->count)
				inos[ninos++] = fn->ino;
			else if (fn->nlookup && f->inval.inode)
				f->inval.inode(f->inval.arg, fn->ino, 0, 0);
		}
	/* Clean copies nobody uses go: everything will be fetched again. */
	{
		int64_t limit = f->cache_bytes;

		f->cache_bytes = 0;
		files_evict(f);
		f->cache_bytes = limit;
	}
	pthread_mutex_unlock(&f->lock);
	/*
	 * Done before `flush` returns (queued, they would still be dropping
	 * pages that reads made after it had just fetched), and outside the
	 * lock: the kernel may wait for a read in flight, which takes it.
	 */
	for (size_t i = 0; i < ninos; i++)
		f->inval.inode_now(f->inval.arg, inos[i]);
	free(inos);
}
