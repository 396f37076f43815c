/*
 * The toolbox handle and its JSON endpoints (daytona-api.md sections 5 and
 * 6): listing, stat, mkdir, delete, move, permissions, find, search,
 * replace and the info endpoints. Transfers are in transfer.c, FileInfo
 * parsing in fileinfo.c. Every call goes through the request engine of
 * client.c with the toolbox base as its URL, so it gets the same headers,
 * pooled connections, deadlines, retries and cancellation as the API.
 */
#include "dt_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct dt_toolbox {
	struct dt_client *c;
	char *id;
	pthread_mutex_t lock; /* guards base, which a refresh replaces */
	char *base;	      /* "{toolboxProxyUrl}/{escaped sandbox id}" */
	atomic_int upload_mode;
};

struct dt_client *dt_toolbox_client(struct dt_toolbox *tb)
{
	return tb->c;
}

const char *dt_toolbox_sandbox_id(const struct dt_toolbox *tb)
{
	return tb->id;
}

int dt_toolbox_upload_mode(struct dt_toolbox *tb)
{
	return atomic_load(&tb->upload_mode);
}

void dt_toolbox_set_upload_mode(struct dt_toolbox *tb, int mode)
{
	atomic_store(&tb->upload_mode, mode);
}

/* "{url}/{id}": the SDK strips the URL's trailing slashes and always uses the id. */
static int make_base(const char *url, const char *id, char **out, struct dt_error *err)
{
	struct buf b = BUF_INIT;
	size_t len = strlen(url);
	int rc;

	rc = dt_check_url(url, "toolbox proxy URL", err);
	if (rc)
		return rc;
	while (len > 0 && url[len - 1] == '/')
		len--;
	if (buf_append(&b, url, len)) {
		buf_free(&b);
		return dt_error_set(err, ENOMEM, 0, "toolbox", "out of memory");
	}
	rc = dt_path_segment(&b, id);
	if (rc) {
		buf_free(&b);
		return rc == -ENOMEM
			   ? dt_error_set(err, ENOMEM, 0, "toolbox", "out of memory")
			   : dt_error_set(err, EINVAL, 0, "toolbox", "invalid sandbox id");
	}
	*out = buf_steal(&b);
	return 0;
}

/* The sandbox's id and toolbox URL as the API has them now. */
static int fetch_sandbox(struct dt_client *c, const char *id, struct dt_sandbox *s,
			 struct dt_error *err)
{
	int rc = dt_sandbox_get(c, id, s, err);

	if (rc)
		return rc;
	if (!s->toolbox_proxy_url || !s->toolbox_proxy_url[0]) {
		dt_sandbox_clear(s);
		return dt_error_set(err, EIO, 0, "toolbox",
				    "the API gives no toolbox URL for sandbox %s", id);
	}
	return 0;
}

struct dt_toolbox *dt_toolbox_new(struct dt_client *c, const char *sandbox_id,
				  const char *toolbox_proxy_url, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct dt_sandbox s = {0};
	struct dt_toolbox *tb;
	const char *id = sandbox_id, *url = toolbox_proxy_url;

	if (!c || !sandbox_id || !sandbox_id[0]) {
		dt_error_set(err, EINVAL, 0, "toolbox", "no sandbox id");
		return NULL;
	}
	if (!url || !url[0]) {
		if (fetch_sandbox(c, sandbox_id, &s, err))
			return NULL;
		id = s.id;
		url = s.toolbox_proxy_url;
	}
	tb = calloc(1, sizeof(*tb));
	if (!tb || !(tb->id = strdup(id))) {
		free(tb);
		dt_sandbox_clear(&s);
		dt_error_set(err, ENOMEM, 0, "toolbox", "out of memory");
		return NULL;
	}
	tb->c = c;
	pthread_mutex_init(&tb->lock, NULL);
	atomic_init(&tb->upload_mode, 0);
	if (make_base(url, tb->id, &tb->base, err)) {
		dt_toolbox_free(tb);
		tb = NULL;
	}
	dt_sandbox_clear(&s);
	return tb;
}

struct dt_toolbox *dt_toolbox_for_sandbox(struct dt_client *c, const struct dt_sandbox *s,
					  struct dt_error *err)
{
	DT_ERR_GUARD(err);

	if (!s || !s->id) {
		dt_error_set(err, EINVAL, 0, "toolbox", "no sandbox");
		return NULL;
	}
	return dt_toolbox_new(c, s->id, s->toolbox_proxy_url, err);
}

