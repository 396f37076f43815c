/*
 * Sandboxes: create, get, list, lifecycle actions, labels, intervals,
 * snapshots and preview URLs (daytona-api.md section 2), each followed by
 * the state wait the SDK does, so a caller gets back a sandbox that is in
 * the state it asked for, or an errno and the reason.
 */
#include "dt_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define LANGUAGE_LABEL "code-toolbox-language"
#define DEFAULT_LANGUAGE "python" /* what the SDK sends when none is given */
#define MAX_PAGE_LIMIT 200
#define DEFAULT_PAGE_LIMIT 100

static bool state_in(const char *state, const char *const *list)
{
	for (; list && *list; list++)
		if (strcmp(state, *list) == 0)
			return true;
	return false;
}

static bool is_failed_state(const char *state)
{
	return strcmp(state, "error") == 0 || strcmp(state, "build_failed") == 0;
}

static int record_error(int rc, struct dt_error *err, const char *what)
{
	if (rc == -ENOMEM)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	return dt_error_set(err, EIO, 0, what, "the server sent a malformed sandbox record");
}

/* Builds /sandbox/{id}[/suffix...]; a bad id is EINVAL before any request. */
static int sandbox_path(struct buf *path, const char *id, const char *suffix, const char *what,
			struct dt_error *err)
{
	if (!id || dt_path(path, "sandbox", id, NULL))
		return dt_error_set(err, EINVAL, 0, what, "invalid sandbox id or name");
	if (suffix && buf_append_str(path, suffix))
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	return 0;
}

/* Parses an answer that should be a Sandbox; an empty answer re-reads it. */
static int answer_to_sandbox(struct dt_client *c, cJSON *root, const char *id, const char *what,
			     struct dt_sandbox *out, struct dt_error *err);

static int get_sandbox(struct dt_client *c, const char *id, const char *what,
		       struct dt_sandbox *out, struct dt_error *err)
{
	struct buf path = BUF_INIT;
	cJSON *root = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = sandbox_path(&path, id, NULL, what, err);
	if (!rc)
		rc = dt_call_json_names(c, DT_GET, path.data, what, &root, err);
	if (!rc) {
		rc = dt_sandbox_from_json(root, out);
		if (rc)
			rc = record_error(rc, err, what);
	}
	cJSON_Delete(root);
	buf_free(&path);
	return rc;
}

static int answer_to_sandbox(struct dt_client *c, cJSON *root, const char *id, const char *what,
			     struct dt_sandbox *out, struct dt_error *err)
{
	int rc;

	if (!root)
		return get_sandbox(c, id, what, out, err);
	rc = dt_sandbox_from_json(root, out);
	return rc ? record_error(rc, err, what) : 0;
}

/*
 * The toolbox base comes from the DTO; when it is empty (older servers, list
 * items) ask for it. Failure is not fatal: the sandbox itself is fine.
 */
static void refresh_proxy_url(struct dt_client *c, struct dt_sandbox *s)
{
	struct buf path = BUF_INIT;
	struct dt_error err;
	cJSON *root = NULL;
	const char *url;

	if (!s->id || (s->toolbox_proxy_url && s->toolbox_proxy_url[0]) ||
	    strcmp(s->state, "destroyed") == 0)
		return;
	if (sandbox_path(&path, s->id, "/toolbox-proxy-url", "toolbox proxy url", &err) ||
	    dt_call_json(c, DT_GET, path.data, NULL, "toolbox proxy url", &root, &err)) {
		log_debug("no toolbox proxy URL for sandbox %s: %s", s->id, err.message);
		goto out;
	}
	url = dt_json_string(root, "url");
	if (url && url[0]) {
		char *copy = strdup(url);

		if (copy) {
			free(s->toolbox_proxy_url);
			s->toolbox_proxy_url = copy;
		}
	}
out:
	cJSON_Delete(root);
	buf_free(&path);
}

int dt_sandbox_get(struct dt_client *c, const char *id_or_name, struct dt_sandbox *out,
		   struct dt_error *err)
{
	DT_ERR_GUARD(err);
	char what[160];
	int rc;

	snprintf(what, sizeof(what), "get sandbox %s", id_or_name ? id_or_name : "");
	rc = get_sandbox(c, id_or_name, what, out, err);
	if (!rc)
		refresh_proxy_url(c, out);
	return rc;
}

