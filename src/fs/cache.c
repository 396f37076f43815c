/*
 * One mutex guards the collections and the error notes; network calls are
 * made without it. A per-collection walk lock makes concurrent listings
 * share one walk instead of each making their own.
 */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

/* How long an object deleted by us stays out of listings that began before. */
#define TOMBSTONE_MS 5000
#define PAGE_LIMIT 100

struct tombstone {
	char id[OBJ_ID_MAX];
	int64_t at_ms;
};

struct coll {
	struct cobj **items;
	size_t n;
	int64_t listed_ms; /* 0: never, or flushed */
	bool ever_listed;
	pthread_mutex_t walk_lock;
	/*
	 * Walks that failed (not interrupted), counted, and why the last did.
	 * A caller that waited for one fails with it instead of walking again,
	 * so a backend without answer costs it one deadline, not two. A count,
	 * not a time: a caller that comes in the millisecond a failure ended did
	 * not wait for it.
	 */
	uint64_t walk_failures;
	struct dt_error walk_err;
};

struct error_note {
	char id[OBJ_ID_MAX];
	char *msg;
};

/*
 * A fetch that got no answer within the request deadline (a stalled
 * backend) is remembered for CACHE_TTL_MS, and the same fetch asked again in
 * that time fails at once with the same error. The kernel asks twice when
 * the revalidation of a cached name fails (a fresh lookup follows it), so
 * without this one stat would wait two deadlines.
 */
#define STALL_NOTES 8

struct stall_note {
	enum obj_type type;
	char key[OBJ_ID_MAX];
	int64_t at_ms; /* 0: unused */
	struct dt_error err;
};

struct cache {
	struct backend *bk;
	cache_gone_fn gone_fn;
	void *gone_arg;
	pthread_mutex_t lock;
	struct coll colls[4]; /* by enum obj_type */
	struct tombstone *tombs;
	size_t ntombs;
	struct error_note *notes;
	size_t nnotes;
	struct stall_note stalls[STALL_NOTES];
	unsigned next_stall;
};

/* ---- objects ------------------------------------------------------------ */

const char *cobj_id(const struct cobj *o)
{
	const char *id = o->type == OBJ_SANDBOX ? o->sb.id : o->type == OBJ_VOLUME ? o->vol.id
										: o->snap.id;
	return id ? id : "";
}

const char *cobj_name(const struct cobj *o)
{
	const char *name = o->type == OBJ_SANDBOX  ? o->sb.name
			   : o->type == OBJ_VOLUME ? o->vol.name
						   : o->snap.name;
	return name && name[0] ? name : cobj_id(o);
}

const char *cobj_state(const struct cobj *o)
{
	const char *state = o->type == OBJ_SANDBOX  ? o->sb.state
			    : o->type == OBJ_VOLUME ? o->vol.state
						    : o->snap.state;
	return state && state[0] ? state : "unknown";
}

const char *cobj_updated_at(const struct cobj *o)
{
	const char *at = o->type == OBJ_SANDBOX	 ? o->sb.updated_at
			 : o->type == OBJ_VOLUME ? o->vol.updated_at
						 : o->snap.updated_at;
	return at ? at : "";
}

const char *cobj_json(const struct cobj *o)
{
	const char *json = o->type == OBJ_SANDBOX  ? o->sb.json
			   : o->type == OBJ_VOLUME ? o->vol.json
						   : o->snap.json;
	return json ? json : "{}";
}

struct cobj *cobj_ref(struct cobj *o)
{
	__atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED);
	return o;
}