int dt_toolbox_refresh(struct dt_toolbox *tb, const struct dt_sandbox *s, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct dt_sandbox fresh = {0};
	const char *url;
	char *base = NULL, *old;
	int rc;

	if (s && s->id && strcmp(s->id, tb->id) != 0)
		return dt_error_set(err, EINVAL, 0, "toolbox", "sandbox %s is not %s", s->id,
				    tb->id);
	if (s && s->toolbox_proxy_url && s->toolbox_proxy_url[0]) {
		url = s->toolbox_proxy_url;
	} else {
		rc = fetch_sandbox(tb->c, tb->id, &fresh, err);
		if (rc)
			return rc;
		url = fresh.toolbox_proxy_url;
	}
	rc = make_base(url, tb->id, &base, err);
	dt_sandbox_clear(&fresh);
	if (rc)
		return rc;
	pthread_mutex_lock(&tb->lock);
	old = tb->base;
	tb->base = base;
	pthread_mutex_unlock(&tb->lock);
	free(old);
	/* A restored sandbox may run another daemon version. */
	dt_toolbox_set_upload_mode(tb, 0);
	return 0;
}

void dt_toolbox_free(struct dt_toolbox *tb)
{
	if (!tb)
		return;
	free(tb->id);
	free(tb->base);
	pthread_mutex_destroy(&tb->lock);
	free(tb);
}

int dt_toolbox_url(struct dt_toolbox *tb, struct buf *url, const char *endpoint,
		   const char *const *query, const char *what, struct dt_error *err)
{
	int rc;

	pthread_mutex_lock(&tb->lock);
	rc = buf_printf(url, "%s%s", tb->base, endpoint);
	pthread_mutex_unlock(&tb->lock);
	for (size_t i = 0; rc == 0 && query && query[i] && query[i + 1]; i += 2)
		rc = dt_path_query(url, query[i], query[i + 1]);
	return rc ? dt_error_set(err, ENOMEM, 0, what, "out of memory") : 0;
}

/*
 * Daytona answers toolbox calls only for a started sandbox; quaverd says so
 * with 409 "Sandbox X is not started". The shared mapper reads any 409 as
 * EEXIST, which would tell ls or cat that a file exists; for the toolbox it
 * means the sandbox is down.
 */
static bool says_not_started(const char *message)
{
	return strcasestr(message, "not started") || strcasestr(message, "not running");
}

int dt_toolbox_run(struct dt_toolbox *tb, struct dt_transfer *t, struct dt_response *resp,
		   struct dt_error *err)
{
	DT_ERR_GUARD(err);
	int rc = dt_transfer_run(tb->c, t, resp, err);

	if (rc == -EEXIST && err->http_status == 409 && says_not_started(err->message)) {
		err->err = EHOSTDOWN;
		rc = -EHOSTDOWN;
	}
	return rc;
}

/* ---- JSON endpoints ---- */

static int check_path(const char *path, const char *what, struct dt_error *err)
{
	if (!path || !path[0])
		return dt_error_set(err, EINVAL, 0, what, "no path");
	return 0;
}

/* "@verb @path" for messages, cut to fit. */
static void describe(char *out, size_t size, const char *verb, const char *path)
{
	snprintf(out, size, "%s %s", verb, path ? path : "");
}

int dt_toolbox_request(struct dt_toolbox *tb, enum dt_method method, const char *endpoint,
		       const char *const *query, const char *body, const char *what,
		       struct dt_response *resp, struct dt_error *err)
{
	struct dt_transfer t = {0};
	struct buf url = BUF_INIT;
	int rc;

	rc = dt_toolbox_url(tb, &url, endpoint, query, what, err);
	if (rc == 0) {
		t.method = method;
		t.url = url.data;
		t.what = what;
		t.body = body;
		t.body_len = body ? strlen(body) : 0;
		rc = dt_toolbox_run(tb, &t, resp, err);
	}
	buf_free(&url);
	return rc;
}

static int tb_request_json(struct dt_toolbox *tb, enum dt_method method, const char *endpoint,
			   const char *const *query, const char *body, const char *what,
			   cJSON **out, struct dt_error *err)
{
	struct dt_response resp;
	int rc;

	*out = NULL;
	rc = dt_toolbox_request(tb, method, endpoint, query, body, what, &resp, err);
	if (rc == 0 && resp.body.len == 0)
		rc = dt_error_set(err, EIO, (int)resp.status, what,
				  "the server sent an empty answer");
	if (rc == 0)
		rc = dt_parse_json(resp.body.data, resp.body.len, what, out, err);
	dt_response_free(&resp);
	return rc;
}