/* A record for a sandbox seen gone (404) before any record was read. */
static int destroyed_placeholder(const char *id, struct dt_sandbox *out)
{
	memset(out, 0, sizeof(*out));
	out->id = strdup(id);
	out->name = strdup("");
	out->organization_id = strdup("");
	out->state = strdup("destroyed");
	out->user = strdup("");
	out->target = strdup("");
	out->toolbox_proxy_url = strdup("");
	out->json = strdup("{}");
	out->auto_delete_interval = -1;
	if (!out->id || !out->name || !out->organization_id || !out->state || !out->user ||
	    !out->target || !out->toolbox_proxy_url || !out->json) {
		dt_sandbox_clear(out);
		return -ENOMEM;
	}
	return 0;
}

static bool wait_done(const struct dt_wait *w, const char *state)
{
	return state_in(state, w->targets) ||
	       (w->leave_state && strcmp(state, w->leave_state) != 0);
}

int dt_sandbox_wait_for(struct dt_client *c, const char *id, const struct dt_wait *w,
			struct dt_sandbox *out, struct dt_error *err)
{
	long timeout = w->timeout_ms > 0 ? w->timeout_ms : dt_wait_timeout_ms(c);
	int64_t deadline = now_mono_ms() + timeout;
	struct dt_sandbox cur = {0};
	long delay = DT_POLL_FIRST_MS;
	bool have = false;
	int rc;

	memset(out, 0, sizeof(*out));
	for (;;) {
		struct dt_sandbox next;
		int64_t left;

		rc = get_sandbox(c, id, w->what, &next, err);
		if (rc == -ENOENT && err->http_status == 404) {
			if (!state_in("destroyed", w->targets))
				return dt_error_set(err, ENOENT, 404, w->what,
						    "sandbox %s no longer exists", id);
			if (!have && destroyed_placeholder(id, &cur))
				return dt_error_set(err, ENOMEM, 0, w->what, "out of memory");
			free(cur.state);
			cur.state = strdup("destroyed");
			if (!cur.state) {
				dt_sandbox_clear(&cur);
				return dt_error_set(err, ENOMEM, 0, w->what, "out of memory");
			}
			*out = cur;
			return 0;
		}
		if (rc)
			goto fail;
		if (have)
			dt_sandbox_clear(&cur);
		cur = next;
		have = true;

		if (state_in(cur.state, w->targets))
			break;
		if (is_failed_state(cur.state) && !w->ignore_error_state) {
			rc = dt_error_set(err, EIO, 0, w->what, "sandbox %s is in state %s: %s", id,
					  cur.state,
					  cur.error_reason && cur.error_reason[0] ? cur.error_reason
										  : "no reason given");
			goto fail;
		}
		if (wait_done(w, cur.state))
			break;
		left = deadline - now_mono_ms();
		if (left <= 0) {
			rc = dt_error_set(err, ETIMEDOUT, 0, w->what,
					  "sandbox %s still %s after %ld s", id, cur.state,
					  (timeout + 999) / 1000);
			goto fail;
		}
		if (dt_sleep_ms(delay < left ? delay : (long)left)) {
			rc = dt_error_set(err, EINTR, 0, w->what, "interrupted");
			goto fail;
		}
		delay = dt_next_poll_ms(delay);
	}
	refresh_proxy_url(c, &cur);
	*out = cur;
	return 0;
fail:
	if (have)
		dt_sandbox_clear(&cur);
	return rc;
}

int dt_sandbox_wait(struct dt_client *c, const char *id, const char *const *targets,
		    int timeout_ms, struct dt_sandbox *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct dt_sandbox scratch;
	char what[160];
	struct dt_wait w = {targets, NULL, false, timeout_ms, what};
	int rc;

	snprintf(what, sizeof(what), "wait for sandbox %s", id ? id : "");
	rc = dt_sandbox_wait_for(c, id, &w, out ? out : &scratch, err);
	if (!rc && !out)
		dt_sandbox_clear(&scratch);
	return rc;
}

/* ---- create ---- */

static bool add_string(cJSON *o, const char *key, const char *value)
{
	return !value || !value[0] || cJSON_AddStringToObject(o, key, value);
}

static bool add_number(cJSON *o, const char *key, double value, bool send)
{
	return !send || cJSON_AddNumberToObject(o, key, value);
}

