/*
 * files/ listings: one GET /files per directory, kept FILES_TTL_MS, indexed
 * by name, patched by this mount's own changes (also while a fetch is in
 * flight), shared by concurrent lookups, cleaned of names no file may
 * have, and checked for symbolic links back up (loops). Everything here
 * runs under files.lock except the fetch itself.
 */
#include "files_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

static size_t lbucket(const struct files *f, uint64_t h)
{
	return h & (f->lnbuckets - 1);
}

struct listing *listing_find(struct files *f, const char *sb_id, const char *path)
{
	uint64_t h = key_hash(sb_id, path);

	for (struct listing *l = f->lbuckets[lbucket(f, h)]; l; l = l->next)
		if (l->key_hash == h && strcmp(l->path, path) == 0 && strcmp(l->sb_id, sb_id) == 0)
			return l;
	return NULL;
}

static void listing_clear_entries(struct listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->ents[i].name);
	free(l->ents);
	free(l->index);
	l->ents = NULL;
	l->index = NULL;
	l->n = l->cap = l->index_cap = 0;
}

static void pend_clear(struct listing *l);

static void listing_free(struct listing *l)
{
	pend_clear(l);
	listing_clear_entries(l);
	free(l->sb_id);
	free(l->path);
	free(l);
}

static void listing_unlink(struct files *f, struct listing *l)
{
	for (struct listing **pp = &f->lbuckets[lbucket(f, l->key_hash)]; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			f->lcount--;
			return;
		}
}

static uint64_t name_hash(const char *name)
{
	return fnv1a(14695981039346656037ULL, name, strlen(name));
}

static int index_rebuild(struct listing *l, size_t cap)
{
	uint32_t *index = calloc(cap, sizeof(*index));

	if (!index)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		size_t slot = name_hash(l->ents[i].name) & (cap - 1);

		while (index[slot])
			slot = (slot + 1) & (cap - 1);
		index[slot] = (uint32_t)(i + 1);
	}
	free(l->index);
	l->index = index;
	l->index_cap = cap;
	return 0;
}

struct lent *listing_entry(struct listing *l, const char *name)
{
	size_t slot;

	if (!l->index_cap)
		return NULL;
	slot = name_hash(name) & (l->index_cap - 1);
	while (l->index[slot]) {
		struct lent *e = &l->ents[l->index[slot] - 1];

		if (strcmp(e->name, name) == 0)
			return e;
		slot = (slot + 1) & (l->index_cap - 1);
	}
	return NULL;
}

/* Appends an entry (the name must not be there yet). Takes @name. */
static int listing_append(struct listing *l, char *name, const struct fattr *a)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct lent *ents = realloc(l->ents, cap * sizeof(*ents));

		if (!ents)
			return -ENOMEM;
		l->ents = ents;
		l->cap = cap;
	}
	if ((l->n + 1) * 2 > l->index_cap) {
		size_t cap = l->index_cap ? l->index_cap * 2 : 32;

		while (cap < (l->n + 1) * 2)
			cap *= 2;
		if (index_rebuild(l, cap) < 0)
			return -ENOMEM;
	}
	l->ents[l->n] = (struct lent){.name = name, .attr = *a};
	{
		size_t slot = name_hash(name) & (l->index_cap - 1);

		while (l->index[slot])
			slot = (slot + 1) & (l->index_cap - 1);
		l->index[slot] = (uint32_t)(l->n + 1);
	}
	l->n++;
	return 0;
}

static void apply_upsert(struct listing *l, const char *name, const struct fattr *a)
{
	struct lent *e = listing_entry(l, name);
	char *copy;

	if (e) {
		e->attr = *a;
		e->dead = false;
		return;
	}
	copy = strdup(name);
	if (!copy || listing_append(l, copy, a) < 0) {
		free(copy);
		l->fetched_ms = 0; /* incomplete now: never trusted again */
	}
}

static void apply_remove(struct listing *l, const char *name)
{
	struct lent *e = listing_entry(l, name);

	if (e)
		e->dead = true;
}

