/*
 * The object cache: what quaverfs last heard from the backend about each
 * sandbox, volume and snapshot. A collection is listed with one paged walk
 * and kept for CACHE_TTL_MS; an object is refetched by id when a node of it
 * is used and its copy is older than that. Objects are immutable and
 * reference counted: a refresh replaces the object, readers keep theirs.
 */
#ifndef QUAVERFS_CACHE_H
#define QUAVERFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "daytona.h"
#include "node.h"

#define CACHE_TTL_MS 1000

struct cobj {
	int refs;
	enum obj_type type;
	bool full;	    /* a full DTO (GET by id), not a list item */
	int64_t fetched_ms; /* monotonic time the backend sent it */
	union {
		struct dt_sandbox sb;
		struct dt_volume vol;
		struct dt_snapshot snap;
	};
};

const char *cobj_id(const struct cobj *o);
/* The name, or the id for an object without one. */
const char *cobj_name(const struct cobj *o);
const char *cobj_state(const struct cobj *o);
const char *cobj_updated_at(const struct cobj *o);
const char *cobj_json(const struct cobj *o);
struct cobj *cobj_ref(struct cobj *o);
void cobj_put(struct cobj *o);
void cobj_array_free(struct cobj **items, size_t n);

struct cache;

struct cache *cache_new(struct backend *bk);
void cache_free(struct cache *c);

/*
 * Called (without any cache lock held, on the thread that made the
 * refresh) for each object a refresh found gone: missing from a listing,
 * 404 or destroyed on a fetch. Set once, before the cache is used.
 */
typedef void (*cache_gone_fn)(void *arg, enum obj_type t, const char *id, const char *name);
void cache_set_gone_hook(struct cache *c, cache_gone_fn fn, void *arg);

/* Every object of @t, listed within the TTL (one walk otherwise). 0 or -errno. */
int cache_list(struct cache *c, enum obj_type t, struct cobj ***items, size_t *n,
	       struct dt_error *err);

/*
 * The object named @name (for sandboxes: or with id @name), fresh within the
 * TTL, a full DTO when @full. A fresh listing without it answers ENOENT with
 * no request; so does a name not in the cache when !@fetch_by_name. 0 or -errno.
 */
int cache_lookup(struct cache *c, enum obj_type t, const char *name, bool full,
		 bool fetch_by_name, struct cobj **out, struct dt_error *err);

/* The object with id @id, refetched when older than the TTL (or not @full enough). */
int cache_refresh(struct cache *c, enum obj_type t, const char *id, bool full,
		  struct cobj **out, struct dt_error *err);

/* Stores a DTO the caller received (its content moves into the cache). Returns a reference. */
struct cobj *cache_store_sandbox(struct cache *c, struct dt_sandbox *sb);
struct cobj *cache_store_volume(struct cache *c, struct dt_volume *v);
struct cobj *cache_store_snapshot(struct cache *c, struct dt_snapshot *s);

/* The next use of the object fetches it again. */
void cache_mark_stale(struct cache *c, enum obj_type t, const char *id);
/* The object is gone (deleted by us): forget it, and ignore it in listings for a while. */
void cache_drop(struct cache *c, enum obj_type t, const char *id);
/* Forgets everything: the next use of anything asks the backend. */
void cache_flush(struct cache *c);
/* The cached object with id @id, however old, without a request; NULL when none. */
struct cobj *cache_peek(struct cache *c, enum obj_type t, const char *id);
/* The number of objects of the last listing; false when never listed. */
bool cache_count(struct cache *c, enum obj_type t, size_t *n);

/* The last failed write on object @id; NULL @msg clears it. */
void cache_set_error(struct cache *c, const char *id, const char *msg);
bool cache_get_error(struct cache *c, const char *id, char *out, size_t size);

#endif