int dt_fs_list(struct dt_toolbox *tb, const char *path, struct dt_file_list *out,
	       struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *query[] = {"path", path, NULL};
	struct dt_response resp;
	char what[256];
	int rc;

	memset(out, 0, sizeof(*out));
	describe(what, sizeof(what), "list", path);
	rc = check_path(path, what, err);
	if (rc)
		return rc;
	rc = dt_toolbox_request(tb, DT_GET, "/files", query, NULL, what, &resp, err);
	if (rc == 0)
		rc = dt_file_list_parse(resp.body.data ? resp.body.data : (char *)"", resp.body.len,
					what, out, err);
	if (rc == 0 && (out->dropped || out->truncated))
		log_warn("%s: %zu unusable entries dropped%s", what, out->dropped,
			 out->truncated ? ", listing cut at its limit" : "");
	dt_response_free(&resp);
	return rc;
}

int dt_fs_info(struct dt_toolbox *tb, const char *path, struct dt_file_info *out,
	       struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *query[] = {"path", path, NULL};
	struct dt_response resp;
	char what[256];
	int rc;

	memset(out, 0, sizeof(*out));
	describe(what, sizeof(what), "stat", path);
	rc = check_path(path, what, err);
	if (rc)
		return rc;
	rc = dt_toolbox_request(tb, DT_GET, "/files/info", query, NULL, what, &resp, err);
	if (rc == 0)
		rc = dt_file_info_parse(resp.body.data ? resp.body.data : (char *)"", resp.body.len,
					what, out, err);
	dt_response_free(&resp);
	return rc;
}

int dt_fs_mkdir(struct dt_toolbox *tb, const char *path, mode_t mode, struct dt_error *err)
{
	return dt_fs_mkdir_info(tb, path, mode, NULL, NULL, err);
}

int dt_fs_mkdir_info(struct dt_toolbox *tb, const char *path, mode_t mode,
		     struct dt_file_info *info, bool *have_info, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	char what[256], octal[16];
	const char *query[] = {"path", path, "mode", octal, NULL};
	struct dt_response resp;
	int rc;

	if (have_info)
		*have_info = false;
	describe(what, sizeof(what), "mkdir", path);
	rc = check_path(path, what, err);
	if (rc)
		return rc;
	snprintf(octal, sizeof(octal), "%04o", (unsigned)(mode & 07777));
	rc = dt_toolbox_request(tb, DT_POST, "/files/folder", query, NULL, what, &resp, err);
	/* quaverd answers with the directory's FileInfo; Daytona with nothing. */
	if (rc == 0 && info && have_info && resp.body.len && resp.body.data &&
	    memmem(resp.body.data, resp.body.len, "\"modifiedAt\"", 12)) {
		struct dt_error ignored = {0};
		char *text = malloc(resp.body.len + 1);

		if (text) {
			memcpy(text, resp.body.data, resp.body.len);
			text[resp.body.len] = '\0';
			*have_info =
			    dt_file_info_parse(text, resp.body.len, what, info, &ignored) == 0 &&
			    info->is_dir && info->mtime.tv_sec;
			if (!*have_info)
				dt_file_info_clear(info);
			free(text);
		}
	}
	dt_response_free(&resp);
	return rc;
}

int dt_fs_delete(struct dt_toolbox *tb, const char *path, bool recursive, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *query[] = {"path", path, recursive ? "recursive" : NULL, "true", NULL};
	char what[256];
	int rc;

	describe(what, sizeof(what), "delete", path);
	rc = check_path(path, what, err);
	if (rc)
		return rc;
	return dt_toolbox_request(tb, DT_DELETE, "/files", query, NULL, what, NULL, err);
}

int dt_fs_move(struct dt_toolbox *tb, const char *source, const char *destination,
	       struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *query[] = {"source", source, "destination", destination, NULL};
	char what[256];
	int rc;

	describe(what, sizeof(what), "move", source);
	rc = check_path(source, what, err);
	if (!rc)
		rc = check_path(destination, what, err);
	if (rc)
		return rc;
	return dt_toolbox_request(tb, DT_POST, "/files/move", query, NULL, what, NULL, err);
}

int dt_fs_move_over(struct dt_toolbox *tb, const char *source, const char *destination,
		    struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *query[] = {"source",    source, "destination", destination,
			       "overwrite", "true", NULL};
	char what[256];
	int rc;

	describe(what, sizeof(what), "move", source);
	rc = check_path(source, what, err);
	if (!rc)
		rc = check_path(destination, what, err);
	if (rc)
		return rc;
	return dt_toolbox_request(tb, DT_POST, "/files/move", query, NULL, what, NULL, err);
}