/* Remembers a change made while @l loads; what the fetch brings may predate it. */
static void pend_op(struct listing *l, const char *name, const struct fattr *a)
{
	struct lop *grown = realloc(l->pend, (l->npend + 1) * sizeof(*grown));
	char *copy = strdup(name);

	if (!grown || !copy) {
		free(copy);
		if (grown)
			l->pend = grown;
		l->fetched_ms = 0; /* cannot replay it: do not trust the fetch */
		return;
	}
	l->pend = grown;
	l->pend[l->npend].name = copy;
	l->pend[l->npend].remove = a == NULL;
	if (a)
		l->pend[l->npend].attr = *a;
	l->npend++;
}

static void pend_clear(struct listing *l)
{
	for (size_t i = 0; i < l->npend; i++)
		free(l->pend[i].name);
	free(l->pend);
	l->pend = NULL;
	l->npend = 0;
}

/* After a fetch: this mount's own changes made meanwhile are applied again. */
static void pend_replay(struct listing *l)
{
	for (size_t i = 0; i < l->npend; i++) {
		if (l->pend[i].remove)
			apply_remove(l, l->pend[i].name);
		else
			apply_upsert(l, l->pend[i].name, &l->pend[i].attr);
	}
	pend_clear(l);
}

void listing_upsert(struct files *f, const char *sb_id, const char *dir, const char *name,
		    const struct fattr *a)
{
	struct listing *l = listing_find(f, sb_id, dir);

	if (!l)
		return;
	if (l->loading)
		pend_op(l, name, a);
	else
		apply_upsert(l, name, a);
}

void listing_remove(struct files *f, const char *sb_id, const char *dir, const char *name)
{
	struct listing *l = listing_find(f, sb_id, dir);

	if (!l)
		return;
	if (l->loading)
		pend_op(l, name, NULL);
	else
		apply_remove(l, name);
}

void dir_touched(struct files *f, const char *sb_id, const char *dir)
{
	struct fnode *fn = fnode_by_path(f, sb_id, dir);

	if (!fn)
		return;
	fn->touched_ms = now_mono_ms();
	/* A new or removed entry changes a directory's mtime, as on a disk. */
	fn->ov_set = false;
	if (fn->attr_known && strcmp(fn->path, "/") != 0) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		if (now.tv_sec > fn->attr.mtime.tv_sec ||
		    (now.tv_sec == fn->attr.mtime.tv_sec && now.tv_nsec > fn->attr.mtime.tv_nsec))
			fn->attr.mtime = now;
		fn->attr_ms = fn->touched_ms;
		fn->estimated = true;
	}
	if (fn->nlookup && f->inval.inode && fn->touched_ms - fn->inval_ms >= DIR_INVAL_MS) {
		fn->inval_ms = fn->touched_ms;
		f->inval.inode(f->inval.arg, fn->ino, -1, 0);
	}
}

void listing_drop_tree(struct files *f, const char *sb_id, const char *path)
{
	size_t len = strlen(path);
	bool root = strcmp(path, "/") == 0;

	for (size_t b = 0; b < f->lnbuckets; b++) {
		struct listing **pp = &f->lbuckets[b];

		while (*pp) {
			struct listing *l = *pp;

			if (strcmp(l->sb_id, sb_id) != 0 ||
			    (!root && (strncmp(l->path, path, len) != 0 ||
				       (l->path[len] != '\0' && l->path[len] != '/')))) {
				pp = &l->next;
				continue;
			}
			if (l->loading) {
				/* Its loader owns it; what it brings is not trusted. */
				l->fetched_ms = 0;
				pp = &l->next;
				continue;
			}
			*pp = l->next;
			f->lcount--;
			listing_free(l);
		}
	}
}

/* Drops listings nobody can trust any more, at most once per TTL. */
static void listing_purge(struct files *f, int64_t now)
{
	if (now - f->last_purge_ms < FILES_TTL_MS)
		return;
	f->last_purge_ms = now;
	for (size_t b = 0; b < f->lnbuckets; b++) {
		struct listing **pp = &f->lbuckets[b];

		while (*pp) {
			struct listing *l = *pp;

			if (l->loading || listing_fresh(l, now) ||
			    (l->failed_ms && now - l->failed_ms < FILES_TTL_MS)) {
				pp = &l->next;
				continue;
			}
			*pp = l->next;
			f->lcount--;
			listing_free(l);
		}
	}
}

