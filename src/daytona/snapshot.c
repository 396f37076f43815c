/* Snapshots (daytona-api.md section 4): page/limit listing, get, delete and the wait for active. */
#include "dt_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define SNAPSHOT_PAGE_LIMIT 100

static int snapshot_get(struct dt_client *c, const char *id_or_name, const char *what,
			struct dt_snapshot *out, struct dt_error *err)
{
	struct buf path = BUF_INIT;
	cJSON *root = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!id_or_name || dt_path(&path, "snapshots", id_or_name, NULL)) {
		rc = dt_error_set(err, EINVAL, 0, what, "invalid snapshot id or name");
		goto out;
	}
	rc = dt_call_json_names(c, DT_GET, path.data, what, &root, err);
	if (rc)
		goto out;
	rc = dt_snapshot_from_json(root, out);
	if (rc == -ENOMEM)
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
	else if (rc)
		rc = dt_error_set(err, EIO, 0, what, "the server sent a malformed snapshot record");
out:
	cJSON_Delete(root);
	buf_free(&path);
	return rc;
}

int dt_snapshot_get(struct dt_client *c, const char *id_or_name, struct dt_snapshot *out,
		    struct dt_error *err)
{
	char what[160];

	DT_ERR_GUARD(err);
	snprintf(what, sizeof(what), "get snapshot %s", id_or_name ? id_or_name : "");
	return snapshot_get(c, id_or_name, what, out, err);
}

static int page_append(const cJSON *items, struct dt_snapshot_list *out, const char *what,
		       struct dt_error *err)
{
	size_t n = (size_t)cJSON_GetArraySize(items);
	struct dt_snapshot *grown;
	const cJSON *item;

	if (n == 0)
		return 0;
	if (out->count + n > DT_MAX_ITEMS)
		return dt_error_set(err, EIO, 0, what, "more than %d snapshots", DT_MAX_ITEMS);
	grown = realloc(out->items, (out->count + n) * sizeof(*grown));
	if (!grown)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	out->items = grown;
	cJSON_ArrayForEach(item, items) {
		int rc = dt_snapshot_from_json(item, &out->items[out->count]);

		if (rc == -ENOMEM)
			return dt_error_set(err, ENOMEM, 0, what, "out of memory");
		if (rc == 0)
			out->count++;
		else
			log_debug("%s: skipped a malformed snapshot record", what);
	}
	return 0;
}

int dt_snapshot_list(struct dt_client *c, struct dt_snapshot_list *out, struct dt_error *err)
{
	const char *what = "list snapshots";
	int rc = 0;

	DT_ERR_GUARD(err);
	memset(out, 0, sizeof(*out));
	for (int page = 1;; page++) {
		struct buf path = BUF_INIT;
		const cJSON *items, *pages;
		cJSON *root = NULL;
		bool last;

		if (buf_printf(&path, "/snapshots?page=%d&limit=%d", page, SNAPSHOT_PAGE_LIMIT))
			rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		if (!rc)
			rc = dt_call_json_names(c, DT_GET, path.data, what, &root, err);
		buf_free(&path);
		if (rc)
			break;
		/* {items, total, page, totalPages}; a plain array is everything at once. */
		items = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "items");
		if (!cJSON_IsArray(items)) {
			cJSON_Delete(root);
			rc = dt_error_set(err, EIO, 0, what, "the answer has no items list");
			break;
		}
		rc = page_append(items, out, what, err);
		pages = cJSON_GetObjectItemCaseSensitive(root, "totalPages");
		last = cJSON_IsArray(root) || cJSON_GetArraySize(items) == 0 ||
		       !cJSON_IsNumber(pages) || pages->valuedouble <= page;
		if (!last && out->count >= DT_MAX_LISTING) {
			/* totalPages is the server's word: bounded by what we keep. */
			log_warn("%s: the server listed more than %d snapshots; the rest are not shown",
				 what, DT_MAX_LISTING);
			last = true;
		}
		cJSON_Delete(root);
		if (rc || last)
			break;
	}
	if (rc)
		dt_snapshot_list_clear(out);
	return rc;
}

/* 8-4-4-4-12 hex digits: the shape of the ids Daytona gives out. */
static bool looks_like_uuid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	if (strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

int dt_snapshot_delete(struct dt_client *c, const char *id, struct dt_error *err)
{
	struct buf path = BUF_INIT;
	struct dt_snapshot found = {0};
	const char *target = id;
	char what[160];
	int rc = 0;

	DT_ERR_GUARD(err);
	snprintf(what, sizeof(what), "delete snapshot %s", id ? id : "");
	/* DELETE takes an id; resolve a name first, as the SDK does. */
	if (id && !looks_like_uuid(id)) {
		rc = snapshot_get(c, id, what, &found, err);
		if (rc)
			return rc;
		target = found.id;
	}
	if (!target || dt_path(&path, "snapshots", target, NULL))
		rc = dt_error_set(err, EINVAL, 0, what, "invalid snapshot id");
	else
		rc = dt_call(c, DT_DELETE, path.data, NULL, what, NULL, err);
	buf_free(&path);
	dt_snapshot_clear(&found);
	return rc;
}

int dt_snapshot_wait_for(struct dt_client *c, const char *id_or_name, long timeout_ms,
			 bool missing_ok, const char *what, struct dt_snapshot *out,
			 struct dt_error *err)
{
	long timeout = timeout_ms > 0 ? timeout_ms : dt_wait_timeout_ms(c);
	int64_t deadline = now_mono_ms() + timeout;
	long delay = DT_POLL_FIRST_MS;
	int rc;

	for (;;) {
		const char *state = "missing";
		int64_t left;

		rc = snapshot_get(c, id_or_name, what, out, err);
		if (rc && !(missing_ok && rc == -ENOENT && err->http_status == 404))
			return rc;
		if (!rc) {
			state = out->state;
			if (strcmp(state, "active") == 0)
				return 0;
			if (strcmp(state, "error") == 0 || strcmp(state, "build_failed") == 0) {
				rc = dt_error_set(err, EIO, 0, what, "snapshot %s is in state %s: %s",
						  id_or_name, state,
						  out->error_reason && out->error_reason[0]
							  ? out->error_reason
							  : "no reason given");
				dt_snapshot_clear(out);
				return rc;
			}
		}
		left = deadline - now_mono_ms();
		if (left <= 0) {
			rc = dt_error_set(err, ETIMEDOUT, 0, what, "snapshot %s still %s after %ld s",
					  id_or_name, state, (timeout + 999) / 1000);
			dt_snapshot_clear(out);
			return rc;
		}
		dt_snapshot_clear(out);
		if (dt_sleep_ms(delay < left ? delay : (long)left))
			return dt_error_set(err, EINTR, 0, what, "interrupted");
		delay = dt_next_poll_ms(delay);
	}
}

int dt_snapshot_wait_active(struct dt_client *c, const char *id_or_name, int timeout_ms,
			    struct dt_snapshot *out, struct dt_error *err)
{
	struct dt_snapshot scratch;
	char what[160];
	int rc;

	DT_ERR_GUARD(err);
	snprintf(what, sizeof(what), "wait for snapshot %s", id_or_name ? id_or_name : "");
	rc = dt_snapshot_wait_for(c, id_or_name, timeout_ms, false, what, out ? out : &scratch,
				  err);
	if (!rc && !out)
		dt_snapshot_clear(&scratch);
	return rc;
}