int dt_fs_set_permissions(struct dt_toolbox *tb, const char *path, int mode, const char *owner,
			  const char *group, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *query[9];
	char what[256], octal[16];
	size_t n = 0;
	int rc;

	describe(what, sizeof(what), "set permissions of", path);
	rc = check_path(path, what, err);
	if (rc)
		return rc;
	query[n++] = "path";
	query[n++] = path;
	if (mode >= 0) {
		snprintf(octal, sizeof(octal), "%04o", (unsigned)mode & 07777);
		query[n++] = "mode";
		query[n++] = octal;
	}
	if (owner && owner[0]) {
		query[n++] = "owner";
		query[n++] = owner;
	}
	if (group && group[0]) {
		query[n++] = "group";
		query[n++] = group;
	}
	query[n] = NULL;
	return dt_toolbox_request(tb, DT_POST, "/files/permissions", query, NULL, what, NULL, err);
}

void dt_fs_match_list_clear(struct dt_fs_match_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++) {
		free(l->items[i].file);
		free(l->items[i].content);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

void dt_string_list_clear(struct dt_string_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

void dt_fs_replace_list_clear(struct dt_fs_replace_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++) {
		free(l->items[i].file);
		free(l->items[i].error);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

/* A JSON array answer bounded by DT_MAX_LISTING; *n its kept length. */
static int bounded_array(const cJSON *list, const char *what, size_t *n, struct dt_error *err)
{
	int size;

	*n = 0;
	if (cJSON_IsNull(list)) /* Go encodes an empty (nil) slice as null */
		return 0;
	if (!cJSON_IsArray(list))
		return dt_error_set(err, EIO, 0, what, "the answer is not a list");
	size = cJSON_GetArraySize(list);
	if (size > DT_MAX_LISTING)
		return dt_error_set(err, EIO, 0, what, "the answer has more than %d entries",
				    DT_MAX_LISTING);
	*n = (size_t)size;
	return 0;
}

int dt_fs_find(struct dt_toolbox *tb, const char *path, const char *pattern,
	       struct dt_fs_match_list *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *query[] = {"path", path, "pattern", pattern, NULL};
	const cJSON *item, *walk;
	cJSON *root = NULL;
	char what[256];
	size_t n = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	describe(what, sizeof(what), "find in", path);
	rc = check_path(path, what, err);
	if (!rc && (!pattern || !pattern[0]))
		rc = dt_error_set(err, EINVAL, 0, what, "no pattern");
	if (!rc)
		rc = tb_request_json(tb, DT_GET, "/files/find", query, NULL, what, &root, err);
	if (!rc)
		rc = bounded_array(root, what, &n, err);
	if (!rc && n && !(out->items = calloc(n, sizeof(*out->items))))
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
	walk = rc ? NULL : root;
	cJSON_ArrayForEach(item, walk)
	{
		const cJSON *line = cJSON_GetObjectItemCaseSensitive(item, "line");
		struct dt_fs_match *m = &out->items[out->count];
		const char *file = dt_json_string(item, "file");

		if (!file)
			continue;
		m->file = strdup(file);
		m->content =
		    strdup(dt_json_string(item, "content") ? dt_json_string(item, "content") : "");
		m->line = cJSON_IsNumber(line) && line->valuedouble >= 0 && line->valuedouble < 9e18
			      ? (int64_t)line->valuedouble
			      : 0;
		out->count++;
		if (!m->file || !m->content) {
			rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
			break;
		}
	}
	cJSON_Delete(root);
	if (rc)
		dt_fs_match_list_clear(out);
	return rc;
}

int dt_fs_search(struct dt_toolbox *tb, const char *path, const char *pattern,
		 struct dt_string_list *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *query[] = {"path", path, "pattern", pattern, NULL};
	const cJSON *item, *files, *walk;
	cJSON *root = NULL;
	char what[256];
	size_t n = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	describe(what, sizeof(what), "search in", path);
	rc = check_path(path, what, err);
	if (!rc && (!pattern || !pattern[0]))
		rc = dt_error_set(err, EINVAL, 0, what, "no pattern");
	if (!rc)
		rc = tb_request_json(tb, DT_GET, "/files/search", query, NULL, what, &root, err);
	files = cJSON_GetObjectItemCaseSensitive(root, "files");
	if (!rc && cJSON_IsNull(files))
		files = NULL; /* Go encodes an empty slice as null */
	if (!rc && files)
		rc = bounded_array(files, what, &n, err);
	if (!rc && n && !(out->items = calloc(n, sizeof(*out->items))))
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
	walk = rc ? NULL : files;
	cJSON_ArrayForEach(item, walk)
	{
		if (!cJSON_IsString(item))
			continue;
		out->items[out->count] = strdup(item->valuestring);
		if (!out->items[out->count]) {
			rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
			break;
		}
		out->count++;
	}
	cJSON_Delete(root);
	if (rc)
		dt_string_list_clear(out);
	return rc;
}

static char *replace_body(const char *const *files, size_t nfiles, const char *pattern,
			  const char *new_value)
{
	cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "files");
	char *text = NULL;
	bool ok = o && list;

	for (size_t i = 0; ok && i < nfiles; i++) {
		cJSON *s = files[i] ? cJSON_CreateString(files[i]) : NULL;

		ok = s && cJSON_AddItemToArray(list, s);
		if (!ok)
			cJSON_Delete(s);
	}
	ok = ok && cJSON_AddStringToObject(o, "pattern", pattern) &&
	     cJSON_AddStringToObject(o, "newValue", new_value);
	if (ok)
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

int dt_fs_replace(struct dt_toolbox *tb, const char *const *files, size_t nfiles,
		  const char *pattern, const char *new_value, struct dt_fs_replace_list *out,
		  struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *what = "replace in files";
	const cJSON *item, *walk;
	cJSON *root = NULL;
	char *body = NULL;
	size_t n = 0;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!pattern || !pattern[0] || !new_value || (nfiles && !files))
		return dt_error_set(err, EINVAL, 0, what, "no pattern or replacement");
	body = replace_body(files, nfiles, pattern, new_value);
	if (!body)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	rc = tb_request_json(tb, DT_POST, "/files/replace", NULL, body, what, &root, err);
	if (!rc)
		rc = bounded_array(root, what, &n, err);
	if (!rc && n && !(out->items = calloc(n, sizeof(*out->items))))
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
	walk = rc ? NULL : root;
	cJSON_ArrayForEach(item, walk)
	{
		struct dt_fs_replace_result *r = &out->items[out->count];
		const char *file = dt_json_string(item, "file"), *error;

		if (!file)
			continue;
		error = dt_json_string(item, "error");
		r->file = strdup(file);
		r->success = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "success"));
		r->error = error && error[0] ? strdup(error) : NULL;
		out->count++;
		if (!r->file || (error && error[0] && !r->error)) {
			rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
			break;
		}
	}
	cJSON_Delete(root);
	free(body);
	if (rc)
		dt_fs_replace_list_clear(out);
	return rc;
}