static struct listing *listing_new(struct files *f, const char *sb_id, const char *path)
{
	struct listing *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->sb_id = strdup(sb_id);
	l->path = strdup(path);
	if (!l->sb_id || !l->path) {
		listing_free(l);
		return NULL;
	}
	l->key_hash = key_hash(sb_id, path);
	l->next = f->lbuckets[lbucket(f, l->key_hash)];
	f->lbuckets[lbucket(f, l->key_hash)] = l;
	f->lcount++;
	return l;
}

/* Fills @l from the sandbox's answer, dropping names no directory entry may have. */
static void listing_fill(struct files *f, struct listing *l, struct dt_file_list *list)
{
	size_t unsafe = list->dropped, dups = 0;
	char sample[64] = "";

	listing_clear_entries(l);
	for (size_t i = 0; i < list->count; i++) {
		struct dt_file_info *fi = &list->items[i];
		struct fattr a;

		if (!name_is_file_name(fi->name)) {
			if (!sample[0])
				snprintf(sample, sizeof(sample), "%.40s%s", fi->name,
					 strlen(fi->name) > 40 ? "..." : "");
			unsafe++;
			continue;
		}
		if (listing_entry(l, fi->name)) {
			dups++;
			continue;
		}
		fattr_from_info(&a, fi);
		if (listing_append(l, fi->name, &a) < 0) {
			log_warn("files: out of memory listing %s", l->path);
			break;
		}
		fi->name = NULL; /* taken */
	}
	l->truncated = list->truncated;
	if (unsafe || dups || l->truncated) {
		/* Once per directory at warn: a hostile sandbox must not flood the log. */
		struct fnode *dir = fnode_by_path(f, l->sb_id, l->path);
		enum log_level level = dir && dir->warned ? LOG_LVL_DEBUG : LOG_LVL_WARN;

		if (dir)
			dir->warned = true;
		if (unsafe && log_enabled(level))
			log_msg(
			    level,
			    "files: %s of sandbox %s: dropped %zu entr%s with names no file may "
			    "have (empty, ., .., containing / or over 255 bytes)%s%s",
			    l->path, l->sb_id, unsafe, unsafe == 1 ? "y" : "ies",
			    sample[0] ? ", e.g. " : "", sample);
		if (dups && log_enabled(level))
			log_msg(level, "files: %s of sandbox %s: dropped %zu duplicate names",
				l->path, l->sb_id, dups);
		if (l->truncated && log_enabled(level))
			log_msg(level,
				"files: %s of sandbox %s has more than %d entries; only those are "
				"listed (the others can still be opened by name)",
				l->path, l->sb_id, FILES_MAX_LISTING);
	}
}

/* A digest of a listing: names, types, sizes and mtimes in the server's order. */
static uint64_t listing_digest(const struct listing *l)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < l->n; i++) {
		const struct lent *e = &l->ents[i];

		h = fnv1a(h, e->name, strlen(e->name) + 1);
		h = fnv1a(h, &e->attr.mode, sizeof(e->attr.mode));
		h = fnv1a(h, &e->attr.size, sizeof(e->attr.size));
		h = fnv1a(h, &e->attr.mtime.tv_sec, sizeof(e->attr.mtime.tv_sec));
		h = fnv1a(h, &e->attr.mtime.tv_nsec, sizeof(e->attr.mtime.tv_nsec));
	}
	return h;
}

/*
 * The sandbox's listings follow symbolic links, so a link back up (as
 * /usr/bin/X11 -> .) is a directory holding itself, and every recursive
 * walk would go on for ever. A directory that lists exactly what one of its
 * ancestors lists (names, types, sizes and nanosecond mtimes) is such a
 * link: it is listed empty, and names in it still resolve.
 */
static void check_loop(struct files *f, struct listing *l)
{
	char anc[PATH_MAX];
	struct fnode *self;
	uint64_t fp;

	l->loop = false;
	if (l->n == 0)
		return;
	fp = listing_digest(l);
	self = fnode_by_path(f, l->sb_id, l->path);
	if (self) {
		self->fp = fp;
		self->fp_known = true;
	}
	copy_str(anc, sizeof(anc), l->path);
	while (strcmp(anc, "/") != 0) {
		char up[PATH_MAX];
		struct fnode *a;

		path_split(anc, up, sizeof(up));
		copy_str(anc, sizeof(anc), up);
		a = fnode_by_path(f, l->sb_id, anc);
		if (a && a->fp_known && a->fp == fp) {
			log_debug(
			    "files: %s of sandbox %s lists what %s lists (a symbolic link back "
			    "up): shown empty, so that walks end",
			    l->path, l->sb_id, anc);
			l->loop = true;
			return;
		}
	}
}