static cJSON *volumes_json(const struct dt_volume_mount *v, size_t n)
{
	cJSON *list = cJSON_CreateArray();

	for (size_t i = 0; list && i < n; i++) {
		cJSON *item = cJSON_CreateObject();

		if (!item || !cJSON_AddItemToArray(list, item) ||
		    !cJSON_AddStringToObject(item, "volumeId", v[i].volume_id ? v[i].volume_id : "") ||
		    !cJSON_AddStringToObject(item, "mountPath",
					     v[i].mount_path ? v[i].mount_path : "") ||
		    !add_string(item, "subpath", v[i].subpath)) {
			cJSON_Delete(list);
			list = NULL;
		}
	}
	return list;
}

/* The CreateSandbox body of daytona-api.md 2.2, as the SDK fills it. */
static char *create_body(const struct dt_client *c, const struct dt_create_params *p)
{
	cJSON *body = cJSON_CreateObject(), *labels, *env, *volumes = NULL;
	const char *language = p->language;
	char *text = NULL;
	bool ok;

	if (!body)
		return NULL;
	env = dt_kv_to_json(p->env, p->nenv);
	labels = dt_kv_to_json(p->labels, p->nlabels);
	ok = env && labels && cJSON_AddItemToObject(body, "env", env);
	if (!ok)
		cJSON_Delete(env);
	if (ok && !language && !cJSON_GetObjectItemCaseSensitive(labels, LANGUAGE_LABEL))
		language = DEFAULT_LANGUAGE;
	if (ok && language) {
		cJSON *value = cJSON_CreateString(language);

		cJSON_DeleteItemFromObjectCaseSensitive(labels, LANGUAGE_LABEL);
		ok = value && cJSON_AddItemToObject(labels, LANGUAGE_LABEL, value);
		if (!ok)
			cJSON_Delete(value);
	}
	if (ok)
		ok = cJSON_AddItemToObject(body, "labels", labels);
	if (!ok)
		cJSON_Delete(labels);
	ok = ok && add_string(body, "name", p->name) && add_string(body, "snapshot", p->snapshot) &&
	     add_string(body, "user", p->user) && add_string(body, "target", dt_client_target(c)) &&
	     add_number(body, "cpu", p->cpu, p->cpu > 0) &&
	     add_number(body, "gpu", p->gpu, p->gpu > 0) &&
	     add_number(body, "memory", p->memory, p->memory > 0) &&
	     add_number(body, "disk", p->disk, p->disk > 0) &&
	     add_number(body, "autoStopInterval", p->auto_stop_interval,
			p->auto_stop_interval >= 0) &&
	     add_number(body, "autoArchiveInterval", p->auto_archive_interval,
			p->auto_archive_interval >= 0) &&
	     add_number(body, "autoDeleteInterval", p->auto_delete_interval,
			p->auto_delete_interval != INT32_MIN);
	if (ok && p->is_public >= 0)
		ok = cJSON_AddBoolToObject(body, "public", p->is_public > 0);
	if (ok && p->nvolumes > 0) {
		volumes = volumes_json(p->volumes, p->nvolumes);
		ok = volumes && cJSON_AddItemToObject(body, "volumes", volumes);
		if (!ok)
			cJSON_Delete(volumes);
	}
	if (ok)
		text = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	return text;
}

void dt_create_params_init(struct dt_create_params *p)
{
	memset(p, 0, sizeof(*p));
	p->auto_stop_interval = -1;
	p->auto_archive_interval = -1;
	p->auto_delete_interval = INT32_MIN;
	p->is_public = -1;
}

int dt_sandbox_create(struct dt_client *c, const struct dt_create_params *p,
		      struct dt_sandbox *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	static const char *const started[] = {"started", NULL};
	struct dt_sandbox created, scratch;
	char what[160], *body;
	cJSON *root = NULL;
	int rc;

	if (!out)
		out = &scratch;
	memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "create sandbox%s%s", p->name ? " " : "",
		 p->name ? p->name : "");
	body = create_body(c, p);
	if (!body)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	rc = dt_call_json(c, DT_POST, "/sandbox", body, what, &root, err);
	cJSON_free(body);
	if (rc)
		goto out;
	if (!root) {
		rc = dt_error_set(err, EIO, 0, what, "the server answered without a sandbox");
		goto out;
	}
	rc = dt_sandbox_from_json(root, &created);
	if (rc) {
		rc = record_error(rc, err, what);
		goto out;
	}
	if (strcmp(created.state, "started") == 0) {
		refresh_proxy_url(c, &created);
		*out = created;
	} else {
		struct dt_wait w = {started, NULL, false, 0, what};

		rc = dt_sandbox_wait_for(c, created.id, &w, out, err);
		dt_sandbox_clear(&created);
	}
