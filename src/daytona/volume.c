/* Volumes (daytona-api.md section 3): a plain list, by id or by name, and a state wait. */
#include "dt_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static int volume_record(const cJSON *root, const char *what, struct dt_volume *out,
			 struct dt_error *err)
{
	int rc = dt_volume_from_json(root, out);

	if (rc == -ENOMEM)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	if (rc)
		return dt_error_set(err, EIO, 0, what, "the server sent a malformed volume record");
	return 0;
}

/* One Volume from @method on /volumes[/seg1[/seg2]]. */
static int volume_call(struct dt_client *c, enum dt_method method, const char *seg1,
		       const char *seg2, const char *body, const char *what, struct dt_volume *out,
		       struct dt_error *err)
{
	struct buf path = BUF_INIT;
	cJSON *root = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (dt_path(&path, "volumes", NULL) || (seg1 && dt_path_segment(&path, seg1)) ||
	    (seg2 && dt_path_segment(&path, seg2))) {
		rc = dt_error_set(err, EINVAL, 0, what, "invalid volume id or name");
		goto out;
	}
	rc = dt_call_json(c, method, path.data, body, what, &root, err);
	if (!rc)
		rc = volume_record(root, what, out, err);
out:
	cJSON_Delete(root);
	buf_free(&path);
	return rc;
}

int dt_volume_list(struct dt_client *c, struct dt_volume_list *out, struct dt_error *err)
{
	const char *what = "list volumes";
	const cJSON *items, *item;
	cJSON *root = NULL;
	size_t n;
	int rc;

	DT_ERR_GUARD(err);
	memset(out, 0, sizeof(*out));
	rc = dt_call_json_names(c, DT_GET, "/volumes", what, &root, err);
	if (rc)
		return rc;
	/* A plain array; tolerate {items} too. */
	items = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "items");
	if (!cJSON_IsArray(items)) {
		rc = dt_error_set(err, EIO, 0, what, "the answer is not a list");
		goto out;
	}
	n = (size_t)cJSON_GetArraySize(items);
	if (n > DT_MAX_ITEMS) {
		rc = dt_error_set(err, EIO, 0, what, "more than %d volumes", DT_MAX_ITEMS);
		goto out;
	}
	if (n == 0)
		goto out;
	out->items = calloc(n, sizeof(*out->items));
	if (!out->items) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	cJSON_ArrayForEach(item, items) {
		int r = dt_volume_from_json(item, &out->items[out->count]);

		if (r == -ENOMEM) {
			rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
			break;
		}
		if (r == 0)
			out->count++;
		else
			log_debug("%s: skipped a malformed volume record", what);
	}
out:
	cJSON_Delete(root);
	if (rc)
		dt_volume_list_clear(out);
	return rc;
}

int dt_volume_get(struct dt_client *c, const char *id, struct dt_volume *out,
		  struct dt_error *err)
{
	char what[160];

	DT_ERR_GUARD(err);
	snprintf(what, sizeof(what), "get volume %s", id ? id : "");
	return volume_call(c, DT_GET, id ? id : "", NULL, NULL, what, out, err);
}

int dt_volume_get_by_name(struct dt_client *c, const char *name, struct dt_volume *out,
			  struct dt_error *err)
{
	char what[160];

	DT_ERR_GUARD(err);
	snprintf(what, sizeof(what), "get volume %s", name ? name : "");
	return volume_call(c, DT_GET, "by-name", name ? name : "", NULL, what, out, err);
}

int dt_volume_create(struct dt_client *c, const char *name, struct dt_volume *out,
		     struct dt_error *err)
{
	cJSON *body = cJSON_CreateObject();
	char what[160], *text = NULL;
	int rc;

	DT_ERR_GUARD(err);
	memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "create volume %s", name ? name : "");
	if (!name || !name[0]) {
		rc = dt_error_set(err, EINVAL, 0, what, "no volume name");
		goto out;
	}
	if (!body || !cJSON_AddStringToObject(body, "name", name) ||
	    !(text = cJSON_PrintUnformatted(body))) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	rc = volume_call(c, DT_POST, NULL, NULL, text, what, out, err);
out:
	cJSON_free(text);
	cJSON_Delete(body);
	return rc;
}

int dt_volume_delete(struct dt_client *c, const char *id, struct dt_error *err)
{
	struct buf path = BUF_INIT;
	char what[160];
	int rc;

	DT_ERR_GUARD(err);
	snprintf(what, sizeof(what), "delete volume %s", id ? id : "");
	if (!id || dt_path(&path, "volumes", id, NULL))
		rc = dt_error_set(err, EINVAL, 0, what, "invalid volume id");
	else
		rc = dt_call(c, DT_DELETE, path.data, NULL, what, NULL, err);
	buf_free(&path);
	return rc;
}

/* Gone (404) is as deleted as it gets: a record that says so. */
static int deleted_placeholder(const char *id, struct dt_volume *out, const char *what,
			       struct dt_error *err)
{
	memset(out, 0, sizeof(*out));
	out->id = strdup(id);
	out->name = strdup("");
	out->organization_id = strdup("");
	out->state = strdup("deleted");
	out->json = strdup("{}");
	if (!out->id || !out->name || !out->organization_id || !out->state || !out->json) {
		dt_volume_clear(out);
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	}
	return 0;
}

int dt_volume_wait(struct dt_client *c, const char *id, const char *target, int timeout_ms,
		   struct dt_volume *out, struct dt_error *err)
{
	long timeout = timeout_ms > 0 ? timeout_ms : dt_wait_timeout_ms(c);
	int64_t deadline = now_mono_ms() + timeout;
	long delay = DT_POLL_FIRST_MS;
	struct dt_volume scratch;
	char what[160];
	int rc;

	DT_ERR_GUARD(err);
	if (!out)
		out = &scratch;
	memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "wait for volume %s", id ? id : "");
	for (;;) {
		int64_t left;

		rc = volume_call(c, DT_GET, id ? id : "", NULL, NULL, what, out, err);
		if (rc == -ENOENT && err->http_status == 404) {
			if (target && strcmp(target, "deleted") == 0)
				rc = deleted_placeholder(id, out, what, err);
			break;
		}
		if (rc)
			break;
		if (target && strcmp(out->state, target) == 0)
			break;
		if (strcmp(out->state, "error") == 0) {
			rc = dt_error_set(err, EIO, 0, what, "volume %s is in state error: %s", id,
					  out->error_reason && out->error_reason[0]
						  ? out->error_reason
						  : "no reason given");
			break;
		}
		left = deadline - now_mono_ms();
		if (left <= 0) {
			rc = dt_error_set(err, ETIMEDOUT, 0, what, "volume %s still %s after %ld s",
					  id, out->state, (timeout + 999) / 1000);
			break;
		}
		dt_volume_clear(out);
		if (dt_sleep_ms(delay < left ? delay : (long)left)) {
			rc = dt_error_set(err, EINTR, 0, what, "interrupted");
			break;
		}
		delay = dt_next_poll_ms(delay);
	}
	if (rc || out == &scratch)
		dt_volume_clear(out);
	return rc;
}
