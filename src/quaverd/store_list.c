/*
 * Listings: sandboxes with filters and keyset paging, volumes, and paged
 * snapshots. Each takes the store lock once, copies what it returns and
 * lets go; nothing here touches the disk.
 */
#define QUAVERD_STORE_INTERNAL
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* ---- sandboxes ------------------------------------------------------------ */

static bool has_prefix_ci(const char *s, const char *prefix)
{
	return !prefix || strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
	if (!list || n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

static bool in_range(double v, double min, double max)
{
	return (min < 0 || v >= min) && (max < 0 || v <= max);
}

static bool labels_match(const cJSON *have, const cJSON *want)
{
	const cJSON *w;

	if (!want)
		return true;
	cJSON_ArrayForEach(w, want)
	{
		const cJSON *h = cJSON_GetObjectItemCaseSensitive(have, w->string);
		if (!cJSON_IsString(h) || !cJSON_IsString(w) ||
		    strcmp(h->valuestring, w->valuestring))
			return false;
	}
	return true;
}

static bool sb_matches(const struct sandbox *sb, const struct store_sandbox_filter *f)
{
	const struct store_sandbox_info *i = &sb->info;

	return has_prefix_ci(i->id, f->id_prefix) && has_prefix_ci(i->name, f->name_prefix) &&
	       labels_match(i->labels, f->labels) &&
	       in_list(sb_state_name(sb->state), f->states, f->nstates) &&
	       in_list(i->snapshot, f->snapshots, f->nsnapshots) &&
	       in_list(i->target, f->targets, f->ntargets) &&
	       (f->is_public < 0 || f->is_public == (int)i->is_public) &&
	       (f->is_recoverable < 0 || f->is_recoverable == (int)i->recoverable) &&
	       in_range(i->cpu, f->min_cpu, f->max_cpu) &&
	       in_range(i->memory, f->min_memory, f->max_memory) &&
	       in_range(i->disk, f->min_disk, f->max_disk);
}

/* Order key: creation time, then id, so equal times still have one order. */
static int key_cmp(int64_t a_ms, const char *a_id, int64_t b_ms, const char *b_id)
{
	if (a_ms != b_ms)
		return a_ms < b_ms ? -1 : 1;
	return strcmp(a_id, b_id);
}

static int cmp_newest_first(const void *a, const void *b)
{
	const struct sandbox *x = *(const struct sandbox *const *)a;
	const struct sandbox *y = *(const struct sandbox *const *)b;

	return -key_cmp(x->info.created_ms, x->info.id, y->info.created_ms, y->info.id);
}

static int cmp_oldest_first(const void *a, const void *b)
{
	return -cmp_newest_first(a, b);
}

/* A cursor is "<created ms>_<id>" of the last item of the previous page. */
static int parse_cursor(const char *cursor, int64_t *ms, char id[STORE_ID_LEN + 1])
{
	const char *sep = strchr(cursor, '_');
	char num[24];

	if (!sep || (size_t)(sep - cursor) >= sizeof(num) || strlen(sep + 1) != STORE_ID_LEN)
		return -EINVAL;
	memcpy(num, cursor, (size_t)(sep - cursor));
	num[sep - cursor] = '\0';
	if (parse_int64(num, 0, INT64_MAX, ms) < 0)
		return -EINVAL;
	copy_str(id, STORE_ID_LEN + 1, sep + 1);
	return 0;
}

int store_sandbox_list(struct store *st, const struct store_sandbox_filter *filter,
		       const char *cursor, size_t limit, struct store_sandbox_info **items,
		       size_t *count, char **next_cursor, struct store_err *err)
{
	struct sandbox **matches = NULL;
	struct store_sandbox_info *out = NULL;
	char cursor_id[STORE_ID_LEN + 1] = "";
	int64_t cursor_ms = 0;
	size_t n = 0, first = 0, take;
	int rc = 0;

	*items = NULL;
	*count = 0;
	*next_cursor = NULL;
	if (cursor && cursor[0] && parse_cursor(cursor, &cursor_ms, cursor_id) < 0) {
		snprintf(err->msg, sizeof(err->msg), "Invalid cursor provided: %s", cursor);
		return -EINVAL;
	}
	pthread_mutex_lock(&st->lock);
	matches = malloc((st->sandboxes.len + 1) * sizeof(*matches));
	if (!matches) {
		rc = -ENOMEM;
		goto unlock;
	}
	for (size_t i = 0; i < st->sandboxes.len; i++) {
		struct sandbox *sb = st->sandboxes.items[i];
		if (sb_matches(sb, filter))
			matches[n++] = sb;
	}
	qsort(matches, n, sizeof(*matches),
	      filter->ascending ? cmp_oldest_first : cmp_newest_first);
	if (cursor_id[0]) {
		/* Keyset: everything strictly after the cursor's key, whether or not it still
		 * exists. */
		while (first < n) {
			int c = key_cmp(matches[first]->info.created_ms, matches[first]->info.id,
					cursor_ms, cursor_id);
			if (filter->ascending ? c > 0 : c < 0)
				break;
			first++;
		}
	}
	take = n - first < limit ? n - first : limit;
	out = calloc(take ? take : 1, sizeof(*out));
	if (!out) {
		rc = -ENOMEM;
		goto unlock;
	}
	for (size_t i = 0; i < take; i++) {
		rc = sb_copy_locked(matches[first + i], &out[i]);
		if (rc < 0) {
			store_sandbox_list_free(out, i);
			out = NULL;
			goto unlock;
		}
	}
	if (first + take < n && take > 0) {
		const struct sandbox *last = matches[first + take - 1];
		char buf[80];
		snprintf(buf, sizeof(buf), "%" PRId64 "_%s", last->info.created_ms, last->info.id);
		*next_cursor = strdup(buf);
		if (!*next_cursor) {
			rc = -ENOMEM;
			store_sandbox_list_free(out, take);
			out = NULL;
			goto unlock;
		}
	}
	*items = out;
	*count = take;
unlock:
	pthread_mutex_unlock(&st->lock);
	free(matches);
	if (rc < 0)
		snprintf(err->msg, sizeof(err->msg), "Out of memory");
	return rc;
}

void store_sandbox_list_free(struct store_sandbox_info *items, size_t count)
{
	if (!items)
		return;
	for (size_t i = 0; i < count; i++)
		store_sandbox_info_free(&items[i]);
	free(items);
}

/* ---- volumes -------------------------------------------------------------- */

static int cmp_vol_newest(const void *a, const void *b)
{
	const struct store_volume_info *x = a, *y = b;

	return -key_cmp(x->created_ms, x->id, y->created_ms, y->id);
}

int store_volume_list(struct store *st, struct store_volume_info **items, size_t *count,
		      struct store_err *err)
{
	struct store_volume_info *out;
	size_t n;

	pthread_mutex_lock(&st->lock);
	n = st->volumes.len;
	out = calloc(n ? n : 1, sizeof(*out));
	if (out) {
		for (size_t i = 0; i < n; i++)
			out[i] = ((struct volume *)st->volumes.items[i])->info;
	}
	pthread_mutex_unlock(&st->lock);
	if (!out) {
		snprintf(err->msg, sizeof(err->msg), "Out of memory");
		return -ENOMEM;
	}
	qsort(out, n, sizeof(*out), cmp_vol_newest);
	*items = out;
	*count = n;
	return 0;
}

/* ---- snapshots ------------------------------------------------------------ */

static int cmp_snap_newest(const void *a, const void *b)
{
	const struct store_snapshot_info *x = a, *y = b;

	return -key_cmp(x->created_ms, x->id, y->created_ms, y->id);
}

int store_snapshot_list(struct store *st, const char *name_part, const char *source_sandbox_id,
			size_t page, size_t limit,
			struct store_snapshot_info **items, size_t *count, size_t *total,
			struct store_err *err)
{
	struct store_snapshot_info *all, *out;
	size_t n = 0, first, take;

	pthread_mutex_lock(&st->lock);
	all = calloc(st->snapshots.len + 1, sizeof(*all));
	if (all) {
		for (size_t i = 0; i < st->snapshots.len; i++) {
			const struct snapshot *sn = st->snapshots.items[i];
			if (name_part && !strcasestr(sn->info.name, name_part))
				continue;
			if (source_sandbox_id &&
			    strcmp(sn->info.source_sandbox_id, source_sandbox_id) != 0)
				continue;
			all[n++] = sn->info;
		}
	}
	pthread_mutex_unlock(&st->lock);
	if (!all)
		goto nomem;
	qsort(all, n, sizeof(*all), cmp_snap_newest);
	first = page > 0 && (page - 1) <= n / (limit ? limit : 1) ? (page - 1) * limit : n;
	if (first > n)
		first = n;
	take = n - first < limit ? n - first : limit;
	out = calloc(take ? take : 1, sizeof(*out));
	if (!out) {
		free(all);
		goto nomem;
	}
	memcpy(out, all + first, take * sizeof(*out));
	free(all);
	*items = out;
	*count = take;
	*total = n;
	return 0;
nomem:
	snprintf(err->msg, sizeof(err->msg), "Out of memory");
	return -ENOMEM;
}
