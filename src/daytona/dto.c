/*
 * DTOs: cJSON trees from the server into the typed structs of daytona.h.
 *
 * The server is not trusted: a missing, null or wrong-typed field reads as
 * absent, unknown fields are ignored, maps and lists are bounded by
 * DT_MAX_ITEMS. Identity fields (id, name, state, ...) are never NULL after
 * a successful parse ("" or "unknown" when absent), so callers can compare
 * them without checks; the fields daytona.h marks "may be NULL" are NULL
 * when absent. Names are not validated here: the caller decides what it can
 * show as a file name.
 */
#include "dt_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct parse {
	bool nomem;
	bool bad; /* too many items */
};

const char *dt_json_string(const cJSON *o, const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(item) && item->valuestring ? item->valuestring : NULL;
}

/* A copy of the string member, @fallback when absent (NULL stays NULL). */
static char *str_field(struct parse *p, const cJSON *o, const char *name, const char *fallback)
{
	const char *v = dt_json_string(o, name);
	char *copy;

	if (!v)
		v = fallback;
	if (!v)
		return NULL;
	copy = strdup(v);
	if (!copy)
		p->nomem = true;
	return copy;
}

static double num_field(const cJSON *o, const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
		return 0;
	return item->valuedouble;
}

static int int_field(const cJSON *o, const char *name, int absent)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(o, name);
	double v;

	if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
		return absent;
	v = item->valuedouble;
	if (v > INT_MAX)
		return INT_MAX;
	if (v < INT_MIN)
		return INT_MIN;
	return (int)v;
}

static bool bool_field(const cJSON *o, const char *name)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, name));
}

static void kv_free(struct dt_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

struct kv_sorted {
	struct dt_kv kv;
	size_t index;
};

static int kv_compare(const void *a, const void *b)
{
	const struct kv_sorted *x = a, *y = b;
	int d = strcmp(x->kv.key, y->kv.key);

	if (d)
		return d;
	return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * A {"k":"v"} member into an array. Non-string values are skipped; of
 * duplicate keys the last wins (as in JavaScript); more than DT_MAX_ITEMS
 * entries is a malformed answer.
 */
static void kv_field(struct parse *p, const cJSON *o, const char *name, struct dt_kv **out,
		     size_t *count)
{
	const cJSON *map = cJSON_GetObjectItemCaseSensitive(o, name), *item;
	struct kv_sorted *tmp;
	size_t n = 0, kept = 0;

	*out = NULL;
	*count = 0;
	if (!cJSON_IsObject(map))
		return;
	cJSON_ArrayForEach(item, map) {
		if (cJSON_IsString(item) && item->string)
			n++;
	}
	if (n == 0)
		return;
	if (n > DT_MAX_ITEMS) {
		p->bad = true;
		return;
	}
	tmp = calloc(n, sizeof(*tmp));
	if (!tmp) {
		p->nomem = true;
		return;
	}
	n = 0;
	cJSON_ArrayForEach(item, map) {
		if (!cJSON_IsString(item) || !item->string)
			continue;
		tmp[n].kv.key = strdup(item->string);
		tmp[n].kv.value = strdup(item->valuestring);
		tmp[n].index = n;
		n++;
		if (!tmp[n - 1].kv.key || !tmp[n - 1].kv.value)
			p->nomem = true;
	}
	if (p->nomem)
		goto fail;
	qsort(tmp, n, sizeof(*tmp), kv_compare);
	*out = calloc(n, sizeof(**out));
	if (!*out) {
		p->nomem = true;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		if (i + 1 < n && strcmp(tmp[i].kv.key, tmp[i + 1].kv.key) == 0) {
			free(tmp[i].kv.key);
			free(tmp[i].kv.value);
			continue;
		}
		(*out)[kept++] = tmp[i].kv;
	}
	*count = kept;
	free(tmp);
	return;
fail:
	for (size_t i = 0; i < n; i++) {
		free(tmp[i].kv.key);
		free(tmp[i].kv.value);
	}
	free(tmp);
}

static void volume_mounts_field(struct parse *p, const cJSON *o, struct dt_sandbox *s)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "volumes"), *item;
	int n;

	if (!cJSON_IsArray(list) || (n = cJSON_GetArraySize(list)) == 0)
		return;
	if (n > DT_MAX_ITEMS) {
		p->bad = true;
		return;
	}
	s->volumes = calloc((size_t)n, sizeof(*s->volumes));
	if (!s->volumes) {
		p->nomem = true;
		return;
	}
	cJSON_ArrayForEach(item, list) {
		struct dt_volume_mount *m = &s->volumes[s->nvolumes];

		if (!dt_json_string(item, "volumeId"))
			continue;
		m->volume_id = str_field(p, item, "volumeId", NULL);
		m->mount_path = str_field(p, item, "mountPath", "");
		m->subpath = str_field(p, item, "subpath", NULL);
		s->nvolumes++;
	}
}