out:
	cJSON_Delete(root);
	if (out == &scratch)
		dt_sandbox_clear(&scratch);
	return rc;
}

/* ---- list ---- */

static int list_path(struct buf *path, const struct dt_list_query *q, const char *cursor)
{
	int limit = q && q->page_limit > 0 ? q->page_limit : DEFAULT_PAGE_LIMIT;
	char number[16];
	int rc;

	if (limit > MAX_PAGE_LIMIT)
		limit = MAX_PAGE_LIMIT;
	snprintf(number, sizeof(number), "%d", limit);
	rc = buf_append_str(path, "/sandbox");
	if (!rc)
		rc = dt_path_query(path, "limit", number);
	if (!rc && cursor)
		rc = dt_path_query(path, "cursor", cursor);
	if (!rc && q && q->name_prefix && q->name_prefix[0])
		rc = dt_path_query(path, "name", q->name_prefix);
	if (!rc && q && q->nlabels > 0) {
		cJSON *labels = dt_kv_to_json(q->labels, q->nlabels);
		char *text = labels ? cJSON_PrintUnformatted(labels) : NULL;

		rc = text ? dt_path_query(path, "labels", text) : -ENOMEM;
		cJSON_free(text);
		cJSON_Delete(labels);
	}
	return rc;
}

/* Appends the parseable items of one page; items without an id are skipped. */
static int list_append(const cJSON *items, struct dt_sandbox_list *out, const char *what,
		       struct dt_error *err)
{
	size_t n = (size_t)cJSON_GetArraySize(items);
	struct dt_sandbox *grown;
	const cJSON *item;

	if (n == 0)
		return 0;
	if (out->count + n > DT_MAX_ITEMS)
		return dt_error_set(err, EIO, 0, what, "more than %d sandboxes", DT_MAX_ITEMS);
	grown = realloc(out->items, (out->count + n) * sizeof(*grown));
	if (!grown)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	out->items = grown;
	cJSON_ArrayForEach(item, items) {
		int rc = dt_sandbox_from_json(item, &out->items[out->count]);

		if (rc == -ENOMEM)
			return dt_error_set(err, ENOMEM, 0, what, "out of memory");
		if (rc == 0)
			out->count++;
		else
			log_debug("%s: skipped a malformed sandbox record", what);
	}
	return 0;
}

int dt_sandbox_list(struct dt_client *c, const struct dt_list_query *q,
		    struct dt_sandbox_list *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *what = "list sandboxes";
	char *cursor = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	for (;;) {
		struct buf path = BUF_INIT;
		const cJSON *items;
		const char *next;
		cJSON *root = NULL;

		rc = list_path(&path, q, cursor);
		if (rc)
			rc = dt_error_set(err, -rc, 0, what, "cannot build the query");
		if (!rc)
			rc = dt_call_json_names(c, DT_GET, path.data, what, &root, err);
		buf_free(&path);
		if (rc)
			break;
		/* {items, nextCursor}; a plain array is one whole page. */
		items = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "items");
		if (!cJSON_IsArray(items)) {
			cJSON_Delete(root);
			rc = dt_error_set(err, EIO, 0, what, "the answer has no items list");
			break;
		}
		rc = list_append(items, out, what, err);
		next = dt_json_string(root, "nextCursor");
		if (!rc && next && next[0] && out->count >= DT_MAX_LISTING) {
			/* A server that never stops paging must not hold us (or our memory). */
			log_warn("%s: the server listed more than %d sandboxes; the rest are not shown",
				 what, DT_MAX_LISTING);
			next = NULL;
		}
		if (!rc && next && next[0] && cJSON_GetArraySize(items) > 0) {
			if (cursor && strcmp(cursor, next) == 0) {
				rc = dt_error_set(err, EIO, 0, what, "the server repeated a cursor");
			} else {
				free(cursor);
				cursor = strdup(next);
				if (!cursor)
					rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
			}
			cJSON_Delete(root);
			if (rc)
				break;
			continue;
		}
		cJSON_Delete(root);
		break;
	}
	free(cursor);
	if (rc)
		dt_sandbox_list_clear(out);
	return rc;
}