int listing_get(struct files *f, const char *sb_id, const char *dir, bool force,
		struct listing **out, struct dt_error *err)
{
	struct dt_file_list list = {0};
	struct listing *l;
	int64_t asked = now_mono_ms(), started;
	int ret;

	listing_purge(f, asked);
	for (;;) {
		struct timespec until;

		l = listing_find(f, sb_id, dir);
		if (!l || !l->loading)
			break;
		/* Another thread is fetching it: share its answer. */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&f->loaded, &f->lock, &until);
		if (backend_cancelled())
			return files_fail(err, EINTR, "interrupted while waiting for a listing");
		if (l != listing_find(f, sb_id, dir) || l->loading)
			continue;
		if (l->fetched_ms) {
			*out = l;
			return 0;
		}
		if (l->failed_ms >= asked) {
			/* It failed while this caller waited for it: one syscall, one deadline. */
			*err = l->fail_err;
			return -l->fail_err.err;
		}
	}
	if (l && !force && listing_fresh(l, now_mono_ms())) {
		*out = l;
		return 0;
	}
	if (l && l->stalled && now_mono_ms() - l->failed_ms < FILES_TTL_MS) {
		/*
		 * Its fetch got no answer in time just now: the kernel asks again
		 * after a failed revalidation, and that one must not wait a second
		 * deadline.
		 */
		*err = l->fail_err;
		return -l->fail_err.err;
	}
	if (!l)
		l = listing_new(f, sb_id, dir);
	if (!l)
		return files_fail(err, ENOMEM, "out of memory");
	l->loading = true;
	l->failed_ms = 0;
	l->stalled = false;
	started = now_mono_ms();
	l->fetched_ms = started;
	pthread_mutex_unlock(&f->lock);

	ret = TB_CALL(f, sb_id, err, t, dt_fs_list(t->tb, dir, &list, err));

	pthread_mutex_lock(&f->lock);
	l->loading = false;
	if (ret == 0) {
		/* A change made meanwhile zeroed fetched_ms: answer, but trust it no longer. */
		bool trusted = l->fetched_ms != 0;

		listing_fill(f, l, &list);
		pend_replay(l);
		check_loop(f, l);
		l->fetched_ms = trusted ? started : 0;
		*out = l;
	} else if (ret != -EINTR && ret != -ENOMEM) {
		/* Kept, empty and untrusted, for the callers that waited for it. */
		listing_clear_entries(l);
		pend_clear(l);
		l->fetched_ms = 0;
		l->failed_ms = now_mono_ms();
		l->stalled = ret == -ETIMEDOUT && err->transport;
		l->fail_err = *err;
	} else {
		listing_unlink(f, l);
		listing_free(l);
	}
	pthread_cond_broadcast(&f->loaded);
	dt_file_list_clear(&list);
	return ret;
}

void listing_new_empty(struct files *f, const char *sb_id, const char *dir, int64_t at_ms)
{
	struct listing *l = listing_find(f, sb_id, dir);

	if (l && l->loading)
		return;
	if (!l)
		l = listing_new(f, sb_id, dir);
	if (!l)
		return;
	listing_clear_entries(l);
	l->truncated = false;
	l->loop = false;
	l->failed_ms = 0;
	l->stalled = false;
	l->fetched_ms = at_ms;
}

void listings_drop_all(struct files *f)
{
	for (size_t b = 0; b < f->lnbuckets; b++) {
		struct listing **pp = &f->lbuckets[b];

		while (*pp) {
			struct listing *l = *pp;

			if (l->loading) {
				/* Its loader owns it; what it brings is not trusted. */
				l->fetched_ms = 0;
				pp = &l->next;
				continue;
			}
			*pp = l->next;
			f->lcount--;
			listing_free(l);
		}
	}
}

void listings_free_all(struct files *f)
{
	for (size_t b = 0; f->lbuckets && b < f->lnbuckets; b++) {
		struct listing *l = f->lbuckets[b];

		while (l) {
			struct listing *next = l->next;

			listing_free(l);
			l = next;
		}
	}
}