static void redact(cJSON *node)
{
	cJSON *child = node ? node->child : NULL;

	while (child) {
		cJSON *next = child->next;

		if (cJSON_IsObject(node) && child->string && dt_key_is_secret(child->string)) {
			cJSON *mask = cJSON_CreateString("***");

			if (mask) {
				/* The key moves to the mask; ReplaceItemViaPointer keeps no name. */
				mask->string = child->string;
				mask->type |= child->type & cJSON_StringIsConst;
				child->string = NULL;
				cJSON_ReplaceItemViaPointer(node, child, mask);
			} else {
				/* Without memory for the mask, drop the secret entirely. */
				cJSON_DetachItemViaPointer(node, child);
				cJSON_Delete(child);
			}
		} else if (cJSON_IsObject(child) || cJSON_IsArray(child)) {
			redact(child);
		}
		child = next;
	}
}

bool dt_key_is_secret(const char *key)
{
	static const char *const words[] = {"token",  "secret",  "password",      "passwd",
					    "apikey", "api_key", "api-key", "authorization"};

	for (size_t i = 0; i < ARRAY_SIZE(words); i++)
		if (strcasestr(key, words[i]))
			return true;
	return false;
}

char *dt_json_redacted(const cJSON *o)
{
	cJSON *copy = cJSON_Duplicate(o, true);
	char *text;

	if (!copy)
		return NULL;
	redact(copy);
	text = cJSON_Print(copy);
	cJSON_Delete(copy);
	return text;
}

/* Moves the cJSON allocation into a malloc'd string that free() can release. */
static char *json_field(struct parse *p, const cJSON *o)
{
	char *text = dt_json_redacted(o), *copy;

	if (!text) {
		p->nomem = true;
		return NULL;
	}
	copy = strdup(text);
	cJSON_free(text);
	if (!copy)
		p->nomem = true;
	return copy;
}

static int finish(struct parse *p)
{
	if (p->nomem)
		return -ENOMEM;
	if (p->bad)
		return -EIO;
	return 0;
}

int dt_sandbox_from_json(const cJSON *o, struct dt_sandbox *s)
{
	struct parse p = {false, false};
	int rc;

	memset(s, 0, sizeof(*s));
	if (!cJSON_IsObject(o) || !dt_json_string(o, "id") || !dt_json_string(o, "id")[0])
		return -EIO;
	s->id = str_field(&p, o, "id", NULL);
	s->name = str_field(&p, o, "name", "");
	s->organization_id = str_field(&p, o, "organizationId", "");
	s->state = str_field(&p, o, "state", "unknown");
	s->desired_state = str_field(&p, o, "desiredState", NULL);
	s->error_reason = str_field(&p, o, "errorReason", NULL);
	s->recoverable = bool_field(o, "recoverable");
	s->snapshot = str_field(&p, o, "snapshot", NULL);
	s->user = str_field(&p, o, "user", "");
	s->target = str_field(&p, o, "target", "");
	s->toolbox_proxy_url = str_field(&p, o, "toolboxProxyUrl", "");
	s->is_public = bool_field(o, "public");
	s->cpu = num_field(o, "cpu");
	s->gpu = num_field(o, "gpu");
	s->memory = num_field(o, "memory");
	s->disk = num_field(o, "disk");
	s->auto_stop_interval = int_field(o, "autoStopInterval", 0);
	s->auto_archive_interval = int_field(o, "autoArchiveInterval", 0);
	s->auto_delete_interval = int_field(o, "autoDeleteInterval", -1);
	kv_field(&p, o, "labels", &s->labels, &s->nlabels);
	s->has_env = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "env"));
	kv_field(&p, o, "env", &s->env, &s->nenv);
	volume_mounts_field(&p, o, s);
	s->created_at = str_field(&p, o, "createdAt", NULL);
	s->updated_at = str_field(&p, o, "updatedAt", NULL);
	s->last_activity_at = str_field(&p, o, "lastActivityAt", NULL);
	if (!p.nomem && !p.bad)
		s->json = json_field(&p, o);
	rc = finish(&p);
	if (rc)
		dt_sandbox_clear(s);
	return rc;
}

void dt_sandbox_clear(struct dt_sandbox *s)
{
	if (!s)
		return;
	free(s->id);
	free(s->name);
	free(s->organization_id);
	free(s->state);
	free(s->desired_state);
	free(s->error_reason);
	free(s->snapshot);
	free(s->user);
	free(s->target);
	free(s->toolbox_proxy_url);
	kv_free(s->labels, s->nlabels);
	kv_free(s->env, s->nenv);
	for (size_t i = 0; i < s->nvolumes; i++) {
		free(s->volumes[i].volume_id);
		free(s->volumes[i].mount_path);
		free(s->volumes[i].subpath);
	}
	free(s->volumes);
	free(s->created_at);
	free(s->updated_at);
	free(s->last_activity_at);
	free(s->json);
	memset(s, 0, sizeof(*s));
}