/* ---- actions ---- */

static const struct {
	const char *verb;
	const char *name;
	const char *const *targets;
} actions[] = {
	[DT_START] = {"/start", "start", (const char *const[]){"started", NULL}},
	[DT_STOP] = {"/stop", "stop", (const char *const[]){"stopped", "destroyed", NULL}},
	[DT_ARCHIVE] = {"/archive", "archive", (const char *const[]){"archived", NULL}},
	[DT_RECOVER] = {"/recover", "recover", (const char *const[]){"started", NULL}},
};

/* POSTs to /sandbox/{id}@suffix and parses the Sandbox it answers with. */
static int post_sandbox(struct dt_client *c, const char *id, const char *suffix, const char *body,
			const char *what, struct dt_sandbox *out, struct dt_error *err)
{
	struct buf path = BUF_INIT;
	cJSON *root = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = sandbox_path(&path, id, suffix, what, err);
	if (!rc)
		rc = dt_call_json(c, DT_POST, path.data, body, what, &root, err);
	if (!rc)
		rc = answer_to_sandbox(c, root, id, what, out, err);
	cJSON_Delete(root);
	buf_free(&path);
	return rc;
}

int dt_sandbox_action(struct dt_client *c, const char *id, enum dt_action action,
		      struct dt_sandbox *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct dt_sandbox first, scratch;
	char what[160];
	int rc;

	if (!out)
		out = &scratch;
	memset(out, 0, sizeof(*out));
	if ((unsigned)action >= ARRAY_SIZE(actions))
		return dt_error_set(err, EINVAL, 0, "sandbox action", "unknown action");
	snprintf(what, sizeof(what), "%s sandbox %s", actions[action].name, id ? id : "");
	rc = post_sandbox(c, id, actions[action].verb, NULL, what, &first, err);
	if (rc)
		return rc;
	if (state_in(first.state, actions[action].targets)) {
		refresh_proxy_url(c, &first);
		*out = first;
	} else {
		struct dt_wait w = {actions[action].targets, NULL, false, 0, what};

		/* Poll by id: a name could be taken by another sandbox meanwhile. */
		rc = dt_sandbox_wait_for(c, first.id, &w, out, err);
		dt_sandbox_clear(&first);
	}
	if (out == &scratch)
		dt_sandbox_clear(&scratch);
	return rc;
}

int dt_sandbox_delete(struct dt_client *c, const char *id, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	static const char *const destroyed[] = {"destroyed", NULL};
	struct buf path = BUF_INIT;
	struct dt_sandbox gone;
	char what[160];
	struct dt_wait w = {destroyed, NULL, true, 0, what};
	const char *wait_id;
	cJSON *root = NULL;
	int rc;

	snprintf(what, sizeof(what), "delete sandbox %s", id ? id : "");
	rc = sandbox_path(&path, id, NULL, what, err);
	if (!rc)
		rc = dt_call_json(c, DT_DELETE, path.data, NULL, what, &root, err);
	buf_free(&path);
	if (rc)
		goto out;
	/*
	 * Poll by the id the answer names: a name may stop resolving while the
	 * sandbox is still being destroyed, or be taken by a new sandbox.
	 */
	wait_id = dt_json_string(root, "id");
	if (!wait_id || !wait_id[0])
		wait_id = id;
	rc = dt_sandbox_wait_for(c, wait_id, &w, &gone, err);
	if (!rc)
		dt_sandbox_clear(&gone);
out:
	cJSON_Delete(root);
	return rc;
}