/* GET @endpoint and the string member @field of its JSON answer (or the plain text). */
static int info_string(struct dt_toolbox *tb, const char *endpoint, const char *field, char **out,
		       struct dt_error *err)
{
	struct dt_response resp;
	char what[64];
	cJSON *root = NULL;
	const char *value = NULL;
	int rc;

	*out = NULL;
	snprintf(what, sizeof(what), "toolbox %s", endpoint + 1);
	rc = dt_toolbox_request(tb, DT_GET, endpoint, NULL, NULL, what, &resp, err);
	if (rc)
		goto done;
	root = resp.body.len ? cJSON_ParseWithLength(resp.body.data, resp.body.len) : NULL;
	if (cJSON_IsObject(root))
		value = dt_json_string(root, field);
	else if (cJSON_IsString(root))
		value = root->valuestring;
	else if (!root && resp.body.len && resp.body.len < 256 &&
		 !memchr(resp.body.data, '\0', resp.body.len))
		value = resp.body.data; /* older daemons answer /version in plain text */
	if (!value) {
		rc = dt_error_set(err, EIO, 0, what, "the answer has no %s", field);
		goto done;
	}
	*out = strdup(value);
	if (!*out)
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
done:
	cJSON_Delete(root);
	dt_response_free(&resp);
	return rc;
}

int dt_toolbox_home_dir(struct dt_toolbox *tb, char **out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	return info_string(tb, "/user-home-dir", "dir", out, err);
}

int dt_toolbox_work_dir(struct dt_toolbox *tb, char **out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	return info_string(tb, "/work-dir", "dir", out, err);
}

int dt_toolbox_version(struct dt_toolbox *tb, char **out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	return info_string(tb, "/version", "version", out, err);
}