void cobj_put(struct cobj *o)
{
	if (!o || __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (o->type == OBJ_SANDBOX)
		dt_sandbox_clear(&o->sb);
	else if (o->type == OBJ_VOLUME)
		dt_volume_clear(&o->vol);
	else
		dt_snapshot_clear(&o->snap);
	free(o);
}

void cobj_array_free(struct cobj **items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cobj_put(items[i]);
	free(items);
}

static struct cobj *cobj_new(enum obj_type t)
{
	struct cobj *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->refs = 1;
	o->type = t;
	o->fetched_ms = now_mono_ms();
	return o;
}

/* Objects in these states are gone for a user even if the backend still lists them. */
static bool cobj_visible(const struct cobj *o)
{
	const char *state = cobj_state(o);

	if (o->type == OBJ_SANDBOX)
		return strcmp(state, "destroyed") != 0;
	if (o->type == OBJ_VOLUME)
		return strcmp(state, "deleted") != 0;
	return true;
}

/* ---- collections -------------------------------------------------------- */

struct cache *cache_new(struct backend *bk)
{
	struct cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->bk = bk;
	pthread_mutex_init(&c->lock, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(c->colls); i++)
		pthread_mutex_init(&c->colls[i].walk_lock, NULL);
	return c;
}

void cache_set_gone_hook(struct cache *c, cache_gone_fn fn, void *arg)
{
	pthread_mutex_lock(&c->lock);
	c->gone_fn = fn;
	c->gone_arg = arg;
	pthread_mutex_unlock(&c->lock);
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(c->colls); i++) {
		cobj_array_free(c->colls[i].items, c->colls[i].n);
		pthread_mutex_destroy(&c->colls[i].walk_lock);
	}
	for (size_t i = 0; i < c->nnotes; i++)
		free(c->notes[i].msg);
	free(c->notes);
	free(c->tombs);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static bool fresh(int64_t at_ms, int64_t now)
{
	return at_ms != 0 && now - at_ms < CACHE_TTL_MS;
}

/* Under the lock. */
static ssize_t find_index(struct coll *co, const char *name_or_id, bool by_id_too)
{
	for (size_t i = 0; i < co->n; i++) {
		if (strcmp(cobj_name(co->items[i]), name_or_id) == 0)
			return (ssize_t)i;
	}
	if (by_id_too)
		for (size_t i = 0; i < co->n; i++)
			if (strcmp(cobj_id(co->items[i]), name_or_id) == 0)
				return (ssize_t)i;
	return -1;
}

static ssize_t find_id(struct coll *co, const char *id)
{
	for (size_t i = 0; i < co->n; i++)
		if (strcmp(cobj_id(co->items[i]), id) == 0)
			return (ssize_t)i;
	return -1;
}

static void remove_at(struct coll *co, size_t i)
{
	cobj_put(co->items[i]);
	memmove(&co->items[i], &co->items[i + 1], (co->n - i - 1) * sizeof(co->items[0]));
	co->n--;
}

/* Objects a refresh found gone, told to the hook once the lock is released. */
struct gone_list {
	struct cobj **items;
	size_t n;
};

/* Under the lock. Takes a new reference to @o; on ENOMEM the note is lost (timeouts cover it). */
static void gone_add(struct gone_list *g, struct cobj *o)
{
	struct cobj **items = realloc(g->items, (g->n + 1) * sizeof(*items));

	if (!items)
		return;
	g->items = items;
	g->items[g->n++] = cobj_ref(o);
}

/* Without the lock. */
static void gone_tell(struct cache *c, struct gone_list *g)
{
	for (size_t i = 0; i < g->n; i++) {
		if (c->gone_fn)
			c->gone_fn(c->gone_arg, g->items[i]->type, cobj_id(g->items[i]),
				   cobj_name(g->items[i]));
		cobj_put(g->items[i]);
	}
	free(g->items);
	g->items = NULL;
	g->n = 0;
}

/* Under the lock: puts @o in place of the object with its id, or appends it. Takes @o. */
static int insert_locked(struct coll *co, struct cobj *o)
{
	ssize_t i = find_id(co, cobj_id(o));
	struct cobj **items;

	if (i >= 0) {
		cobj_put(co->items[i]);
		co->items[i] = o;
		return 0;
	}
	items = realloc(co->items, (co->n + 1) * sizeof(*items));
	if (!items) {
		cobj_put(o);
		return -ENOMEM;
	}
	co->items = items;
	co->items[co->n++] = o;
	return 0;
}

static bool tombstoned_locked(struct cache *c, const char *id, int64_t now)
{
	size_t w = 0;
	bool found = false;

	for (size_t i = 0; i < c->ntombs; i++) {
		if (now - c->tombs[i].at_ms >= TOMBSTONE_MS)
			continue;
		if (strcmp(c->tombs[i].id, id) == 0)
			found = true;
		c->tombs[w++] = c->tombs[i];
	}
	c->ntombs = w;
	return found;
}

/* The backend's listing as fresh objects. 0 or -errno. */
static int walk(struct cache *c, enum obj_type t, struct cobj ***out, size_t *nout,
		struct dt_error *err)
{
	struct cobj **objs = NULL;
	size_t n = 0;
	int ret;

	if (t == OBJ_SANDBOX) {
		struct dt_list_query q = {.page_limit = PAGE_LIMIT};
		struct dt_sandbox_list l = {0};

		ret = BK_CALL(c->bk, err, cl, dt_sandbox_list(cl, &q, &l, err));
		if (ret == 0 && l.count && !(objs = calloc(l.count, sizeof(*objs))))
			ret = -ENOMEM;
		for (size_t i = 0; ret == 0 && i < l.count; i++) {
			struct cobj *o = cobj_new(OBJ_SANDBOX);

			if (!o) {
				ret = -ENOMEM;
				break;
			}
			o->sb = l.items[i];
			memset(&l.items[i], 0, sizeof(l.items[i]));
			o->full = o->sb.has_env;
			objs[n++] = o;
		}
		dt_sandbox_list_clear(&l);
	} else if (t == OBJ_VOLUME) {
		struct dt_volume_list l = {0};

		ret = BK_CALL(c->bk, err, cl, dt_volume_list(cl, &l, err));
		if (ret == 0 && l.count && !(objs = calloc(l.count, sizeof(*objs))))
			ret = -ENOMEM;
		for (size_t i = 0; ret == 0 && i < l.count; i++) {
			struct cobj *o = cobj_new(OBJ_VOLUME);

			if (!o) {
				ret = -ENOMEM;
				break;
			}
			o->vol = l.items[i];
			memset(&l.items[i], 0, sizeof(l.items[i]));
			o->full = true;
			objs[n++] = o;
		}
		dt_volume_list_clear(&l);
	} else {
		struct dt_snapshot_list l = {0};

		ret = BK_CALL(c->bk, err, cl, dt_snapshot_list(cl, &l, err));
		if (ret == 0 && l.count && !(objs = calloc(l.count, sizeof(*objs))))
			ret = -ENOMEM;
		for (size_t i = 0; ret == 0 && i < l.count; i++) {
			struct cobj *o = cobj_new(OBJ_SNAPSHOT);

			if (!o) {
				ret = -ENOMEM;
				break;
			}
			o->snap = l.items[i];
			memset(&l.items[i], 0, sizeof(l.items[i]));
			o->full = true;
			objs[n++] = o;
		}
		dt_snapshot_list_clear(&l);
	}
	if (ret < 0) {
		if (ret == -ENOMEM) {
			err->err = ENOMEM;
			snprintf(err->message, sizeof(err->message), "out of memory");
		}
		cobj_array_free(objs, n);
		return ret;
	}
	*out = objs;
	*nout = n;
	return 0;
}

/*
 * Under the lock: replaces the collection with a walk's result. Objects the
 * cache learnt after the walk began are newer than the walk's: they stay.
 */
static void merge_walk_locked(struct cache *c, struct coll *co, struct cobj **objs, size_t n,
			      int64_t started, struct gone_list *gone)
{
	struct cobj **next = calloc(n + co->n + 1, sizeof(*next));
	size_t m = 0;
	int64_t now = now_mono_ms();

	if (!next) {
		cobj_array_free(objs, n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		ssize_t old = find_id(co, cobj_id(objs[i]));

		if (tombstoned_locked(c, cobj_id(objs[i]), now) || !cobj_visible(objs[i])) {
			cobj_put(objs[i]);
			continue;
		}
		if (old >= 0 && co->items[old]->fetched_ms >= started) {
			cobj_put(objs[i]);
			next[m++] = cobj_ref(co->items[old]);
		} else if (old >= 0 && co->items[old]->full && !objs[i]->full &&
			   strcmp(cobj_updated_at(co->items[old]), cobj_updated_at(objs[i])) == 0) {
			/* Same record: keep the full copy, as fresh as the listing. */
			co->items[old]->fetched_ms = objs[i]->fetched_ms;
			cobj_put(objs[i]);
			next[m++] = cobj_ref(co->items[old]);
		} else {
			next[m++] = objs[i];
		}
	}
	for (size_t i = 0; i < co->n; i++) {
		struct cobj *o = co->items[i];
		bool listed = false;

		for (size_t j = 0; j < m && !listed; j++)
			listed = next[j] == o || strcmp(cobj_id(next[j]), cobj_id(o)) == 0;
		if (!listed && o->fetched_ms >= started)
			next[m++] = cobj_ref(o);
		else if (!listed)
			gone_add(gone, o);
	}
	free(objs);
	cobj_array_free(co->items, co->n);
	co->items = next;
	co->n = m;
	co->listed_ms = now;
	co->ever_listed = true;
}

static int copy_items_locked(struct coll *co, struct cobj ***items, size_t *n)
{
	struct cobj **copy = calloc(co->n + 1, sizeof(*copy));

	if (!copy)
		return -ENOMEM;
	for (size_t i = 0; i < co->n; i++)
		copy[i] = cobj_ref(co->items[i]);
	*items = copy;
	*n = co->n;
	return 0;
}

/*
 * Waits for another thread's walk of the same collection, which may take a
 * request's deadline; an interrupt ends the wait as it would the walk.
 */
static int lock_walk(struct coll *co, struct dt_error *err)
{
	for (;;) {
		struct timespec until;
		int rc;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		rc = pthread_mutex_timedlock(&co->walk_lock, &until);
		if (rc == 0)
			return 0;
		if (rc != ETIMEDOUT)
			return -rc;
		if (backend_cancelled()) {
			err->err = EINTR;
			err->http_status = 0;
			err->transport = false;
			snprintf(err->message, sizeof(err->message),
				 "interrupted while waiting for a listing");
			return -EINTR;
		}
	}
}

int cache_list(struct cache *c, enum obj_type t, struct cobj ***items, size_t *n,
	       struct dt_error *err)
{
	struct coll *co = &c->colls[t];
	struct gone_list gone = {0};
	struct cobj **objs = NULL;
	size_t nobjs = 0;
	uint64_t failures_before;
	int64_t started;
	int ret;

	pthread_mutex_lock(&c->lock);
	failures_before = co->walk_failures;
	pthread_mutex_unlock(&c->lock);
	ret = lock_walk(co, err);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&c->lock);
	if (fresh(co->listed_ms, now_mono_ms())) {
		ret = copy_items_locked(co, items, n);
		pthread_mutex_unlock(&c->lock);
		goto out;
	}
	if (co->walk_failures != failures_before) { /* failed while this caller waited for it */
		*err = co->walk_err;
		ret = -co->walk_err.err;
		pthread_mutex_unlock(&c->lock);
		goto out;
	}
	pthread_mutex_unlock(&c->lock);

	started = now_mono_ms();
	ret = walk(c, t, &objs, &nobjs, err);
	if (ret < 0) {
		if (ret != -EINTR && ret != -ENOMEM) {
			pthread_mutex_lock(&c->lock);
			co->walk_failures++;
			co->walk_err = *err;
			pthread_mutex_unlock(&c->lock);
		}
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	merge_walk_locked(c, co, objs, nobjs, started, &gone);
	ret = copy_items_locked(co, items, n);
	pthread_mutex_unlock(&c->lock);
out:
	pthread_mutex_unlock(&co->walk_lock);
	gone_tell(c, &gone);
	if (ret == -ENOMEM) {
		err->err = ENOMEM;
		err->http_status = 0;
		snprintf(err->message, sizeof(err->message), "out of memory");
	}
	return ret;
}

/* ---- single objects ----------------------------------------------------- */

/* The note of a stalled fetch of @key, or NULL; with c->lock held. */
static struct stall_note *stall_find_locked(struct cache *c, enum obj_type t, const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(c->stalls); i++) {
		struct stall_note *s = &c->stalls[i];

		if (s->at_ms && s->type == t && strcmp(s->key, key) == 0)
			return s;
	}
	return NULL;
}

/* A stalled fetch of @key within the TTL: its error again (-errno), else 0. */
static int stall_recent(struct cache *c, enum obj_type t, const char *key, struct dt_error *err)
{
	struct stall_note *s;
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	s = stall_find_locked(c, t, key);
	if (s && fresh(s->at_ms, now_mono_ms())) {
		*err = s->err;
		ret = -s->err.err;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* Remembers a fetch of @key that got no answer in time; any other outcome forgets it. */
static void stall_note(struct cache *c, enum obj_type t, const char *key, int ret,
		       const struct dt_error *err)
{
	bool stalled = ret == -ETIMEDOUT && err->transport;
	struct stall_note *s;

	if (strlen(key) >= sizeof(s->key))
		return;
	pthread_mutex_lock(&c->lock);
	s = stall_find_locked(c, t, key);
	if (stalled) {
		if (!s)
			s = &c->stalls[c->next_stall++ % ARRAY_SIZE(c->stalls)];
		s->type = t;
		copy_str(s->key, sizeof(s->key), key);
		s->at_ms = now_mono_ms();
		s->err = *err;
	} else if (s) {
		s->at_ms = 0;
	}
	pthread_mutex_unlock(&c->lock);
}

/* GET one object; @key is an id or, with @by_name, a name. */
static int fetch_one(struct cache *c, enum obj_type t, const char *key, bool by_name,
		     struct cobj **out, struct dt_error *err)
{
	struct cobj *o;
	int ret;

	ret = stall_recent(c, t, key, err);
	if (ret < 0)
		return ret;
	o = cobj_new(t);
	if (!o) {
		err->err = ENOMEM;
		err->http_status = 0;
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -ENOMEM;
	}
	if (t == OBJ_SANDBOX) {
		ret = BK_CALL(c->bk, err, cl, dt_sandbox_get(cl, key, &o->sb, err));
		o->full = o->sb.has_env;
	} else if (t == OBJ_VOLUME) {
		if (by_name)
			ret = BK_CALL(c->bk, err, cl, dt_volume_get_by_name(cl, key, &o->vol, err));
		else
			ret = BK_CALL(c->bk, err, cl, dt_volume_get(cl, key, &o->vol, err));
		o->full = true;
	} else {
		ret = BK_CALL(c->bk, err, cl, dt_snapshot_get(cl, key, &o->snap, err));
		o->full = true;
	}
	stall_note(c, t, key, ret, err);
	if (ret == 0 && !cobj_visible(o)) {
		ret = -ENOENT;
		err->err = ENOENT;
		err->http_status = 404;
		snprintf(err->message, sizeof(err->message), "%s is %s", key, cobj_state(o));
	}
	if (ret < 0) {
		cobj_put(o);
		return ret;
	}
	*out = o;
	return 0;
}

static void not_found(struct dt_error *err, const char *name)
{
	err->err = ENOENT;
	err->http_status = 0;
	snprintf(err->message, sizeof(err->message), "%s: no such object", name);
}

/* Stores @o (taking it) and returns a new reference; a 404 forgets @id instead. */
static void after_fetch(struct cache *c, enum obj_type t, const char *id, int ret,
			struct cobj *o, struct cobj **out)
{
	struct coll *co = &c->colls[t];
	struct gone_list gone = {0};

	pthread_mutex_lock(&c->lock);
	if (ret == -ENOENT && id) {
		ssize_t i = find_id(co, id);

		if (i >= 0) {
			gone_add(&gone, co->items[i]);
			remove_at(co, (size_t)i);
		}
	} else if (ret == 0) {
		*out = cobj_ref(o);
		if (insert_locked(co, o) < 0)
			log_warn("cache: out of memory");
	}
	pthread_mutex_unlock(&c->lock);
	gone_tell(c, &gone);
}

/*
 * Listed objects refetched one by one because their listing has aged: after
 * a burst of them within one TTL, the next one walks the whole listing
 * instead (one paged walk, shared with concurrent callers), so `cat` of the
 * state of 1,000 sandboxes that outlasts the TTL costs a few pages, not one
 * request per sandbox (760 of them before; bench/run).
 */
#define REFETCH_BURST 16

static bool refetch_burst(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int64_t window_ms;
	static int count;
	int64_t now = now_mono_ms();
	bool burst;

	pthread_mutex_lock(&lock);
	if (now - window_ms >= CACHE_TTL_MS) {
		window_ms = now;
		count = 0;
	}
	burst = ++count > REFETCH_BURST;
	pthread_mutex_unlock(&lock);
	return burst;
}

/*
 * For an aged list item about to be fetched alone: in a burst, walks the
 * listing and answers @key (a name, or an id when @by_id) from it. False
 * when there is no burst or the walk did not bring it fresh.
 */
static bool refresh_by_walk(struct cache *c, enum obj_type t, const char *key, bool by_id,
			    bool full, struct cobj **out)
{
	struct coll *co = &c->colls[t];
	struct dt_error ignored = {0};
	struct cobj **items = NULL;
	size_t nitems = 0;
	bool found = false;
	ssize_t i;

	if (!refetch_burst() || cache_list(c, t, &items, &nitems, &ignored) < 0)
		return false;
	cobj_array_free(items, nitems);
	pthread_mutex_lock(&c->lock);
	i = by_id ? find_id(co, key) : find_index(co, key, t == OBJ_SANDBOX);
	if (i >= 0 && fresh(co->items[i]->fetched_ms, now_mono_ms()) &&
	    (co->items[i]->full || !full)) {
		*out = cobj_ref(co->items[i]);
		found = true;
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

int cache_lookup(struct cache *c, enum obj_type t, const char *name, bool full,
		 bool fetch_by_name, struct cobj **out, struct dt_error *err)
{
	struct coll *co = &c->colls[t];
	char known_id[OBJ_ID_MAX] = "";
	struct cobj *o = NULL;
	int64_t now = now_mono_ms();
	bool aged_item = false;
	ssize_t i;
	int ret;

	pthread_mutex_lock(&c->lock);
	i = find_index(co, name, t == OBJ_SANDBOX);
	if (i >= 0) {
		o = co->items[i];
		if (fresh(o->fetched_ms, now) && (o->full || !full)) {
			*out = cobj_ref(o);
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
		copy_str(known_id, sizeof(known_id), cobj_id(o));
		aged_item = !o->full;
	} else if (fresh(co->listed_ms, now) || !fetch_by_name) {
		pthread_mutex_unlock(&c->lock);
		not_found(err, name);
		return -ENOENT;
	}
	pthread_mutex_unlock(&c->lock);
	if (aged_item && refresh_by_walk(c, t, name, false, full, out))
		return 0;

	if (known_id[0])
		ret = fetch_one(c, t, known_id, false, &o, err);
	else
		ret = fetch_one(c, t, name, true, &o, err);
	after_fetch(c, t, known_id[0] ? known_id : NULL, ret, o, out);
	return ret;
}

int cache_refresh(struct cache *c, enum obj_type t, const char *id, bool full,
		  struct cobj **out, struct dt_error *err)
{
	struct coll *co = &c->colls[t];
	struct cobj *o = NULL;
	bool aged_item = false;
	ssize_t i;
	int ret;

	pthread_mutex_lock(&c->lock);
	i = find_id(co, id);
	if (i >= 0) {
		o = co->items[i];
		if (fresh(o->fetched_ms, now_mono_ms()) && (o->full || !full)) {
			*out = cobj_ref(o);
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
		aged_item = !o->full;
	} else if (tombstoned_locked(c, id, now_mono_ms())) {
		pthread_mutex_unlock(&c->lock);
		not_found(err, id);
		return -ENOENT;
	}
	pthread_mutex_unlock(&c->lock);
	if (aged_item && refresh_by_walk(c, t, id, true, full, out))
		return 0;

	ret = fetch_one(c, t, id, false, &o, err);
	after_fetch(c, t, id, ret, o, out);
	return ret;
}

static struct cobj *store(struct cache *c, struct cobj *o)
{
	struct gone_list gone = {0};
	struct cobj *ref;

	o->fetched_ms = now_mono_ms();
	ref = cobj_ref(o);
	pthread_mutex_lock(&c->lock);
	if (!cobj_visible(o)) {
		ssize_t i = find_id(&c->colls[o->type], cobj_id(o));

		if (i >= 0) {
			gone_add(&gone, c->colls[o->type].items[i]);
			remove_at(&c->colls[o->type], (size_t)i);
		}
		cobj_put(o);
	} else if (insert_locked(&c->colls[o->type], o) < 0) {
		log_warn("cache: out of memory");
	}
	pthread_mutex_unlock(&c->lock);
	gone_tell(c, &gone);
	return ref;
}

struct cobj *cache_store_sandbox(struct cache *c, struct dt_sandbox *sb)
{
	struct cobj *o = cobj_new(OBJ_SANDBOX);

	if (!o)
		return NULL;
	o->sb = *sb;
	memset(sb, 0, sizeof(*sb));
	o->full = o->sb.has_env;
	return store(c, o);
}

struct cobj *cache_store_volume(struct cache *c, struct dt_volume *v)
{
	struct cobj *o = cobj_new(OBJ_VOLUME);

	if (!o)
		return NULL;
	o->vol = *v;
	memset(v, 0, sizeof(*v));
	o->full = true;
	return store(c, o);
}

struct cobj *cache_store_snapshot(struct cache *c, struct dt_snapshot *s)
{
	struct cobj *o = cobj_new(OBJ_SNAPSHOT);

	if (!o)
		return NULL;
	o->snap = *s;
	memset(s, 0, sizeof(*s));
	o->full = true;
	return store(c, o);
}

void cache_mark_stale(struct cache *c, enum obj_type t, const char *id)
{
	ssize_t i;

	pthread_mutex_lock(&c->lock);
	i = find_id(&c->colls[t], id);
	if (i >= 0)
		c->colls[t].items[i]->fetched_ms = 0;
	pthread_mutex_unlock(&c->lock);
}

void cache_drop(struct cache *c, enum obj_type t, const char *id)
{
	struct tombstone *tombs;
	ssize_t i;

	pthread_mutex_lock(&c->lock);
	i = find_id(&c->colls[t], id);
	if (i >= 0)
		remove_at(&c->colls[t], (size_t)i);
	tombstoned_locked(c, "", now_mono_ms()); /* prunes old ones */
	tombs = realloc(c->tombs, (c->ntombs + 1) * sizeof(*tombs));
	if (tombs) {
		c->tombs = tombs;
		copy_str(tombs[c->ntombs].id, sizeof(tombs[0].id), id);
		tombs[c->ntombs].at_ms = now_mono_ms();
		c->ntombs++;
	}
	pthread_mutex_unlock(&c->lock);
}

void cache_flush(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	for (size_t t = 0; t < ARRAY_SIZE(c->colls); t++) {
		struct coll *co = &c->colls[t];

		for (size_t i = 0; i < co->n; i++)
			co->items[i]->fetched_ms = 0;
		co->listed_ms = 0;
	}
	memset(c->stalls, 0, sizeof(c->stalls));
	pthread_mutex_unlock(&c->lock);
}

struct cobj *cache_peek(struct cache *c, enum obj_type t, const char *id)
{
	struct cobj *o = NULL;
	ssize_t i;

	pthread_mutex_lock(&c->lock);
	i = find_id(&c->colls[t], id);
	if (i >= 0)
		o = cobj_ref(c->colls[t].items[i]);
	pthread_mutex_unlock(&c->lock);
	return o;
}

bool cache_count(struct cache *c, enum obj_type t, size_t *n)
{
	bool known;

	pthread_mutex_lock(&c->lock);
	known = c->colls[t].ever_listed;
	/* The listing plus what quaverfs created or looked up since. */
	*n = c->colls[t].n;
	pthread_mutex_unlock(&c->lock);
	return known;
}

/* ---- error notes -------------------------------------------------------- */

void cache_set_error(struct cache *c, const char *id, const char *msg)
{
	size_t i;

	pthread_mutex_lock(&c->lock);
	for (i = 0; i < c->nnotes; i++)
		if (strcmp(c->notes[i].id, id) == 0)
			break;
	if (i < c->nnotes) {
		free(c->notes[i].msg);
		c->notes[i].msg = NULL;
		if (!msg) {
			c->notes[i] = c->notes[--c->nnotes];
			goto out;
		}
	} else {
		struct error_note *notes;

		if (!msg)
			goto out;
		notes = realloc(c->notes, (c->nnotes + 1) * sizeof(*notes));
		if (!notes)
			goto out;
		c->notes = notes;
		copy_str(notes[i].id, sizeof(notes[i].id), id);
		c->nnotes++;
	}
	c->notes[i].msg = strdup(msg);
out:
	pthread_mutex_unlock(&c->lock);
}

bool cache_get_error(struct cache *c, const char *id, char *out, size_t size)
{
	bool found = false;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->nnotes; i++)
		if (strcmp(c->notes[i].id, id) == 0 && c->notes[i].msg) {
			copy_str(out, size, c->notes[i].msg);
			found = true;
		}
	pthread_mutex_unlock(&c->lock);
	return found;
}