int dt_sandbox_set_labels(struct dt_client *c, const char *id, const struct dt_kv *labels,
			  size_t n, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct buf path = BUF_INIT;
	cJSON *body = cJSON_CreateObject(), *map = dt_kv_to_json(labels, n);
	char what[160], *text = NULL;
	int rc;

	snprintf(what, sizeof(what), "set labels of sandbox %s", id ? id : "");
	if (!body || !map || !cJSON_AddItemToObject(body, "labels", map)) {
		cJSON_Delete(map);
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	text = cJSON_PrintUnformatted(body);
	if (!text) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	rc = sandbox_path(&path, id, "/labels", what, err);
	if (!rc)
		rc = dt_call(c, DT_PUT, path.data, text, what, NULL, err);
out:
	cJSON_free(text);
	cJSON_Delete(body);
	buf_free(&path);
	return rc;
}

int dt_sandbox_set_interval(struct dt_client *c, const char *id, enum dt_interval which,
			    int minutes, struct dt_sandbox *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	static const char *const names[] = {
		[DT_AUTOSTOP] = "autostop",
		[DT_AUTOARCHIVE] = "autoarchive",
		[DT_AUTODELETE] = "autodelete",
	};
	struct dt_sandbox scratch;
	char what[160], suffix[48];
	int rc;

	if (!out)
		out = &scratch;
	memset(out, 0, sizeof(*out));
	if ((unsigned)which >= ARRAY_SIZE(names))
		return dt_error_set(err, EINVAL, 0, "set interval", "unknown interval");
	snprintf(what, sizeof(what), "set %s of sandbox %s", names[which], id ? id : "");
	snprintf(suffix, sizeof(suffix), "/%s/%d", names[which], minutes);
	rc = post_sandbox(c, id, suffix, NULL, what, out, err);
	if (!rc && out != &scratch)
		refresh_proxy_url(c, out);
	if (out == &scratch)
		dt_sandbox_clear(&scratch);
	return rc;
}

int dt_sandbox_create_snapshot(struct dt_client *c, const char *id, const char *snapshot_name,
			       struct dt_sandbox *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct dt_sandbox first, scratch;
	struct dt_snapshot snap;
	cJSON *body = cJSON_CreateObject();
	char what[200], *text = NULL;
	int rc;

	if (!out)
		out = &scratch;
	memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "snapshot sandbox %s as %s", id ? id : "",
		 snapshot_name ? snapshot_name : "");
	if (!snapshot_name || !snapshot_name[0]) {
		rc = dt_error_set(err, EINVAL, 0, what, "no snapshot name");
		goto out;
	}
	if (!body || !cJSON_AddStringToObject(body, "name", snapshot_name) ||
	    !(text = cJSON_PrintUnformatted(body))) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	rc = post_sandbox(c, id, "/snapshot", text, what, &first, err);
	if (rc)
		goto out;
	{
		struct dt_wait w = {NULL, "snapshotting", false, 0, what};

		rc = dt_sandbox_wait_for(c, first.id, &w, out, err);
		dt_sandbox_clear(&first);
	}
	if (rc)
		goto out;
	/* The snapshot record may appear a moment after the sandbox leaves snapshotting. */
	rc = dt_snapshot_wait_for(c, snapshot_name, dt_wait_timeout_ms(c), true, what, &snap,
				  err);
	if (!rc)
		dt_snapshot_clear(&snap);
	else
		dt_sandbox_clear(out);
out:
	cJSON_free(text);
	cJSON_Delete(body);
	if (out == &scratch)
		dt_sandbox_clear(&scratch);
	return rc;
}

int dt_sandbox_preview_url(struct dt_client *c, const char *id, int port, char **url,
			   char **token, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct buf path = BUF_INIT;
	cJSON *root = NULL;
	char what[160], suffix[48];
	const char *u, *t;
	int rc;

	*url = NULL;
	if (token)
		*token = NULL;
	snprintf(what, sizeof(what), "preview url of port %d of sandbox %s", port, id ? id : "");
	if (port < 1 || port > 65535)
		return dt_error_set(err, EINVAL, 0, what, "ports are 1 to 65535");
	snprintf(suffix, sizeof(suffix), "/ports/%d/preview-url", port);
	rc = sandbox_path(&path, id, suffix, what, err);
	if (!rc)
		rc = dt_call_json(c, DT_GET, path.data, NULL, what, &root, err);
	if (rc)
		goto out;
	u = dt_json_string(root, "url");
	t = dt_json_string(root, "token");
	if (!u || !u[0]) {
		rc = dt_error_set(err, EIO, 0, what, "the answer has no url");
		goto out;
	}
	*url = strdup(u);
	if (token && t)
		*token = strdup(t);
	if (!*url || (token && t && !*token)) {
		free(*url);
		*url = NULL;
		if (token) {
			free(*token);
			*token = NULL;
		}
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
	}
out:
	cJSON_Delete(root);
	buf_free(&path);
	return rc;
}