void dt_sandbox_list_clear(struct dt_sandbox_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++)
		dt_sandbox_clear(&l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

int dt_volume_from_json(const cJSON *o, struct dt_volume *v)
{
	struct parse p = {false, false};
	int rc;

	memset(v, 0, sizeof(*v));
	if (!cJSON_IsObject(o) || !dt_json_string(o, "id") || !dt_json_string(o, "id")[0])
		return -EIO;
	v->id = str_field(&p, o, "id", NULL);
	v->name = str_field(&p, o, "name", "");
	v->organization_id = str_field(&p, o, "organizationId", "");
	v->state = str_field(&p, o, "state", "unknown");
	v->error_reason = str_field(&p, o, "errorReason", NULL);
	v->created_at = str_field(&p, o, "createdAt", NULL);
	v->updated_at = str_field(&p, o, "updatedAt", NULL);
	v->last_used_at = str_field(&p, o, "lastUsedAt", NULL);
	if (!p.nomem)
		v->json = json_field(&p, o);
	rc = finish(&p);
	if (rc)
		dt_volume_clear(v);
	return rc;
}

void dt_volume_clear(struct dt_volume *v)
{
	if (!v)
		return;
	free(v->id);
	free(v->name);
	free(v->organization_id);
	free(v->state);
	free(v->error_reason);
	free(v->created_at);
	free(v->updated_at);
	free(v->last_used_at);
	free(v->json);
	memset(v, 0, sizeof(*v));
}

void dt_volume_list_clear(struct dt_volume_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++)
		dt_volume_clear(&l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

int dt_snapshot_from_json(const cJSON *o, struct dt_snapshot *s)
{
	struct parse p = {false, false};
	int rc;

	memset(s, 0, sizeof(*s));
	if (!cJSON_IsObject(o) || !dt_json_string(o, "id") || !dt_json_string(o, "id")[0])
		return -EIO;
	s->id = str_field(&p, o, "id", NULL);
	s->name = str_field(&p, o, "name", "");
	s->state = str_field(&p, o, "state", "unknown");
	s->error_reason = str_field(&p, o, "errorReason", NULL);
	s->image_name = str_field(&p, o, "imageName", NULL);
	s->source_sandbox_id = str_field(&p, o, "sourceSandboxId", NULL);
	s->cpu = num_field(o, "cpu");
	s->gpu = num_field(o, "gpu");
	s->mem = num_field(o, "mem");
	s->disk = num_field(o, "disk");
	s->size = num_field(o, "size");
	s->created_at = str_field(&p, o, "createdAt", NULL);
	s->updated_at = str_field(&p, o, "updatedAt", NULL);
	if (!p.nomem)
		s->json = json_field(&p, o);
	rc = finish(&p);
	if (rc)
		dt_snapshot_clear(s);
	return rc;
}

void dt_snapshot_clear(struct dt_snapshot *s)
{
	if (!s)
		return;
	free(s->id);
	free(s->name);
	free(s->state);
	free(s->error_reason);
	free(s->image_name);
	free(s->source_sandbox_id);
	free(s->created_at);
	free(s->updated_at);
	free(s->json);
	memset(s, 0, sizeof(*s));
}

void dt_snapshot_list_clear(struct dt_snapshot_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++)
		dt_snapshot_clear(&l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

cJSON *dt_kv_to_json(const struct dt_kv *kv, size_t n)
{
	cJSON *o = cJSON_CreateObject();

	for (size_t i = 0; o && i < n; i++) {
		if (!kv[i].key || !kv[i].value)
			continue;
		cJSON *value = cJSON_CreateString(kv[i].value);
		bool ok;

		/* A repeated key replaces the earlier one: JSON objects have unique keys. */
		if (value && cJSON_GetObjectItemCaseSensitive(o, kv[i].key))
			ok = cJSON_ReplaceItemInObjectCaseSensitive(o, kv[i].key, value);
		else
			ok = value && cJSON_AddItemToObject(o, kv[i].key, value);
		if (!ok) {
			cJSON_Delete(value);
			cJSON_Delete(o);
			o = NULL;
		}
	}
	return o;
}

/* Rewrites every \u0000 escape of a JSON text into \u001a, in place (same length). */
static void json_unhide_nul(char *text, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (text[i] != '\\')
			continue;
		if (text[i + 1] == 'u' && len - i >= 6 && !memcmp(text + i + 2, "0000", 4))
			memcpy(text + i + 2, "001a", 4);
		i++; /* the escaped character: "\\u0000" is a backslash, then text */
	}
}

int dt_call_json_names(struct dt_client *c, enum dt_method method, const char *path,
		       const char *what, cJSON **out, struct dt_error *err)
{
	struct dt_response resp;
	int rc;

	*out = NULL;
	rc = dt_call(c, method, path, NULL, what, &resp, err);
	if (rc == 0 && resp.body.len > 0) {
		json_unhide_nul(resp.body.data, resp.body.len);
		rc = dt_parse_json(resp.body.data, resp.body.len, what, out, err);
	}
	dt_response_free(&resp);
	return rc;
}
